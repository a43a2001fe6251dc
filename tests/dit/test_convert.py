"""DiT weight import/export: round trips, sharded folders, bf16, bad checkpoints, host memory."""

import json
import tracemalloc

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from diffusers import LTXVideoTransformer3DModel
from flax import nnx

import ltx_jax
from ltx_jax.convert.safetensors_io import CheckpointError, TensorSource
from tests.dit.test_parity_diffusers import CASES, build_diffusers, diffusers_forward, make_inputs
from tests.oracle import MODEL_RTOL, rel_l2

pytestmark = pytest.mark.parity


def _leaves(model):
    return [np.asarray(x) for x in jax.tree.leaves(nnx.state(model))]


def test_round_trip_is_bit_identical(tmp_path):
    build_diffusers(tmp_path, CASES[0])
    a = ltx_jax.load_transformer(tmp_path / "transformer")
    ltx_jax.save_transformer(a, tmp_path / "export")
    b = ltx_jax.load_transformer(tmp_path / "export")
    ltx_jax.save_transformer(b, tmp_path / "single.safetensors", layout="lightricks")
    c = ltx_jax.load_transformer(tmp_path / "single.safetensors")
    for x, y, z in zip(_leaves(a), _leaves(b), _leaves(c), strict=True):
        np.testing.assert_array_equal(x, y)
        np.testing.assert_array_equal(x, z)
    # The exported folder holds exactly the tensors diffusers wrote.
    src, out = TensorSource(tmp_path / "transformer"), TensorSource(tmp_path / "export")
    assert sorted(src.keys()) == sorted(out.keys())
    for k in src.keys():
        np.testing.assert_array_equal(src.get(k), out.get(k))


def test_export_loads_in_diffusers(tmp_path):
    case = CASES[1]
    build_diffusers(tmp_path, case)
    model = ltx_jax.load_transformer(tmp_path / "transformer")
    ltx_jax.save_transformer(model, tmp_path / "export")
    reloaded = LTXVideoTransformer3DModel.from_pretrained(tmp_path / "export").eval()
    x = make_inputs(case)
    assert rel_l2(model(*x, frame_rate=case["fps"]), diffusers_forward(reloaded, case, *x)) <= MODEL_RTOL


def test_sharded_folder_and_pipeline_root(tmp_path):
    case = CASES[0]
    ref = build_diffusers(tmp_path / "unsharded", case)
    ref.save_pretrained(tmp_path / "pipe" / "transformer", max_shard_size="20KB")
    shards = sorted((tmp_path / "pipe" / "transformer").glob("*.safetensors"))
    assert len(shards) > 1
    a = ltx_jax.load_transformer(tmp_path / "pipe")  # pipeline root: finds transformer/
    b = ltx_jax.load_transformer(tmp_path / "unsharded" / "transformer")
    for x, y in zip(_leaves(a), _leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


def test_bfloat16_checkpoint(tmp_path):
    case = CASES[0]
    build_diffusers(tmp_path, case)
    bf16 = LTXVideoTransformer3DModel.from_pretrained(tmp_path / "transformer", torch_dtype=torch.bfloat16)
    bf16.save_pretrained(tmp_path / "bf16")
    m32 = ltx_jax.load_transformer(tmp_path / "bf16")  # bf16 file, float32 params
    m16 = ltx_jax.load_transformer(tmp_path / "bf16", param_dtype=jnp.bfloat16)
    assert all(x.dtype == np.float32 for x in _leaves(m32))
    assert all(x.dtype == jnp.bfloat16 for x in _leaves(m16))
    for x, y in zip(_leaves(m32), _leaves(m16), strict=True):
        np.testing.assert_array_equal(x, y.astype(np.float32))  # bf16 -> f32 is exact
    want = {k: v.float().numpy() for k, v in bf16.state_dict().items()}
    np.testing.assert_array_equal(np.asarray(m32.proj_out.kernel[...]), want["proj_out.weight"].T)


def _edit_checkpoint(src_dir, dst_dir, edit):
    from safetensors.numpy import load_file, save_file

    dst_dir.mkdir()
    (dst_dir / "config.json").write_text((src_dir / "config.json").read_text())
    tensors = load_file(str(src_dir / "diffusion_pytorch_model.safetensors"))
    edit(tensors)
    save_file(tensors, str(dst_dir / "diffusion_pytorch_model.safetensors"))


def test_missing_extra_and_misshaped_keys_in_one_error(tmp_path):
    build_diffusers(tmp_path, CASES[0])

    def edit(t):
        del t["proj_out.bias"]
        t["transformer_blocks.0.extra.weight"] = np.zeros(3, np.float32)
        t["proj_in.weight"] = np.zeros((32, 9), np.float32)

    _edit_checkpoint(tmp_path / "transformer", tmp_path / "bad", edit)
    with pytest.raises(CheckpointError) as e:
        ltx_jax.load_transformer(tmp_path / "bad")
    msg = str(e.value)
    assert "missing (1)" in msg and "proj_out.bias [8]" in msg
    assert "unexpected (1)" in msg and "transformer_blocks.0.extra.weight" in msg
    assert "wrong shape (1)" in msg and "proj_in.weight: file [32, 9], model [32, 8]" in msg


def test_truncated_and_missing_files(tmp_path):
    build_diffusers(tmp_path, CASES[0])
    f = tmp_path / "transformer" / "diffusion_pytorch_model.safetensors"
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        ltx_jax.load_transformer(tmp_path / "transformer")
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        ltx_jax.load_transformer(tmp_path / "nowhere")
    (tmp_path / "weights.bin").write_bytes(b"\x80\x04")
    with pytest.raises(CheckpointError, match="never pickles"):
        ltx_jax.load_transformer(tmp_path / "weights.bin")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no config.json"):
        ltx_jax.load_transformer(tmp_path / "empty")


def test_unsupported_config_is_refused(tmp_path):
    build_diffusers(tmp_path, CASES[0])
    cfg = json.loads((tmp_path / "transformer" / "config.json").read_text())
    cfg["patch_size"] = 2
    (tmp_path / "transformer" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="patch_size=2"):
        ltx_jax.load_transformer(tmp_path / "transformer")


def test_loading_holds_at_most_one_stacked_tensor_on_the_host(tmp_path):
    # Weights go to the device array by array, so the host holds the loaded weights plus at most
    # one stacked tensor, never a second copy of the model. (On CPU, jax may adopt a numpy buffer
    # as the device array itself, so the loaded weights can count here once.) The model is big
    # enough (36 MB) that tracing overheads (~2 MB) do not matter.
    model = LTXVideoTransformer3DModel(
        in_channels=8, out_channels=8, num_attention_heads=4, attention_head_dim=64,
        cross_attention_dim=256, num_layers=8, caption_channels=24,
    )
    model.save_pretrained(tmp_path / "t")
    total = sum(p.numel() * 4 for p in model.parameters())
    largest_stack = 8 * 256 * 1024 * 4  # the ff kernels over 8 layers
    ltx_jax.load_transformer(tmp_path / "t")  # warm-up: first-call tracing caches
    tracemalloc.start()
    loaded = ltx_jax.load_transformer(tmp_path / "t")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert loaded.config.num_layers == 8
    assert peak < total + largest_stack, (peak, total)
