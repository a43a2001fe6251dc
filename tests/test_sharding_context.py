"""`use_preset` scopes the default preset of `constrain`: a context, not a module-level setting."""

import re
import threading

import jax
import jax.numpy as jnp
import pytest
from jax.sharding import AxisType

from ltx_jax import sharding as shd

AXES = ("batch", "length", "embed")  # [B, L, D]
SHAPE = (2, 8, 4)


@pytest.fixture(scope="module")
def mesh():
    # data=1, fsdp=2, seq=4: "fsdp" splits only B, "fsdp_seq" also splits L over `seq`.
    return jax.make_mesh((1, 2, 4, 1), shd.MESH_AXES, axis_types=(AxisType.Auto,) * 4)


def _traced_sharding(mesh, **kwargs):
    """The sharding `constrain` gives inside a freshly traced jit (a new function: no trace cache)."""
    x = jnp.arange(jnp.prod(jnp.array(SHAPE)), dtype=jnp.float32).reshape(SHAPE)
    with jax.set_mesh(mesh):
        y = jax.jit(lambda a: shd.constrain(a, AXES, **kwargs))(x)
    assert (y == x).all()
    return y.sharding


def _lowered_constraint(mesh) -> str:
    """The dimension shardings of the constraint in a freshly lowered (ahead-of-time) jit."""
    x = jax.ShapeDtypeStruct(SHAPE, jnp.float32)
    with jax.set_mesh(mesh):
        text = jax.jit(lambda a: shd.constrain(a, AXES)).lower(x).as_text()
    (dims,) = re.findall(r"sharding_constraint %\w+ <@mesh, (\[.*?\])>", text)
    return dims


def _is(sharding, mesh, preset):
    return sharding.is_equivalent_to(shd.activation_sharding(mesh, preset, AXES, SHAPE), len(SHAPE))


def test_the_two_presets_differ_on_this_mesh(mesh):
    fsdp = shd.activation_sharding(mesh, "fsdp", AXES, SHAPE)
    seq = shd.activation_sharding(mesh, "fsdp_seq", AXES, SHAPE)
    assert tuple(fsdp.spec) == ("fsdp", None, None)
    assert tuple(seq.spec) == ("fsdp", "seq", None)


def test_default_preset_without_a_context(mesh):
    assert shd.current_preset() == "fsdp"
    got = _traced_sharding(mesh)
    assert _is(got, mesh, "fsdp") and not _is(got, mesh, "fsdp_seq")


def test_context_preset_is_used_while_tracing_and_restored(mesh):
    with shd.use_preset("fsdp_seq"):
        assert shd.current_preset() == "fsdp_seq"
        got = _traced_sharding(mesh)
        assert _is(got, mesh, "fsdp_seq") and not _is(got, mesh, "fsdp")
        # An explicit preset argument still wins over the ambient one.
        assert _is(_traced_sharding(mesh, preset="fsdp"), mesh, "fsdp")
        # `.lower()` traces too: the constraint in the lowered text follows the block's preset.
        assert _lowered_constraint(mesh) == '[{"fsdp"}, {"seq"}, {}]'
    assert shd.current_preset() == "fsdp"
    assert _is(_traced_sharding(mesh), mesh, "fsdp")
    assert _lowered_constraint(mesh) == '[{"fsdp"}, {}, {}]'


def test_nested_blocks_and_raising_blocks_restore_the_previous_preset():
    with shd.use_preset("dp"):
        with pytest.raises(RuntimeError, match="boom"):
            with shd.use_preset("fsdp_tp"):
                assert shd.current_preset() == "fsdp_tp"
                raise RuntimeError("boom")
        assert shd.current_preset() == "dp"
    assert shd.current_preset() == "fsdp"


def test_unknown_preset_names_the_closest_and_changes_nothing():
    with pytest.raises(ValueError, match="unknown sharding preset 'fsdp_sq'.*fsdp_seq"):
        with shd.use_preset("fsdp_sq"):
            pass
    assert shd.current_preset() == "fsdp"


def test_the_context_does_not_leak_into_other_threads():
    seen = []
    with shd.use_preset("fsdp_seq"):
        t = threading.Thread(target=lambda: seen.append(shd.current_preset()))
        t.start()
        t.join()
    assert seen == ["fsdp"]
