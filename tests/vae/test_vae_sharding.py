"""The Video-VAE under the DiT's device mesh: batch over ("data", "fsdp"), weights replicated, on the
8 simulated CPU devices; results equal the single-device ones."""

import jax
import numpy as np
from flax import nnx
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

from ltx_jax import sharding
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


def test_one_video_is_split_spatially_over_the_mesh():
    # Batch 1 on 8 devices: the height goes on every axis. Same result as one device, output still
    # split on H, no activation ever gathered, and a fraction of the per-device memory.
    vae = random_vae("tiny-0.9.1")
    rng = np.random.default_rng(1)
    video = rng.uniform(-1, 1, (1, 9, 256, 64, 3)).astype(np.float32)
    z = rng.normal(size=(1, 2, 16, 2, 8)).astype(np.float32)
    single_z, single_x = np.asarray(vae.encode(video)), np.asarray(vae.decode(z, 0.05))
    graphdef, state = nnx.split(vae)

    def decode(state, z):
        return nnx.merge(graphdef, state).decode(z, 0.05)

    def compiled(mesh_shape):
        mesh = jax.make_mesh(mesh_shape, MESH_AXES, axis_types=(AxisType.Auto,) * 4)
        with jax.set_mesh(mesh):
            weights = jax.device_put(state, NamedSharding(mesh, P()))
            return jax.jit(decode).lower(weights, z).compile(), weights, mesh

    one, _, _ = compiled((1, 1, 1, 1))
    split, weights, mesh = compiled((2, 2, 2, 1))
    assert sharding.video_spec(mesh, z.shape) == P(None, None, ("data", "fsdp", "seq"))
    hlo = split.as_text()
    assert "all-gather" not in hlo and "collective-permute" in hlo  # halos, not gathers
    print("temp bytes per device: one", one.memory_analysis().temp_size_in_bytes, "split", split.memory_analysis().temp_size_in_bytes)
    assert split.memory_analysis().temp_size_in_bytes < one.memory_analysis().temp_size_in_bytes / 4
    with jax.set_mesh(mesh):
        dec = split(weights, z)
        enc = vae.encode(video)
    assert dec.sharding.spec[2] == ("data", "fsdp", "seq") and enc.sharding.spec[2] == ("data", "fsdp", "seq")
    assert rel_l2(np.asarray(dec), single_x) <= LAYER_RTOL
    assert rel_l2(np.asarray(enc), single_z) <= LAYER_RTOL
