"""Prompt-embedding cache: hits, misses, keys, fingerprints, corrupt entries."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from transformers import T5TokenizerFast

from ltx_jax.convert.t5 import save_text_encoder
from ltx_jax.text.cache import PromptEmbeddingCache, encoder_hash, folder_hash
from ltx_jax.text.t5 import T5Config, T5Encoder
from ltx_jax.text.tokenizer import encode_prompts

S = 8
CFG = T5Config(vocab_size=48, d_model=16, d_kv=4, num_heads=2, d_ff=24, num_layers=2,
               relative_attention_num_buckets=8, relative_attention_max_distance=16)


@pytest.fixture(scope="module")
def encoder():
    return T5Encoder(CFG, rngs=nnx.Rngs(0))


@pytest.fixture(scope="module")
def tokenizer():
    words = ["a", "red", "cat", "dog", "on", "the", "beach", "blue", "sky"]
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    pieces += [("\u2581" + w, -2.0) for w in words] + [("\u2581", -3.0)]
    pieces += [(c, -5.0) for c in "abcdefghijklmnopqrstuvwxyz"]
    return T5TokenizerFast(vocab=pieces, extra_ids=0)


class CountingEncoder:
    """encode_fn for the cache that records which prompts it was asked for."""

    def __init__(self, encoder, tokenizer):
        self.encoder, self.tokenizer, self.calls = encoder, tokenizer, []

    def __call__(self, prompts):
        self.calls.append(list(prompts))
        ids, mask = encode_prompts(self.tokenizer, prompts, S)
        return np.asarray(self.encoder(jnp.asarray(ids), jnp.asarray(mask))), mask


def test_hits_misses_and_order(encoder, tokenizer, tmp_path):
    fn = CountingEncoder(encoder, tokenizer)
    cache = PromptEmbeddingCache(tmp_path, encoder_hash(encoder), S)
    prompts = ["a red cat", "the blue sky", "a red cat"]
    embeds, mask = cache.encode(prompts, fn)
    assert fn.calls == [["a red cat", "the blue sky"]]  # duplicates encoded once
    direct, direct_mask = fn(prompts)
    np.testing.assert_array_equal(embeds, direct)
    np.testing.assert_array_equal(mask, direct_mask)
    assert embeds.shape == (3, S, CFG.d_model) and mask.dtype == np.int32

    fn.calls.clear()
    again, again_mask = cache.encode(["the blue sky", " a red cat ", "a dog on the beach"], fn)
    assert fn.calls == [["a dog on the beach"]]  # only the new prompt; stripping shares entries
    np.testing.assert_array_equal(again[0], embeds[1])
    np.testing.assert_array_equal(again[1], embeds[0])
    np.testing.assert_array_equal(again_mask[:2], mask[[1, 0]])
    assert len(list(tmp_path.glob("*.safetensors"))) == 3

    fn.calls.clear()
    cache.encode("a red cat", fn)
    assert fn.calls == []


def test_other_encoder_or_length_misses(encoder, tokenizer, tmp_path):
    fn = CountingEncoder(encoder, tokenizer)
    key = encoder_hash(encoder)
    PromptEmbeddingCache(tmp_path, key, S).encode(["a red cat"], fn)
    assert PromptEmbeddingCache(tmp_path, key, S).lookup("a red cat") is not None
    assert PromptEmbeddingCache(tmp_path, key + "x", S).lookup("a red cat") is None
    assert PromptEmbeddingCache(tmp_path, key, S + 1).lookup("a red cat") is None


def test_encoder_hash_tracks_weights(encoder):
    other = T5Encoder(CFG, rngs=nnx.Rngs(0))
    assert encoder_hash(other) == encoder_hash(encoder)
    other.final_norm.scale[...] = other.final_norm.scale[...].at[0].add(1e-3)
    assert encoder_hash(other) != encoder_hash(encoder)


def test_folder_hash(encoder, tmp_path):
    save_text_encoder(encoder, tmp_path / "te")
    full, quick = folder_hash(tmp_path / "te"), folder_hash(tmp_path / "te", contents=False)
    weights = tmp_path / "te" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # one bit of one weight value
    weights.write_bytes(bytes(data))
    assert folder_hash(tmp_path / "te") != full
    assert folder_hash(tmp_path / "te", contents=False) == quick  # header and size unchanged
    (tmp_path / "tok").mkdir()
    (tmp_path / "tok" / "tokenizer.json").write_text("{}")
    assert folder_hash(tmp_path / "te", tmp_path / "tok") != folder_hash(tmp_path / "te")
    with pytest.raises(FileNotFoundError, match="not found"):
        folder_hash(tmp_path / "nope")


def test_corrupt_entry_is_recomputed(encoder, tokenizer, tmp_path):
    fn = CountingEncoder(encoder, tokenizer)
    cache = PromptEmbeddingCache(tmp_path, encoder_hash(encoder), S)
    first, _ = cache.encode(["a red cat"], fn)
    cache.path("a red cat").write_bytes(b"\x10\x00")
    assert cache.lookup("a red cat") is None
    again, _ = cache.encode(["a red cat"], fn)
    assert len(fn.calls) == 2
    np.testing.assert_array_equal(again, first)


def test_bad_input(encoder, tmp_path):
    cache = PromptEmbeddingCache(tmp_path, "k", S)
    with pytest.raises(ValueError, match="at least one prompt"):
        cache.encode([], lambda ps: None)
    with pytest.raises(ValueError, match=r"S = max_length = 8"):
        cache.store("a", np.zeros((S + 1, 4), np.float32), np.ones(S + 1))
    with pytest.raises(ValueError, match="returned 1 embeddings"):
        cache.encode(["a", "b"], lambda ps: (np.zeros((1, S, 4)), np.ones((1, S))))
    with pytest.raises(ValueError, match="max_length=0"):
        PromptEmbeddingCache(tmp_path, "k", 0)
    with pytest.raises(ValueError, match="encoder_key"):
        PromptEmbeddingCache(tmp_path, "", S)
