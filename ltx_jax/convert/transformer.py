"""Import and export of the DiT weights: Lightricks single file and diffusers `transformer/` folder.

Layouts (ltx_spec.md 6.2, 6.3):
- Lightricks single file: one `.safetensors` whose metadata "config" is JSON with a "transformer"
  section; tensors prefixed `model.diffusion_model.` (or unprefixed); the VAE's `vae.` tensors
  may sit in the same file and are ignored here.
- diffusers folder: `config.json` plus `diffusion_pytorch_model*.safetensors` (sharded or not);
  a pipeline folder with a `transformer/` subfolder is accepted too.

Our parameter paths are the Lightricks names with Flax leaf names (`kernel` [in, out], `scale`),
the 28/48 blocks stacked on a leading axis. `_checkpoint_name` is the one explicit name map.
Loading reads one tensor at a time into the stacked array it belongs to, and moves each finished
array to the device before reading the next, so host memory never holds a second copy of the
weights.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ltx_jax.config import DIT_VARIANTS, DiTConfig, dit_config
from ltx_jax.convert.safetensors_io import CheckpointError, TensorSource, check_keys, save_file
from ltx_jax.dit.transformer import Transformer3D

LIGHTRICKS_PREFIX = "model.diffusion_model."
DIFFUSERS_WEIGHTS = "diffusion_pytorch_model.safetensors"

# Our module names -> Lightricks names, and Lightricks -> diffusers renames (spec 6.3).
_OURS_TO_LIGHTRICKS = {"ff.proj_in": "ff.net.0.proj", "ff.proj_out": "ff.net.2", "to_out": "to_out.0"}
_LIGHTRICKS_TO_DIFFUSERS = {
    "patchify_proj": "proj_in", "adaln_single": "time_embed", "q_norm": "norm_q", "k_norm": "norm_k",
}


def _checkpoint_name(path: tuple[str, ...], layout: str) -> tuple[str, bool]:
    """Our parameter path -> (checkpoint name with `{i}` for the layer, needs transpose)."""
    *mods, leaf = [str(p) for p in path]
    name = ".".join(mods)
    for ours, theirs in _OURS_TO_LIGHTRICKS.items():
        name = name.replace(ours, theirs)
    if mods and mods[0] == "transformer_blocks":
        name = name.replace("transformer_blocks", "transformer_blocks.{i}", 1)
    if layout == "diffusers":
        parts = name.split(".")
        name = ".".join(_LIGHTRICKS_TO_DIFFUSERS.get(p, p) for p in parts)
    leaf_name = {"kernel": "weight", "scale": "weight"}.get(leaf, leaf)
    full = f"{name}.{leaf_name}" if name else leaf_name
    return full, leaf == "kernel"


# ----------------------------------------------------------------------------- configs


def config_from_diffusers(cfg: dict[str, Any], **overrides) -> DiTConfig:
    """DiTConfig from a diffusers `LTXVideoTransformer3DModel` config.json."""
    _require(cfg, "patch_size", 1)
    _require(cfg, "patch_size_t", 1)
    _require(cfg, "activation_fn", "gelu-approximate")
    _require(cfg, "qk_norm", "rms_norm_across_heads")
    _require(cfg, "norm_elementwise_affine", False)
    heads, head_dim = cfg.get("num_attention_heads", 32), cfg.get("attention_head_dim", 64)
    _require(cfg, "cross_attention_dim", heads * head_dim)
    fields = dict(
        in_channels=cfg.get("in_channels", 128),
        out_channels=cfg.get("out_channels") or cfg.get("in_channels", 128),
        num_layers=cfg.get("num_layers", 28), num_heads=heads, head_dim=head_dim,
        caption_channels=cfg.get("caption_channels", 4096), norm_eps=cfg.get("norm_eps", 1e-6),
        attention_bias=cfg.get("attention_bias", True),
        attention_out_bias=cfg.get("attention_out_bias", True),
        # diffusers' LTXPipeline always uses the plain time positions.
        causal_temporal_positioning=False,
    )
    return _config(fields, overrides)


def config_from_lightricks(cfg: dict[str, Any], **overrides) -> DiTConfig:
    """DiTConfig from the "transformer" section of a Lightricks single-file checkpoint."""
    _require(cfg, "adaptive_norm", "single_scale_shift")
    _require(cfg, "standardization_norm", "rms_norm")
    _require(cfg, "qk_norm", "rms_norm")
    _require(cfg, "positional_embedding_type", "rope")
    _require(cfg, "norm_elementwise_affine", False)
    _require(cfg, "activation_fn", "gelu-approximate")
    heads, head_dim = cfg["num_attention_heads"], cfg["attention_head_dim"]
    _require(cfg, "cross_attention_dim", heads * head_dim)
    fields = dict(
        in_channels=cfg["in_channels"], out_channels=cfg.get("out_channels") or cfg["in_channels"],
        num_layers=cfg["num_layers"], num_heads=heads, head_dim=head_dim,
        caption_channels=cfg["caption_channels"], norm_eps=cfg.get("norm_eps", 1e-6),
        attention_bias=cfg.get("attention_bias", True),
        rope_theta=float(cfg.get("positional_embedding_theta", 10000.0)),
        rope_max_pos=tuple(float(x) for x in cfg.get("positional_embedding_max_pos", (20, 2048, 2048))),
        timestep_scale_multiplier=float(cfg.get("timestep_scale_multiplier") or 1.0),
        causal_temporal_positioning=bool(cfg.get("causal_temporal_positioning", False)),
    )
    return _config(fields, overrides)


def _config(fields, overrides) -> DiTConfig:
    # `variant` is informational once every shape field is explicit: name the matching row.
    shape = (fields["num_layers"], fields["num_heads"], fields["head_dim"])
    variant = next(
        (name for name, row in DIT_VARIANTS.items()
         if (row.get("num_layers"), row.get("num_heads"), row.get("head_dim")) == shape),
        "ltxv-2b",
    )
    return dit_config(variant, **{**fields, **overrides})


def _require(cfg, key, value):
    if key in cfg and cfg[key] is not None and cfg[key] != value:
        raise CheckpointError(f"unsupported transformer config: {key}={cfg[key]!r} (ltx_jax supports {value!r})")


def config_to_diffusers(c: DiTConfig) -> dict[str, Any]:
    return {
        "_class_name": "LTXVideoTransformer3DModel", "in_channels": c.in_channels,
        "out_channels": c.out_channels, "patch_size": 1, "patch_size_t": 1,
        "num_attention_heads": c.num_heads, "attention_head_dim": c.head_dim,
        "cross_attention_dim": c.width, "num_layers": c.num_layers,
        "activation_fn": "gelu-approximate", "qk_norm": "rms_norm_across_heads",
        "norm_elementwise_affine": False, "norm_eps": c.norm_eps,
        "caption_channels": c.caption_channels, "attention_bias": c.attention_bias,
        "attention_out_bias": c.attention_out_bias,
    }


def config_to_lightricks(c: DiTConfig) -> dict[str, Any]:
    return {
        "_class_name": "Transformer3DModel", "num_attention_heads": c.num_heads,
        "attention_head_dim": c.head_dim, "in_channels": c.in_channels,
        "out_channels": c.out_channels, "num_layers": c.num_layers, "dropout": 0.0,
        "cross_attention_dim": c.width, "attention_bias": c.attention_bias,
        "activation_fn": "gelu-approximate", "adaptive_norm": "single_scale_shift",
        "standardization_norm": "rms_norm", "norm_elementwise_affine": False,
        "norm_eps": c.norm_eps, "caption_channels": c.caption_channels, "qk_norm": "rms_norm",
        "positional_embedding_type": "rope", "positional_embedding_theta": c.rope_theta,
        "positional_embedding_max_pos": list(c.rope_max_pos),
        "timestep_scale_multiplier": c.timestep_scale_multiplier,
        "causal_temporal_positioning": c.causal_temporal_positioning,
    }


# ----------------------------------------------------------------------------- loading


def _open(path: str | os.PathLike) -> tuple[TensorSource, DiTConfig, str]:
    """Finds the layout at `path`; returns (tensors, config, layout)."""
    path = Path(path)
    if path.is_dir():
        if (path / "transformer" / "config.json").is_file():
            path = path / "transformer"
        if not (path / "config.json").is_file():
            raise CheckpointError(f"{path}: not a diffusers transformer folder (no config.json)")
        cfg = json.loads((path / "config.json").read_text())
        return TensorSource(path, filename_glob="diffusion_pytorch_model*.safetensors"), config_from_diffusers(cfg), "diffusers"
    if path.is_file():
        if path.suffix != ".safetensors":
            raise CheckpointError(f"{path}: only .safetensors checkpoints are read (never pickles)")
        whole = TensorSource(path)
        if "config" not in whole.metadata:
            raise CheckpointError(f"{path}: no 'config' in the safetensors metadata (Lightricks single-file layout)")
        meta = json.loads(whole.metadata["config"])
        if "transformer" not in meta:
            raise CheckpointError(f"{path}: the metadata config has no 'transformer' section")
        # Transformer tensors are prefixed (loaders also accept none); the VAE's share the file.
        prefixed = any(k.startswith(LIGHTRICKS_PREFIX) for k in whole.keys())
        source = whole.view(LIGHTRICKS_PREFIX) if prefixed else whole.view(exclude=("vae.",))
        return source, config_from_lightricks(meta["transformer"]), "lightricks"
    raise CheckpointError(f"no such checkpoint file or folder: {path}")


def _expected(abstract_state: nnx.State, num_layers: int, layout: str):
    """{checkpoint key: torch shape} and, per our path, the list of (key, transpose)."""
    expected, plan = {}, {}
    for path, var in nnx.to_flat_state(abstract_state):
        name, transpose = _checkpoint_name(path, layout)
        shape = tuple(var.get_value().shape)
        stacked = path[0] == "transformer_blocks"
        per = shape[1:] if stacked else shape
        torch_shape = per[::-1] if transpose else per
        keys = [name.format(i=i) for i in range(num_layers)] if stacked else [name]
        for k in keys:
            expected[k] = torch_shape
        plan[path] = (keys, transpose, stacked)
    return expected, plan


def load_transformer(path, *, dtype=jnp.float32, param_dtype=jnp.float32, **config_overrides) -> Transformer3D:
    """Loads a Lightricks single-file checkpoint or a diffusers transformer folder.

    Args:
      path: `.safetensors` file (Lightricks) or folder (diffusers `transformer/` or pipeline root).
      dtype: compute dtype; param_dtype: storage dtype (tensors are cast on load).
      **config_overrides: DiTConfig fields to set (e.g. `attention_impl="cudnn"`, `scan_layers=False`).

    Raises:
      CheckpointError: missing/truncated files, unsupported configs, or tensors that do not match
        the model (listing every missing, unexpected and mis-shaped key).
    """
    source, config, layout = _open(path)
    if config_overrides:
        import dataclasses

        config = dataclasses.replace(config, **config_overrides)
    abstract = nnx.eval_shape(lambda: Transformer3D(config, rngs=nnx.Rngs(0), dtype=dtype, param_dtype=param_dtype))
    graphdef, abstract_state = nnx.split(abstract)
    expected, plan = _expected(abstract_state, config.num_layers, layout)
    check_keys(path, {k: source.shape(k) for k in source.keys()}, expected)

    np_dtype = np.dtype(jnp.dtype(param_dtype))
    flat = []
    for path_, var in nnx.to_flat_state(abstract_state):
        keys, transpose, stacked = plan[path_]
        torch_layout = lambda t: (t.T if transpose else t).astype(np_dtype)  # noqa: E731
        if stacked:
            buf = np.empty(var.get_value().shape, np_dtype)
            for i, k in enumerate(keys):  # one layer's tensor in memory at a time
                buf[i] = torch_layout(source.get(k))
        else:
            buf = torch_layout(source.get(keys[0]))
        value = jnp.asarray(buf)
        del buf
        flat.append((path_, var.replace(value)))
    return nnx.merge(graphdef, nnx.from_flat_state(flat))


# ----------------------------------------------------------------------------- saving


def transformer_tensors(model: Transformer3D, layout: str = "diffusers") -> dict[str, np.ndarray]:
    """The model's weights under checkpoint names, in torch layout ([out, in]) and param dtype."""
    _, state = nnx.split(model)
    out = {}
    for path, var in nnx.to_flat_state(state):
        name, transpose = _checkpoint_name(path, layout)
        value = np.asarray(jax.device_get(var.get_value()))
        if path[0] == "transformer_blocks":
            for i in range(value.shape[0]):
                out[name.format(i=i)] = value[i].T if transpose else value[i]
        else:
            out[name] = value.T if transpose else value
    return out


def save_transformer(model: Transformer3D, path, *, layout: str = "diffusers") -> None:
    """Writes the model back: a diffusers `transformer/` folder or a Lightricks single file.

    Args:
      model: the Transformer3D.
      path: a folder (diffusers) or a `.safetensors` file path (lightricks).
      layout: "diffusers" or "lightricks".
    """
    path = Path(path)
    if layout == "diffusers":
        path.mkdir(parents=True, exist_ok=True)
        save_file(transformer_tensors(model, "diffusers"), path / DIFFUSERS_WEIGHTS)
        cfg = config_to_diffusers(model.config)
        tmp = path / "config.json.tmp"
        tmp.write_text(json.dumps(cfg, indent=2))
        os.replace(tmp, path / "config.json")
    elif layout == "lightricks":
        tensors = {LIGHTRICKS_PREFIX + k: v for k, v in transformer_tensors(model, "lightricks").items()}
        meta = {"config": json.dumps({"transformer": config_to_lightricks(model.config)})}
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(tensors, path, metadata=meta)
    else:
        raise ValueError(f"unknown layout {layout!r}; valid: 'diffusers', 'lightricks'")
