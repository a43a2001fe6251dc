"""T5 v1.1 encoder: parity with transformers' `T5EncoderModel`, weight round trip, tokenizer, errors."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from transformers import T5Config as TorchT5Config
from transformers import T5EncoderModel, T5TokenizerFast

from ltx_jax.convert.safetensors_io import CheckpointError, SafetensorsFile, save_file
from ltx_jax.convert.t5 import load_text_encoder, save_text_encoder
from ltx_jax.nn.layers import logical_axes
from ltx_jax.sharding import LOGICAL_AXES
from ltx_jax.text.t5 import T5Config, T5Encoder, relative_position_buckets
from ltx_jax.text.tokenizer import encode_prompts, load_tokenizer
from tests.oracle import LAYER_RTOL, MODEL_RTOL, rel_l2, to_numpy

# Two tiny configs: the first has few buckets and a short max distance so a 24-token sequence
# reaches the log-spaced and the clipped buckets; the second has T5's own bucket settings.
CONFIGS = {
    "small_buckets": dict(vocab_size=64, d_model=16, d_kv=4, num_heads=3, d_ff=24, num_layers=2,
                          relative_attention_num_buckets=8, relative_attention_max_distance=12),
    "t5_buckets": dict(vocab_size=64, d_model=32, d_kv=8, num_heads=4, d_ff=40, num_layers=3,
                       relative_attention_num_buckets=32, relative_attention_max_distance=128,
                       layer_norm_epsilon=1e-5),
}
SEQ = 24

WORDS = ["a", "red", "cat", "dog", "runs", "on", "the", "beach", "blue", "sky", "video", "of"]


def _torch_model(kw: dict, seed: int = 0) -> T5EncoderModel:
    torch.manual_seed(seed)
    cfg = TorchT5Config(feed_forward_proj="gated-gelu", **kw)
    model = T5EncoderModel(cfg).eval()
    # Random (not unit) norm weights, so a norm weight loaded in the wrong place shows up.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layer_norm" in name:
                p.copy_(1.0 + 0.5 * torch.randn_like(p))
    return model


def _torch_encode(model, ids, mask=None) -> np.ndarray:
    with torch.no_grad():
        out = model(
            input_ids=torch.as_tensor(ids, dtype=torch.long),
            attention_mask=None if mask is None else torch.as_tensor(mask, dtype=torch.long),
        )
    return to_numpy(out.last_hidden_state)


def _inputs(vocab: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    ids = rng.integers(0, vocab, size=(2, SEQ))
    mask = np.ones((2, SEQ), np.int64)
    mask[1, 9:] = 0  # the second prompt is padded
    ids[1, 9:] = 0
    return ids, mask


@pytest.fixture(scope="module", params=list(CONFIGS))
def saved(request, tmp_path_factory):
    """(config kwargs, torch model, folder written by save_pretrained)."""
    kw = CONFIGS[request.param]
    model = _torch_model(kw)
    path = tmp_path_factory.mktemp(request.param) / "text_encoder"
    model.save_pretrained(path)
    return kw, model, path


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    """A T5 tokenizer built offline (env_notes section 3), saved like a diffusers `tokenizer/`."""
    chars = list("abcdefghijklmnopqrstuvwxyz")
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    pieces += [("\u2581" + w, -2.0) for w in WORDS] + [("\u2581", -3.0)] + [(c, -5.0) for c in chars]
    path = tmp_path_factory.mktemp("tok") / "tokenizer"
    T5TokenizerFast(vocab=pieces, extra_ids=0).save_pretrained(path)
    return path


def test_parity_with_transformers(saved):
    kw, torch_model, path = saved
    model = load_text_encoder(path)
    ids, mask = _inputs(kw["vocab_size"])
    out = model(jnp.asarray(ids), jnp.asarray(mask))
    assert out.shape == (2, SEQ, kw["d_model"]) and out.dtype == jnp.float32
    err = rel_l2(out, _torch_encode(torch_model, ids, mask))
    assert err <= MODEL_RTOL, err
    # Without a mask every token is attended to (diffusers semantics run T5 this way).
    err = rel_l2(model(jnp.asarray(ids)), _torch_encode(torch_model, ids))
    assert err <= MODEL_RTOL, err


def test_padding_is_ignored(saved):
    """Real tokens' features do not depend on what the padded positions hold."""
    kw, _, path = saved
    enc = load_text_encoder(path)
    ids, mask = _inputs(kw["vocab_size"])
    other = ids.copy()
    other[1, 9:] = 5
    a = np.asarray(enc(jnp.asarray(ids), jnp.asarray(mask)))
    b = np.asarray(enc(jnp.asarray(other), jnp.asarray(mask.astype(bool))))
    np.testing.assert_array_equal(a[:, :9], b[:, :9])
    np.testing.assert_array_equal(a[0], b[0])


