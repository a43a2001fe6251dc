"""A toy velocity model with the same maths in torch and JAX, and harnesses that run the official
`LTXVideoPipeline` and diffusers' `LTXPipeline` denoising loops with it (no VAE, no text encoder).

v = tanh(x) * (0.5 + t) + x * t + mean_S(text * mask) @ P + sum_l (1 - skip[l]) w_l
is pointwise in tokens, depends on the time, the text (so CFG branches differ) and the STG skip
mask (so the perturbed branch differs per block list).
"""

from __future__ import annotations

import types

import jax.numpy as jnp
import numpy as np
import torch

C, S, NUM_LAYERS = 4, 3, 5
_rng = np.random.default_rng(1234)
P = _rng.standard_normal((C, C)).astype(np.float32)
W_LAYERS = _rng.standard_normal((NUM_LAYERS, C)).astype(np.float32)


def _text_term_np(text, mask, xp):
    m = mask[..., None]
    return xp.einsum("bsd,de->be", text * m, P) / xp.maximum(m.sum(1), 1.0)  # [B, C]


def jax_model_fn(params, latents, timestep, text_embeds, text_mask, skip_layer_mask):
    """Our model_fn contract: latents [B, F, H, W, C], timestep [B] or [B, F, H, W]."""
    del params
    t = timestep.reshape(timestep.shape + (1,) * (latents.ndim - timestep.ndim))
    text = _text_term_np(text_embeds, text_mask.astype(jnp.float32), jnp)[:, None, None, None, :]
    v = jnp.tanh(latents) * (0.5 + t) + latents * t + text
    if skip_layer_mask is not None:
        v = v + jnp.einsum("lb,lc->bc", 1.0 - skip_layer_mask, W_LAYERS)[:, None, None, None, :]
    return v


def torch_velocity(x, t, text, mask, skip):
    """x [B, L, C], t [B, 1] or [B, L] (already in [0, 1]), text [B, S, C], skip [layers, B]."""
    m = mask.float()[..., None]
    text_term = torch.einsum("bsd,de->be", text * m, torch.from_numpy(P)) / m.sum(1).clamp_min(1.0)
    t = t[..., None]
    v = torch.tanh(x) * (0.5 + t) + x * t + text_term[:, None, :]
    if skip is not None:
        v = v + torch.einsum("lb,lc->bc", 1.0 - skip, torch.from_numpy(W_LAYERS))[:, None, :]
    return v


class _OfficialToyTransformer(torch.nn.Module):
    """Stands in for ltx_video's Transformer3DModel inside LTXVideoPipeline."""

    def __init__(self):
        super().__init__()
        from ltx_video.models.transformers.transformer3d import Transformer3DModel

        self.transformer_blocks = torch.nn.ModuleList([torch.nn.Identity() for _ in range(NUM_LAYERS)])
        self.config = types.SimpleNamespace(in_channels=C, out_channels=C)
        self.in_channels = C
        self._skip_mask_fn = Transformer3DModel.create_skip_layer_mask
        self.register_buffer("_anchor", torch.zeros(()))

    @property
    def dtype(self):
        return torch.float32

    @property
    def device(self):
        return torch.device("cpu")

    def create_skip_layer_mask(self, *args):
        return self._skip_mask_fn(self, *args)

    def forward(self, latents, indices_grid, encoder_hidden_states, encoder_attention_mask, timestep,
                skip_layer_mask=None, skip_layer_strategy=None, return_dict=False):
        return (torch_velocity(latents, timestep.float(), encoder_hidden_states, encoder_attention_mask,
                               skip_layer_mask),)


