"""Attention: every position looks at every other and takes a weighted average.

Scaled dot-product attention (Vaswani et al., 2017), for one head:
    scores  = Q K^T / sqrt(d_k)        how well each query matches each key
    weights = softmax(scores)          a distribution over keys, per query
    out     = weights V                the values, mixed by those weights
Dividing by sqrt(d_k) keeps the scores' variance near 1 whatever the head
size, so the softmax does not saturate at initialisation.

Masks decide which keys a query may see:
* causal: position t may not look at positions after t (language models);
* padding: nobody looks at the padding tokens that make a batch rectangular.
Masked scores are replaced by the most negative finite number, so their
weight is exactly 0; a row whose keys are *all* masked becomes uniform
instead of NaN (its output is meaningless but harmless, and a loss that
ignores padded positions never sees it).

Grouped-query attention (GQA; Ainslie et al. 2023; LLaMA 2/3): ``n_heads``
query heads share ``n_kv_heads`` key/value heads, ``G = n_heads / n_kv_heads``
queries per group (multi-query attention, Shazeer 2019, is ``n_kv_heads = 1``).
Query head ``h`` reads key/value head ``h // G``. The scores are the same
formula; what shrinks is the K/V projection and, above all, the KV cache,
which stores ``n_kv_heads`` heads instead of ``n_heads``: the memory that
limits how many tokens a server can keep for its users.

Mask conventions, deliberately the same as PyTorch's:
* :func:`scaled_dot_product_attention_forward` takes ``mask`` with **True
  where a query may attend** (like ``F.scaled_dot_product_attention``);
* :class:`MultiHeadAttention` takes ``key_padding_mask`` (B, Tk) and
  ``attn_mask`` (Tq, Tk) with **True where attention is blocked** (like
  ``nn.MultiheadAttention``): True marks the padding.
"""
from __future__ import annotations

import math

import numpy as np

from .. import ops
from ..backend import DEFAULT_DTYPE, array_module, kernels_enabled
from .checks import check_array, check_mask, check_positive_int
from .dropout import dropout_backward, dropout_forward
from .linear import Linear
from .module import Module
from .positions import RotaryEmbedding, rope_backward, rope_forward
from .softmax import softmax_forward


# --------------------------------------------------------------------------
# Scaled dot-product attention: the functional pair
# --------------------------------------------------------------------------
def scaled_dot_product_attention_forward(q, k, v, mask=None, dropout_p: float = 0.0, rng=None, training: bool = False,
                                         *, scale: float | None = None, bias=None):
    """``q [..., Tq, hs], k [..., Tk, hs], v [..., Tk, hv] -> out [..., Tq, hv], weights [..., Tq, Tk]``.

    ``mask``: bool, broadcastable to ``[..., Tq, Tk]``, True where a query may
    attend. Returns ``(out, weights, cache)``; ``weights`` is what you plot.

    ``scale``: what the scores are multiplied by, ``1 / sqrt(hs)`` when None.
    T5 uses 1.0 (its initialisation already shrinks the queries instead).
    ``bias``: an additive score bias broadcastable to ``[..., Tq, Tk]`` (T5's
    relative positions); its gradient is the score gradient, returned by the
    backward pass with ``return_dbias=True``.
    """
    xp = array_module(q)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)  # a Python float: no float64 upcast
    q_scaled = q * scale if scale != 1.0 else q  # scaling Q (Tq x hs) is cheaper than scaling the scores (Tq x Tk)
    scores = q_scaled @ k.swapaxes(-1, -2)  # (..., Tq, hs) @ (..., hs, Tk) -> (..., Tq, Tk)
    if bias is not None:
        scores += bias  # (..., Tq, Tk) + (1 or B, H, Tq, Tk), in place: scores is a fresh array
    grad_mask = None  # what the backward pass must zero explicitly (see there)
    if mask is not None:
        mask = xp.asarray(mask)
        xp.copyto(scores, xp.finfo(scores.dtype).min, where=~mask)  # in place: scores is a fresh array
        if not bool(mask.any(axis=-1).all()):  # some query sees no key at all
            grad_mask = mask
    weights, _ = softmax_forward(scores, name="attention scores", overwrite_input=True)  # (..., Tq, Tk)
    dropped, drop_mask = dropout_forward(weights, dropout_p, rng, training)
    out = dropped @ v  # (..., Tq, Tk) @ (..., Tk, hv) -> (..., Tq, hv)
    return out, weights, (q_scaled, k, v, grad_mask, weights, dropped, drop_mask, scale)