@pytest.mark.parametrize("buckets,max_distance,q,k", [(8, 12, 24, 24), (32, 128, 300, 300), (32, 128, 5, 9)])
def test_relative_position_buckets_match_transformers(buckets, max_distance, q, k):
    from transformers.models.t5.modeling_t5 import T5Attention

    rel = torch.arange(k)[None, :] - torch.arange(q)[:, None]
    ref = T5Attention._relative_position_bucket(rel, bidirectional=True, num_buckets=buckets,
                                                max_distance=max_distance)
    ours = relative_position_buckets(q, k, num_buckets=buckets, max_distance=max_distance)
    np.testing.assert_array_equal(np.asarray(ours), ref.numpy())


def test_block_parity_with_transformers(saved):
    """Block 1 alone (no bias table of its own: it uses block 0's) against transformers."""
    kw, torch_model, path = saved
    model = load_text_encoder(path)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, SEQ, kw["d_model"])).astype(np.float32)
    bias = model.position_bias(SEQ)
    with torch.no_grad():
        ref = torch_model.encoder.block[1](torch.as_tensor(x), None, torch.tensor(np.array(bias))[None])[0]
    block = nnx.merge(*_layer(model, 1))
    out = block(jnp.asarray(x), jnp.broadcast_to(bias[None], (2, *bias.shape)))
    err = rel_l2(out, to_numpy(ref))
    assert err <= LAYER_RTOL, err


def _layer(model: T5Encoder, i: int):
    graphdef, state = nnx.split(model.blocks)
    return graphdef, jax.tree.map(lambda a: a[i], state)


def test_stacked_params_have_layers_axis():
    cfg = T5Config(**CONFIGS["small_buckets"])
    model = T5Encoder(cfg, rngs=nnx.Rngs(0))
    for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        axes = logical_axes(var)
        assert axes is not None and len(axes) == var.get_value().ndim, path
        assert all(a in LOGICAL_AXES for a in axes if a is not None), (path, axes)
        if path[0] == "blocks":
            assert axes[0] == "layers" and var.get_value().shape[0] == cfg.num_layers, (path, axes)


def test_config_from_transformers_json(saved):
    kw, _, path = saved
    cfg = T5Config.from_json(path / "config.json")
    for k, v in kw.items():
        assert getattr(cfg, k) == v, k
    assert cfg.feed_forward_proj == "gated-gelu"


def test_round_trip_is_bit_exact_and_loads_in_transformers(saved, tmp_path):
    kw, torch_model, path = saved
    model = load_text_encoder(path)
    save_text_encoder(model, tmp_path / "single")
    save_text_encoder(model, tmp_path / "sharded", max_shard_bytes=4096)
    assert (tmp_path / "sharded" / "model.safetensors.index.json").is_file()
    assert len(list((tmp_path / "sharded").glob("model-*.safetensors"))) > 1
    src = SafetensorsFile(path / "model.safetensors")
    out = SafetensorsFile(tmp_path / "single" / "model.safetensors")
    assert sorted(out.keys()) == sorted(src.keys())
    for k in src.keys():
        np.testing.assert_array_equal(out.get(k), src.get(k), err_msg=k)
    ids, mask = _inputs(kw["vocab_size"])
    ref = _torch_encode(torch_model, ids, mask)
    for sub in ("single", "sharded"):
        again = load_text_encoder(tmp_path / sub)
        for a, b in zip(jax.tree.leaves(nnx.state(model)), jax.tree.leaves(nnx.state(again))):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        reloaded = T5EncoderModel.from_pretrained(tmp_path / sub).eval()
        np.testing.assert_array_equal(_torch_encode(reloaded, ids, mask), ref)


