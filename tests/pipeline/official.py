"""A tiny random official LTX-Video checkpoint and the original `LTXVideoPipeline` built on it.

`write_checkpoint` writes what Lightricks ships: one `.safetensors` with the transformer
("model.diffusion_model."), the VAE ("vae.", per-channel statistics) and a metadata "config" with
"transformer", "vae" and "scheduler" sections; beside it a text encoder folder (text_encoder/ +
tokenizer/, the layout the official inference loads T5 from). `official_pipeline` loads these the
way `ltx_video.inference.create_ltx_video_pipeline` does (float32, CPU).

`patched_randomness` makes the original draw our noise: its `randn_tensor` calls (initial noise,
extra conditioning tokens' noise, image-conditioning noise per step) and `torch.randn_like`
(decode noise) return tensors queued by the test; and the VAE posterior is read at its mean, as
our `vae.encode` returns it (the original samples it).
"""

from __future__ import annotations

import contextlib
import json

import numpy as np
import torch
from ltx_video.models.autoencoders.causal_video_autoencoder import CausalVideoAutoencoder
from ltx_video.models.transformers.transformer3d import Transformer3DModel
from safetensors.torch import save_file

from ltx_jax.sample import tiny_tokenizer
from tests.dit.test_parity_ltx_video import lightricks_config
from tests.pipeline.tiny import T5_WIDTH, build_t5
from tests.vae.test_vae_single_file import CONFIGS as VAE_CONFIGS

# The 0.9.1 single file's scheduler section (token-count shift with the terminal stretch).
SCHEDULER = {"_class_name": "RectifiedFlowScheduler", "num_train_timesteps": 1000, "shifting": "SD3",
             "base_resolution": None, "target_shift_terminal": 0.1, "sampler": "Uniform"}


def write_checkpoint(folder, *, causal: bool = True, seed: int = 0) -> dict:
    """Writes `folder/ltxv.safetensors` and `folder/t5/{text_encoder,tokenizer}`; returns the paths."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    dit_cfg = lightricks_config(layers=2, caption=T5_WIDTH, causal=causal)
    dit = Transformer3DModel.from_config(dit_cfg).eval()
    vae_cfg = json.loads(json.dumps(VAE_CONFIGS["0.9.1"]))
    vae = CausalVideoAutoencoder.from_config(vae_cfg).eval()
    tensors = {}
    with torch.no_grad():
        for name, p in dit.state_dict().items():
            tensors["model.diffusion_model." + name] = (0.3 * torch.randn(p.shape, generator=g)).contiguous()
        for name, p in vae.state_dict().items():
            if "per_channel_scale" not in name:  # the original's noise injection uses torch's RNG: keep it off
                p = p + 0.1 * torch.randn(p.shape, generator=g)
            tensors["vae." + name] = p.contiguous()
    c = vae_cfg["latent_channels"]
    stats = {"mean-of-means": 0.3 * torch.randn(c, generator=g), "std-of-means": torch.rand(c, generator=g) + 0.5}
    tensors.update({f"vae.per_channel_statistics.{k}": v for k, v in stats.items()})
    path = folder / "ltxv.safetensors"
    meta = {"config": json.dumps({"transformer": dit_cfg, "vae": vae_cfg, "scheduler": SCHEDULER})}
    save_file(tensors, str(path), metadata=meta)

    tokenizer = tiny_tokenizer()
    t5_dir = folder / "t5"
    build_t5(tokenizer, seed).save_pretrained(str(t5_dir / "text_encoder"))
    tokenizer.save_pretrained(str(t5_dir / "tokenizer"))
    return dict(checkpoint=path, text_encoder=t5_dir)


def official_pipeline(paths: dict):
    """The original LTXVideoPipeline on the written checkpoint (create_ltx_video_pipeline, float32)."""
    from ltx_video.models.transformers.symmetric_patchifier import SymmetricPatchifier
    from ltx_video.pipelines.pipeline_ltx_video import LTXVideoPipeline
    from ltx_video.schedulers.rf import RectifiedFlowScheduler
    from transformers import AutoTokenizer, T5EncoderModel

    ckpt, t5 = paths["checkpoint"], paths["text_encoder"]
    return LTXVideoPipeline(
        tokenizer=AutoTokenizer.from_pretrained(str(t5 / "tokenizer")),
        text_encoder=T5EncoderModel.from_pretrained(str(t5 / "text_encoder")).eval(),
        vae=CausalVideoAutoencoder.from_pretrained(ckpt).float().eval(),
        transformer=Transformer3DModel.from_pretrained(ckpt).float().eval(),
        scheduler=RectifiedFlowScheduler.from_pretrained(ckpt),
        patchifier=SymmetricPatchifier(patch_size=1),
        prompt_enhancer_image_caption_model=None, prompt_enhancer_image_caption_processor=None,
        prompt_enhancer_llm_model=None, prompt_enhancer_llm_tokenizer=None,
    )


@contextlib.contextmanager
def patched_randomness(draws: list, decode_noise: torch.Tensor | None):
    """The original pipeline draws `draws` in order (each checked for shape) and `decode_noise`.

    Yields the list of shapes it asked for, so a test can check that every queued draw was used.
    """
    import ltx_video.pipelines.pipeline_ltx_video as plv
    from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

    queue = list(draws)
    asked = []
    orig = (plv.randn_tensor, torch.randn_like, DiagonalGaussianDistribution.sample)

    def randn_tensor(shape, generator=None, device=None, dtype=None, **kw):
        asked.append(tuple(shape))
        if not queue:
            raise AssertionError(f"the original pipeline drew an unexpected tensor of shape {tuple(shape)}")
        t = queue.pop(0)
        assert tuple(t.shape) == tuple(shape), (tuple(t.shape), tuple(shape))
        return t.clone()

    def randn_like(x, *a, **kw):
        assert decode_noise is not None and decode_noise.shape == x.shape, x.shape
        return decode_noise.clone()

    plv.randn_tensor, torch.randn_like = randn_tensor, randn_like
    DiagonalGaussianDistribution.sample = lambda self, generator=None: self.mode()
    try:
        yield asked
    finally:
        plv.randn_tensor, torch.randn_like, DiagonalGaussianDistribution.sample = orig
    assert not queue, f"{len(queue)} queued draws were not used"


def run_official(pipe, *, prompts, negative_prompt, height, width, num_frames, frame_rate, draws,
                 decode_noise, conditioning_items=(), **kwargs) -> np.ndarray:
    """Calls the original pipeline as its inference script does; returns [B, F, H, W, 3] in [0, 1]."""
    from ltx_video.pipelines.pipeline_ltx_video import ConditioningItem as TorchItem

    items = [TorchItem(torch.from_numpy(np.ascontiguousarray(media)), frame, strength)
             for media, frame, strength in conditioning_items] or None
    with patched_randomness(draws, decode_noise), torch.no_grad():
        video = pipe(prompt=prompts, negative_prompt=negative_prompt, height=height, width=width,
                     num_frames=num_frames, frame_rate=frame_rate, output_type="pt", is_video=True,
                     vae_per_channel_normalize=True, conditioning_items=items,
                     generator=torch.Generator().manual_seed(0), **kwargs).images
    return video.float().numpy().transpose(0, 2, 3, 4, 1)  # [B, 3, F, H, W] -> [B, F, H, W, 3]


def torch_media(clip: np.ndarray) -> np.ndarray:
    """Our media [B, F, H, W, 3] in [0, 1] -> the original's [B, 3, F, H, W] in [-1, 1]."""
    return (clip.transpose(0, 4, 1, 2, 3) * 2.0 - 1.0).astype(np.float32)
