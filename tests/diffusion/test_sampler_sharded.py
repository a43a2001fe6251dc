"""The jitted sampling loop under a mesh: batch and guidance branches on data/fsdp, the DiT under
the mesh rules, equal to the single-device loop."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

import ltx_jax
from ltx_jax.diffusion.guidance import official_guidance
from ltx_jax.diffusion.sampler import Conditioning, denoise, transformer_model_fn
from ltx_jax.diffusion.schedules import linear_quadratic_schedule
from ltx_jax.sharding import MESH_AXES
from tests.oracle import LAYER_RTOL, rel_l2


def test_sharded_denoise_equals_single_device():
    model = ltx_jax.Transformer3D(ltx_jax.dit_config("tiny"), rngs=nnx.Rngs(0))
    cfg = model.config
    rng = np.random.default_rng(0)
    b, s = 4, 5
    latents = rng.standard_normal((b, 2, 2, 4, cfg.in_channels)).astype(np.float32)
    text = rng.standard_normal((b, s, cfg.caption_channels)).astype(np.float32)
    mask = np.ones((b, s), np.int32)
    mask[1, 3:] = 0
    cond = Conditioning(text_embeds=jnp.asarray(text), text_mask=jnp.asarray(mask),
                        neg_text_embeds=jnp.zeros_like(text), neg_text_mask=jnp.asarray(mask))
    sigmas = linear_quadratic_schedule(3)
    guidance = official_guidance(sigmas, guidance_scale=3.0, stg_scale=1.0, skip_block_list=[1],
                                 num_layers=cfg.num_layers)
    fn, params = transformer_model_fn(model, frame_rate=25.0)
    single = np.asarray(denoise(fn, params, latents, sigmas, cond, guidance))

    mesh = jax.make_mesh((2, 2, 2, 1), MESH_AXES, axis_types=(jax.sharding.AxisType.Auto,) * 4)
    with jax.set_mesh(mesh):
        batch = NamedSharding(mesh, P(("data", "fsdp")))
        sharded_latents = jax.device_put(latents, batch)
        sharded_cond = jax.tree.map(lambda x: jax.device_put(x, batch) if x.ndim >= 2 else x, cond)
        out = denoise(fn, params, sharded_latents, sigmas, sharded_cond, guidance)
    assert out.sharding.spec[0] is not None  # the batch stays sharded through the loop
    assert rel_l2(out, single) <= LAYER_RTOL