def test_bfloat16_storage_round_trip(saved, tmp_path):
    kw, torch_model, path = saved
    model = load_text_encoder(path, dtype=jnp.bfloat16, param_dtype=jnp.bfloat16)
    assert model.embed[...].dtype == jnp.bfloat16
    save_text_encoder(model, tmp_path)
    assert SafetensorsFile(tmp_path / "model.safetensors").dtype("shared.weight") == jnp.bfloat16
    again = load_text_encoder(tmp_path, param_dtype=jnp.bfloat16)
    for a, b in zip(jax.tree.leaves(nnx.state(model)), jax.tree.leaves(nnx.state(again))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    ids, mask = _inputs(kw["vocab_size"])
    out = model(jnp.asarray(ids), jnp.asarray(mask))
    assert out.dtype == jnp.float32
    # No fixed bf16 tolerance exists; ours must be about as close to the float32 oracle as
    # transformers' own bf16 run is.
    ref = _torch_encode(torch_model, ids, mask)
    torch_bf16 = T5EncoderModel.from_pretrained(path, dtype=torch.bfloat16).eval()
    assert rel_l2(out, ref) <= 1.5 * rel_l2(_torch_encode(torch_bf16, ids, mask), ref)


def _rewrite(src, dst, edit):
    """Copies a text_encoder folder, editing its tensor dict with `edit(dict) -> None`."""
    dst.mkdir()
    (dst / "config.json").write_text((src / "config.json").read_text())
    f = SafetensorsFile(src / "model.safetensors")
    tensors = {k: f.get(k) for k in f.keys()}
    edit(tensors)
    save_file(tensors, dst / "model.safetensors")
    return tensors


@pytest.mark.parametrize("layout", ["embed_tokens_only", "both_tied", "full_t5"])
def test_tied_embeddings_and_full_checkpoints(saved, tmp_path, layout):
    kw, torch_model, path = saved

    def edit(t):
        if layout == "embed_tokens_only":
            t["encoder.embed_tokens.weight"] = t.pop("shared.weight")
        elif layout == "both_tied":
            t["encoder.embed_tokens.weight"] = t["shared.weight"].copy()
        else:  # an encoder-decoder checkpoint: the decoder half is skipped
            t["decoder.final_layer_norm.weight"] = np.ones(kw["d_model"], np.float32)
            t["lm_head.weight"] = t["shared.weight"].copy()

    _rewrite(path, tmp_path / "te", edit)
    model = load_text_encoder(tmp_path / "te")
    ids, mask = _inputs(kw["vocab_size"])
    err = rel_l2(model(jnp.asarray(ids), jnp.asarray(mask)), _torch_encode(torch_model, ids, mask))
    assert err <= MODEL_RTOL, err


def test_missing_folder_and_config(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_text_encoder(tmp_path / "nope")
    (tmp_path / "pipe" / "text_encoder").mkdir(parents=True)
    (tmp_path / "pipe" / "text_encoder" / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match="did you mean .*text_encoder"):
        load_text_encoder(tmp_path / "pipe")


def test_missing_and_misshaped_tensors_are_listed(saved, tmp_path):
    kw, _, path = saved
    missing = "encoder.block.1.layer.1.DenseReluDense.wi_1.weight"
    misshaped = "encoder.final_layer_norm.weight"

    def edit(t):
        del t[missing]
        t[misshaped] = np.ones(kw["d_model"] + 1, np.float32)
        t["encoder.extra.weight"] = np.ones(3, np.float32)

    _rewrite(path, tmp_path / "te", edit)
    with pytest.raises(CheckpointError) as e:
        load_text_encoder(tmp_path / "te")
    msg = str(e.value)
    assert "missing (1)" in msg and missing in msg
    assert "unexpected (1)" in msg and "encoder.extra.weight" in msg
    assert "wrong shape (1)" in msg and misshaped in msg and f"model [{kw['d_model']}]" in msg


def test_bad_configs(saved, tmp_path):
    _, _, path = saved
    cfg = json.loads((path / "config.json").read_text())
    with pytest.raises(ValueError, match="feed_forward_proj='relu'.*gated-gelu"):
        T5Config.from_dict({**cfg, "feed_forward_proj": "relu"})
    with pytest.raises(ValueError, match=r"lacks \['d_kv'\]"):
        T5Config.from_dict({k: v for k, v in cfg.items() if k != "d_kv"})
    with pytest.raises(ValueError, match="model_type='bert'"):
        T5Config.from_dict({**cfg, "model_type": "bert"})


def test_bad_call_shapes():
    model = T5Encoder(T5Config(**CONFIGS["small_buckets"]), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"input_ids must be \[B, S\]"):
        model(jnp.zeros((5,), jnp.int32))
    with pytest.raises(ValueError, match="attention_mask shape"):
        model(jnp.zeros((2, 5), jnp.int32), jnp.ones((2, 4)))


def test_encode_prompts(tokenizer_dir):
    tok = load_tokenizer(tokenizer_dir)
    prompts = ["  a red cat\n", "a dog runs on the beach under a blue sky of video of a cat"]
    ids, mask = encode_prompts(tok, prompts, max_length=8)
    assert ids.shape == mask.shape == (2, 8) and ids.dtype == mask.dtype == np.int32
    # The diffusers / official call on the stripped prompts.
    ref = tok([p.strip() for p in prompts], padding="max_length", max_length=8, truncation=True,
              add_special_tokens=True)
    np.testing.assert_array_equal(ids, np.array(ref["input_ids"]))
    np.testing.assert_array_equal(mask, np.array(ref["attention_mask"]))
    assert mask[0].tolist() == [1, 1, 1, 1, 0, 0, 0, 0]  # 3 words + </s>, then padding
    assert ids[0, 3] == tok.eos_token_id and (ids[0, 4:] == tok.pad_token_id).all()
    assert mask[1].all() and ids[1, -1] == tok.eos_token_id  # truncated, </s> kept
    one, _ = encode_prompts(tok, "a red cat", max_length=8)
    np.testing.assert_array_equal(one, ids[:1])
    empty, empty_mask = encode_prompts(tok, [""], max_length=4)
    assert empty_mask.tolist() == [[1, 0, 0, 0]] and empty[0, 0] == tok.eos_token_id


def test_prompts_end_to_end(saved, tokenizer_dir):
    """Tokenizer -> our encoder equals tokenizer -> transformers' encoder."""
    _, torch_model, path = saved
    ids, mask = encode_prompts(load_tokenizer(tokenizer_dir), ["a red cat", "the blue sky"], max_length=16)
    out = load_text_encoder(path)(jnp.asarray(ids), jnp.asarray(mask))
    err = rel_l2(out, _torch_encode(torch_model, ids, mask))
    assert err <= MODEL_RTOL, err


def test_tokenizer_errors(tokenizer_dir, tmp_path):
    tok = load_tokenizer(tokenizer_dir)
    with pytest.raises(ValueError, match="at least one prompt"):
        encode_prompts(tok, [], max_length=8)
    with pytest.raises(ValueError, match="max_length=0"):
        encode_prompts(tok, ["a"], max_length=0)
    with pytest.raises(ValueError, match="item 1 is int"):
        encode_prompts(tok, ["a", 3], max_length=8)
    with pytest.raises(FileNotFoundError, match="tokenizer folder not found"):
        load_tokenizer(tmp_path / "nope")
    (tmp_path / "pipe" / "tokenizer").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="did you mean .*tokenizer"):
        load_tokenizer(tmp_path / "pipe")
