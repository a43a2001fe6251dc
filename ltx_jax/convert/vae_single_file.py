"""Video-VAE import from the Lightricks single-file checkpoint (ltx_video `CausalVideoAutoencoder`).

The file's metadata "config" JSON holds {"vae": {...}} with block lists ("encoder_blocks" /
"decoder_blocks", or a shared "blocks" in 0.9.0); VAE tensors start "vae.". We translate the block
lists into the diffusers-style `VAEConfig` and every original name into its diffusers name with an
explicit index table built from the same block lists (ltx_spec.md 6.4), instead of diffusers'
order-dependent substring replacements.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import jax.numpy as jnp

from ltx_jax.convert.safetensors_io import CheckpointError, TensorSource
from ltx_jax.convert.vae import vae_from_tensors
from ltx_jax.vae.autoencoder import CausalVideoAutoencoder
from ltx_jax.vae.config import S2D, STRIDED, VAEConfig

PREFIX = "vae."
STATS = "per_channel_statistics."
# Encoder compressions: original block name -> diffusers downsample_type (None: strided conv).
_ENC_DOWN = {"compress_all": None, "compress_space_res": "spatial",
             "compress_time_res": "temporal", "compress_all_res": "spatiotemporal"}
_BLOCK = re.compile(r"^(encoder\.down_blocks|decoder\.up_blocks)\.(\d+)\.(.*)$")


def _params(p) -> dict:
    return {"num_layers": p} if isinstance(p, int) else dict(p or {})


def _groups(blocks, slots: dict[str, int]) -> list[dict[str, tuple[int, dict]]]:
    """Splits a block list into diffusers blocks; `slots` gives each block kind's rank inside one."""
    groups, rank = [], None
    for j, (name, p) in enumerate(blocks):
        if name not in slots:
            raise CheckpointError(f"unsupported VAE block {name!r}; supported: {sorted(slots)}")
        if rank is None or slots[name] <= rank:
            groups.append({})
        groups[-1][name if name == "res_x" else slots[name]] = (j, _params(p))
        rank = slots[name]
    return groups


def _encoder(cfg: dict, ren: dict[str, str]) -> dict:
    blocks = [(n, _params(p)) for n, p in cfg.get("encoder_blocks", cfg.get("blocks"))]
    if blocks[-1][0] != "res_x":
        raise CheckpointError("the encoder block list must end with a res_x block (the mid block)")
    slots = {"res_x": 0, **{k: 1 for k in _ENC_DOWN}, "res_x_y": 2}
    groups = _groups(blocks[:-1], slots)
    c = cfg.get("encoder_base_channels", 128)
    c_in, c_out, layers, scaling, down_type = [], [], [], [], []
    s2d = any(blocks[g[1][0]][0] != "compress_all" for g in groups if 1 in g)
    for gi, g in enumerate(groups):
        c_in.append(c)
        if "res_x" in g:
            layers.append(g["res_x"][1]["num_layers"])
            ren[f"encoder.down_blocks.{g['res_x'][0]}."] = f"encoder.down_blocks.{gi}."
        else:
            layers.append(0)
        scaling.append(1 in g)
        down_type.append("conv")
        if 1 in g:
            j, p = g[1]
            kind = _ENC_DOWN[blocks[j][0]]
            if (kind is not None) != s2d:
                raise CheckpointError("mixed strided / space-to-depth encoders are not supported")
            down_type[-1] = kind or "conv"
            c *= p.get("multiplier", 2) if s2d else 1
            ren[f"encoder.down_blocks.{j}."] = f"encoder.down_blocks.{gi}.downsamplers.0."
        if 2 in g:
            j, p = g[2]
            c *= p.get("multiplier", 2)
            ren[f"encoder.down_blocks.{j}."] = f"encoder.down_blocks.{gi}.conv_out."
        c_out.append(c)
    ren[f"encoder.down_blocks.{len(blocks) - 1}."] = "encoder.mid_block."
    if s2d and not all(scaling):
        raise CheckpointError("space-to-depth encoders must downsample in every block")
    if not s2d and c_out[-1] != c_in[-1]:
        raise CheckpointError("a strided encoder cannot change channels in its last block")
    return dict(
        block_out_channels=tuple(c_in + [c_out[-1]] if s2d else c_in),
        down_block_types=(S2D if s2d else STRIDED,) * len(groups),
        layers_per_block=tuple(layers + [blocks[-1][1]["num_layers"]]),
        spatio_temporal_scaling=tuple(scaling),
        downsample_type=tuple(down_type),
    )


