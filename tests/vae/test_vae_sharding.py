"""The Video-VAE under the DiT's device mesh: batch over ("data", "fsdp"), weights replicated, on the
8 simulated CPU devices; results equal the single-device ones."""

import jax
import numpy as np
from flax import nnx
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

from ltx_jax.sharding import MESH_AXES
from tests.oracle import LAYER_RTOL, rel_l2
from tests.vae.helpers import random_vae


def test_sharded_encode_and_decode_equal_single_device():
    vae = random_vae("tiny-0.9.1")
    rng = np.random.default_rng(0)
    video = rng.uniform(-1, 1, (4, 9, 32, 32, 3)).astype(np.float32)
    z = rng.normal(size=(4, 2, 1, 2, 8)).astype(np.float32)
    t = np.array([0.0, 0.05, 0.3, 1.0], np.float32)
    single_z, single_x = np.asarray(vae.encode(video)), np.asarray(vae.decode(z, t))

    mesh = jax.make_mesh((2, 2, 1, 2), MESH_AXES, axis_types=(AxisType.Auto,) * 4)
    batch = NamedSharding(mesh, P(("data", "fsdp")))
    state = nnx.state(vae)
    nnx.update(vae, jax.device_put(state, NamedSharding(mesh, P())))  # weights replicated
    with jax.set_mesh(mesh):
        enc = vae.encode(jax.device_put(video, batch))
        dec = vae.decode(jax.device_put(z, batch), jax.device_put(t, batch))
    for out in (enc, dec):
        assert out.sharding.spec[0] == ("data", "fsdp"), out.sharding  # the batch stayed split
    assert rel_l2(np.asarray(enc), single_z) <= LAYER_RTOL
    assert rel_l2(np.asarray(dec), single_x) <= LAYER_RTOL
