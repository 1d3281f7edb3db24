"""The contracts every layer keeps: dtypes, parameter names, and clear errors.

* dtype: output and every gradient have the dtype of the input (float32 by
  default; float64 for checks). NumPy 2 silently upcasts float32 arrays
  combined with float64 scalars, so this is easy to break and worth a test.
* Bad input: a ValueError that names the argument, what was received and what
  was expected; never a broadcasting error from deep inside NumPy.
"""
import numpy as np
import pytest

from minitx.nn import (GELU, Activation, DecoderBlock, Dropout, Embedding, EncoderBlock, FeedForward, KVCache,
                       LayerNorm, LearnedPositionalEmbedding, Linear, ModuleList, MultiHeadAttention, ReLU,
                       SinusoidalPositionalEncoding, cross_entropy_backward, cross_entropy_forward,
                       log_softmax_backward, log_softmax_forward, scaled_dot_product_attention_backward,
                       scaled_dot_product_attention_forward, softmax_backward, softmax_forward)

B, T, S, D, H = 2, 5, 3, 8, 2


def layers(dtype):
    """(name, module, inputs, forward kwargs) for every module, in ``dtype``."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((B, T, D)).astype(dtype)
    mem = rng.standard_normal((B, S, D)).astype(dtype)
    pad = np.zeros((B, T), bool)
    pad[0, -2:] = True
    mpad = np.zeros((B, S), bool)
    mpad[1, -1] = True
    kw = dict(rng=rng, dtype=dtype)
    return [
        ("Linear", Linear(D, 3, **kw), (x,), {}),
        ("LayerNorm", LayerNorm(D, dtype=dtype), (x,), {}),
        ("ReLU", ReLU(), (x,), {}),
        ("GELU tanh", GELU("tanh"), (x,), {}),
        ("GELU erf", GELU("none"), (x,), {}),
        ("Dropout", Dropout(0.3, rng=rng), (x,), {}),
        ("LearnedPositionalEmbedding", LearnedPositionalEmbedding(16, D, **kw), (x,), {}),
        ("SinusoidalPositionalEncoding", SinusoidalPositionalEncoding(D, 16, dtype=dtype), (x,), {}),
        ("MultiHeadAttention self", MultiHeadAttention(D, H, causal=True, **kw), (x,), {"key_padding_mask": pad}),
        ("MultiHeadAttention cross", MultiHeadAttention(D, H, cross=True, **kw), (x, mem),
         {"key_padding_mask": mpad}),
        ("FeedForward", FeedForward(D, 16, dropout=0.1, **kw), (x,), {}),
        ("EncoderBlock post-norm", EncoderBlock(D, H, norm_first=False, dropout=0.1, **kw), (x,),
         {"key_padding_mask": pad}),
        ("DecoderBlock", DecoderBlock(D, H, dropout=0.1, **kw), (x, mem),
         {"key_padding_mask": pad, "memory_key_padding_mask": mpad}),
        ("DecoderBlock GPT", DecoderBlock(D, H, cross_attention=False, **kw), (x,), {}),
    ]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_no_layer_changes_the_dtype(dtype):
    for name, module, inputs, kwargs in layers(dtype):
        out = module.forward(*inputs, **kwargs)
        assert out.dtype == dtype, f"{name} forward returned {out.dtype} for {np.dtype(dtype)} input"
        grads = module.backward(np.ones_like(out))
        for g in grads if isinstance(grads, tuple) else (grads,):
            assert g.dtype == dtype, f"{name} backward returned {g.dtype}"
        for pname, p in module.named_parameters():
            assert p.data.dtype == dtype and p.grad.dtype == dtype, f"{name}.{pname} is {p.grad.dtype}"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_functional_pairs_keep_the_dtype(dtype):
    rng = np.random.default_rng(1)
    z = rng.standard_normal((4, 6)).astype(dtype)
    for fwd, bwd in [(softmax_forward, softmax_backward), (log_softmax_forward, log_softmax_backward)]:
        out, cache = fwd(z)
        assert out.dtype == dtype and bwd(np.ones_like(out), cache).dtype == dtype
    loss, cache = cross_entropy_forward(z, np.array([0, 1, 2, -100]), label_smoothing=0.1)
    assert loss.dtype == dtype and cross_entropy_backward(1.0, cache).dtype == dtype
    q = rng.standard_normal((2, 3, 4)).astype(dtype)
    out, w, cache = scaled_dot_product_attention_forward(q, q, q, np.tril(np.ones((3, 3), bool)))
    assert out.dtype == w.dtype == dtype
    assert all(g.dtype == dtype for g in scaled_dot_product_attention_backward(out, cache))
    e = Embedding(5, 3, dtype=dtype)
    out = e.forward(np.array([[1, 1, 4]]))
    e.backward(np.ones_like(out))
    assert out.dtype == e.weight.grad.dtype == dtype


def test_default_dtype_is_float32():
    assert Linear(2, 2).weight.dtype == np.float32
    assert MultiHeadAttention(4, 2).qkv.weight.dtype == np.float32


# ---------------------------------------------------------------- parameters by name
def test_parameters_are_named_for_checkpoints():
    block = DecoderBlock(D, H, 16, cross_attention=True, rng=np.random.default_rng(0))
    names = [n for n, _ in block.named_parameters()]
    assert names[:4] == ["norm_attn.weight", "norm_attn.bias", "attn.qkv.weight", "attn.qkv.bias"]
    assert "cross_attn.q.weight" in names and "cross_attn.kv.weight" in names and "ff.fc.weight" in names
    stack = ModuleList([EncoderBlock(D, H), EncoderBlock(D, H)])
    assert "1.ff.proj.bias" in dict(stack.named_parameters())
    assert block.num_parameters() == sum(p.data.size for p in block.parameters())


def test_state_dict_round_trip_and_validation():
    a, b = Linear(3, 2, rng=np.random.default_rng(0)), Linear(3, 2, rng=np.random.default_rng(1))
    b.load_state_dict({k: v.copy() for k, v in a.state_dict().items()})
    np.testing.assert_array_equal(a.weight.data, b.weight.data)
    before = b.weight.data.copy()
    with pytest.raises(ValueError, match=r"weight has shape \(2, 3\), expected \(3, 2\)"):
        b.load_state_dict({"weight": np.zeros((2, 3)), "bias": np.zeros(2)})
    with pytest.raises(ValueError, match="missing \\['bias'\\]"):
        b.load_state_dict({"weight": np.zeros((3, 2))})
    np.testing.assert_array_equal(b.weight.data, before)  # nothing written on failure


def test_tied_parameter_is_listed_once_and_accumulates():
    emb = Embedding(5, 4, rng=np.random.default_rng(0))
    other = Embedding(5, 4)
    other.weight = emb.weight  # tie: one Parameter used by two modules
    holder = ModuleList([emb, other])
    assert len(holder.parameters()) == 1
    ids, g = np.array([[1, 2, 1]]), np.ones((1, 3, 4), np.float32)
    holder.zero_grad()
    for module in (emb, other):
        module(ids)
        module.backward(g)
    np.testing.assert_array_equal(emb.weight.grad[1], 4.0)  # id 1: twice per use, two uses
    np.testing.assert_array_equal(emb.weight.grad[2], 2.0)
    np.testing.assert_array_equal(emb.weight.grad[0], 0.0)


def test_train_eval_switches_dropout():
    block = EncoderBlock(D, H, dropout=0.5, rng=np.random.default_rng(0))
    x = np.random.default_rng(1).standard_normal((B, T, D)).astype(np.float32)
    block.eval()
    np.testing.assert_array_equal(block.forward(x), block.forward(x))
    block.train()
    assert not np.array_equal(block.forward(x), block.forward(x))


# ---------------------------------------------------------------- bad input
x32 = np.zeros((B, T, D), np.float32)


@pytest.mark.parametrize("make, call, message", [
    (lambda: Linear(D, 3), lambda m: m(np.zeros((B, T, D + 1), np.float32)),
     r"Linear input: got shape \(2, 5, 9\), expected last dimension 8"),
    (lambda: Linear(D, 3), lambda m: m(np.zeros((B, T, D), np.int64)), "Linear input: got dtype int64, expected a floating"),
    (lambda: LayerNorm(D), lambda m: m(np.zeros((B, D - 1), np.float32)), "LayerNorm input: got shape"),
    (lambda: Embedding(5, D), lambda m: m(np.array([[0, 5]])), r"got id 5, expected ids in \[0, 5\)"),
    (lambda: Embedding(5, D), lambda m: m(np.array([[-1, 2]])), r"got id -1"),
    (lambda: Embedding(5, D), lambda m: m(np.zeros((1, 2), np.float32)), "Embedding ids: got dtype float32, expected an integer"),
    (lambda: MultiHeadAttention(D, H), lambda m: m(np.zeros((T, D), np.float32)),
     r"attention input x: got shape \(5, 8\) \(2-D\), expected 3-D"),
    (lambda: MultiHeadAttention(D, H), lambda m: m(x32, key_padding_mask=np.zeros((B, T + 1), bool)),
     r"key_padding_mask: got shape \(2, 6\), expected \(2, 5\)"),
    (lambda: MultiHeadAttention(D, H), lambda m: m(x32, key_padding_mask=np.zeros((B, T), np.int64)),
     "key_padding_mask: got dtype int64, expected dtype bool"),
    (lambda: MultiHeadAttention(D, H), lambda m: m(x32, attn_mask=np.zeros((T, T + 1), bool)),
     r"attn_mask: got shape \(5, 6\), expected \(5, 5\)"),
    (lambda: MultiHeadAttention(D, H, cross=True), lambda m: m(x32), "cross-attention memory: got None"),
    (lambda: MultiHeadAttention(D, H, cross=True), lambda m: m(x32, np.zeros((B + 1, S, D), np.float32)),
     "cross-attention memory: got batch 3, expected 2"),
    (lambda: MultiHeadAttention(D, H), lambda m: m(x32, x32), "self-attention memory: got an array, expected None"),
    (lambda: DecoderBlock(D, H), lambda m: m(x32), "DecoderBlock memory: got None"),
    (lambda: LearnedPositionalEmbedding(4, D), lambda m: m(x32),
     "positions 0..4 requested, expected positions below max_len=4"),
    (lambda: LayerNorm(D), lambda m: m(np.full((B, D), np.nan, np.float32)), "LayerNorm input: contains NaN or Inf"),
    (lambda: MultiHeadAttention(D, H), lambda m: m(np.full((B, T, D), np.nan, np.float32)),
     "attention scores: contains NaN or Inf"),
])
def test_bad_input_is_named(make, call, message):
    with pytest.raises(ValueError, match=message):
        call(make())


@pytest.mark.parametrize("make, message", [
    (lambda: MultiHeadAttention(10, 3), "d_model=10 with n_heads=3: expected d_model divisible by n_heads"),
    (lambda: EncoderBlock(10, 4), "expected d_model divisible by n_heads"),
    (lambda: MultiHeadAttention(8, 0), "n_heads: got 0, expected a positive integer"),
    (lambda: MultiHeadAttention(8, 2, cross=True, causal=True), "causal masks on self-attention only"),
    (lambda: Dropout(1.0), r"dropout p: got 1.0, expected a number in \[0, 1\)"),
    (lambda: Activation("swish"), "activation: got 'swish', expected one of"),
    (lambda: GELU("fast"), "GELU approximate: got 'fast'"),
    (lambda: KVCache(0), "KVCache max_len: got 0"),
])
def test_bad_configuration_is_named(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_cross_entropy_bad_input():
    z = np.zeros((4, 3), np.float32)
    with pytest.raises(ValueError, match=r"targets: got shape \(3,\), expected \(4,\)"):
        cross_entropy_forward(z, np.zeros(3, np.int64))
    with pytest.raises(ValueError, match=r"class id outside \[0, 3\)"):
        cross_entropy_forward(z, np.array([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="logits: contains NaN|log_softmax input: contains NaN"):
        cross_entropy_forward(np.full((4, 3), np.nan, np.float32), np.zeros(4, np.int64))
    with pytest.raises(ValueError, match="label_smoothing: got 1.5"):
        cross_entropy_forward(z, np.zeros(4, np.int64), label_smoothing=1.5)


def test_all_ignored_targets_give_zero_loss_and_gradient():
    loss, cache = cross_entropy_forward(np.ones((2, 3), np.float32), np.array([-100, -100]))
    assert float(loss) == 0.0
    assert not cross_entropy_backward(1.0, cache).any()


def test_kv_cache_overflow_is_named():
    cache = KVCache(3)
    k = np.zeros((1, 1, 2, 4), np.float32)
    cache.append(k, k)
    with pytest.raises(ValueError, match="4 positions requested, expected at most max_len=3"):
        cache.append(k, k)
