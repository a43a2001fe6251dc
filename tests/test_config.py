"""The YAML config system: loading, overrides, errors naming the closest key, variants, dumping."""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Literal

import pytest
import yaml

from ltx_jax.config import (
    DIT_VARIANTS,
    ConfigError,
    DiTConfig,
    RunConfig,
    dit_config,
    dump_config,
    load_config,
    parse_overrides,
    to_dtype,
)

CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "configs"
CONFIG_FILES = sorted(CONFIGS.glob("*.yaml"))


def test_configs_folder_has_the_released_and_tiny_shapes():
    names = {p.stem for p in CONFIG_FILES}
    assert {"tiny", "ltxv-2b", "ltxv-2b-0.9.5", "ltxv-13b"} <= names


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: p.name)
def test_every_config_file_loads(path):
    cfg = load_config(path)
    assert isinstance(cfg, RunConfig) and isinstance(cfg.model, DiTConfig)
    # The variant row is applied under whatever the file sets explicitly.
    raw_model = (yaml.safe_load(path.read_text()) or {}).get("model") or {}
    row = DIT_VARIANTS[cfg.model.variant]
    for key, value in {**row, **raw_model}.items():
        assert getattr(cfg.model, key) == value, key
    # Each file loads the same as its resolved dict does.
    assert load_config(dataclasses.asdict(cfg)) == cfg


def test_variant_files_match_the_variant_rows():
    for name in ("tiny", "ltxv-2b", "ltxv-2b-0.9.5", "ltxv-13b"):
        assert load_config(CONFIGS / f"{name}.yaml").model == dit_config(name)
    assert load_config(CONFIGS / "ltxv-13b.yaml").model.head_dim == 128
    assert load_config(CONFIGS / "ltxv-2b-0.9.5.yaml").model.causal_temporal_positioning is True
    assert load_config(CONFIGS / "ltxv-2b.yaml").model.causal_temporal_positioning is False


def test_defaults_without_a_file():
    cfg = load_config({})
    assert cfg == RunConfig()
    assert (cfg.run_dir, cfg.steps, cfg.model) == ("runs/default", 0, dit_config("ltxv-2b"))


def test_overrides_are_typed():
    cfg = load_config(
        CONFIGS / "tiny.yaml",
        [
            "steps=10",
            "seed=7",
            "run_dir=/tmp/somewhere",
            "name=001",  # a str field keeps the text as written
            "model.norm_eps=3e-4",  # YAML 1.1 reads this as a string; float fields accept it
            "model.rope_theta=5000",  # an int is a fine float
            "model.scan_layers=false",
            "model.rope_max_pos=[1, 2, 3]",
            "model.dtype=bfloat16",
        ],
    )
    assert (cfg.steps, cfg.seed, cfg.run_dir, cfg.name) == (10, 7, "/tmp/somewhere", "001")
    m = cfg.model
    assert m.norm_eps == 3e-4 and type(m.norm_eps) is float
    assert m.rope_theta == 5000.0 and type(m.rope_theta) is float
    assert m.scan_layers is False
    assert m.rope_max_pos == (1.0, 2.0, 3.0) and all(type(v) is float for v in m.rope_max_pos)
    assert to_dtype(m.dtype) == to_dtype("bfloat16")
    # Untouched fields keep the tiny row.
    assert (m.num_layers, m.head_dim) == (2, 16)


def test_later_overrides_win():
    cfg = load_config({"steps": 1}, ["steps=2", "steps=3"])
    assert cfg.steps == 3


def test_unknown_top_level_key_suggests_the_closest():
    with pytest.raises(ConfigError, match=r"unknown key 'sed'; did you mean 'seed'\?"):
        load_config({"sed": 1})
    with pytest.raises(
        ConfigError, match=r"override 'run_dri=x': unknown key 'run_dri'; did you mean 'run_dir'\?"
    ):
        load_config({}, ["run_dri=x"])


