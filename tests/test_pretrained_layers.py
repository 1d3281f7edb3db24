"""The layers the pretrained families added, each under the gradient checker.

RMSNorm (T5's scale-only LayerNorm), the bucketed relative position bias,
unscaled attention with an additive score bias and heads narrower than
d_model / n_heads, offset learned positions (BART), the gated MLP (T5 v1.1),
tanh (BERT's pooler), and whole T5-, BART- and BERT-shaped models.
"""
import numpy as np
import pytest

from minitx.gradcheck import gradcheck, gradcheck_module
from minitx.models.encoder import EncoderClassifier, EncoderConfig
from minitx.models.seq2seq import Seq2Seq, Seq2SeqConfig
from minitx.nn import (Activation, FeedForward, LearnedPositionalEmbedding, Module, MultiHeadAttention, Parameter,
                       RelativePositionBias, RMSNorm, relative_position_buckets, rmsnorm_backward, rmsnorm_forward,
                       scaled_dot_product_attention_backward, scaled_dot_product_attention_forward)

F64 = np.float64
TOL = 1e-6


def test_rmsnorm_forward_is_scale_only_and_gradchecks():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 5)) * 3 + 1
    gamma = rng.standard_normal(5)
    y, cache = rmsnorm_forward(x, gamma, 1e-6)
    expected = x / np.sqrt((x ** 2).mean(-1, keepdims=True) + 1e-6) * gamma
    np.testing.assert_allclose(y, expected, rtol=1e-12)
    norm = RMSNorm(5, 1e-6, dtype=F64)
    norm.weight.data[...] = gamma
    result = gradcheck_module(norm, x)
    assert result.ok(TOL), result
    assert not hasattr(norm, "bias")  # scale only


def test_rmsnorm_keeps_dtype():
    x = np.ones((2, 4), dtype=np.float32)
    y, _ = rmsnorm_forward(x, np.ones(4, dtype=np.float32))
    assert y.dtype == np.float32
    dx, dg = rmsnorm_backward(np.ones_like(y), _)
    assert dx.dtype == np.float32 and dg.dtype == np.float32


def test_offset_positions_read_shifted_rows_and_gradcheck():
    pos = LearnedPositionalEmbedding(6, 4, rng=np.random.default_rng(1), offset=2, dtype=F64)
    assert pos.weight.shape == (8, 4)
    x = np.zeros((2, 3, 4))
    np.testing.assert_array_equal(pos(x, start=1)[0], pos.weight.data[3:6])
    result = gradcheck_module(pos, np.random.default_rng(2).standard_normal((2, 3, 4)), forward_kwargs={"start": 1})
    assert result.ok(TOL), result
    pos.zero_grad()
    pos(x, start=1)
    pos.backward(np.ones((2, 3, 4)))
    assert not pos.weight.grad[:3].any() and pos.weight.grad[3:6].all()  # only the rows read get gradient


def test_relative_buckets_by_hand():
    # 16 buckets bidirectional: 8 per side, 4 exact distances, then log-spaced up to max_distance 32.
    rel = np.array([-40, -32, -16, -8, -5, -4, -3, -1, 0, 1, 3, 4, 8, 40])
    got = relative_position_buckets(rel, bidirectional=True, num_buckets=16, max_distance=32)
    assert got.tolist() == [7, 7, 6, 5, 4, 4, 3, 1, 0, 9, 11, 12, 13, 15]
    causal = relative_position_buckets(rel, bidirectional=False, num_buckets=16, max_distance=32)
    assert causal[rel >= 0].tolist() == [0] * int((rel >= 0).sum())  # the future is all bucket 0 (and masked)


def test_relative_buckets_match_transformers():
    torch = pytest.importorskip("torch", reason="PyTorch is a test-only reference; pip install torch")
    t5 = pytest.importorskip("transformers.models.t5.modeling_t5", reason="transformers is a test-only reference")
    rel = np.arange(-300, 301)
    for bidirectional in (True, False):
        for buckets, distance in ((32, 128), (8, 20), (16, 7), (6, 100)):
            ref = t5.T5Attention._relative_position_bucket(torch.tensor(rel), bidirectional=bidirectional,
                                                           num_buckets=buckets, max_distance=distance).numpy()
            got = relative_position_buckets(rel, bidirectional=bidirectional, num_buckets=buckets,
                                            max_distance=distance)
            np.testing.assert_array_equal(got, ref)


def test_relative_position_bias_gradcheck():
    bias = RelativePositionBias(3, bidirectional=True, num_buckets=8, max_distance=6, rng=np.random.default_rng(3),
                                std=1.0, dtype=F64)
    out = bias(4, 6, 2)
    assert out.shape == (1, 3, 4, 6)
    result = gradcheck_module(bias, 4, 6, 2)
    assert result.ok(TOL), result


@pytest.mark.parametrize("scale", [None, 1.0, 0.3])
def test_attention_with_scale_and_bias_gradcheck(scale):
    rng = np.random.default_rng(4)
    q, k, v = (rng.standard_normal((2, 3, 4, 5)) for _ in range(3))
    bias = rng.standard_normal((1, 3, 4, 4))
    mask = np.tril(np.ones((4, 4), dtype=bool))
    G = rng.standard_normal((2, 3, 4, 5))

    def loss():
        out, _, _ = scaled_dot_product_attention_forward(q, k, v, mask, scale=scale, bias=bias)
        return float((out * G).sum())

    _, _, cache = scaled_dot_product_attention_forward(q, k, v, mask, scale=scale, bias=bias)
    dq, dk, dv, ds = scaled_dot_product_attention_backward(G, cache, return_dbias=True)
    result = gradcheck(loss, {"q": q, "k": k, "v": v, "bias": bias},
                       {"q": dq, "k": dk, "v": dv, "bias": ds.sum(axis=0, keepdims=True)})
    assert result.ok(TOL), result


