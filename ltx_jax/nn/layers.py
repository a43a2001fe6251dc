"""Shared layers with logical axis names and the dtype policy.

Every parameter of every model is created by `param()`, the only place that writes the
`logical_axes` metadata that `ltx_jax.sharding` later maps onto the mesh. Flax's own sharding
metadata key has changed names twice, and its eager sharding would try to read logical names as
mesh axes; keeping our own key in one file avoids both.

Dtype policy (Flax naming): `param_dtype` is storage, `dtype` is compute. Norm statistics are always
float32 and cast back to the compute dtype at the end.
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

AXES_KEY = "logical_axes"

Initializer = Callable[..., jax.Array]


def param(
    rngs: nnx.Rngs | None,
    init: Initializer,
    shape: Sequence[int],
    axes: Sequence[str | None],
    param_dtype=jnp.float32,
) -> nnx.Param:
    """Creates a parameter tagged with one logical axis name per dimension.

    Args:
      rngs: source of the `params` key (may be None for deterministic initialisers).
      init: `init(key, shape, dtype) -> array`.
      shape: parameter shape.
      axes: logical axis names from `ltx_jax.sharding.LOGICAL_AXES`, one per dimension.
      param_dtype: storage dtype.
    """
    shape = tuple(int(s) for s in shape)
    axes = tuple(axes)
    if len(axes) != len(shape):
        raise ValueError(f"param of shape {shape} needs {len(shape)} axis names, got {axes}")
    key = rngs.params() if rngs is not None else jax.random.key(0)
    return nnx.Param(init(key, shape, param_dtype), **{AXES_KEY: axes})


def logical_axes(variable: nnx.Variable) -> tuple[str | None, ...] | None:
    """The logical axis names of a variable (None when it has none)."""
    return variable.get_metadata().get(AXES_KEY)


def prepend_axis(module: nnx.Module, name: str) -> None:
    """Marks every parameter of a stacked (vmapped) module with a leading axis `name`.

    Used after building a stack of layers with `nnx.vmap`: the arrays gain a leading dimension
    that their logical names must describe too.
    """
    for _, var in nnx.iter_graph(module):
        if isinstance(var, nnx.Param):
            axes = logical_axes(var)
            if axes is not None and len(axes) == var.get_value().ndim - 1:
                var.set_metadata(AXES_KEY, (name, *axes))


class Dense(nnx.Module):
    """y = x W + b with W stored as [in, out] (Flax layout; PyTorch stores [out, in]).

    Attributes:
      kernel: [I, O] with logical axes `axes`.
      bias: [O] with logical axis `axes[1]`.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        axes: tuple[str | None, str | None],
        use_bias: bool = True,
        dtype=jnp.float32,
        param_dtype=jnp.float32,
        kernel_init: Initializer = nnx.initializers.xavier_uniform(),
        bias_init: Initializer = nnx.initializers.zeros_init(),
        rngs: nnx.Rngs,
    ):
        self.in_features = in_features
        self.out_features = out_features
        self.dtype = dtype
        self.kernel = param(rngs, kernel_init, (in_features, out_features), axes, param_dtype)
        self.bias = (
            param(rngs, bias_init, (out_features,), (axes[1],), param_dtype) if use_bias else None
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        """[..., I] -> [..., O] in `dtype`."""
        y = jnp.einsum("...i,io->...o", x.astype(self.dtype), self.kernel[...].astype(self.dtype))
        if self.bias is not None:
            y = y + self.bias[...].astype(self.dtype)
        return y


def rms_norm(x: jax.Array, eps: float, scale: jax.Array | None = None) -> jax.Array:
    """x / sqrt(mean(x^2) + eps) over the last axis, statistics in float32.

    The scale multiplies in float32 too (torch.nn.RMSNorm does the same); the result is cast back
    to the input dtype.
    """
    x32 = x.astype(jnp.float32)
    y = x32 * jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + eps)
    if scale is not None:
        y = y * scale.astype(jnp.float32)
    return y.astype(x.dtype)


def layer_norm(x: jax.Array, eps: float) -> jax.Array:
    """Non-affine LayerNorm over the last axis, statistics in float32."""
    x32 = x.astype(jnp.float32)
    mean = jnp.mean(x32, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True)
    return ((x32 - mean) * jax.lax.rsqrt(var + eps)).astype(x.dtype)


class RMSNorm(nnx.Module):
    """RMSNorm with a learned per-channel scale [D] (init ones)."""

    def __init__(
        self, dim: int, *, eps: float, axis_name: str = "embed", param_dtype=jnp.float32,
        rngs: nnx.Rngs | None = None,
    ):
        self.eps = eps
        self.scale = param(rngs, nnx.initializers.ones_init(), (dim,), (axis_name,), param_dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        return rms_norm(x, self.eps, self.scale[...])


def gelu_tanh(x: jax.Array) -> jax.Array:
    """GELU with the tanh approximation (PyTorch `approximate="tanh"`)."""
    return jax.nn.gelu(x, approximate=True)


def jit_init(make: Callable[..., nnx.Module], seed: int = 0) -> nnx.Module:
    """Builds a randomly initialised `make(rngs)` with its initialisers compiled into one program.

    For random models (quickstart, benchmarks, tests). Eager NNX construction dispatches every
    initialiser op by op (tens of seconds for a conv-heavy VAE on a CPU); one jitted program is
    fast, and on an accelerator it creates the weights there directly, never on the host. The keys
    are "unsafe_rbg": XLA compiles their random bits ~7x faster than threefry's (4 s vs 29 s for a
    tiny VAE on CPU), and random weights need no stronger stream guarantees. A `make()` taking no
    argument builds its own `nnx.Rngs` (and `seed` is unused).
    """
    import inspect

    if inspect.signature(make).parameters:
        build = lambda: make(nnx.Rngs(jax.random.key(seed, impl="unsafe_rbg")))  # noqa: E731
    else:
        build = make
    graphdef, _ = nnx.split(nnx.eval_shape(build))
    state = jax.jit(lambda: nnx.state(build()))()
    return nnx.merge(graphdef, state)
