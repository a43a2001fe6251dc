"""The device mesh, logical axis names and the rules that map one onto the other.

This is the only module that talks to `jax.sharding`. Parameters carry logical names (see
`ltx_jax.nn.layers.param`); activations get them at agreed boundaries through `constrain`. A preset
is two small tables, one for parameters and one for activations, mapping each logical name to a
mesh axis, a tuple of mesh axes, or nothing (replicated). The mesh has four axes, outermost (DCN)
first: `data`, `fsdp`, `seq`, `tensor`.

Under FSDP, weights are sharded on `embed` over `fsdp` and gathered for each matmul; activations are
sharded on `batch` over (`data`, `fsdp`) and never gathered (house_style.md 9.5).
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import difflib
import math
from typing import Any, Iterator, Mapping, Sequence

import jax
import numpy as np
from flax import nnx
from jax.sharding import AxisType, Mesh, NamedSharding
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

Rules = Mapping[str, "str | tuple[str, ...] | None"]

# Activations: the batch is split over every data-parallel axis; tokens over `seq`; heads and FFN
# hidden over `tensor`. Shared by all presets except where a preset says otherwise.
_ACT = {"batch": ("data", "fsdp"), "heads": "tensor", "mlp": "tensor"}


@dataclasses.dataclass(frozen=True)
class Preset:
    """A named sharding strategy: one rules table for parameters, one for activations."""

    params: Rules
    acts: Rules


# Each logical name appears at most once per table (dict order never matters).
PRESETS: dict[str, Preset] = {
    # Pure data parallel: weights replicated on every device.
    "dp": Preset(params={}, acts=_ACT),
    # ZeRO-3 style: weights (and optimizer state) sharded on their model-width axis.
    "fsdp": Preset(params={"embed": "fsdp", "channels_out": "fsdp", "vocab": "fsdp"}, acts=_ACT),
    # FSDP plus Megatron tensor parallelism of attention heads and the FFN hidden width.
    "fsdp_tp": Preset(
        params={"embed": "fsdp", "heads": "tensor", "mlp": "tensor", "channels_out": "fsdp"},
        acts=_ACT,
    ),
    # FSDP plus sequence (context) parallelism of the video tokens over `seq`.
    "fsdp_seq": Preset(
        params={"embed": "fsdp", "channels_out": "fsdp"},
        acts={**_ACT, "length": "seq", "frames": "seq"},
    ),
    "fsdp_seq_tp": Preset(
        params={"embed": "fsdp", "heads": "tensor", "mlp": "tensor", "channels_out": "fsdp"},
        acts={**_ACT, "length": "seq", "frames": "seq"},
    ),
}
PRESETS["replicated"] = PRESETS["dp"]

# Back-compatible view: preset name -> parameter rules.
PARAM_RULES: Mapping[str, Rules] = {name: p.params for name, p in PRESETS.items()}


def get_preset(name: str) -> Preset:
    """The preset called `name`, or an error naming the closest ones."""
    if name not in PRESETS:
        close = difflib.get_close_matches(name, list(PRESETS), n=3, cutoff=0.3)
        raise ValueError(f"unknown sharding preset {name!r}; closest: {close}; valid: {sorted(PRESETS)}")
    return PRESETS[name]


# ---------------------------------------------------------------------------------------------
# The mesh.


def mesh_shape(sizes: Mapping[str, int], num_devices: int) -> tuple[int, ...]:
    """Resolves the one allowed -1 among the four axis sizes so their product is `num_devices`."""
    shape = [int(sizes.get(a, 1)) for a in MESH_AXES]
    free = [i for i, s in enumerate(shape) if s == -1]
    if len(free) > 1 or any(s == 0 or s < -1 for s in shape):
        raise ValueError(f"mesh sizes {dict(zip(MESH_AXES, shape))}: each must be >= 1, and at most one -1")
    known = math.prod(s for s in shape if s != -1)
    if free:
        if num_devices % known:
            raise ValueError(
                f"mesh sizes {dict(zip(MESH_AXES, shape))}: {num_devices} devices do not divide by "
                f"the fixed axes' product {known}"
            )
        shape[free[0]] = num_devices // known
    if math.prod(shape) != num_devices:
        raise ValueError(
            f"mesh sizes {dict(zip(MESH_AXES, shape))} use {math.prod(shape)} devices but "
            f"{num_devices} are present; set one axis to -1 to take the rest"
        )
    return tuple(shape)


def make_mesh(cfg: Any, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """The 4-axis mesh from a `MeshConfig` (or any object with data/fsdp/seq/tensor fields).

    Axes are `AxisType.Auto` (GSPMD propagation; jax's Explicit default rejects our matmuls).
    With `dcn_data > 1` the `data` axis spans slices over DCN and the others stay inside a slice.
    """
    devices = list(jax.devices() if devices is None else devices)
    sizes = {a: getattr(cfg, a) for a in MESH_AXES}
    shape = mesh_shape(sizes, len(devices))
    auto = (AxisType.Auto,) * len(MESH_AXES)
    dcn = int(getattr(cfg, "dcn_data", 1))
    if dcn > 1:
        from jax.experimental import mesh_utils

        if shape[0] % dcn:
            raise ValueError(f"mesh.data={shape[0]} must be a multiple of mesh.dcn_data={dcn}")
        ici = (shape[0] // dcn, *shape[1:])
        arr = mesh_utils.create_hybrid_device_mesh(ici, (dcn, 1, 1, 1), devices)
        return Mesh(arr, MESH_AXES, axis_types=auto)
    if devices == list(jax.devices()):
        return jax.make_mesh(shape, MESH_AXES, axis_types=auto)
    try:  # compile-only topology devices: let mesh_utils order them physically
        from jax.experimental import mesh_utils

        arr = mesh_utils.create_device_mesh(shape, devices)
    except Exception:  # noqa: BLE001 - CPU / unknown topologies: plain order
        arr = np.asarray(devices).reshape(shape)
    return Mesh(arr, MESH_AXES, axis_types=auto)


# ---------------------------------------------------------------------------------------------
# Logical names -> PartitionSpecs.


def logical_to_spec(
    axes: Sequence[str | None],
    rules: Rules,
    mesh_shape: Mapping[str, int] | None = None,
    shape: Sequence[int] | None = None,
) -> P:
    """Maps logical names to a PartitionSpec, never using a mesh axis twice.

    A rule may name one mesh axis or a tuple of them (`batch` over `("data", "fsdp")`). When
    `mesh_shape` and `shape` are given, mesh axes of size 1 are dropped and an axis whose size does
    not divide by the mesh axes' product stays replicated (tiny test models on 8 devices).
    """
    used: set[str] = set()
    out: list[Any] = []
    for i, name in enumerate(axes):
        if name is not None and name not in LOGICAL_AXES:
            close = difflib.get_close_matches(name, LOGICAL_AXES, n=1)
            raise ValueError(f"unknown logical axis {name!r} (closest: {close}); known: {LOGICAL_AXES}")
        target = rules.get(name) if name is not None else None
        mesh_axes = (target,) if isinstance(target, str) else tuple(target or ())
        mesh_axes = tuple(a for a in mesh_axes if a not in used)
        if mesh_shape is not None:
            mesh_axes = tuple(a for a in mesh_axes if mesh_shape.get(a, 1) > 1)
            if shape is not None and mesh_axes:
                if shape[i] % math.prod(mesh_shape[a] for a in mesh_axes):
                    mesh_axes = ()
        used.update(mesh_axes)
        out.append(None if not mesh_axes else mesh_axes[0] if len(mesh_axes) == 1 else mesh_axes)
    return P(*out)


def param_specs(state: nnx.State, rules: Rules, mesh: Mesh | None = None):
    """A pytree of PartitionSpecs matching `state` (an `nnx.State` of Params).

    Raises if any parameter lacks logical axis names: every parameter must carry them.
    """
    mesh_shape = dict(mesh.shape) if mesh is not None else None

    def spec(path, var):
        axes = logical_axes(var)
        if axes is None:
            raise ValueError(f"parameter {'.'.join(map(str, path))} has no logical axis names")
        return logical_to_spec(axes, rules, mesh_shape, var.get_value().shape)

    flat = nnx.to_flat_state(state)
    return nnx.from_flat_state([(path, spec(path, var)) for path, var in flat])


def named(mesh: Mesh, spec_tree):
    """PartitionSpec leaves -> NamedSharding leaves on `mesh`."""
    return jax.tree.map(lambda s: NamedSharding(mesh, s), spec_tree, is_leaf=lambda x: isinstance(x, P))


def activation_sharding(mesh: Mesh, preset: str | Preset, axes: Sequence[str | None],
                        shape: Sequence[int] | None = None) -> NamedSharding:
    """The NamedSharding of an activation or batch array with logical `axes` under a preset."""
    preset = get_preset(preset) if isinstance(preset, str) else preset
    return NamedSharding(mesh, logical_to_spec(axes, preset.acts, dict(mesh.shape), shape))


def axis_size(mesh, name: str) -> int:
    """Size of a mesh axis still to be partitioned: 1 if absent, or already manual (inside a
    shard_map over it)."""
    if mesh is None or getattr(mesh, "empty", False) or name not in mesh.axis_names:
        return 1
    if name in getattr(mesh, "manual_axes", ()):
        return 1
    return dict(mesh.shape)[name]


def divisible_axes(mesh, names: Sequence[str], size: int) -> tuple[str, ...] | None:
    """The mesh axes of `names` (in order, size > 1) whose running product divides `size`, or None."""
    used, prod = [], 1
    for name in names:
        n = axis_size(mesh, name)
        if n > 1 and size % (prod * n) == 0:
            used.append(name)
            prod *= n
    return tuple(used) or None


def video_spec(mesh, shape: Sequence[int]) -> P:
    """PartitionSpec of a channels-last video or latent array [B, F, H, W, C] for the VAE.

    The batch takes the data-parallel axes that divide it; the height takes every other mesh axis
    (in mesh order) that divides it, so a batch too small for the mesh is split spatially instead.
    XLA partitions the VAE's convolutions along H with halo exchanges (no gathers), so per-device
    activation memory falls with the number of devices the height is split over.
    """
    batch = divisible_axes(mesh, MESH_AXES[:2], shape[0])
    rest = [a for a in MESH_AXES if a not in (batch or ())]
    height = divisible_axes(mesh, rest, shape[2])
    return P(batch, None, height)


def constrain_video(x: jax.Array) -> jax.Array:
    """`x` [B, F, H, W, C] placed by `video_spec` on the ambient mesh; unchanged without one."""
    mesh = _ambient_mesh()
    if mesh is None or mesh.size == 1:
        return x
    return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, video_spec(mesh, x.shape)))


def constrain(x: jax.Array, axes: Sequence[str | None], preset: str | Preset | None = None,
              mesh: Mesh | None = None) -> jax.Array:
    """`with_sharding_constraint` by logical names, at agreed block boundaries only.

    Without an explicit `mesh`, uses the ambient one (`jax.set_mesh`); with no mesh at all (single
    device code paths) it returns `x` unchanged. The preset defaults to the ambient one
    (`current_preset`, set by `with use_preset(name):`), read when the caller is traced.
    """
    mesh = mesh if mesh is not None else _ambient_mesh()
    if mesh is None or mesh.size == 1:
        return x
    preset = preset if preset is not None else _PRESET.get()
    if x.ndim != len(axes):
        raise ValueError(f"constrain: array of shape {tuple(x.shape)} got {len(axes)} axis names {tuple(axes)}")
    return jax.lax.with_sharding_constraint(x, activation_sharding(mesh, preset, axes, x.shape))


# The preset `constrain` uses when given none; scoped by `use_preset` (per thread and task).
_PRESET: contextvars.ContextVar[str | Preset] = contextvars.ContextVar("ltx_jax_preset", default="fsdp")


def current_preset() -> str | Preset:
    """The ambient preset: the innermost `use_preset` block's, else "fsdp"."""
    return _PRESET.get()


@contextlib.contextmanager
def use_preset(preset: str | Preset) -> Iterator[None]:
    """`with use_preset("fsdp_tp"):` makes `preset` the default of `constrain` inside the block.

    Like flax's logical-axis-rules context: `constrain` reads it while a function is traced, so the
    block must enclose the first call of a `jax.jit` function (or its `.lower()`), and a function
    already traced keeps the preset it was traced under (jit's cache does not see this context).
    The previous preset is restored on exit, also when the block raises.
    """
    if not isinstance(preset, Preset):
        get_preset(preset)  # an unknown name fails here, naming the closest ones
    token = _PRESET.set(preset)
    try:
        yield
    finally:
        _PRESET.reset(token)


def _ambient_mesh() -> Mesh | None:
    try:
        mesh = jax.sharding.get_abstract_mesh()
    except Exception:  # noqa: BLE001
        return None
    if mesh is None or getattr(mesh, "empty", False) or not mesh.axis_names:
        return None
    return mesh