def _decoder(cfg: dict, ren: dict[str, str]) -> dict:
    blocks = [(n, _params(p)) for n, p in cfg.get("decoder_blocks", cfg.get("blocks"))]
    exe = list(reversed(blocks))  # the original decoder builds its ModuleList reversed
    if exe[0][0] != "res_x":
        raise CheckpointError("the decoder block list must end with a res_x block (the mid block)")
    groups = _groups(exe[1:], {"res_x_y": 0, "compress_all": 1, "res_x": 2})
    c = cfg.get("decoder_base_channels", 128)
    for name, p in blocks:
        c *= p.get("multiplier", 2 if name == "res_x_y" else 1) if name in ("res_x_y", "compress_all") else 1
    ren["decoder.up_blocks.0."] = "decoder.mid_block."
    noise, layers = [exe[0][1].get("inject_noise", False)], [exe[0][1]["num_layers"]]
    ch, scaling, residual, factor = [], [], [], []
    for gi, g in enumerate(groups):
        m = 1
        if 0 in g:
            j, p = g[0]
            c //= p.get("multiplier", 2)
            ren[f"decoder.up_blocks.{j + 1}."] = f"decoder.up_blocks.{gi}.conv_in."
        if 1 in g:
            j, p = g[1]
            m = p.get("multiplier", 1)
            if m != 1 and 0 in g:
                raise CheckpointError("a channel-reducing upsampler after res_x_y is not supported")
            c //= m
            residual.append(bool(p.get("residual", False)))
            ren[f"decoder.up_blocks.{j + 1}."] = f"decoder.up_blocks.{gi}.upsamplers.0."
        else:
            residual.append(False)
        res = g.get("res_x", (None, {"num_layers": 0}))
        if res[0] is not None:
            ren[f"decoder.up_blocks.{res[0] + 1}."] = f"decoder.up_blocks.{gi}."
        layers.append(res[1]["num_layers"])
        noise.append(res[1].get("inject_noise", False))
        ch.append(c * m)
        scaling.append(1 in g)
        factor.append(m)
    rev = lambda v: tuple(reversed(v))  # noqa: E731  (diffusers lists are in encoder order)
    return dict(
        decoder_block_out_channels=rev(ch), decoder_layers_per_block=rev(layers),
        decoder_spatio_temporal_scaling=rev(scaling), decoder_inject_noise=rev(noise),
        upsample_residual=rev(residual), upsample_factor=rev(factor),
    )


def config_from_lightricks(cfg: dict) -> tuple[VAEConfig, dict[str, str]]:
    """(VAEConfig, original block prefix -> diffusers prefix) from an ltx_video VAE config."""
    expected = {"dims": 3, "norm_layer": "pixel_norm", "latent_log_var": "uniform",
                "use_quant_conv": False, "normalize_latent_channels": False,
                "spatial_padding_mode": "zeros"}
    for k, v in expected.items():
        got = cfg.get(k, v)
        if got != v and not (k == "dims" and got == [3]):
            raise CheckpointError(f"unsupported VAE config {k}={got!r} (released 0.9.x weights use {v!r})")
    ren: dict[str, str] = {}
    kw = _encoder(cfg, ren) | _decoder(cfg, ren)
    vae_cfg = VAEConfig(
        in_channels=cfg.get("in_channels", 3), out_channels=cfg.get("out_channels", 3),
        latent_channels=cfg["latent_channels"], patch_size=cfg.get("patch_size", 1),
        timestep_conditioning=cfg.get("timestep_conditioning", False),
        decoder_causal=cfg.get("causal_decoder", False), scaling_factor=cfg.get("scaling_factor", 1.0),
        **kw,
    )
    return vae_cfg, ren


