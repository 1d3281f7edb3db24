"""Transformer blocks: attention and a feed-forward network, each wrapped in a
residual connection and a LayerNorm.

Two placements of the LayerNorm are in use:

    post-norm (original Transformer, BERT):  x = LN(x + sublayer(x))
    pre-norm  (GPT-2 and most models since): x = x + sublayer(LN(x))

Pre-norm keeps an untouched residual path from the input to the output, so
gradients reach early layers without passing through any normalisation;
it trains stably without careful warmup. Both are here (``norm_first``).

The backward pass of a residual ``y = x + f(x)`` is ``dx = dy + f'(x)^T dy``:
the gradient flows both around and through the sublayer, which is exactly why
deep residual networks train.

Options the pretrained families need (defaults are the classic blocks):
``norm="rmsnorm"`` (T5's scale-only norm), ``head_size`` (T5's ``d_kv``,
when heads times head size is not d_model), ``attn_scale`` (T5: 1.0,
unscaled scores), ``gated`` (T5 v1.1's gated MLP), and a ``score_bias``
argument to ``forward`` (T5's relative positions, shared by every layer).
For the LLaMA family (decoder blocks): ``n_kv_heads`` (grouped-query
attention), ``rope_theta`` (rotary positions, with ``positions`` given to
``forward``) and ``ffn_bias`` (the MLP's biases apart from attention's).
A SwiGLU block is ``gated=True, activation="silu"``.

Sublayer names (``norm_attn``, ``attn``, ``norm_cross``, ``cross_attn``,
``norm_ff``, ``ff``) become parameter names such as
``blocks.0.attn.qkv.weight``.
"""
from __future__ import annotations

import numpy as np

from ..backend import DEFAULT_DTYPE
from .attention import MultiHeadAttention
from .dropout import Dropout
from .feedforward import FeedForward
from .module import Module
from .norm import make_norm


def residual_forward(norm_first: bool, norm, drop, x, sublayer):
    """One residual sublayer: ``x + drop(f(LN(x)))`` (pre-norm) or ``LN(x + drop(f(x)))`` (post-norm)."""
    if norm_first:
        return x + drop(sublayer(norm(x)))
    return norm(x + drop(sublayer(x)))


def residual_backward(norm_first: bool, norm, drop, dy, sublayer_backward):
    """The mirror of :func:`residual_forward`: the gradient goes around *and* through."""
    if norm_first:
        return dy + norm.backward(sublayer_backward(drop.backward(dy)))
    ds = norm.backward(dy)  # gradient at the sum s = x + f(x)
    return ds + sublayer_backward(drop.backward(ds))