def scaled_dot_product_attention_backward(dout, cache, *, return_dbias: bool = False):
    """Return ``(dq, dk, dv)`` (and ``dS``, the score gradient, with ``return_dbias``), running the forward
    steps in reverse:

        out = P' V            ->  dV  = P'^T dout,   dP' = dout V^T
        P'  = dropout(P)      ->  dP  = dP' * drop_mask
        P   = softmax(S)      ->  dS  = P * (dP - rowsum(dP * P))
        S   = (Q scale) K^T   ->  dQ  = dS K * scale,  dK = dS^T (Q scale)

    (FlashAttention computes the same row sums as rowsum(dout * out), which
    needs no Tq x Tk array; see tutorial 03. Here P is at hand, and summing
    dP * P keeps dS exactly 0 where a row has a single visible key.)

    A masked score is a constant, not a function of Q and K, so its dS is 0.
    Where a row keeps some keys, P = 0 there already zeroes it; a row with
    every key masked has uniform P, so only then is the mask applied here.
    An additive bias enters S with coefficient 1, so dbias = dS (summed by
    the caller over whatever axes the bias was broadcast along).
    """
    q_scaled, k, v, grad_mask, weights, dropped, drop_mask, scale = cache
    xp = array_module(dout)
    dv = dropped.swapaxes(-1, -2) @ dout  # (..., Tk, Tq) @ (..., Tq, hv) -> (..., Tk, hv)
    dscores = dropout_backward(dout @ v.swapaxes(-1, -2), drop_mask)  # dP: (..., Tq, Tk), a fresh array
    D = xp.einsum("...ij,...ij->...i", dscores, weights)  # (..., Tq) rowsum(dP * P), no temporary
    dscores -= D[..., None]
    dscores *= weights  # dS = P * (dP - D), in place
    if grad_mask is not None:
        dscores = xp.where(grad_mask, dscores, 0.0)
    dq = dscores @ k  # (..., Tq, Tk) @ (..., Tk, hs) -> (..., Tq, hs)
    dq *= scale
    dk = dscores.swapaxes(-1, -2) @ q_scaled  # (..., Tk, Tq) @ (..., Tq, hs) -> (..., Tk, hs)
    if return_dbias:
        return dq, dk, dv, dscores
    return dq, dk, dv


def causal_mask(Tq: int, Tk: int | None = None, start: int = 0, xp=np):
    """``-> [Tq, Tk]`` bool, True where query ``start + i`` may see key ``j`` (j <= start + i)."""
    Tk = start + Tq if Tk is None else Tk
    return xp.arange(Tk)[None, :] <= (start + xp.arange(Tq))[:, None]


# --------------------------------------------------------------------------
# KV cache: keys and values of the tokens already seen
# --------------------------------------------------------------------------
class KVCache:
    """Per-layer store of past keys and values for incremental decoding.

    Without it, generating token t+1 recomputes keys and values for all t
    previous tokens; with it, each step computes them for the one new token
    and appends. Buffers are allocated once at ``max_len`` so appending is a
    copy into place, not a reallocation. With grouped-query attention the
    keys and values have ``n_kv_heads`` heads, and so does the cache; with
    rotary attention the keys are stored already rotated.
    """

    def __init__(self, max_len: int):
        check_positive_int("KVCache max_len", max_len)
        self.max_len = max_len
        self.k = self.v = None
        self.length = 0

    def append(self, k, v):
        """``k, v: [B, H, T_new, hs]``; returns all keys and values so far, ``[B, H, length, hs]``."""
        B, H, T, hs = k.shape
        if self.k is None:
            xp = array_module(k)
            self.k = xp.empty((B, H, self.max_len, hs), dtype=k.dtype)
            self.v = xp.empty((B, H, self.max_len, v.shape[-1]), dtype=v.dtype)
        if self.length + T > self.max_len:
            raise ValueError(f"KVCache: {self.length + T} positions requested, expected at most max_len={self.max_len}")
        self.k[:, :, self.length : self.length + T] = k
        self.v[:, :, self.length : self.length + T] = v
        self.length += T
        return self.k[:, :, : self.length], self.v[:, :, : self.length]

    @property
    def nbytes(self) -> int:
        """Bytes of the keys and values held for the ``length`` tokens cached so far (0 when empty).

        Per token and layer: ``2 * batch * n_kv_heads * head_size * itemsize``;
        with grouped-query attention only the KV heads are stored, which is
        the saving GQA exists for. (The buffers are allocated for ``max_len``
        tokens at once: :attr:`allocated_nbytes`.)
        """
        if self.k is None:
            return 0
        B, H, _, hs = self.k.shape
        return int(B * H * self.length * (hs + self.v.shape[-1]) * self.k.dtype.itemsize)

    @property
    def allocated_nbytes(self) -> int:
        """Bytes of the two buffers, sized for ``max_len`` tokens (0 before the first append)."""
        return 0 if self.k is None else int(self.k.nbytes + self.v.nbytes)


