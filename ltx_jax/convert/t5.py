"""T5 encoder weights: a transformers / diffusers `text_encoder/` folder <-> `T5Encoder`.

The folder holds `config.json` and `model.safetensors` (or shards `model-0000i-of-0000n.safetensors`
with `model.safetensors.index.json`), with transformers' `T5EncoderModel` tensor names. One table
(`_BLOCK_KEYS`) maps our per-layer parameters to transformers names; the stacked [num_layers, ...]
arrays are assembled from (and split into) `encoder.block.{i}.` tensors.

Tied embeddings: `encoder.embed_tokens.weight` is the same tensor as `shared.weight`. Files saved by
recent transformers hold only `shared.weight`; older ones hold both (then `shared.weight` is used
and the other must have the same shape); a file with only `encoder.embed_tokens.weight` is read
from that. A full encoder-decoder T5 checkpoint also loads: its `decoder.*` and `lm_head.weight`
tensors are skipped, as `T5EncoderModel.from_pretrained` skips them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ltx_jax.convert.safetensors_io import CheckpointError, TensorSource, check_keys, save_file
from ltx_jax.text.t5 import T5Config, T5Encoder

_SHARED = "shared.weight"
_TIED = "encoder.embed_tokens.weight"
_IGNORED_PREFIXES = ("decoder.", "lm_head.")

# Our non-stacked parameter path -> (transformers key, transpose?).
_TOP_KEYS = {
    ("embed",): (_SHARED, False),
    ("rel_bias",): ("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", False),
    ("final_norm", "scale"): ("encoder.final_layer_norm.weight", False),
}
# Per-layer parameter path under `blocks` -> (key suffix after `encoder.block.{i}.`, transpose?).
# Linear weights are [out, in] in PyTorch and [in, out] kernels here.
_BLOCK_KEYS = {
    ("attn_norm", "scale"): ("layer.0.layer_norm.weight", False),
    ("q", "kernel"): ("layer.0.SelfAttention.q.weight", True),
    ("k", "kernel"): ("layer.0.SelfAttention.k.weight", True),
    ("v", "kernel"): ("layer.0.SelfAttention.v.weight", True),
    ("o", "kernel"): ("layer.0.SelfAttention.o.weight", True),
    ("ffn_norm", "scale"): ("layer.1.layer_norm.weight", False),
    ("wi_0", "kernel"): ("layer.1.DenseReluDense.wi_0.weight", True),
    ("wi_1", "kernel"): ("layer.1.DenseReluDense.wi_1.weight", True),
    ("wo", "kernel"): ("layer.1.DenseReluDense.wo.weight", True),
}


def _layer_key(i: int, suffix: str) -> str:
    return f"encoder.block.{i}.{suffix}"


def _config_path(path: Path) -> Path:
    if not path.exists():
        raise CheckpointError(f"T5 text encoder folder not found: {path}")
    if not path.is_dir():
        raise CheckpointError(f"{path}: a T5 text encoder is a folder (config.json + *.safetensors), not a file")
    cfg = path / "config.json"
    if not cfg.is_file():
        hint = ""
        if (path / "text_encoder" / "config.json").is_file():
            hint = f"; did you mean {path / 'text_encoder'}?"
        raise CheckpointError(f"{path}: no config.json in this T5 text encoder folder{hint}")
    return cfg


def _torch_shapes(model: T5Encoder) -> dict[str, tuple[int, ...]]:
    """transformers key -> PyTorch shape, for every tensor the model needs."""
    state = dict(nnx.to_flat_state(nnx.state(model, nnx.Param)))
    shapes = {}
    for p, (key, t) in _TOP_KEYS.items():
        shape = tuple(state[p].get_value().shape)
        shapes[key] = shape[::-1] if t else shape
    for p, (suffix, t) in _BLOCK_KEYS.items():
        shape = tuple(state[("blocks", *p)].get_value().shape[1:])
        for i in range(model.cfg.num_layers):
            shapes[_layer_key(i, suffix)] = shape[::-1] if t else shape
    return shapes


def load_text_encoder(
    path: str | os.PathLike, *, dtype=jnp.float32, param_dtype=jnp.float32
) -> T5Encoder:
    """Reads a transformers `T5EncoderModel` folder (config.json + safetensors, single or sharded).

    Args:
      path: the `text_encoder/` folder.
      dtype: compute dtype.
      param_dtype: storage dtype the tensors are cast to.

    Raises:
      CheckpointError: missing folder or config, or tensors that do not match the config (every
        missing, unexpected and mis-shaped tensor is listed).
    """
    path = Path(path)
    cfg = T5Config.from_json(_config_path(path))
    source = TensorSource(path)
    model = nnx.eval_shape(lambda: T5Encoder(cfg, dtype=dtype, param_dtype=param_dtype, rngs=nnx.Rngs(0)))

    found = {k: source.shape(k) for k in source.keys() if not k.startswith(_IGNORED_PREFIXES)}
    expected = _torch_shapes(model)
    rename = {}
    if _TIED in found:
        if _SHARED in found:
            expected[_TIED] = expected[_SHARED]  # kept only for its shape check
        else:
            rename[_SHARED] = _TIED
            found[_SHARED] = found.pop(_TIED)
    check_keys(path, found, expected)

    def read(key: str, transpose: bool) -> np.ndarray:
        a = source.get(rename.get(key, key))
        return (a.T if transpose else a).astype(jnp.dtype(param_dtype))

    for p, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        if p[0] == "blocks":
            suffix, t = _BLOCK_KEYS[p[1:]]
            value = np.stack([read(_layer_key(i, suffix), t) for i in range(cfg.num_layers)])
        else:
            value = read(*_TOP_KEYS[p])
        var.set_value(jnp.asarray(value))
    return model


def save_text_encoder(
    encoder: T5Encoder, path: str | os.PathLike, *, max_shard_bytes: int = 10 * 2**30
) -> None:
    """Writes `encoder` as a transformers `T5EncoderModel` folder (config.json + safetensors).

    Tensors keep their storage dtype. Above `max_shard_bytes` the weights are split into
    `model-0000i-of-0000n.safetensors` files with a `model.safetensors.index.json`, as transformers
    does; the folder loads with `load_text_encoder` and `T5EncoderModel.from_pretrained`.
    """
    if max_shard_bytes < 1:
        raise ValueError(f"max_shard_bytes={max_shard_bytes} must be positive")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)

    tensors: dict[str, np.ndarray] = {}
    for p, var in nnx.to_flat_state(nnx.state(encoder, nnx.Param)):
        value = np.asarray(jax.device_get(var.get_value()))
        if p[0] == "blocks":
            suffix, t = _BLOCK_KEYS[p[1:]]
            for i in range(encoder.cfg.num_layers):
                tensors[_layer_key(i, suffix)] = value[i].T if t else value[i]
        else:
            key, t = _TOP_KEYS[p]
            tensors[key] = value.T if t else value

    shards: list[dict[str, np.ndarray]] = [{}]
    size = 0
    for k in sorted(tensors):
        if shards[-1] and size + tensors[k].nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][k] = tensors[k]
        size += tensors[k].nbytes

    for old in list(path.glob("model*.safetensors")) + list(path.glob("model.safetensors.index.json")):
        old.unlink()  # a stale shard would otherwise be read back with the new ones
    metadata = {"format": "pt"}
    if len(shards) == 1:
        save_file(shards[0], path / "model.safetensors", metadata)
    else:
        weight_map = {}
        for i, shard in enumerate(shards):
            name = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
            save_file(shard, path / name, metadata)
            weight_map.update({k: name for k in shard})
        index = {"metadata": {"total_size": sum(v.nbytes for v in tensors.values())}, "weight_map": weight_map}
        (path / "model.safetensors.index.json").write_text(json.dumps(index, indent=2, sort_keys=True))
    config = {**encoder.cfg.to_dict(), "dtype": str(np.dtype(next(iter(tensors.values())).dtype))}
    (path / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
