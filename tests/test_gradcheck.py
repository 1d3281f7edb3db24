"""Every layer's hand-written backward pass, proven by finite differences.

Shapes (batch, lengths, heads, widths) are drawn by hypothesis, masks
included; the worst elementwise relative error must be <= 1e-6 in float64.
A last group of tests shows that the checker itself *fails* on a wrong
gradient, so these tests can fail.
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minitx.gradcheck import gradcheck, gradcheck_module
from minitx.nn import (Activation, DecoderBlock, Embedding, EncoderBlock, FeedForward, LayerNorm,
                       LearnedPositionalEmbedding, Linear, MultiHeadAttention, SinusoidalPositionalEncoding,
                       cross_entropy_backward, cross_entropy_forward, log_softmax_backward, log_softmax_forward,
                       scaled_dot_product_attention_backward, scaled_dot_product_attention_forward, softmax_backward,
                       softmax_forward)
from minitx.nn.dropout import dropout_backward, dropout_forward

TOL = 1e-6
F64 = np.float64


def rng_for(seed):
    return np.random.default_rng(seed)


def assert_ok(result):
    assert result.ok(TOL), str(result)


dims = st.integers(1, 5)
seeds = st.integers(0, 2**16)


def padding_mask(rng, B, T, *, keep_first=True):
    """Random right padding; at least one real token per row so rows are never all-masked."""
    lengths = rng.integers(1 if keep_first else 0, T + 1, size=B)
    return np.arange(T)[None, :] >= lengths[:, None]  # (B, T) True = padding


# ReLU has a kink at 0, where finite differences straddle two slopes. Its own
# test keeps inputs away from the kink; inside networks, where hidden values
# cannot be steered, the smooth activations are checked (ReLU blocks are
# covered by the PyTorch parity tests).
SMOOTH = st.sampled_from(["gelu", "gelu_exact"])

# ---------------------------------------------------------------- simple layers
@given(B=dims, T=dims, d_in=dims, d_out=dims, bias=st.booleans(), seed=seeds)
def test_linear(B, T, d_in, d_out, bias, seed):
    rng = rng_for(seed)
    layer = Linear(d_in, d_out, bias, rng=rng, dtype=F64)
    assert_ok(gradcheck_module(layer, rng.standard_normal((B, T, d_in))))


@given(B=dims, T=dims, V=st.integers(1, 7), D=dims, seed=seeds)
def test_embedding(B, T, V, D, seed):
    rng = rng_for(seed)
    layer = Embedding(V, D, rng=rng, dtype=F64)
    ids = rng.integers(0, V, size=(B, T))  # repeated ids exercise the scatter-add
    assert_ok(gradcheck_module(layer, ids))


@given(B=dims, T=dims, D=st.integers(2, 9), seed=seeds)
def test_layernorm(B, T, D, seed):
    rng = rng_for(seed)
    layer = LayerNorm(D, dtype=F64)
    layer.weight.data[:] = rng.standard_normal(D)
    layer.bias.data[:] = rng.standard_normal(D)
    assert_ok(gradcheck_module(layer, rng.standard_normal((B, T, D))))


@pytest.mark.parametrize("name", ["relu", "gelu", "gelu_exact"])
@given(shape=st.lists(dims, min_size=1, max_size=3), seed=seeds)
def test_activations(name, shape, seed):
    x = rng_for(seed).standard_normal(shape)
    x[np.abs(x) < 1e-2] += 0.1  # keep ReLU away from its kink, where no derivative exists
    assert_ok(gradcheck_module(Activation(name), x))


@given(B=dims, T=dims, D=dims, seed=seeds)
def test_positions(B, T, D, seed):
    rng = rng_for(seed)
    x = rng.standard_normal((B, T, D))
    start = int(rng.integers(0, 3))
    assert_ok(gradcheck_module(LearnedPositionalEmbedding(T + 3, D, rng=rng, dtype=F64), x,
                               forward_kwargs={"start": start}))
    assert_ok(gradcheck_module(SinusoidalPositionalEncoding(D, T + 3, dtype=F64), x, forward_kwargs={"start": start}))


@given(B=dims, T=dims, D=dims, d_ff=dims, act=SMOOTH, seed=seeds)
def test_feedforward(B, T, D, d_ff, act, seed):
    rng = rng_for(seed)
    layer = FeedForward(D, d_ff, activation=act, rng=rng, dtype=F64)
    assert_ok(gradcheck_module(layer, rng.standard_normal((B, T, D))))


# ---------------------------------------------------------------- functional pairs
def check_function(forward, backward, inputs: dict, seed):
    """Gradient-check a functional pair: L = sum(forward(*inputs) * G)."""
    out, cache = forward(*inputs.values())
    G = rng_for(seed + 7).standard_normal(np.shape(out))
    grads = backward(G, cache)
    grads = grads if isinstance(grads, tuple) else (grads,)
    analytic = dict(zip(inputs, grads))

    def loss():
        return float((forward(*inputs.values())[0] * G).sum())

    assert_ok(gradcheck(loss, inputs, analytic))


@given(shape=st.lists(dims, min_size=1, max_size=3), seed=seeds)
def test_softmax_and_log_softmax(shape, seed):
    x = rng_for(seed).standard_normal(shape) * 3
    check_function(softmax_forward, softmax_backward, {"x": x}, seed)
    check_function(log_softmax_forward, log_softmax_backward, {"x": x.copy()}, seed)


@given(N=dims, C=st.integers(1, 7), smoothing=st.sampled_from([0.0, 0.1, 0.5]), ignore=st.booleans(), seed=seeds)
def test_cross_entropy(N, C, smoothing, ignore, seed):
    rng = rng_for(seed)
    logits = rng.standard_normal((N, 3, C)) * 2
    targets = rng.integers(0, C, size=(N, 3))
    if ignore:
        targets[rng.random((N, 3)) < 0.4] = -100
    fwd = lambda z: cross_entropy_forward(z, targets, label_smoothing=smoothing)  # noqa: E731
    check_function(fwd, cross_entropy_backward, {"logits": logits}, seed)


@given(B=dims, H=st.integers(1, 3), Tq=dims, Tk=dims, hs=dims, hv=dims,
       mask_kind=st.sampled_from(["none", "causal", "random", "padding"]), seed=seeds)
def test_scaled_dot_product_attention(B, H, Tq, Tk, hs, hv, mask_kind, seed):
    rng = rng_for(seed)
    q, k, v = (rng.standard_normal((B, H, Tq, hs)), rng.standard_normal((B, H, Tk, hs)),
               rng.standard_normal((B, H, Tk, hv)))
    mask = None
    if mask_kind == "causal":
        mask = np.arange(Tk)[None, :] <= np.arange(Tq)[:, None] + (Tk - Tq)
    elif mask_kind == "random":
        mask = rng.random((B, 1, Tq, Tk)) < 0.7
    elif mask_kind == "padding":
        mask = ~padding_mask(rng, B, Tk)[:, None, None, :]

    def fwd(q, k, v):
        out, _, cache = scaled_dot_product_attention_forward(q, k, v, mask)
        return out, cache

    check_function(fwd, scaled_dot_product_attention_backward, {"q": q, "k": k, "v": v}, seed)


@given(shape=st.lists(dims, min_size=1, max_size=3), p=st.sampled_from([0.1, 0.5, 0.9]), seed=seeds)
def test_dropout_with_fixed_mask(shape, p, seed):
    x = rng_for(seed).standard_normal(shape)

    def fwd(x):  # the same mask every call: re-seed the generator
        return dropout_forward(x, p, np.random.default_rng(seed), training=True)

    check_function(fwd, dropout_backward, {"x": x}, seed)


# ---------------------------------------------------------------- attention and blocks
heads = st.integers(1, 3)
head_size = st.integers(1, 3)


@given(B=st.integers(1, 3), T=dims, S=dims, H=heads, hs=head_size, causal=st.booleans(), pad=st.booleans(),
       use_attn_mask=st.booleans(), seed=seeds)
def test_multi_head_self_attention(B, T, S, H, hs, causal, pad, use_attn_mask, seed):
    rng = rng_for(seed)
    D = H * hs
    layer = MultiHeadAttention(D, H, causal=causal, rng=rng, dtype=F64)
    kw = {}
    if pad:
        kw["key_padding_mask"] = padding_mask(rng, B, T)
    if use_attn_mask:
        m = rng.random((T, T)) < 0.3
        np.fill_diagonal(m, False)  # every query keeps itself
        kw["attn_mask"] = m
    assert_ok(gradcheck_module(layer, rng.standard_normal((B, T, D)), forward_kwargs=kw))


@given(B=st.integers(1, 3), T=dims, S=dims, H=heads, hs=head_size, pad=st.booleans(), seed=seeds)
def test_multi_head_cross_attention(B, T, S, H, hs, pad, seed):
    rng = rng_for(seed)
    D = H * hs
    layer = MultiHeadAttention(D, H, cross=True, rng=rng, dtype=F64)
    kw = {"key_padding_mask": padding_mask(rng, B, S)} if pad else {}
    x, memory = rng.standard_normal((B, T, D)), rng.standard_normal((B, S, D))
    assert_ok(gradcheck_module(layer, x, memory, forward_kwargs=kw))


@given(B=st.integers(1, 2), T=st.integers(1, 4), H=heads, hs=head_size, norm_first=st.booleans(),
       act=SMOOTH, pad=st.booleans(), seed=seeds)
def test_encoder_block(B, T, H, hs, norm_first, act, pad, seed):
    rng = rng_for(seed)
    D = H * hs
    block = EncoderBlock(D, H, 2 * D + 1, norm_first=norm_first, activation=act, rng=rng, dtype=F64)
    kw = {"key_padding_mask": padding_mask(rng, B, T)} if pad else {}
    assert_ok(gradcheck_module(block, rng.standard_normal((B, T, D)), forward_kwargs=kw, max_elements=40))


@given(B=st.integers(1, 2), T=st.integers(1, 4), S=st.integers(1, 4), H=heads, hs=head_size,
       norm_first=st.booleans(), cross=st.booleans(), pad=st.booleans(), seed=seeds)
def test_decoder_block(B, T, S, H, hs, norm_first, cross, pad, seed):
    rng = rng_for(seed)
    D = H * hs
    block = DecoderBlock(D, H, 2 * D + 1, cross_attention=cross, norm_first=norm_first, rng=rng, dtype=F64)
    x = rng.standard_normal((B, T, D))
    kw, inputs = {}, (x,)
    if pad:
        kw["key_padding_mask"] = padding_mask(rng, B, T)
    if cross:
        inputs = (x, rng.standard_normal((B, S, D)))
        if pad:
            kw["memory_key_padding_mask"] = padding_mask(rng, B, S)
    assert_ok(gradcheck_module(block, *inputs, forward_kwargs=kw, max_elements=40))


# ---------------------------------------------------------------- the checker can fail
def test_checker_catches_a_wrong_gradient():
    rng = rng_for(0)
    layer = Linear(3, 2, rng=rng, dtype=F64)
    x = rng.standard_normal((4, 3))
    original = layer.backward

    def off_by_one_percent(dout):
        dx = original(dout)
        layer.weight.grad *= 1.01
        return dx

    layer.backward = off_by_one_percent
    result = gradcheck_module(layer, x)
    assert not result.ok(TOL)
    assert result.where.startswith("weight[")
    assert 0.005 < result.max_rel_error < 0.02


def test_checker_catches_a_missing_term():
    """A LayerNorm backward that forgets the variance term is wrong by far more than 1e-6."""
    from minitx.nn import norm

    rng = rng_for(1)
    x = rng.standard_normal((2, 5))
    gamma, beta = rng.standard_normal(5), rng.standard_normal(5)
    out, cache = norm.layernorm_forward(x, gamma, beta)
    G = rng.standard_normal(out.shape)
    xhat, rstd, _ = cache
    g = G * gamma
    wrong_dx = rstd * (g - g.mean(-1, keepdims=True))  # missing - xhat * mean(g * xhat)
    result = gradcheck(lambda: float((norm.layernorm_forward(x, gamma, beta)[0] * G).sum()), {"x": x}, {"x": wrong_dx})
    assert not result.ok(TOL)


def test_checker_rejects_float32():
    layer = Linear(2, 2)
    with pytest.raises(ValueError, match="expected a float64 module"):
        gradcheck_module(layer, np.ones((1, 2), np.float32))


def test_report_names_the_worst_element():
    x = np.zeros(3)
    result = gradcheck(lambda: float((x * x).sum() + 5 * x[1]), {"x": x}, {"x": np.array([0.0, 4.0, 0.0])})
    assert result.where == "x[1]" and abs(result.numeric - 5.0) < 1e-9 and "x[1]" in str(result)
