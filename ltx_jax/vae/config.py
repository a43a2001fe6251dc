"""VAEConfig: the Video-VAE hyperparameters, and the released variants.

The fields are diffusers' `AutoencoderKLLTXVideo` config (one family of classes covers 0.9.0,
0.9.1 and 0.9.5+ through them), so a diffusers `vae/config.json` maps onto it field by field.
Full-size values: ltx_spec.md section 2.3 / diffusers' `convert_ltx_to_diffusers.py`.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any, Mapping

STRIDED = "LTXVideoDownBlock3D"  # 0.9.0/0.9.1 encoder block: resnets, strided conv, channel resnet
S2D = "LTXVideo095DownBlock3D"  # 0.9.5+ encoder block: resnets, residual space-to-depth

# Encoder downsampler strides (frames, height, width) by diffusers `downsample_type`.
DOWNSAMPLE_STRIDES = {
    "conv": (2, 2, 2),
    "spatial": (1, 2, 2),
    "temporal": (2, 1, 1),
    "spatiotemporal": (2, 2, 2),
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class VAEConfig:
    """Hyperparameters of `CausalVideoAutoencoder` (diffusers field names and meanings)."""

    # Pixel channels in and out.
    in_channels: int = 3
    out_channels: int = 3
    # Latent channels (the encoder's conv_out has one more: the shared log-variance).
    latent_channels: int = 128
    # Encoder widths; STRIDED encoders have len(down_block_types) entries, S2D ones one more.
    block_out_channels: tuple[int, ...] = (128, 256, 512, 512)
    # Per encoder block: STRIDED or S2D.
    down_block_types: tuple[str, ...] = (STRIDED,) * 4
    # Resnets per encoder block, then the encoder mid block.
    layers_per_block: tuple[int, ...] = (4, 3, 3, 3, 4)
    # Whether each encoder block downsamples.
    spatio_temporal_scaling: tuple[bool, ...] = (True, True, True, False)
    # Per encoder block: a key of DOWNSAMPLE_STRIDES (only read for S2D blocks).
    downsample_type: tuple[str, ...] = ("conv",) * 4
    # Decoder widths, listed in encoder order (the decoder runs them reversed).
    decoder_block_out_channels: tuple[int, ...] = (128, 256, 512, 512)
    # Resnets per decoder block (encoder order), the last entry being the decoder mid block.
    decoder_layers_per_block: tuple[int, ...] = (4, 3, 3, 3, 4)
    # Whether each decoder block upsamples (encoder order).
    decoder_spatio_temporal_scaling: tuple[bool, ...] = (True, True, True, False)
    # Per decoder block + mid block (encoder order): StyleGAN noise injection (0.9.1).
    decoder_inject_noise: tuple[bool, ...] = (False,) * 5
    # Per decoder block: residual depth-to-space upsampling (0.9.1+).
    upsample_residual: tuple[bool, ...] = (False,) * 4
    # Per decoder block: channel reduction of the upsampler (2 in 0.9.1+).
    upsample_factor: tuple[int, ...] = (1,) * 4
    # Timestep-conditioned (denoising) decoder (0.9.1+).
    timestep_conditioning: bool = False
    # Spatial / temporal patchify at the input.
    patch_size: int = 4
    patch_size_t: int = 1
    # LayerNorm eps of the channel-changing resnet shortcuts.
    resnet_norm_eps: float = 1e-6
    # Latent scaling factor (1.0 in every release).
    scaling_factor: float = 1.0
    # Causal temporal padding in the encoder / decoder.
    encoder_causal: bool = True
    decoder_causal: bool = False

    @property
    def is_s2d_encoder(self) -> bool:
        # diffusers decides the encoder's channel bookkeeping from the LAST block type only.
        return self.down_block_types[-1] == S2D

    def encoder_strides(self) -> list[tuple[int, int, int]]:
        """(frames, height, width) stride of each downsampling encoder block."""
        out = []
        for i, kind in enumerate(self.down_block_types):
            if self.spatio_temporal_scaling[i]:
                out.append(DOWNSAMPLE_STRIDES[self.downsample_type[i]] if kind == S2D else (2, 2, 2))
        return out

    @property
    def temporal_compression(self) -> int:
        """Pixel frames per latent frame (after the first), from the actual strides."""
        f = self.patch_size_t
        for s in self.encoder_strides():
            f *= s[0]
        return f

    @property
    def spatial_compression(self) -> int:
        """Pixels per latent pixel along height and width, from the actual strides."""
        h = self.patch_size
        for s in self.encoder_strides():
            if s[1] != s[2]:
                raise ValueError(f"anisotropic spatial stride {s} is not supported")
            h *= s[1]
        return h

    @classmethod
    def from_diffusers(cls, cfg: Mapping[str, Any]) -> "VAEConfig":
        """From a diffusers `vae/config.json` dict; unknown keys other than bookkeeping fail."""
        names = {f.name: f for f in dataclasses.fields(cls)}
        ignored = {"_class_name", "_diffusers_version", "_name_or_path",
                   "spatial_compression_ratio", "temporal_compression_ratio"}
        kw = {}
        for k, v in cfg.items():
            if k in ignored:
                continue
            if k not in names:
                close = difflib.get_close_matches(k, names, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ValueError(f"unknown diffusers VAE config key {k!r}{hint}")
            kw[k] = tuple(v) if isinstance(v, list) else v
        return cls(**kw)

    def to_diffusers(self) -> dict[str, Any]:
        """The diffusers `config.json` dict (with `_class_name`)."""
        d = {"_class_name": "AutoencoderKLLTXVideo"}
        d.update({k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()})
        # diffusers' default ratio formula (patch * 2**sum(scaling)) is wrong for 0.9.5; pin them.
        d["spatial_compression_ratio"] = self.spatial_compression
        d["temporal_compression_ratio"] = self.temporal_compression
        return d


_V090 = VAEConfig()
_V091 = dataclasses.replace(
    _V090,
    decoder_block_out_channels=(256, 512, 1024),
    decoder_layers_per_block=(5, 6, 7, 8),
    decoder_spatio_temporal_scaling=(True, True, True),
    decoder_inject_noise=(True, True, True, False),
    upsample_residual=(True, True, True),
    upsample_factor=(2, 2, 2),
    timestep_conditioning=True,
)
_V095 = dataclasses.replace(
    _V091,
    block_out_channels=(128, 256, 512, 1024, 2048),
    down_block_types=(S2D,) * 4,
    layers_per_block=(4, 6, 6, 2, 2),
    spatio_temporal_scaling=(True, True, True, True),
    downsample_type=("spatial", "temporal", "spatiotemporal", "spatiotemporal"),
    decoder_layers_per_block=(5, 5, 5, 5),
    decoder_inject_noise=(False, False, False, False),
)


def _tiny(cfg: VAEConfig, **kw) -> VAEConfig:
    """Tiny test shapes keeping the family's structure (latent 8 ch, one resnet per block)."""
    n_dec = len(cfg.decoder_block_out_channels)
    return dataclasses.replace(
        cfg,
        latent_channels=8,
        block_out_channels=(16, 32, 32, 32) if cfg.down_block_types[-1] == STRIDED else (8, 16, 16, 32, 32),
        layers_per_block=(1,) * len(cfg.layers_per_block),
        decoder_block_out_channels=(16, 32, 32, 32)[:n_dec] if n_dec == 4 else (16, 32, 64),
        decoder_layers_per_block=(1,) * len(cfg.decoder_layers_per_block),
        **kw,
    )


VARIANTS: dict[str, VAEConfig] = {
    "0.9.0": _V090,
    "0.9.1": _V091,
    "0.9.5": _V095,
    "tiny-0.9.0": _tiny(_V090),
    "tiny-0.9.1": _tiny(_V091),
    "tiny-0.9.5": _tiny(_V095),
}
