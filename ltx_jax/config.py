"""Typed, frozen configuration dataclasses, the model variants table and `load_config`.

Run configs are YAML files in `configs/`, validated into the frozen, keyword-only dataclasses of
this module by `load_config`, with dotted `key=value` overrides on top (`model.num_layers=4`,
`optim.lr=3e-4`). The machinery (unknown keys and bad types as a `ConfigError` naming the dotted key
and the closest valid one, dumping) is generic and lives in `ltx_jax.config_loader`; its public
names are re-exported here. A new section is a new dataclass and a field of `RunConfig`, nothing
else.

Model sizes are rows of `DIT_VARIANTS`; a `model:` section picks one with `variant:` and any
field given explicitly (in the file or as an override) wins over the row. Layers never see these
classes: only top-level models take a model config.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import jax.numpy as jnp

from ltx_jax import config_loader

# The generic machinery, re-exported: callers import everything config-related from here.
from ltx_jax.config_loader import (  # noqa: F401
    ConfigError,
    config_to_dict,
    dump_config,
    parse_overrides,
)

# The dtype names a config may hold; `to_dtype` maps them to jnp dtypes.
DTypeName = Literal["float32", "bfloat16", "float16"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class DiTConfig:
    """Hyperparameters of `Transformer3D` (ltx_spec.md section 3.1)."""

    # Row of DIT_VARIANTS this config started from (informational once resolved).
    variant: str = "ltxv-2b"
    # Latent channels in and out (patch size 1x1x1: the DiT never patchifies).
    in_channels: int = 128
    out_channels: int = 128
    # Depth, heads and head dim; the width D is num_heads * head_dim.
    num_layers: int = 28
    num_heads: int = 32
    head_dim: int = 64
    # Width of the raw text features (T5-XXL: 4096) entering the caption projection.
    caption_channels: int = 4096
    # FFN hidden width as a multiple of D.
    mlp_ratio: int = 4
    # Epsilon of the non-affine block norms and the final LayerNorm.
    norm_eps: float = 1e-6
    # Epsilon of the full-width QK RMSNorm.
    qk_norm_eps: float = 1e-5
    # Biases on q/k/v projections and on the attention output projection.
    attention_bias: bool = True
    attention_out_bias: bool = True
    # 3D RoPE: theta and the (seconds, pixels, pixels) extent that maps to fractional 1.0.
    rope_theta: float = 10000.0
    rope_max_pos: tuple[float, float, float] = (20.0, 2048.0, 2048.0)
    # Diffusion time t in [0, 1] is multiplied by this before the sinusoidal embedding.
    timestep_scale_multiplier: float = 1000.0
    # Width of the sinusoidal timestep features.
    timestep_embed_dim: int = 256
    # 0.9.5+: latent frame k sits at pixel frame max(0, 8k - 7) instead of 8k.
    causal_temporal_positioning: bool = False
    # Compute and storage dtypes (plain strings at runtime; `to_dtype` maps them to jnp dtypes).
    dtype: DTypeName = "float32"
    param_dtype: DTypeName = "float32"
    # Attention implementation, see ltx_jax.nn.attention. "auto" is XLA on a CPU, cuDNN or our
    # Pallas kernel on a GPU, splash on a TPU: never the unfused [L, L] scores on an accelerator.
    attention_impl: str = "auto"
    # The per-device kernel of the sequence-parallel impls ("ring": xla, pallas or auto;
    # "ulysses": any single-device impl); ignored by the others.
    attention_inner_impl: str = "auto"
    # Apply the block stack with lax.scan (True) or an unrolled Python loop (False).
    scan_layers: bool = True
    # Rematerialisation policy by name, see ltx_jax.dit.transformer.REMAT_POLICIES.
    remat_policy: str = "none"

    @property
    def width(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def mlp_dim(self) -> int:
        return self.mlp_ratio * self.width


# Released shapes (ltx_spec.md 3.1) and small ones for tests and sweeps. The 2B row covers 0.9.0/
# 0.9.1 and 0.9.5+ (they differ only in causal_temporal_positioning, read from the checkpoint).
# fmt: off
DIT_VARIANTS: dict[str, dict[str, Any]] = {
    "ltxv-2b": {"num_layers": 28, "num_heads": 32, "head_dim": 64},
    "ltxv-2b-0.9.5": {"num_layers": 28, "num_heads": 32, "head_dim": 64,
                      "causal_temporal_positioning": True},
    "ltxv-13b": {"num_layers": 48, "num_heads": 32, "head_dim": 128,
                 "causal_temporal_positioning": True},
    # Scaling-law ladder (caption width stays T5-XXL's 4096).
    "ltxv-s": {"num_layers": 12, "num_heads": 8, "head_dim": 64},
    "ltxv-m": {"num_layers": 16, "num_heads": 16, "head_dim": 64},
    "ltxv-l": {"num_layers": 24, "num_heads": 24, "head_dim": 64},
    # Tiny models for tests and CPU smoke runs.
    "tiny": {"num_layers": 2, "num_heads": 2, "head_dim": 16,
             "in_channels": 8, "out_channels": 8, "caption_channels": 24},
    "small": {"num_layers": 4, "num_heads": 4, "head_dim": 32,
              "in_channels": 16, "out_channels": 16, "caption_channels": 64},
}
# fmt: on


def dit_config(variant: str = "ltxv-2b", **overrides: Any) -> DiTConfig:
    """The DiTConfig for a variant row, with field overrides on top (type-checked)."""
    return config_loader.build(DiTConfig, {"variant": variant, **overrides}, VARIANT_TABLES)


_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def to_dtype(name: str):
    """'bfloat16' -> jnp.bfloat16, with an error naming the valid names."""
    if name not in _DTYPES:
        raise ValueError(f"unknown dtype {name!r}; valid: {sorted(_DTYPES)}")
    return _DTYPES[name]


@dataclasses.dataclass(frozen=True, kw_only=True)
class MeshConfig:
    """Device mesh and sharding strategy (house_style.md 9.5; ltx_jax.sharding)."""

    # Mesh axis sizes, outermost first; exactly one may be -1 (all remaining devices).
    data: int = 1
    fsdp: int = -1
    seq: int = 1
    tensor: int = 1
    # Multi-slice: how many slices (over DCN) the `data` axis spans; 1 for one slice or a GPU node.
    dcn_data: int = 1
    # Named logical-axis rules preset, a key of ltx_jax.sharding.PRESETS.
    preset: str = "fsdp"


@dataclasses.dataclass(frozen=True, kw_only=True)
class OptimConfig:
    """optax AdamW with warmup + cosine/constant schedule, clipping, weight-decay mask and EMA."""

    lr: float = 1e-4
    # Schedule after the linear warmup: "cosine" (to lr * end_lr_ratio at train.steps) or "constant".
    schedule: Literal["cosine", "constant"] = "cosine"
    warmup_steps: int = 1000
    end_lr_ratio: float = 0.1
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.01
    # Parameters whose dotted path contains any of these substrings get no weight decay
    # (biases, norms, the modulation tables); 1-D parameters never get it.
    no_decay: tuple[str, ...] = ("bias", "scale_shift_table")
    # Global-norm gradient clipping (0 disables).
    clip_norm: float = 1.0
    # EMA of the parameters (0 disables; typical 0.9999).
    ema_decay: float = 0.0
    # Non-finite loss or gradient: skip the update and count it; abort after this many in a row.
    max_consecutive_skips: int = 10


@dataclasses.dataclass(frozen=True, kw_only=True)
class DataConfig:
    """Where batches come from (ltx_jax.data)."""

    # "synthetic" (the built-in moving-shapes clips) or "arrayrecord" (shards from `preprocess`).
    source: Literal["synthetic", "arrayrecord"] = "synthetic"
    # ArrayRecord shard files or folders (for source=arrayrecord).
    paths: tuple[str, ...] = ()
    # Global batch size (all hosts together) of each bucket, in `buckets` order.
    batch_sizes: tuple[int, ...] = (8,)
    # Latent grid (frames, height, width) of each bucket (synthetic clips are generated at these).
    buckets: tuple[tuple[int, int, int], ...] = ((2, 4, 4),)
    # Text tokens per caption (synthetic captions are padded to this).
    text_len: int = 8
    # Number of synthetic clips (the dataset size; epochs reshuffle).
    num_examples: int = 1024
    # Frames per second of the pixel videos the latents came from (the RoPE time axis).
    frame_rate: float = 25.0
    # Shuffle seed (the run seed is mixed in).
    seed: int = 0
    # Grain worker processes (0: in the training process).
    num_workers: int = 0


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """The training objective and loop (ltx_jax.train)."""

    # Timestep sampler: ltx_jax.diffusion.flow.TIMESTEP_SAMPLERS.
    timestep_sampler: Literal["shifted_logit_normal", "uniform"] = "shifted_logit_normal"
    # Probability that a sample is image-to-video: its first latent frame is clean (t = 0) and left
    # out of the loss.
    i2v_prob: float = 0.0
    # Probability that a caption is replaced by the empty-prompt embedding (for CFG).
    caption_dropout: float = 0.1
    # Microbatches per optimizer update (the global batch is split along B).
    grad_accum: int = 1
    # Log every N steps (metrics.jsonl, TensorBoard).
    log_every: int = 10
    # Profile steps [start, stop) with jax.profiler into RUN_DIR/profile (empty: off).
    profile_steps: tuple[int, ...] = ()
    # Multi-host: "auto" initialises jax.distributed when the environment names a cluster.
    distributed: Literal["auto", "on", "off"] = "auto"
    # XLA compiler options for the train step, e.g. {xla_backend_optimization_level: 0} halves
    # CPU compile time for smoke runs whose steps take milliseconds anyway.
    compiler_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    # Testing hook: steps whose gradients are replaced by NaN (non-finite handling tests).
    inject_nan_steps: tuple[int, ...] = ()


@dataclasses.dataclass(frozen=True, kw_only=True)
class CheckpointConfig:
    """Orbax CheckpointManager policy (ltx_jax.checkpoint)."""

    # Save every N steps (a checkpoint is always written at the final step and on SIGTERM).
    every: int = 1000
    # Also save when this many minutes passed since the last save (0: off).
    every_minutes: float = 0.0
    # Keep the newest N, plus every step that is a multiple of keep_every (0: none).
    keep: int = 3
    keep_every: int = 0
    async_save: bool = True
    # Resume precedence: RUN_DIR checkpoint, then resume_from (a checkpoint folder), then
    # init_from (converted LTX-Video weights: a diffusers or Lightricks file/folder), then scratch.
    resume_from: str = ""
    init_from: str = ""


@dataclasses.dataclass(frozen=True, kw_only=True)
class RunConfig:
    """Top level of a run config file (`configs/*.yaml`).

    Each section is a frozen dataclass; a new section is a new field here, nothing else.
    """

    # Free-form run name, for logs and dashboards.
    name: str = ""
    # Where the run writes config.yaml, metrics.jsonl and its checkpoints.
    run_dir: str = "runs/default"
    # Root PRNG seed of the run.
    seed: int = 0
    # Optimizer updates to run (0: build everything and stop).
    steps: int = 0
    # The denoising transformer; `model.variant` picks a row of DIT_VARIANTS.
    model: DiTConfig = dataclasses.field(default_factory=DiTConfig)
    mesh: MeshConfig = dataclasses.field(default_factory=MeshConfig)
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    checkpoint: CheckpointConfig = dataclasses.field(default_factory=CheckpointConfig)


# Dataclasses whose `variant` field names a row of field values applied before the explicit keys.
VARIANT_TABLES: dict[type, Mapping[str, Mapping[str, Any]]] = {DiTConfig: DIT_VARIANTS}


def load_config(
    path_or_dict: str | os.PathLike | Mapping[str, Any],
    overrides: Sequence[str] = (),
    schema: type = RunConfig,
) -> Any:
    """Reads a YAML file (or takes a dict), applies `key=value` overrides and validates it.

    `config_loader.load` with this module's `VARIANT_TABLES`; see it for the override syntax.

    Args:
      path_or_dict: a YAML file (read with `yaml.safe_load`) or an already parsed mapping.
      overrides: dotted `a.b.c=value` strings, applied in order after the file.
      schema: the top-level dataclass.

    Returns:
      An instance of `schema`, with nested dataclasses for its sections.

    Raises:
      ConfigError: an unknown key (naming the closest valid one), a value of the wrong type, an
        unknown variant or a malformed override.
    """
    return config_loader.load(path_or_dict, schema, overrides, VARIANT_TABLES)
