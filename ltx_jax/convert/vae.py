"""Video-VAE weight import/export: diffusers `vae/` folders (and Lightricks single files).

Our module tree follows diffusers' `AutoencoderKLLTXVideo`, so the diffusers name of a parameter
is its path with three layout rules: a CausalConv3d's `kernel`/`bias` live under `.conv.`
(`weight` [O, I, kt, kh, kw] <-> our [kt, kh, kw, I, O]); a Dense `kernel` is `weight` [O, I];
a LayerNorm `scale` is `weight`. Noise scales are [C, 1, 1] in torch and [C] here.
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
from ltx_jax.vae.autoencoder import CausalVideoAutoencoder
from ltx_jax.vae.config import VAEConfig

WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"


def _torch_name(path: tuple, shapes: dict[tuple, tuple]) -> str:
    """Our state path -> diffusers key."""
    parent, leaf = path[:-1], path[-1]
    base = ".".join(str(p) for p in parent)
    sibling = shapes.get(parent + ("kernel",))
    is_conv = sibling is not None and len(sibling) == 5
    if leaf in ("kernel", "bias"):
        name = {"kernel": "weight", "bias": "bias"}[leaf]
        return f"{base}.conv.{name}" if is_conv else f"{base}.{name}"
    if leaf == "scale":  # LayerNorm affine weight
        return f"{base}.weight"
    return ".".join(str(p) for p in path)


def _to_torch(leaf: str, x: np.ndarray) -> np.ndarray:
    if leaf == "kernel" and x.ndim == 5:
        return x.transpose(4, 3, 0, 1, 2)  # [kt, kh, kw, I, O] -> [O, I, kt, kh, kw]
    if leaf == "kernel" and x.ndim == 2:
        return x.T  # [I, O] -> [O, I]
    if leaf.startswith("per_channel_scale"):
        return x[:, None, None]  # [C] -> [C, 1, 1]
    return x


def _from_torch(leaf: str, x: np.ndarray) -> np.ndarray:
    if leaf == "kernel" and x.ndim == 5:
        return x.transpose(2, 3, 4, 1, 0)  # [O, I, kt, kh, kw] -> [kt, kh, kw, I, O]
    if leaf == "kernel" and x.ndim == 2:
        return x.T
    if leaf.startswith("per_channel_scale"):
        return x[:, 0, 0]
    return x


def _name_table(state: nnx.State) -> dict[str, tuple[tuple, tuple]]:
    """diffusers key -> (our path, diffusers shape) for every variable of `state`."""
    flat = [(tuple(p), v) for p, v in nnx.to_flat_state(state)]
    shapes = {p: tuple(v.get_value().shape) for p, v in flat}
    table = {}
    for p, shape in shapes.items():
        dummy = np.empty(shape, np.uint8) if shape else np.empty((), np.uint8)
        table[_torch_name(p, shapes)] = (p, tuple(_to_torch(str(p[-1]), dummy).shape))
    return table


def abstract_vae(cfg: VAEConfig, *, dtype=jnp.float32, param_dtype=jnp.float32) -> CausalVideoAutoencoder:
    """The model with abstract (ShapeDtypeStruct) variables: nothing allocated."""
    return nnx.eval_shape(
        lambda: CausalVideoAutoencoder(cfg, dtype=dtype, param_dtype=param_dtype, rngs=nnx.Rngs(0))
    )


def vae_from_tensors(cfg: VAEConfig, source, path, *, dtype=jnp.float32,
                     param_dtype=jnp.float32) -> CausalVideoAutoencoder:
    """Builds the model from diffusers-named tensors (`source` has keys/shape/get)."""
    graphdef, state = nnx.split(abstract_vae(cfg, dtype=dtype, param_dtype=param_dtype))
    table = _name_table(state)
    check_keys(path, {k: source.shape(k) for k in source.keys()}, {k: s for k, (_, s) in table.items()})
    flat = dict((tuple(p), v) for p, v in nnx.to_flat_state(state))
    for key, (p, _) in table.items():
        var = flat[p]
        value = _from_torch(str(p[-1]), np.asarray(source.get(key)))
        var_dtype = var.get_value().dtype
        var.set_value(jnp.asarray(value, dtype=var_dtype))
    return nnx.merge(graphdef, state)


def _read_config(path: Path) -> VAEConfig:
    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise CheckpointError(f"{path}: no config.json (expected a diffusers vae/ folder)")
    return VAEConfig.from_diffusers(json.loads(cfg_file.read_text()))


def load_vae(path: str | os.PathLike, *, dtype=jnp.float32,
             param_dtype=jnp.float32) -> CausalVideoAutoencoder:
    """Loads a VAE from a diffusers `vae/` folder or a Lightricks single-file checkpoint.

    Args:
      path: folder with config.json + diffusion_pytorch_model*.safetensors, or a `.safetensors`
        file whose metadata "config" JSON has a "vae" entry and whose VAE tensors start "vae.".
      dtype: compute dtype.
      param_dtype: storage dtype.
    """
    path = Path(path)
    if path.is_file():
        from ltx_jax.convert.vae_single_file import load_single_file_vae

        return load_single_file_vae(path, dtype=dtype, param_dtype=param_dtype)
    cfg = _read_config(path)
    source = TensorSource(path, filename_glob="diffusion_pytorch_model*.safetensors")
    return vae_from_tensors(cfg, source, path, dtype=dtype, param_dtype=param_dtype)


def vae_tensors(vae: CausalVideoAutoencoder) -> dict[str, np.ndarray]:
    """All variables under their diffusers names and torch layouts."""
    state = nnx.state(vae)
    table = _name_table(state)
    flat = dict((tuple(p), v) for p, v in nnx.to_flat_state(state))
    return {
        key: _to_torch(str(p[-1]), np.asarray(jax.device_get(flat[p].get_value())))
        for key, (p, _) in table.items()
    }


def save_vae(vae: CausalVideoAutoencoder, path: str | os.PathLike, layout: str = "diffusers") -> None:
    """Writes the VAE as a diffusers `vae/` folder or a Lightricks single file.

    Args:
      vae: the model.
      path: layout "diffusers": a folder (config.json + diffusion_pytorch_model.safetensors);
        layout "lightricks": a `.safetensors` file with "vae."-prefixed original ltx_video names,
        `per_channel_statistics.{mean,std}-of-means` and {"vae": config} in the metadata.
      layout: "diffusers" or "lightricks".
    """
    if layout == "lightricks":
        from ltx_jax.convert.vae_single_file import save_single_file_vae

        return save_single_file_vae(vae, path)
    if layout != "diffusers":
        raise ValueError(f"unknown VAE layout {layout!r}; known: 'diffusers', 'lightricks'")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tensors = vae_tensors(vae)
    save_file(tensors, path / WEIGHTS_NAME, metadata={"format": "pt"})
    (path / "config.json").write_text(json.dumps(vae.cfg.to_diffusers(), indent=2))
