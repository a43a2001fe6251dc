"""The jitted train step: each sharding preset on 8 CPU devices equals one device; NaN skipping."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from ltx_jax import sharding as shd
from ltx_jax.config import load_config
from ltx_jax.data import build_steps
from ltx_jax.data.pipeline import global_batch_shapes
from ltx_jax.train_step import Trainer

STEPS = 3
FAST = ["train.compiler_options={xla_backend_optimization_level: 0}", "train.grad_accum=2"]


def _run(overrides, devices=None, steps=STEPS, batches=None):
    cfg = load_config("configs/smoke.yaml", FAST + overrides)
    data, (null_text, null_mask) = build_steps(cfg)
    batches = batches or [data[s] for s in range(steps)]
    mesh = shd.make_mesh(cfg.mesh, devices)
    trainer = Trainer.create(cfg)
    abstract = jax.eval_shape(trainer.init_state, null_text, null_mask)
    state_sh = shd.named(mesh, trainer.state_specs(abstract, mesh))
    shapes = global_batch_shapes(batches[0], 1)
    step_fn = trainer.compile_train_step(mesh, abstract, shapes)
    batch_sh = trainer.batch_shardings(mesh, shapes)
    with jax.set_mesh(mesh):
        state = jax.jit(trainer.init_state, out_shardings=state_sh)(null_text, null_mask)
        losses = []
        for b in batches:
            state, m = step_fn(state, {k: jax.device_put(v, batch_sh[k]) for k, v in b.items()})
            losses.append(float(m["loss"]))
    return state, losses, trainer, mesh, (step_fn, batch_sh)


@pytest.fixture(scope="module")
def reference():
    state, losses, *_ = _run(["mesh.fsdp=1"], devices=jax.devices()[:1])
    return jax.device_get(state), losses


MESHES = {
    "dp": ["mesh.data=8", "mesh.fsdp=1"],
    "fsdp": ["mesh.fsdp=8"],
    "fsdp_tp": ["mesh.fsdp=4", "mesh.tensor=2"],
    "fsdp_seq": ["mesh.fsdp=4", "mesh.seq=2"],
    # The combination of the two above; slow only because each preset is one more compile.
    "fsdp_seq_tp": ["mesh.fsdp=2", "mesh.seq=2", "mesh.tensor=2"],
}


@pytest.mark.parametrize("preset", [p if p != "fsdp_seq_tp" else pytest.param(p, marks=pytest.mark.slow)
                                    for p in sorted(MESHES)])
def test_sharded_step_equals_single_device(preset, reference):
    assert jax.device_count() == 8
    state, losses, *_ = _run(MESHES[preset] + [f"mesh.preset={preset}"])
    ref_state, ref_losses = reference
    np.testing.assert_allclose(losses, ref_losses, rtol=2e-5)
    for key in ("params", "opt_state", "ema"):
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-6),
                     jax.device_get(state[key]), ref_state[key])
    assert int(state["step"]) == STEPS
    # The preset's parameter rules are what the arrays actually carry.
    kernel = state["params"]["transformer_blocks"]["ff"]["proj_in"]["kernel"]  # [layers, embed, mlp]
    want = {"dp": P(None, None, None), "fsdp": P(None, "fsdp", None), "fsdp_tp": P(None, "fsdp", "tensor"),
            "fsdp_seq": P(None, "fsdp", None), "fsdp_seq_tp": P(None, "fsdp", "tensor")}[preset]
    assert kernel.sharding.spec == want
    mu = state["opt_state"][1][0].mu["transformer_blocks"]["ff"]["proj_in"]["kernel"]
    assert mu.sharding.spec == want  # optimizer moments follow their parameter


def test_nonfinite_gradient_skips_update_and_counts():
    cfg_over = ["mesh.fsdp=8"]
    cfg = load_config("configs/smoke.yaml", FAST + cfg_over)
    data, _ = build_steps(cfg)
    good = data[0]
    bad = dict(good, latents=np.where(np.arange(good["latents"].size).reshape(good["latents"].shape) == 5,
                                      np.nan, good["latents"]).astype(np.float32))
    state1, _, _, mesh, (step_fn, sh) = _run(cfg_over, batches=[good])
    before = jax.device_get(state1)
    put = lambda b: {k: jax.device_put(v, sh[k]) for k, v in b.items()}  # noqa: E731
    with jax.set_mesh(mesh):
        state2, m = step_fn(state1, put(bad))
        after = jax.device_get(state2)
        assert not np.isfinite(float(m["loss"]))
        for key in ("params", "opt_state", "ema"):  # bit-identical: the update was skipped
            jax.tree.map(np.testing.assert_array_equal, after[key], before[key])
        assert (int(after["step"]), int(after["skipped"]), int(after["consecutive_skips"])) == (2, 1, 1)
        state3, m = step_fn(state2, put(bad))
        assert (int(m["skipped"]), int(m["consecutive_skips"])) == (2, 2)
        state4, m = step_fn(state3, put(good))
        assert (int(m["skipped"]), int(m["consecutive_skips"])) == (2, 0)
        assert np.isfinite(float(m["loss"])) and float(m["update_norm"]) > 0


def test_mesh_sizes_and_presets_are_validated():
    assert shd.mesh_shape({"data": 2, "fsdp": -1}, 8) == (2, 4, 1, 1)
    with pytest.raises(ValueError, match="at most one -1"):
        shd.mesh_shape({"data": -1, "fsdp": -1}, 8)
    with pytest.raises(ValueError, match="use 6 devices but 8"):
        shd.mesh_shape({"data": 2, "fsdp": 3}, 8)
    with pytest.raises(ValueError, match="closest: \\['fsdp_tp'"):
        shd.get_preset("fsdp_pt")
    mesh = shd.make_mesh(load_config("configs/smoke.yaml", ["mesh.data=2", "mesh.fsdp=4"]).mesh)
    assert dict(mesh.shape) == {"data": 2, "fsdp": 4, "seq": 1, "tensor": 1}
    # The batch is split over both data-parallel axes; under FSDP no activation axis maps to fsdp
    # other than the batch, so activations are never gathered.
    assert shd.activation_sharding(mesh, "fsdp", ("batch", "length", "embed"), (8, 16, 32)).spec == \
        P(("data", "fsdp"), None, None)
