"""Logical axis names and how they map onto the device mesh.

This is the only module that talks to `jax.sharding`. Parameters carry logical names (see
`ltx_jax.nn.layers.param`); a rules table maps each logical name to at most one mesh axis (or
none, meaning replicated). The mesh has four axes, outermost first: `data`, `fsdp`, `seq`,
`tensor`.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import jax
from flax import nnx
from jax.sharding import PartitionSpec as P

from ltx_jax.nn.layers import logical_axes

MESH_AXES = ("data", "fsdp", "seq", "tensor")

# The closed vocabulary of logical axis names used by parameters and activations.
LOGICAL_AXES = (
    "batch",  # B
    "length",  # L, video tokens
    "text_length",  # S, text tokens
    "embed",  # D, model width
    "heads",  # N*K flattened attention projections (q/k/v/out inner dim)
    "head_dim",  # K
    "mlp",  # FFN hidden
    "layers",  # scanned layer stack
    "modulation",  # the 6 (or 2) rows of AdaLN scale-shift tables
    "channels",  # latent / conv input channels
    "channels_out",  # conv output channels
    "caption",  # T5 feature width entering the caption projection
    "time_embed",  # sinusoidal timestep features
    "frames",
    "height",
    "width",
    "kernel",  # conv kernel taps
    "vocab",
    "rel_buckets",
)

# Parameter rules: logical name -> mesh axis (None = replicated). Each name appears once.
PARAM_RULES: Mapping[str, Mapping[str, str | None]] = {
    "replicated": {},
    "fsdp": {"embed": "fsdp", "channels_out": "fsdp", "vocab": "fsdp"},
    "fsdp_tp": {"embed": "fsdp", "heads": "tensor", "mlp": "tensor", "channels_out": "fsdp"},
}


def logical_to_spec(
    axes: Sequence[str | None], rules: Mapping[str, str | None], mesh_shape: Mapping[str, int] | None = None,
    shape: Sequence[int] | None = None,
) -> P:
    """Maps logical names to a PartitionSpec, never using a mesh axis twice.

    When `mesh_shape` and `shape` are given, an axis whose size does not divide by the mesh axis
    size stays replicated (tiny test models on 8 devices).
    """
    used: set[str] = set()
    out = []
    for i, name in enumerate(axes):
        if name is not None and name not in LOGICAL_AXES:
            raise ValueError(f"unknown logical axis {name!r}; known: {LOGICAL_AXES}")
        mesh_axis = rules.get(name) if name is not None else None
        if mesh_axis is not None and mesh_axis in used:
            mesh_axis = None
        if mesh_axis is not None and mesh_shape is not None and shape is not None:
            if shape[i] % mesh_shape.get(mesh_axis, 1):
                mesh_axis = None
        if mesh_axis is not None:
            used.add(mesh_axis)
        out.append(mesh_axis)
    return P(*out)


def param_specs(state: nnx.State, rules: Mapping[str, str | None], mesh: jax.sharding.Mesh | None = None):
    """A pytree of PartitionSpecs matching `state` (an `nnx.State` of Params).

    Raises if any parameter lacks logical axis names: every parameter must carry them.
    """
    mesh_shape = dict(mesh.shape) if mesh is not None else None

    def spec(path, var):
        axes = logical_axes(var)
        if axes is None:
            raise ValueError(f"parameter {'.'.join(map(str, path))} has no logical axis names")
        return logical_to_spec(axes, rules, mesh_shape, var.get_value().shape)

    return nnx.map_state(spec, state) if hasattr(nnx, "map_state") else _map_vars(spec, state)


def _map_vars(fn, state):
    flat = nnx.to_flat_state(state)
    return nnx.from_flat_state([(path, fn(path, var)) for path, var in flat])
