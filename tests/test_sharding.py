"""Logical axes -> PartitionSpecs: every parameter resolves; no mesh axis is used twice."""

import jax
import numpy as np
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from ltx_jax.config import dit_config
from ltx_jax.dit.transformer import Transformer3D
from ltx_jax.sharding import MESH_AXES, PARAM_RULES, logical_to_spec, param_specs


def test_resolver_semantics():
    rules = {"embed": "fsdp", "mlp": "tensor", "heads": "tensor"}
    assert logical_to_spec(("embed", "mlp"), rules) == P("fsdp", "tensor")
    assert logical_to_spec(("heads", "mlp"), rules) == P("tensor", None)  # never an axis twice
    assert logical_to_spec(("layers", None), rules) == P(None, None)
    # Axes that do not divide by the mesh size stay replicated.
    assert logical_to_spec(("embed",), rules, {"fsdp": 8}, (12,)) == P(None)
    with pytest.raises(ValueError, match="unknown logical axis 'embd'"):
        logical_to_spec(("embd",), rules)


@pytest.mark.parametrize("preset", sorted(PARAM_RULES))
def test_every_dit_parameter_gets_a_spec(preset):
    model = nnx.eval_shape(lambda: Transformer3D(dit_config("small"), rngs=nnx.Rngs(0)))
    mesh = jax.make_mesh((1, 8, 1, 1), MESH_AXES, axis_types=(jax.sharding.AxisType.Auto,) * 4)
    specs = param_specs(nnx.state(model, nnx.Param), PARAM_RULES[preset], mesh)
    leaves = jax.tree.leaves(specs, is_leaf=lambda x: isinstance(x, P))
    assert len(leaves) == len(jax.tree.leaves(nnx.state(model, nnx.Param)))
    for spec in leaves:
        used = [a for a in spec if a is not None]
        assert len(used) == len(set(used))
    if preset == "fsdp":  # the big matrices are actually sharded
        sharded = sum(any(a is not None for a in s) for s in leaves)
        assert sharded >= len(leaves) // 2