def test_unknown_nested_key_suggests_the_closest(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  variant: tiny\n  num_layer: 3\n")
    with pytest.raises(
        ConfigError,
        match=r"bad.yaml: unknown key 'model.num_layer'; did you mean 'model.num_layers'\?",
    ):
        load_config(path)
    with pytest.raises(
        ConfigError, match=r"unknown key 'model.num_layer'; did you mean 'model.num_layers'\?"
    ):
        load_config(CONFIGS / "tiny.yaml", ["model.num_layer=3"])
    with pytest.raises(
        ConfigError, match=r"unknown key 'model.zzz'; valid keys here: \[.*'num_layers'"
    ):
        load_config({"model": {"zzz": 1}})
    with pytest.raises(ConfigError, match=r"unknown key 'num_layer'; did you mean 'num_layers'\?"):
        dit_config("tiny", num_layer=3)


@pytest.mark.parametrize(
    "raw, pattern",
    [
        ({"steps": "ten"}, r"'steps': expected int, got 'ten' \(str\)"),
        ({"steps": 1.5}, r"'steps': expected int, got 1.5 \(float\)"),
        ({"steps": True}, r"'steps': expected int, got True \(bool\)"),
        ({"model": {"scan_layers": 1}}, r"'model.scan_layers': expected bool, got 1 \(int\)"),
        (
            {"model": {"norm_eps": "small"}},
            r"'model.norm_eps': expected float, got 'small' \(str\)",
        ),
        ({"model": {"norm_eps": False}}, r"'model.norm_eps': expected float, got False \(bool\)"),
        ({"name": 3}, r"'name': expected str, got 3 \(int\)"),
        (
            {"model": {"rope_max_pos": [1, 2]}},
            r"'model.rope_max_pos': expected tuple\[float, float, float\], got \[1, 2\]",
        ),
        (
            {"model": {"rope_max_pos": [1, "a", 3]}},
            r"'model.rope_max_pos\[1\]': expected float, got 'a'",
        ),
        (
            {"model": {"rope_max_pos": 5}},
            r"'model.rope_max_pos': expected tuple\[float, float, float\], got 5",
        ),
        (
            {"model": {"dtype": "bf16"}},
            r"'model.dtype': 'bf16' is not one of .*closest: \['bfloat16'",
        ),
        ({"model": 3}, r"'model': expected a mapping of DiTConfig keys, got 3"),
    ],
)
def test_bad_type_names_key_value_and_type(raw, pattern):
    with pytest.raises(ConfigError, match=pattern):
        load_config(raw)


def test_bad_override_type_and_form():
    with pytest.raises(
        ConfigError, match=r"override 'model.num_layers=abc': .*expected int, got 'abc'"
    ):
        load_config({}, ["model.num_layers=abc"])
    with pytest.raises(ConfigError, match=r"override 'steps' is not of the form dotted.key=value"):
        load_config({}, ["steps"])
    with pytest.raises(ConfigError, match=r"'seed' is a value, not a section"):
        load_config({}, ["seed.x=1"])


def test_bad_file_top_level(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match=r"list.yaml: the top level must be a mapping"):
        load_config(path)
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing\n")
    assert load_config(empty) == RunConfig()


def test_variant_rebasing_keeps_explicit_fields():
    raw = {"model": {"variant": "tiny", "num_layers": 3}}
    cfg = load_config(raw, ["model.variant=small"])
    assert cfg.model.variant == "small"
    assert cfg.model.num_layers == 3  # given explicitly: kept
    assert (cfg.model.num_heads, cfg.model.head_dim, cfg.model.in_channels) == (
        4,
        32,
        16,
    )  # small's row
    # An override of a field and then of the variant: the field still wins.
    cfg = load_config(CONFIGS / "tiny.yaml", ["model.head_dim=8", "model.variant=ltxv-13b"])
    assert cfg.model == dit_config("ltxv-13b", head_dim=8)
    # The caller's dict is not modified by overrides.
    assert raw == {"model": {"variant": "tiny", "num_layers": 3}}


def test_unknown_variant_names_the_closest():
    with pytest.raises(
        ConfigError, match=r"unknown variant 'ltxv-13' for 'model.variant'; closest: \['ltxv-13b'"
    ):
        load_config({}, ["model.variant=ltxv-13"])
    with pytest.raises(
        ConfigError, match=r"unknown variant 'tiniest' for 'variant'; closest: \['tiny'"
    ):
        dit_config("tiniest")


def test_dump_load_round_trip(tmp_path):
    cfg = load_config(
        CONFIGS / "tiny.yaml",
        ["model.rope_max_pos=[10, 256.5, 512]", "model.norm_eps=1e-7", "name=true", "steps=5"],
    )
    path = tmp_path / "run" / "config.yaml"
    dump_config(cfg, path)
    assert load_config(path) == cfg
    # Tuples are written as plain YAML lists; nothing but the file is left behind.
    assert yaml.safe_load(path.read_text())["model"]["rope_max_pos"] == [10.0, 256.5, 512.0]
    assert [p.name for p in path.parent.iterdir()] == ["config.yaml"]
    # Overwriting is fine (atomic replace).
    dump_config(dataclasses.replace(cfg, steps=6), path)
    assert load_config(path).steps == 6


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: p.name)
def test_every_config_file_round_trips(path, tmp_path):
    cfg = load_config(path)
    dump_config(cfg, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == cfg


def test_parse_overrides_nests_and_parses():
    out = parse_overrides(["a.b=1", "a.c=[1, 2]", "d=ltxv-13b", "e=true", "a.f=3.5"])
    assert out == {"a": {"b": 1, "c": [1, 2], "f": 3.5}, "d": "ltxv-13b", "e": True}
    with pytest.raises(ConfigError, match="not of the form"):
        parse_overrides(["a..b=1"])


def test_dit_config_keeps_working():
    cfg = dit_config("tiny", num_layers=3, rope_max_pos=[1, 2, 3])
    assert (cfg.variant, cfg.num_layers, cfg.width, cfg.mlp_dim) == ("tiny", 3, 32, 128)
    assert cfg.rope_max_pos == (1.0, 2.0, 3.0)
    assert dit_config() == DiTConfig()
    with pytest.raises(ConfigError, match=r"'num_heads': expected int"):
        dit_config("tiny", num_heads="2")


def test_str_override_keeps_text_only_when_yaml_value_does_not_fit():
    cfg = load_config({}, ["name=null", "run_dir=2024", "model.attention_impl=cudnn"])
    assert (cfg.name, cfg.run_dir, cfg.model.attention_impl) == ("null", "2024", "cudnn")
    with pytest.raises(ConfigError, match=r"override 'model.dtype=16'.*'16' is not one of"):
        load_config({}, ["model.dtype=16"])


# A schema like the ones later issues add: new sections are plain dataclasses, nothing else.
@dataclasses.dataclass(frozen=True, kw_only=True)
class _Optim:
    lr: float = 1e-4
    betas: tuple[float, ...] = (0.9, 0.99)
    warmup: int | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class _Mesh:
    axes: list[str] = dataclasses.field(default_factory=lambda: ["data", "fsdp"])
    shape: tuple[int, ...] = (1, -1)


@dataclasses.dataclass(frozen=True, kw_only=True)
class _Train:
    steps: int = 0
    optim: _Optim = dataclasses.field(default_factory=_Optim)
    mesh: _Mesh | None = None
    mode: Literal["pretrain", "finetune"] = "pretrain"
    model: DiTConfig = dataclasses.field(default_factory=DiTConfig)


def test_generic_schema_with_new_sections(tmp_path):
    cfg = load_config(
        {"optim": {"lr": 1}, "model": {"variant": "tiny"}},
        ["optim.betas=[0.8, 0.9, 0.95]", "optim.warmup=10", "mesh.shape=[2, 4]", "mode=finetune"],
        schema=_Train,
    )
    assert cfg.optim == _Optim(lr=1.0, betas=(0.8, 0.9, 0.95), warmup=10)
    assert cfg.mesh == _Mesh(shape=(2, 4)) and cfg.mesh.axes == ["data", "fsdp"]
    assert cfg.mode == "finetune" and cfg.model == dit_config("tiny")
    assert load_config({}, ["optim.warmup=null"], schema=_Train).optim.warmup is None
    assert load_config({}, schema=_Train).mesh is None
    dump_config(cfg, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml", schema=_Train) == cfg
    with pytest.raises(ConfigError, match=r"unknown key 'optim.lrr'; did you mean 'optim.lr'\?"):
        load_config({}, ["optim.lrr=1"], schema=_Train)
    with pytest.raises(ConfigError, match=r"unknown key 'mesh.shap'; did you mean 'mesh.shape'\?"):
        load_config({"mesh": {"shap": [1]}}, schema=_Train)
    with pytest.raises(ConfigError, match=r"'optim.warmup': expected int, got 'soon'"):
        load_config({"optim": {"warmup": "soon"}}, schema=_Train)
    with pytest.raises(ConfigError, match=r"'mesh.shape\[1\]': expected int, got 'x'"):
        load_config({}, ["mesh.shape=[1, x]"], schema=_Train)
    with pytest.raises(
        ConfigError, match=r"'mode': 'pretrian' is not one of .*closest: \['pretrain'"
    ):
        load_config({"mode": "pretrian"}, schema=_Train)