def run_official(latents, text, text_mask, neg_text, neg_mask, timesteps, *, conditioning_mask=None,
                 stochastic_sampling=False, **guidance_kwargs):
    """Runs ltx_video's LTXVideoPipeline.__call__ with the toy transformer.

    latents: numpy [B, F, H, W, C]; conditioning_mask: numpy [B, F, H, W] or None.
    Returns the final latents as numpy [B, F, H, W, C].
    """
    import ltx_video.pipelines.pipeline_ltx_video as plv
    from ltx_video.models.transformers.symmetric_patchifier import SymmetricPatchifier
    from ltx_video.schedulers.rf import RectifiedFlowScheduler

    b, f, h, w, c = latents.shape
    orig = plv.get_vae_size_scale_factor
    plv.get_vae_size_scale_factor = lambda vae: (1, 8, 8)  # check_inputs wants sizes % 8
    try:
        pipe = plv.LTXVideoPipeline(
            tokenizer=None, text_encoder=None, vae=None, transformer=_OfficialToyTransformer(),
            scheduler=RectifiedFlowScheduler(), patchifier=SymmetricPatchifier(patch_size=1),
            prompt_enhancer_image_caption_model=None, prompt_enhancer_image_caption_processor=None,
            prompt_enhancer_llm_model=None, prompt_enhancer_llm_tokenizer=None,
        )
    finally:
        plv.get_vae_size_scale_factor = orig

    lat_t = torch.from_numpy(np.ascontiguousarray(latents.transpose(0, 4, 1, 2, 3)))  # -> [B, C, F, H, W]
    pipe.prepare_latents = lambda **kw: lat_t.clone()

    def prepare_conditioning(conditioning_items, init_latents, num_frames, height, width, **kw):
        tokens, coords = pipe.patchifier.patchify(init_latents)  # [B, L, C], [B, 3, L]
        mask = None
        if conditioning_mask is not None:
            mask = torch.from_numpy(conditioning_mask.reshape(b, -1).astype(np.float32))
        return tokens, coords, mask, 0

    pipe.prepare_conditioning = prepare_conditioning
    out = pipe(
        height=8 * h, width=8 * w, num_frames=f, frame_rate=25, timesteps=list(map(float, timesteps)),
        prompt_embeds=torch.from_numpy(text), prompt_attention_mask=torch.from_numpy(text_mask),
        negative_prompt_embeds=torch.from_numpy(neg_text), negative_prompt_attention_mask=torch.from_numpy(neg_mask),
        negative_prompt=None, output_type="latent", return_dict=False, stochastic_sampling=stochastic_sampling,
        vae_per_channel_normalize=True, **guidance_kwargs,
    )[0]
    return out.numpy().transpose(0, 2, 3, 4, 1)  # [B, C, F, H, W] -> [B, F, H, W, C]


class _DiffusersToyTransformer(torch.nn.Module):
    """Stands in for diffusers' LTXVideoTransformer3DModel inside LTXPipeline (timestep x 1000)."""

    def __init__(self):
        super().__init__()
        self.config = types.SimpleNamespace(in_channels=C, out_channels=C, patch_size=1, patch_size_t=1)
        self.register_buffer("_anchor", torch.zeros(()))

    @property
    def device(self):
        return torch.device("cpu")

    @property
    def dtype(self):
        return torch.float32

    def cache_context(self, name):
        import contextlib

        return contextlib.nullcontext()

    def forward(self, hidden_states, encoder_hidden_states, timestep, encoder_attention_mask, **kw):
        t = (timestep.float() / 1000.0)[:, None]  # [B] -> [B, 1]
        return (torch_velocity(hidden_states, t, encoder_hidden_states, encoder_attention_mask, None),)


def run_diffusers(latents, text, text_mask, neg_text, neg_mask, scheduler, *, num_steps, guidance_scale,
                  guidance_rescale=0.0):
    """Runs diffusers' LTXPipeline.__call__ with the toy transformer; latents numpy [B, F, H, W, C].

    The pipeline's own compression defaults (32, 8) set the token count for the shift, so `latents`
    must have F = (num_frames - 1) // 8 + 1 etc.; we pass the matching pixel sizes.
    """
    from diffusers import LTXPipeline

    b, f, h, w, c = latents.shape
    pipe = LTXPipeline(scheduler=scheduler, vae=None, text_encoder=None, tokenizer=None,
                       transformer=_DiffusersToyTransformer())
    packed = torch.from_numpy(latents.reshape(b, f * h * w, c).copy())  # [B, F, H, W, C] -> [B, L, C]
    out = pipe(
        height=h * 32, width=w * 32, num_frames=(f - 1) * 8 + 1, num_inference_steps=num_steps,
        guidance_scale=guidance_scale, guidance_rescale=guidance_rescale, latents=packed,
        prompt_embeds=torch.from_numpy(text), prompt_attention_mask=torch.from_numpy(text_mask),
        negative_prompt_embeds=torch.from_numpy(neg_text), negative_prompt_attention_mask=torch.from_numpy(neg_mask),
        output_type="latent", return_dict=False,
    )[0]
    return out.numpy().reshape(b, f, h, w, c)  # [B, L, C] -> [B, F, H, W, C]