class EncoderBlock(Module):
    """Bidirectional self-attention + feed-forward (BERT, the Transformer's encoder)."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int | None = None, *, dropout: float = 0.0,
                 norm_first: bool = True, activation: str = "gelu", bias: bool = True, eps: float = 1e-5,
                 norm: str = "layernorm", head_size: int | None = None, attn_scale: float | None = None,
                 gated: bool = False, rng=None, dtype=DEFAULT_DTYPE):
        rng = rng if rng is not None else np.random.default_rng()
        self.norm_first = norm_first
        self.norm_attn = make_norm(norm, d_model, eps, dtype=dtype)
        self.attn = MultiHeadAttention(d_model, n_heads, bias=bias, dropout=dropout, head_size=head_size,
                                       scale=attn_scale, rng=rng, dtype=dtype)
        self.drop_attn = Dropout(dropout, rng=rng)
        self.norm_ff = make_norm(norm, d_model, eps, dtype=dtype)
        self.ff = FeedForward(d_model, d_ff, activation=activation, dropout=dropout, bias=bias, gated=gated, rng=rng,
                              dtype=dtype)
        self.drop_ff = Dropout(dropout, rng=rng)

    def forward(self, x, *, key_padding_mask=None, attn_mask=None, score_bias=None):
        """``x [B, T, D] -> [B, T, D]``; masks as in :class:`MultiHeadAttention` (True = blocked)."""
        nf = self.norm_first
        x = residual_forward(nf, self.norm_attn, self.drop_attn, x,
                             lambda h: self.attn(h, key_padding_mask=key_padding_mask, attn_mask=attn_mask,
                                                 score_bias=score_bias))
        return residual_forward(nf, self.norm_ff, self.drop_ff, x, self.ff)

    def backward(self, dout):
        nf = self.norm_first
        dx = residual_backward(nf, self.norm_ff, self.drop_ff, dout, self.ff.backward)
        return residual_backward(nf, self.norm_attn, self.drop_attn, dx, self.attn.backward)


class DecoderBlock(Module):
    """Causal self-attention, optional cross-attention to ``memory``, feed-forward.

    With ``cross_attention=False`` this is a GPT block (decoder-only); with
    it, the Transformer's decoder block (encoder-decoder models).
    """

    def __init__(self, d_model: int, n_heads: int, d_ff: int | None = None, *, cross_attention: bool = True,
                 dropout: float = 0.0, norm_first: bool = True, activation: str = "gelu", bias: bool = True,
                 eps: float = 1e-5, norm: str = "layernorm", head_size: int | None = None,
                 attn_scale: float | None = None, gated: bool = False, n_kv_heads: int | None = None,
                 rope_theta: float | None = None, ffn_bias: bool | None = None, rng=None, dtype=DEFAULT_DTYPE):
        rng = rng if rng is not None else np.random.default_rng()
        self.norm_first, self.has_cross = norm_first, cross_attention
        self.norm_attn = make_norm(norm, d_model, eps, dtype=dtype)
        self.attn = MultiHeadAttention(d_model, n_heads, causal=True, bias=bias, dropout=dropout, head_size=head_size,
                                       scale=attn_scale, n_kv_heads=n_kv_heads, rope_theta=rope_theta, rng=rng,
                                       dtype=dtype)
        self.drop_attn = Dropout(dropout, rng=rng)
        if cross_attention:
            self.norm_cross = make_norm(norm, d_model, eps, dtype=dtype)
            self.cross_attn = MultiHeadAttention(d_model, n_heads, cross=True, bias=bias, dropout=dropout,
                                                 head_size=head_size, scale=attn_scale, rng=rng, dtype=dtype)
            self.drop_cross = Dropout(dropout, rng=rng)
        self.norm_ff = make_norm(norm, d_model, eps, dtype=dtype)
        self.ff = FeedForward(d_model, d_ff, activation=activation, dropout=dropout,
                              bias=bias if ffn_bias is None else ffn_bias, gated=gated, rng=rng, dtype=dtype)
        self.drop_ff = Dropout(dropout, rng=rng)

    def forward(self, x, memory=None, *, key_padding_mask=None, memory_key_padding_mask=None, kv_cache=None,
                score_bias=None, positions=None):
        """``x [B, T, D]`` (+ ``memory [B, S, D]``) ``-> [B, T, D]``.

        ``key_padding_mask [B, T]`` masks padded targets in self-attention,
        ``memory_key_padding_mask [B, S]`` padded sources in cross-attention
        (True = padding). ``kv_cache`` enables incremental decoding.
        ``score_bias`` is added to the self-attention scores (T5, ALiBi);
        ``positions`` (``[B, T]`` ints) place the tokens for rotary attention.
        """
        if self.has_cross and memory is None:
            raise ValueError("DecoderBlock memory: got None, expected the encoder output [B, S, d_model]")
        if not self.has_cross and memory is not None:
            raise ValueError("DecoderBlock memory: got an array, expected None (block built with cross_attention=False)")
        nf = self.norm_first
        x = residual_forward(nf, self.norm_attn, self.drop_attn, x,
                             lambda h: self.attn(h, key_padding_mask=key_padding_mask, kv_cache=kv_cache,
                                                 score_bias=score_bias, positions=positions))
        if self.has_cross:
            x = residual_forward(nf, self.norm_cross, self.drop_cross, x,
                                 lambda h: self.cross_attn(h, memory, key_padding_mask=memory_key_padding_mask))
        return residual_forward(nf, self.norm_ff, self.drop_ff, x, self.ff)

    def backward(self, dout):
        """``dout -> dx`` (no cross-attention) or ``(dx, dmemory)``."""
        nf = self.norm_first
        dx = residual_backward(nf, self.norm_ff, self.drop_ff, dout, self.ff.backward)
        dmemory = None
        if self.has_cross:
            def cross_back(d):
                nonlocal dmemory
                d_x, dmemory = self.cross_attn.backward(d)
                return d_x

            dx = residual_backward(nf, self.norm_cross, self.drop_cross, dx, cross_back)
        dx = residual_backward(nf, self.norm_attn, self.drop_attn, dx, self.attn.backward)
        return (dx, dmemory) if self.has_cross else dx
