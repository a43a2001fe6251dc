"""The jitted train step: each sharding preset on 8 CPU devices equals one device; NaN skipping.

One initial state is made on one device and placed onto each preset's shardings, so every preset
costs one compile (its step); the NaN test reuses the FSDP step.
"""

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from ltx_jax import sharding as shd
from ltx_jax.config import load_config
from ltx_jax.data import build_steps
from ltx_jax.data.pipeline import global_batch_shapes
from ltx_jax.train_step import Trainer
from tests.train.common import FAST, SMOKE

STEPS = 3


def _setup(overrides, devices=None):
    cfg = load_config(SMOKE, FAST + overrides)
    data, (null_text, null_mask) = build_steps(cfg)
    mesh = shd.make_mesh(cfg.mesh, devices)
    trainer = Trainer.create(cfg)
    abstract = jax.eval_shape(trainer.init_state, null_text, null_mask)
    shapes = global_batch_shapes(data[0], 1)
    state_sh = shd.named(mesh, trainer.state_specs(abstract, mesh))
    return data, mesh, trainer.compile_train_step(mesh, abstract, shapes), state_sh, \
        trainer.batch_shardings(mesh, shapes), (null_text, null_mask), trainer, abstract


def _steps(step_fn, mesh, state, batch_sh, batches):
    losses = []
    with jax.set_mesh(mesh):
        for b in batches:
            state, m = step_fn(state, {k: jax.device_put(v, batch_sh[k]) for k, v in b.items()})
            losses.append(float(m["loss"]))
    return state, losses


@pytest.fixture(scope="module")
def reference():
    """(initial state, batches, final state, losses) of the single-device run."""
    data, mesh, step_fn, state_sh, batch_sh, null, trainer, abstract = _setup(["mesh.fsdp=1"], jax.devices()[:1])
    with jax.set_mesh(mesh):
        init = jax.device_get(trainer.compile_init(mesh, abstract)(*null))
    batches = [data[s] for s in range(STEPS)]
    state, losses = _steps(step_fn, mesh, jax.device_put(init, state_sh), batch_sh, batches)
    return init, batches, jax.device_get(state), losses


MESHES = {
    "dp": ["mesh.data=8", "mesh.fsdp=1"],
    "fsdp": ["mesh.fsdp=8"],
    "fsdp_tp": ["mesh.fsdp=4", "mesh.tensor=2"],
    "fsdp_seq": ["mesh.fsdp=4", "mesh.seq=2"],
    "fsdp_seq_tp": ["mesh.fsdp=2", "mesh.seq=2", "mesh.tensor=2"],
}


@pytest.mark.parametrize("preset", sorted(MESHES))
def test_sharded_step_equals_single_device(preset, reference):
    assert jax.device_count() == 8
    init, batches, ref_state, ref_losses = reference
    _, mesh, step_fn, state_sh, batch_sh, *_ = _setup(MESHES[preset] + [f"mesh.preset={preset}"])
    state, losses = _steps(step_fn, mesh, jax.device_put(init, state_sh), batch_sh, batches)
    np.testing.assert_allclose(losses, ref_losses, rtol=2e-5)
    # Sharded reductions sum in another order (float32 rounding); Adam divides by sqrt(v), which
    # turns a last-bit gradient difference on near-zero coordinates into up to ~1e-4 relative in
    # the parameters after a few steps. Not an oracle parity tolerance.
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