class _BiasedAttention(Module):
    """Self- or cross-attention plus a learned score bias, so the checker sees dscore_bias."""

    def __init__(self, cross: bool):
        rng = np.random.default_rng(5)
        self.attn = MultiHeadAttention(8, 2, cross=cross, causal=not cross, bias=False, head_size=3, scale=1.0,
                                       rng=rng, dtype=F64)
        self.score_bias = Parameter(rng.standard_normal((1, 2, 4, 5 if cross else 4)))
        self.cross = cross

    def forward(self, x, memory=None):
        return self.attn(x, memory, score_bias=self.score_bias.data)

    def backward(self, dout):
        dx = self.attn.backward(dout)
        self.score_bias.grad += self.attn.dscore_bias
        return dx


@pytest.mark.parametrize("cross", [False, True])
def test_multihead_attention_narrow_heads_unscaled_with_bias_gradcheck(cross):
    rng = np.random.default_rng(6)
    layer = _BiasedAttention(cross)
    x = rng.standard_normal((2, 4, 8))
    inputs = (x, rng.standard_normal((2, 5, 8))) if cross else (x,)
    assert layer.attn.qkv.weight.shape == (8, 18) if not cross else layer.attn.kv.weight.shape == (8, 12)
    result = gradcheck_module(layer, *inputs)
    assert result.ok(TOL), result


def test_gated_feedforward_and_tanh_gradcheck():
    rng = np.random.default_rng(7)
    ff = FeedForward(6, 10, activation="gelu_tanh", gated=True, bias=False, rng=rng, dtype=F64)
    assert ff.fc_gate.weight.shape == (6, 10)
    result = gradcheck_module(ff, rng.standard_normal((2, 3, 6)))
    assert result.ok(TOL), result
    for name in ("tanh", "silu"):
        result = gradcheck_module(Activation(name), rng.standard_normal((3, 4)))
        assert result.ok(TOL), (name, result)


def _perturb(model, seed):
    rng = np.random.default_rng(seed)
    for _, p in model.named_parameters():
        p.data[...] += rng.standard_normal(p.data.shape) * 0.2


def test_t5_shaped_seq2seq_gradcheck():
    cfg = Seq2SeqConfig(src_vocab_size=11, tgt_vocab_size=11, max_len=8, n_enc_layer=2, n_dec_layer=2, n_head=2,
                        d_model=8, d_ff=12, norm_first=True, activation="relu", positions="relative",
                        share_embeddings=True, pad_id=0, bos_id=0, eos_id=1, norm="rmsnorm", layer_norm_eps=1e-6,
                        bias=False, head_size=3, attn_scale=1.0, relative_buckets=6, relative_max_distance=5,
                        mask_padding=False, head_scale=8 ** -0.5, gated=True)
    model = Seq2Seq(cfg, seed=0, dtype=F64)
    _perturb(model, 1)
    src = np.array([[3, 4, 5, 6, 2], [7, 8, 9, 0, 0]])
    tgt = np.array([[0, 5, 6, 7], [0, 8, 9, 10]])
    result = gradcheck_module(model, src, tgt, max_elements=5)
    assert result.ok(TOL), result
    assert "encoder.rel_bias.weight" in result.per_array and "dec_rel_bias.weight" in result.per_array


def test_bart_shaped_seq2seq_gradcheck():
    cfg = Seq2SeqConfig(src_vocab_size=11, tgt_vocab_size=11, max_len=8, n_enc_layer=1, n_dec_layer=2, n_head=2,
                        d_model=8, d_ff=12, norm_first=False, activation="gelu_exact", positions="learned",
                        share_embeddings=True, pad_id=1, bos_id=2, eos_id=2, position_offset=2,
                        embed_scale=8 ** 0.5, mask_padding=False, logits_bias=True, tie_head=False)
    model = Seq2Seq(cfg, seed=0, dtype=F64)
    _perturb(model, 2)
    src = np.array([[0, 4, 5, 6, 2], [0, 8, 9, 2, 1]])
    tgt = np.array([[2, 5, 6, 7], [2, 8, 9, 10]])
    result = gradcheck_module(model, src, tgt, max_elements=5)
    assert result.ok(TOL), result
    assert {"out_bias", "head"} <= set(result.per_array)


def test_bert_shaped_classifier_gradcheck():
    cfg = EncoderConfig(vocab_size=13, max_len=8, n_layer=2, n_head=2, d_model=8, d_ff=12, norm_first=False,
                        activation="gelu_exact", layer_norm_eps=1e-12, type_vocab_size=2, mask_padding=False)
    model = EncoderClassifier(cfg, 3, pooler=True, seed=0, dtype=F64)
    _perturb(model, 3)
    ids = np.array([[2, 5, 6, 3, 0], [2, 7, 3, 0, 0]])
    result = gradcheck_module(model, ids, ids == 0, max_elements=5)
    assert result.ok(TOL), result
    assert {"encoder.type_emb.weight", "pooler.weight"} <= set(result.per_array)