def diffusers_name(key: str, ren: dict[str, str]) -> str | None:
    """Original VAE key (without "vae.") -> diffusers key; None for unused statistics."""
    if key.startswith(STATS):
        return {"mean-of-means": "latents_mean", "std-of-means": "latents_std"}.get(key[len(STATS):])
    m = _BLOCK.match(key)
    if m:
        rest = m.group(3)
        rest = re.sub(r"^res_blocks\.", "resnets.", rest)
        rest = re.sub(r"norm3\.norm\.", "norm3.", rest)
        rest = re.sub(r"conv_shortcut\.(weight|bias)$", r"conv_shortcut.conv.\1", rest)
        return ren[f"{m.group(1)}.{m.group(2)}."] + rest
    return key.replace("decoder.last_time_embedder.", "decoder.time_embedder.").replace(
        "decoder.last_scale_shift_table", "decoder.scale_shift_table")


class _Renamed:
    """A TensorSource view under diffusers names."""

    def __init__(self, source: TensorSource, names: dict[str, str]):
        self.source, self.names = source, names  # diffusers name -> original name

    def keys(self):
        return list(self.names)

    def shape(self, key):
        return self.source.shape(self.names[key])

    def get(self, key):
        return self.source.get(self.names[key])


def load_single_file_vae(path: str | os.PathLike, *, dtype=jnp.float32,
                         param_dtype=jnp.float32) -> CausalVideoAutoencoder:
    """Loads the VAE of a Lightricks single-file `.safetensors` checkpoint."""
    path = Path(path)
    source = TensorSource(path, prefix=PREFIX)
    try:
        vae_json = json.loads(source.metadata["config"])["vae"]
    except (KeyError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: no VAE config in the metadata (\"config\" -> \"vae\"): {e}") from None
    cfg, ren = config_from_lightricks(vae_json)
    names = {}
    for k in source.keys():
        if k.startswith(("encoder.", "decoder.", STATS)):
            d = diffusers_name(k, ren)
            if d is not None:
                names[d] = k
    return vae_from_tensors(cfg, _Renamed(source, names), path, dtype=dtype, param_dtype=param_dtype)


# ------------------------------------------------------------------------------------ export

_S2D_BLOCK = {v: k for k, v in _ENC_DOWN.items() if v is not None}


def _encoder_blocks(cfg: VAEConfig) -> tuple[list, int]:
    """diffusers encoder fields -> (ltx_video encoder_blocks, encoder_base_channels)."""
    s2d, ch = cfg.is_s2d_encoder, cfg.block_out_channels
    n = len(ch) - (1 if s2d else 0)
    blocks, c = [], ch[0]
    for i in range(n):
        c_in, c = c, ch[i + 1] if (s2d or i + 1 < n) else ch[i]
        if cfg.layers_per_block[i]:
            blocks.append(["res_x", {"num_layers": cfg.layers_per_block[i]}])
        if cfg.spatio_temporal_scaling[i]:
            blocks.append([_S2D_BLOCK[cfg.downsample_type[i]], {"multiplier": c // c_in}] if s2d
                          else ["compress_all", {}])
        if not s2d and c != c_in:
            blocks.append(["res_x_y", {"multiplier": c // c_in}])
    blocks.append(["res_x", {"num_layers": cfg.layers_per_block[-1]}])
    return blocks, ch[0]


def _decoder_blocks(cfg: VAEConfig) -> tuple[list, int]:
    """diffusers decoder fields -> (ltx_video decoder_blocks, decoder_base_channels)."""
    rev = lambda v: tuple(reversed(v))  # noqa: E731  (execution order)
    ch, layers = rev(cfg.decoder_block_out_channels), rev(cfg.decoder_layers_per_block)
    scaling, noise = rev(cfg.decoder_spatio_temporal_scaling), rev(cfg.decoder_inject_noise)
    residual, factor = rev(cfg.upsample_residual), rev(cfg.upsample_factor)
    exe = [["res_x", {"num_layers": layers[0], "inject_noise": noise[0]}]]
    c = ch[0]
    for i in range(len(ch)):
        if c != ch[i]:  # a channel-reducing resnet before the upsampler
            exe.append(["res_x_y", {"multiplier": c // ch[i]}])
        if scaling[i]:
            exe.append(["compress_all", {"residual": residual[i], "multiplier": factor[i]}])
        if layers[i + 1]:
            exe.append(["res_x", {"num_layers": layers[i + 1], "inject_noise": noise[i + 1]}])
        c = ch[i] // factor[i]
    return list(reversed(exe)), c


def config_to_lightricks(cfg: VAEConfig) -> dict:
    """The ltx_video `CausalVideoAutoencoder` config of a `VAEConfig` (inverse of config_from_lightricks).

    Raises:
      CheckpointError: the configuration has no block-list form (checked by mapping it back).
    """
    enc, enc_base = _encoder_blocks(cfg)
    dec, dec_base = _decoder_blocks(cfg)
    out = {
        "_class_name": "CausalVideoAutoencoder", "dims": 3, "in_channels": cfg.in_channels,
        "out_channels": cfg.out_channels, "latent_channels": cfg.latent_channels,
        "encoder_blocks": enc, "decoder_blocks": dec, "encoder_base_channels": enc_base,
        "decoder_base_channels": dec_base, "scaling_factor": cfg.scaling_factor,
        "norm_layer": "pixel_norm", "patch_size": cfg.patch_size, "latent_log_var": "uniform",
        "use_quant_conv": False, "causal_decoder": cfg.decoder_causal,
        "timestep_conditioning": cfg.timestep_conditioning, "spatial_padding_mode": "zeros",
    }
    back, _ = config_from_lightricks(out)
    if back != cfg:
        diff = {k: (getattr(cfg, k), getattr(back, k)) for k in cfg.__dataclass_fields__ if getattr(cfg, k) != getattr(back, k)}
        raise CheckpointError(f"this VAEConfig has no Lightricks block-list form (differs in {diff})")
    return out


def original_name(key: str, ren: dict[str, str]) -> str:
    """diffusers key -> original VAE key (without "vae."): the inverse of `diffusers_name`."""
    stats = {"latents_mean": "mean-of-means", "latents_std": "std-of-means"}
    if key in stats:
        return STATS + stats[key]
    inverse = sorted(((d, o) for o, d in ren.items()), key=lambda p: -len(p[0]))
    for d, o in inverse:
        if key.startswith(d):
            rest = re.sub(r"^resnets\.", "res_blocks.", key[len(d):])
            rest = rest.replace("norm3.", "norm3.norm.")
            rest = re.sub(r"conv_shortcut\.conv\.(weight|bias)$", r"conv_shortcut.\1", rest)
            return o + rest
    return key.replace("decoder.time_embedder.", "decoder.last_time_embedder.").replace(
        "decoder.scale_shift_table", "decoder.last_scale_shift_table")


def save_single_file_vae(vae: CausalVideoAutoencoder, path: str | os.PathLike) -> None:
    """Writes a Lightricks single-file `.safetensors` holding only the VAE (see `save_vae`)."""
    from ltx_jax.convert.safetensors_io import save_file
    from ltx_jax.convert.vae import vae_tensors

    lk = config_to_lightricks(vae.cfg)
    _, ren = config_from_lightricks(lk)
    tensors = {}
    for key, value in vae_tensors(vae).items():
        name = original_name(key, ren)
        if diffusers_name(name, ren) != key:  # the two tables must stay each other's inverse
            raise CheckpointError(f"VAE export maps {key!r} to {name!r}, which reads back differently")
        tensors[PREFIX + name] = value
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, path, metadata={"format": "pt", "config": json.dumps({"vae": lk})})