# --------------------------------------------------------------------------
# Multi-head attention
# --------------------------------------------------------------------------
def split_heads(x, n_heads: int):
    """``[B, T, H*hs] -> [B, H, T, hs]``: each head attends in its own subspace."""
    B, T, D = x.shape
    return x.reshape(B, T, n_heads, D // n_heads).transpose(0, 2, 1, 3)


def merge_heads(x):
    """``[B, H, T, hs] -> [B, T, H*hs]``: the inverse of :func:`split_heads`."""
    B, H, T, hs = x.shape
    return x.transpose(0, 2, 1, 3).reshape(B, T, H * hs)


class MultiHeadAttention(Module):
    """Multi-head attention, self or cross.

    Self-attention projects ``x`` to queries, keys and values with one fused
    ``qkv`` Linear ``(d_model, 3 d_model)`` (one matmul instead of three).
    Cross-attention (decoder looking at the encoder's output, ``memory``)
    projects queries from ``x`` (``q``) and keys/values from ``memory`` (``kv``).
    ``proj`` maps the concatenated heads back to ``d_model``.

    After ``forward`` the attention weights ``[B, H, Tq, Tk]`` are kept in
    ``self.attn_weights`` for plotting (and returned with ``return_weights=True``).

    On the ``kernels`` backend (GPU arrays) the causal and key-padding cases
    run minitx's flash-attention kernels, which never store the weights:
    ``attn_weights`` is then ``None`` unless ``return_weights=True`` (which
    takes the CuPy path). Dropout on the weights or a dense ``attn_mask`` also
    take the CuPy path; :mod:`minitx.ops` lists the cases.

    **Grouped-query attention**: ``n_kv_heads`` (default ``n_heads``) must
    divide ``n_heads``. ``qkv`` is then ``(d_model, (n_heads + 2 n_kv_heads) hs)``,
    laid out ``[q | k | v]`` as before, and the cache stores ``n_kv_heads``
    heads. The ``G`` query heads of a group are *folded into the query axis*,
    ``(B, H, Tq, hs) -> (B, H_kv, G Tq, hs)``, so one ordinary attention call
    serves the whole group against its single K/V head: no copy of K or V is
    ever repeated ``G`` times, and the keys' gradient comes out already
    summed over the group's queries.

    **Rotary positions**: with ``rope_theta`` set, queries and keys are
    rotated by their positions (:func:`~minitx.nn.positions.rope_forward`)
    after the projection and before the keys enter the cache; ``forward``
    takes ``positions`` (None: the cache length onwards).

    **Head mask** (for interpretability, e.g. ablating induction heads):
    ``head_mask`` is ``None`` (the default: nothing changes) or an array of
    ``n_heads`` numbers multiplying each head's output before ``proj``; 0
    removes head ``h`` from the layer's output exactly (its contribution to
    ``proj`` is ``y_h @ W_proj[h rows]``, which is then 0). The backward pass
    multiplies the heads' gradients by the same mask, so the pair stays a
    correct forward/backward. :func:`minitx.interpret.ablate_heads` sets it.
    """

    def __init__(self, d_model: int, n_heads: int, *, cross: bool = False, causal: bool = False, bias: bool = True,
                 dropout: float = 0.0, head_size: int | None = None, scale: float | None = None,
                 n_kv_heads: int | None = None, rope_theta: float | None = None, rng=None, dtype=DEFAULT_DTYPE):
        check_positive_int("d_model", d_model)
        check_positive_int("n_heads", n_heads)
        n_kv_heads = n_heads if n_kv_heads is None else n_kv_heads
        check_positive_int("n_kv_heads", n_kv_heads)
        if n_heads % n_kv_heads:
            raise ValueError(f"n_kv_heads={n_kv_heads} with n_heads={n_heads}: expected n_kv_heads dividing n_heads")
        if head_size is None and d_model % n_heads:
            raise ValueError(f"d_model={d_model} with n_heads={n_heads}: expected d_model divisible by n_heads")
        if head_size is not None:
            check_positive_int("head_size", head_size)
        if cross and rope_theta is not None:
            raise ValueError("MultiHeadAttention: rope_theta with cross=True; expected rotary positions on "
                             "self-attention only (queries and keys from one sequence)")
        if cross and causal:
            raise ValueError("MultiHeadAttention: causal=True with cross=True; expected causal masks on self-attention only")
        rng = rng if rng is not None else np.random.default_rng()
        # head_size * n_heads may differ from d_model (T5's d_kv): the heads live in
        # an inner width, and ``proj`` maps it back to d_model.
        self.d_model, self.n_heads, self.n_kv_heads = d_model, n_heads, int(n_kv_heads)
        self.head_size = d_model // n_heads if head_size is None else int(head_size)
        self.scale = scale  # None: 1/sqrt(head_size); T5: 1.0
        inner = self.n_heads * self.head_size
        kv_inner = self.n_kv_heads * self.head_size  # = inner unless grouped-query
        self.cross, self.causal, self.dropout_p, self.rng = cross, causal, float(dropout), rng
        self.rotary = None if rope_theta is None else RotaryEmbedding(self.head_size, rope_theta)
        if cross:
            self.q = Linear(d_model, inner, bias, rng=rng, dtype=dtype)
            self.kv = Linear(d_model, 2 * kv_inner, bias, rng=rng, dtype=dtype)
        else:
            self.qkv = Linear(d_model, inner + 2 * kv_inner, bias, rng=rng, dtype=dtype)
        self.proj = Linear(inner, d_model, bias, rng=rng, dtype=dtype)
        self.attn_weights = None
        self.dscore_bias = None  # after backward: dL/d(score_bias), when forward was given one
        self.head_mask = None  # None, or (n_heads,) multipliers of each head's output (see the class docs)
        self._mask_used = None  # the head mask the last forward applied, for its backward

    def _check_inputs(self, x, memory, key_padding_mask, attn_mask, kv_cache):
        check_array("attention input x", x, ndim=3, last_dim=self.d_model)
        if self.cross:
            if memory is None:
                raise ValueError("cross-attention memory: got None, expected the encoder output [B, Tk, d_model]")
            check_array("cross-attention memory", memory, ndim=3, last_dim=self.d_model)
            if memory.shape[0] != x.shape[0]:
                raise ValueError(f"cross-attention memory: got batch {memory.shape[0]}, expected {x.shape[0]} (as x)")
        elif memory is not None:
            raise ValueError("self-attention memory: got an array, expected None (use cross=True for cross-attention)")
        B, Tq = x.shape[:2]
        past = kv_cache.length if kv_cache is not None else 0
        Tk = memory.shape[1] if self.cross else past + Tq
        if key_padding_mask is not None:
            check_mask("key_padding_mask", key_padding_mask, (B, Tk))
        if attn_mask is not None:
            check_mask("attn_mask", attn_mask, (Tq, Tk))
        return B, Tq, Tk, past

    def forward(self, x, memory=None, *, key_padding_mask=None, attn_mask=None, kv_cache: KVCache | None = None,
                return_weights: bool = False, score_bias=None, positions=None):
        """``x [B, Tq, D]`` (and ``memory [B, Tk, D]`` for cross) ``-> [B, Tq, D]``.

        ``key_padding_mask [B, Tk]`` and ``attn_mask [Tq, Tk]``: bool, True = blocked.
        ``kv_cache``: for incremental decoding (self-attention, inference only).
        ``score_bias``: added to the scores, broadcastable to ``[B, H, Tq, Tk]``
        (T5's relative positions); :meth:`backward` leaves its gradient, summed
        to the bias's own shape, in ``self.dscore_bias``.
        ``positions``: where the new tokens sit, for rotary attention: None
        (``past .. past + Tq - 1``, past = the cache length) or ``[B, Tq]`` ints.
        """
        B, Tq, Tk, past = self._check_inputs(x, memory, key_padding_mask, attn_mask, kv_cache)
        xp = array_module(x)
        H, Hkv, hs = self.n_heads, self.n_kv_heads, self.head_size
        if self.cross:
            q = split_heads(self.q(x), H)  # (B, H, Tq, hs)
            kv = self.kv(memory).reshape(B, Tk, 2, Hkv, hs)  # (B, Tk, 2, Hkv, hs)
            k, v = kv.transpose(2, 0, 3, 1, 4)  # 2 x (B, Hkv, Tk, hs)
        else:
            qkv = self.qkv(x)  # (B, Tq, (H + 2 Hkv) hs), laid out [q | k | v]
            q = split_heads(qkv[..., : H * hs], H)  # (B, H, Tq, hs)
            k = split_heads(qkv[..., H * hs : (H + Hkv) * hs], Hkv)  # (B, Hkv, Tq, hs)
            v = split_heads(qkv[..., (H + Hkv) * hs :], Hkv)  # (B, Hkv, Tq, hs)
        self.rope_cache = None
        if self.rotary is not None:  # rotate by position before the keys are cached: cached keys stay rotated
            cos, sin = self.rotary.angles(past if positions is None else positions, Tq, xp, q.dtype)
            q, self.rope_cache = rope_forward(q, cos, sin)  # (B, H, Tq, hs)
            k, _ = rope_forward(k, cos, sin)  # (B, Hkv, Tq, hs)
        if kv_cache is not None:
            k, v = kv_cache.append(k, v)  # (B, Hkv, past + Tq, hs)

        self.score_bias_shape = None if score_bias is None else tuple(score_bias.shape)
        G = H // Hkv  # query heads per key/value head
        plain = score_bias is None and self.scale is None and hs * H == self.d_model and G == 1
        if plain and kernels_enabled(q) and ops.attention_supported(
                q, k, v, dropout_active=self.training and self.dropout_p > 0, attn_mask=attn_mask,
                return_weights=return_weights):  # "kernels" backend: flash attention, masks as flags
            y, self.sdpa_cache = ops.attention_forward(q, k, v, causal=self.causal,
                                                       key_padding_mask=key_padding_mask)  # (B, H, Tq, hs)
            self.attn_weights = None  # flash attention never forms (B, H, Tq, Tk)
            return self.proj(merge_heads(self._mask_heads(y)))  # (B, Tq, D)

        allowed = None  # bool, broadcastable to (B, H, Tq, Tk); True = may attend
        if self.causal and Tq > 1:  # one new query (KV-cached decoding) may see every key
            allowed = causal_mask(Tq, Tk, start=past, xp=xp)  # (Tq, Tk)
        if attn_mask is not None:
            allowed = ~attn_mask if allowed is None else allowed & ~attn_mask
        if key_padding_mask is not None:
            keep = ~key_padding_mask[:, None, None, :]  # (B, 1, 1, Tk)
            allowed = keep if allowed is None else allowed & keep

        if G > 1:  # fold each group's G query heads into its query axis (see the class docs)
            q = q.reshape(B, Hkv, G * Tq, hs)  # (B, H, Tq, hs) -> (B, Hkv, G Tq, hs)
            allowed = None if allowed is None else _fold_rows(allowed, G, Tq, xp)  # (..., G Tq | 1, Tk)
            score_bias = None if score_bias is None else _fold_bias(score_bias, H, Hkv, Tq, Tk, xp)
        y, weights, self.sdpa_cache = scaled_dot_product_attention_forward(
            q, k, v, allowed, self.dropout_p, self.rng, self.training, scale=self.scale, bias=score_bias
        )  # (B, Hkv, G Tq, hs), (B, Hkv, G Tq, Tk)
        if G > 1:  # unfold: back to one row of heads
            y = y.reshape(B, H, Tq, hs)  # (B, H, Tq, hs)
            weights = weights.reshape(B, H, Tq, Tk)  # (B, H, Tq, Tk)
        self.attn_weights = weights
        out = self.proj(merge_heads(self._mask_heads(y)))  # (B, Tq, D)
        return (out, weights) if return_weights else out

    def _mask_heads(self, y):
        """``y [B, H, Tq, hs]`` times the head mask (unchanged, and no copy, when there is none)."""
        self._mask_used = None
        if self.head_mask is None:
            return y
        xp = array_module(y)
        mask = xp.asarray(self.head_mask, dtype=y.dtype)
        if mask.shape != (self.n_heads,):
            raise ValueError(f"head_mask: got shape {tuple(mask.shape)}, expected ({self.n_heads},), one number "
                             "per head")
        self._mask_used = mask
        return y * mask[:, None, None]  # (B, H, Tq, hs) * (H, 1, 1)

    def backward(self, dout):
        """``dout [B, Tq, D] -> dx`` (self), or ``(dx, dmemory)`` (cross)."""
        H, Hkv = self.n_heads, self.n_kv_heads
        dy = split_heads(self.proj.backward(dout), H)  # (B, H, Tq, hs)
        if self._mask_used is not None:
            dy = dy * self._mask_used[:, None, None]  # y_masked = y * m  ->  dy = dy_masked * m
        B, _, Tq, hs = dy.shape
        G = H // Hkv
        if G > 1:  # the forward folded each group into the query axis; so does its gradient
            dy = dy.reshape(B, Hkv, G * Tq, hs)  # (B, Hkv, G Tq, hs)
        if isinstance(self.sdpa_cache, ops.AttentionKernelCache):  # the forward ran flash attention
            dq, dk, dv = ops.attention_backward(dy, self.sdpa_cache)  # (B, H, T, hs) each
        elif self.score_bias_shape is not None:
            dq, dk, dv, dscores = scaled_dot_product_attention_backward(dy, self.sdpa_cache, return_dbias=True)
            if G > 1:
                dscores = dscores.reshape(B, H, Tq, -1)  # (B, Hkv, G Tq, Tk) -> (B, H, Tq, Tk)
            shape = self.score_bias_shape  # sum dS over the axes the bias was broadcast along
            lead = dscores.ndim - len(shape)
            axes = tuple(range(lead)) + tuple(lead + i for i, n in enumerate(shape) if n == 1 and dscores.shape[lead + i] != 1)
            self.dscore_bias = dscores.sum(axis=axes).reshape(shape) if axes else dscores
        else:
            dq, dk, dv = scaled_dot_product_attention_backward(dy, self.sdpa_cache)
        # dk, dv: (B, Hkv, Tk, hs), already summed over the G query heads that shared each key head
        dq = dq.reshape(B, H, Tq, hs)  # unfold (no-op when G = 1)
        if self.rope_cache is not None:  # undo the rotations: R^T, the rotation by minus the angle
            dq, dk = rope_backward(dq, self.rope_cache), rope_backward(dk, self.rope_cache)
        xp = array_module(dq)
        if self.cross:
            dx = self.q.backward(merge_heads(dq))  # (B, Tq, D)
            dkv = xp.stack([dk, dv], axis=2)  # (B, Hkv, 2, Tk, hs)
            _, _, _, Tk, hs = dkv.shape
            dmemory = self.kv.backward(dkv.transpose(0, 3, 2, 1, 4).reshape(B, Tk, 2 * Hkv * hs))  # (B, Tk, D)
            return dx, dmemory
        if G == 1:
            dqkv = xp.stack([dq, dk, dv], axis=2)  # (B, H, 3, T, hs)
            return self.qkv.backward(dqkv.transpose(0, 3, 2, 1, 4).reshape(B, Tq, 3 * H * hs))  # (B, T, D)
        dqkv = xp.concatenate([merge_heads(dq), merge_heads(dk), merge_heads(dv)], axis=-1)  # (B, T, (H + 2 Hkv) hs)
        return self.qkv.backward(dqkv)  # (B, T, D)


def _fold_rows(allowed, G: int, Tq: int, xp):
    """A mask ``[..., Tq | 1, Tk]`` for the folded queries ``[..., G Tq, Tk]``: row ``g Tq + i`` is row ``i``."""
    if allowed.shape[-2] == 1:
        return allowed  # one row for every query: broadcasts as it is
    return xp.tile(allowed, (1,) * (allowed.ndim - 2) + (G, 1))  # (..., G Tq, Tk)


def _fold_bias(bias, H: int, Hkv: int, Tq: int, Tk: int, xp):
    """A score bias broadcastable to ``[B, H, Tq, Tk]``, as ``[B | 1, Hkv, G Tq, Tk]`` for the folded queries."""
    b = bias.reshape((1,) * (4 - bias.ndim) + tuple(bias.shape))  # (b, h, tq, Tk | 1), ndim 4
    b = xp.broadcast_to(b, (b.shape[0], H, Tq, Tk))  # (b, H, Tq, Tk)
    return b.reshape(b.shape[0], Hkv, (H // Hkv) * Tq, Tk)  # (b, Hkv, G Tq, Tk): head h = kv * G + g