@pytest.mark.parametrize("impl", ["ring", "ulysses", "pallas"])
def test_sequence_parallel_attention_step_equals_single_device(impl, reference):
    # The DiT's self-attention split over `seq` (ring: hand-written backward; Ulysses: all-to-all;
    # our Pallas kernel per shard, interpret mode: queries on `seq`, keys gathered) with heads on
    # `tensor`, inside the whole jitted step: the same losses and updates.
    init, batches, ref_state, ref_losses = reference
    overrides = MESHES["fsdp_seq_tp"] + ["mesh.preset=fsdp_seq_tp", f"model.attention_impl={impl}",
                                         "model.attention_inner_impl=xla"]
    _, mesh, step_fn, state_sh, batch_sh, *_ = _setup(overrides)
    state, losses = _steps(step_fn, mesh, jax.device_put(init, state_sh), batch_sh, batches)
    np.testing.assert_allclose(losses, ref_losses, rtol=2e-5)
    for key in ("params", "opt_state"):  # tolerances as in the preset test above
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-6),
                     jax.device_get(state[key]), ref_state[key])


def test_nonfinite_gradient_skips_update_and_counts(reference):
    init, batches, *_ = reference
    _, mesh, step_fn, state_sh, sh, *_ = _setup(["mesh.fsdp=8"])  # the fsdp test's compiled step
    good = batches[0]
    bad = dict(good, latents=np.where(np.arange(good["latents"].size).reshape(good["latents"].shape) == 5,
                                      np.nan, good["latents"]).astype(np.float32))
    put = lambda b: {k: jax.device_put(v, sh[k]) for k, v in b.items()}  # noqa: E731
    with jax.set_mesh(mesh):
        state1, _ = step_fn(jax.device_put(init, state_sh), put(good))
        before = jax.device_get(state1)
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


def test_programs_are_reused_within_a_process():
    a = _setup(["mesh.fsdp=8", "run_dir=/tmp/a", "steps=12", "checkpoint.every=3"])[2]
    b = _setup(["mesh.fsdp=-1", "run_dir=/tmp/b", "steps=15"])[2]
    assert a is b  # run length (constant schedule), run dir and checkpoints do not change the program
    assert _setup(["mesh.fsdp=8", "optim.lr=1e-3"])[2] is not a


def test_mesh_sizes_and_presets_are_validated():
    assert shd.mesh_shape({"data": 2, "fsdp": -1}, 8) == (2, 4, 1, 1)
    with pytest.raises(ValueError, match="at most one -1"):
        shd.mesh_shape({"data": -1, "fsdp": -1}, 8)
    with pytest.raises(ValueError, match="use 6 devices but 8"):
        shd.mesh_shape({"data": 2, "fsdp": 3}, 8)
    with pytest.raises(ValueError, match="closest: \\['fsdp_tp'"):
        shd.get_preset("fsdp_pt")
    mesh = shd.make_mesh(load_config(SMOKE, ["mesh.data=2", "mesh.fsdp=4"]).mesh)
    assert dict(mesh.shape) == {"data": 2, "fsdp": 4, "seq": 1, "tensor": 1}
    # The batch is split over both data-parallel axes; under FSDP no activation axis maps to fsdp
    # other than the batch, so activations are never gathered.
    assert shd.activation_sharding(mesh, "fsdp", ("batch", "length", "embed"), (8, 16, 32)).spec == \
        P(("data", "fsdp"), None, None)


def test_model_constraints_follow_the_run_preset_whoever_traces():
    # No `use_preset` block around the lowering (as in `bench train`): the step itself enters the
    # run's preset, so the DiT's token activations are split on `seq` under fsdp_seq.
    _, mesh, step_fn, state_sh, batch_sh, _, _, abstract = _setup(["mesh.fsdp=4", "mesh.seq=2", "mesh.preset=fsdp_seq"])
    batch = {k: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=batch_sh[k]) for k, s in
             jax.eval_shape(lambda: {k: v for k, v in build_steps(load_config(SMOKE, FAST))[0][0].items()}).items()}
    state = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, state_sh)
    with jax.set_mesh(mesh):
        text = step_fn.lower(state, batch).as_text()
    # The 4 of the batch's own constraints (explicit preset) plus the DiT's (10 in all; 4 if the
    # model fell back to the default fsdp preset).
    assert text.count('{"seq"}') >= 8, text.count('{"seq"}')
