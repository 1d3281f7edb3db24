"""Sampling controls, the KV cache (same tokens as recomputing) and stopping."""
import warnings

import numpy as np
import pytest

from minitx.generate import generate, generate_text, next_token_probs, sample_from
from minitx.models import GPT, GPTConfig


def peaked_model(dtype=np.float32, block_size=12, seed=0):
    """A random GPT whose weights are scaled up, so its predictions are confident
    (random *small* weights give near-ties that rounding could flip)."""
    model = GPT(GPTConfig(vocab_size=13, block_size=block_size, n_layer=2, n_head=2, n_embd=16), seed=seed,
                dtype=dtype)
    for _, p in model.named_parameters():
        if p.data.ndim == 2:
            p.data *= 10
    return model


def test_kv_cache_logits_equal_recomputed_logits():
    model = peaked_model(np.float64)
    idx = np.random.default_rng(0).integers(0, 13, (2, 7))
    full = model.forward(idx)  # (2, 7, V)
    caches = model.new_kv_caches()
    first = model.forward(idx[:, :4], kv_caches=caches)
    steps = [model.forward(idx[:, t:t + 1], kv_caches=caches) for t in range(4, 7)]
    np.testing.assert_allclose(np.concatenate([first] + steps, axis=1), full, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("sampling", [
    dict(temperature=0.0),
    dict(temperature=1.0, seed=3),
    dict(temperature=0.8, top_k=4, seed=4),
    dict(temperature=1.2, top_p=0.9, seed=5),
])
def test_kv_cache_gives_the_same_tokens(sampling):
    """40 new tokens from a 5-token prompt at block_size 12: the window fills and slides."""
    model = peaked_model()
    prompt = np.random.default_rng(1).integers(0, 13, (2, 5))
    cached = generate(model, prompt, 40, use_kv_cache=True, **sampling)
    recomputed = generate(model, prompt, 40, use_kv_cache=False, **sampling)
    assert cached.shape == (2, 45)
    np.testing.assert_array_equal(cached, recomputed)


def test_greedy_is_argmax_and_top_k_1():
    model = peaked_model()
    prompt = np.array([[1, 2, 3]])
    greedy = generate(model, prompt, 6, temperature=0)
    assert np.array_equal(greedy, generate(model, prompt, 6, top_k=1, seed=0))
    ctx = prompt
    for _ in range(6):  # the loop, written out
        ctx = np.concatenate([ctx, model.forward(ctx)[:, -1].argmax(-1)[:, None]], axis=1)
    assert np.array_equal(greedy, ctx)


def test_seed_reproduces_samples():
    model = peaked_model()
    model.blocks[0].attn.qkv.weight.data *= 0.01  # flatter predictions: samples vary
    prompt = np.array([[1, 2]])
    a = generate(model, prompt, 20, temperature=2.0, seed=7)
    assert np.array_equal(a, generate(model, prompt, 20, temperature=2.0, seed=7))
    assert not np.array_equal(a, generate(model, prompt, 20, temperature=2.0, seed=8))


def test_sampling_filters():
    logits = np.array([[2.0, 1.0, 0.0, -1.0]])
    np.testing.assert_allclose(next_token_probs(logits).sum(), 1.0)
    assert (next_token_probs(logits, top_k=2)[0, 2:] == 0).all()
    p = next_token_probs(logits, top_p=0.8)[0]
    assert (p[:2] > 0).all() and (p[2:] == 0).all()
    assert next_token_probs(logits, top_p=0.5)[0, 0] == 1.0  # the top token alone already has 0.64
    cold, hot = next_token_probs(logits, temperature=0.5)[0], next_token_probs(logits, temperature=2.0)[0]
    assert cold[0] > next_token_probs(logits)[0, 0] > hot[0]
    assert np.array_equal(next_token_probs(logits, temperature=0)[0], [1, 0, 0, 0])


def test_sample_frequencies_follow_the_distribution():
    probs = np.array([[0.5, 0.3, 0.2, 0.0]]).repeat(20000, axis=0)
    counts = np.bincount(sample_from(probs, np.random.default_rng(0)), minlength=4) / 20000
    np.testing.assert_allclose(counts, [0.5, 0.3, 0.2, 0.0], atol=0.01)


def test_long_prompt_is_cropped_with_a_warning():
    model = peaked_model(block_size=8)
    prompt = np.random.default_rng(0).integers(0, 13, (1, 20))
    with pytest.warns(UserWarning, match="keeping the last 8"):
        out = generate(model, prompt, 3, temperature=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        expected = generate(model, prompt[:, -8:], 3, temperature=0)
    assert np.array_equal(out[:, -3:], expected[:, -3:])


def test_stop_token():
    model = peaked_model()
    prompt = np.array([[1, 2, 3]])
    free = generate(model, prompt, 20, temperature=0)
    stop = int(free[0, 5])  # the third generated token
    first = list(free[0, 3:]).index(stop)
    out = generate(model, prompt, 20, temperature=0, stop_token=stop)
    assert out.shape[1] == 3 + first + 1 and out[0, -1] == stop


class LetterTokenizer:
    """The smallest tokenizer: token i is the letter 'a' + i."""

    def encode(self, text):
        return [ord(c) - ord("a") for c in text]

    def decode(self, ids):
        return "".join(chr(ord("a") + i) for i in ids)


def test_generate_text_stop_string_and_streaming():
    model, tok = peaked_model(), LetterTokenizer()
    model.blocks[0].attn.qkv.weight.data *= 0.01  # flatter predictions: varied text
    full = generate_text(model, tok, "abc", 30, temperature=1.5, seed=0)
    assert len(full) == 30
    at = next(i for i in range(3, 28) if full.find(full[i:i + 2]) == i)  # a pair first seen at i >= 3
    stop = full[at:at + 2]
    pieces = []
    cut = generate_text(model, tok, "abc", 30, temperature=1.5, seed=0, stop=[stop, "zzz"], on_text=pieces.append)
    assert cut == full[:at] and "".join(pieces) == cut


@pytest.mark.parametrize("kwargs, fragment", [
    (dict(temperature=-0.5), "temperature: got -0.5"),
    (dict(top_k=0), "top_k: got 0"),
    (dict(top_p=0.0), r"top_p: got 0.0, expected a number in \(0, 1\]"),
    (dict(top_p=1.5), "top_p: got 1.5"),
])
def test_bad_sampling_arguments(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        generate(peaked_model(), np.array([[1]]), 3, **kwargs)


def test_empty_prompt_is_an_error():
    with pytest.raises(ValueError, match="at least one token"):
        generate(peaked_model(), np.zeros((1, 0), dtype=np.int64), 3)


def test_generate_text_keeps_a_word_tokenizers_spaces():
    """The continuation of a word-level model starts with the space its decoder puts between words:
    prompt + new text is the decoded whole (decoding the new ids alone would glue them to the prompt)."""
    from minitx.tokenizer.word import WordTokenizer

    tok = WordTokenizer(["a", "b", "c"])  # words only: every new token is written after a space
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=16, n_layer=1, n_head=1, n_embd=8), seed=0)
    text, ids = generate_text(model, tok, "a b", 4, temperature=0, return_ids=True)
    assert "a b" + text == tok.decode(tok.encode("a b") + ids)
    assert len(ids) == 4 and text == " " + tok.decode(ids)
