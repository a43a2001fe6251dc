"""RoPE tables against a float64 recomputation of ltx_spec.md 3.6."""

import math

import numpy as np
import pytest

from ltx_jax.nn.rope import apply_rope, rope_tables


def _float64_tables(coords, dim, theta):
    n = dim // 6
    omega = (math.pi / 2) * theta ** (np.arange(n) / (n - 1))
    angles = np.zeros((*coords.shape[:-1], dim // 2 - (dim % 6) // 2))
    for j in range(n):
        for a in range(3):
            angles[..., 3 * j + a] = omega[j] * (2 * coords[..., a] - 1)
    cos = np.concatenate([np.ones((*coords.shape[:-1], dim % 6)), np.repeat(np.cos(angles), 2, -1)], -1)
    sin = np.concatenate([np.zeros((*coords.shape[:-1], dim % 6)), np.repeat(np.sin(angles), 2, -1)], -1)
    bound = np.concatenate([np.zeros((*coords.shape[:-1], dim % 6)), np.repeat(np.abs(angles), 2, -1)], -1)
    return cos, sin, bound


@pytest.mark.parametrize("dim", [32, 48, 64, 2048])
def test_tables_match_float64(dim):
    rng = np.random.default_rng(0)
    coords = rng.uniform(0, 1, (2, 50, 3))
    cos, sin = map(np.asarray, rope_tables(coords.astype(np.float32), dim, 10000.0))
    cos64, sin64, angle = _float64_tables(coords.astype(np.float32).astype(np.float64), dim, 10000.0)
    # float32 carries the angle with a relative rounding of a few ulps; the table can be no
    # closer to float64 than that (the reference implementations have the same rounding).
    tol = 4 * np.finfo(np.float32).eps * (angle + 1) + 1e-6
    assert np.all(np.abs(cos - cos64) <= tol)
    assert np.all(np.abs(sin - sin64) <= tol)
    # The first D % 6 dims are not rotated.
    assert np.all(cos[..., : dim % 6] == 1) and np.all(sin[..., : dim % 6] == 0)


def test_apply_rope_is_a_pairwise_rotation():
    rng = np.random.default_rng(1)
    dim = 38
    coords = rng.uniform(0, 1, (1, 7, 3)).astype(np.float32)
    x = rng.standard_normal((2, 7, dim)).astype(np.float32)
    cos, sin = rope_tables(coords, dim, 10000.0)
    out = np.asarray(apply_rope(x, cos, sin))
    # As complex numbers: (x0 + i x1) * exp(i phi).
    z = (x[..., 0::2] + 1j * x[..., 1::2]) * (np.asarray(cos)[..., 0::2] + 1j * np.asarray(sin)[..., 0::2])
    np.testing.assert_allclose(out[..., 0::2], z.real, atol=1e-5)
    np.testing.assert_allclose(out[..., 1::2], z.imag, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(out, axis=-1), np.linalg.norm(x, axis=-1), rtol=1e-5)
