"""Sequence-parallel attention inside a full DiT forward on 8 simulated CPU devices: a Transformer3D
with attention_impl "ring" / "ulysses" and the weights of an "xla" one, run under the mesh with the
video tokens sharded on `seq`, gives the same output and gradients (weights and input)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from ltx_jax.config import dit_config
from ltx_jax.dit.transformer import Transformer3D
from tests.nn.test_seq_parallel import _mesh
from tests.oracle import LAYER_RTOL, rel_l2


def _dit_outputs_and_grads(model, latents, t, text, text_mask, cot):
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def loss(params, latents):
        out = nnx.merge(graphdef, params, rest)(latents, t, text, text_mask)
        return jnp.sum(out * cot), out

    (_, out), grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))(params, latents)
    return out, grads


@functools.cache
def _reference():
    """The single-device xla model, its inputs, and its output and gradients (shared by the tests)."""
    ref_model = Transformer3D(dit_config("tiny", num_layers=1), rngs=nnx.Rngs(0))
    rng = np.random.default_rng(0)
    latents = rng.standard_normal((2, 4, 2, 3, 8)).astype(np.float32)  # [B, F, H, W, C], L = 24
    t = np.array([0.3, 0.8], np.float32)
    text = rng.standard_normal((2, 5, 24)).astype(np.float32)
    text_mask = np.array([[1, 1, 1, 0, 0], [0, 0, 0, 0, 0]], np.float32)  # row 1: no text at all
    cot = rng.standard_normal(latents.shape).astype(np.float32)
    args = (latents, t, text, text_mask, cot)
    return ref_model, args, _dit_outputs_and_grads(ref_model, *args)


# Ring (our Pallas kernel per device, interpret mode) with batch on data, tokens on seq and heads
# on tensor; Ulysses (XLA per device) with batch on fsdp.
@pytest.mark.parametrize("impl,inner,mesh_shape", [("ring", "pallas", (2, 1, 2, 2)), ("ulysses", "xla", (1, 2, 2, 2))])
def test_dit_forward_and_gradients_match_single_device(impl, inner, mesh_shape):
    ref_model, (latents, t, text, text_mask, cot), (ref_out, ref_grads) = _reference()
    cfg = dit_config("tiny", num_layers=1, attention_impl=impl, attention_inner_impl=inner)
    model = Transformer3D(cfg, rngs=nnx.Rngs(1))
    nnx.update(model, nnx.state(ref_model))  # the same weights
    mesh = _mesh(mesh_shape)
    with jax.set_mesh(mesh):
        # Video tokens sharded on `seq` (frames axis), the batch on data/fsdp.
        sharded = jax.device_put(latents, NamedSharding(mesh, P(("data", "fsdp"), "seq")))
        out, grads = _dit_outputs_and_grads(model, sharded, t, text, text_mask, cot)
    errs = {"out": rel_l2(out, ref_out), "d_latents": rel_l2(grads[1], ref_grads[1])}
    flat, ref_flat = nnx.to_flat_state(grads[0]), dict(nnx.to_flat_state(ref_grads[0]))
    for path, g in flat:
        errs["/".join(map(str, path))] = rel_l2(g.get_value(), ref_flat[path].get_value())
    print(f"DiT {impl}:{inner} mesh {mesh_shape}: out {errs['out']:.2e}, d_latents {errs['d_latents']:.2e}, "
          f"worst param grad {max(errs.values()):.2e}")
    assert len(errs) > 20
    assert max(errs.values()) <= LAYER_RTOL, {k: e for k, e in errs.items() if e > LAYER_RTOL}
