"""Helpers shared by the parity tests against the torch oracles (diffusers, ltx-video, transformers)."""

from __future__ import annotations

import numpy as np

# Fixed up front (DEVELOPERS.md); never loosened to make a test pass.
LAYER_RTOL = 1e-5
MODEL_RTOL = 1e-4


def rel_l2(actual, expected) -> float:
    """||a - e|| / ||e|| in float64."""
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    assert a.shape == e.shape, (a.shape, e.shape)
    return float(np.linalg.norm(a - e) / max(np.linalg.norm(e), 1e-30))


def to_numpy(t) -> np.ndarray:
    """A torch tensor (any dtype, any device) as a float32 numpy array."""
    return t.detach().float().cpu().numpy()
