"""Positional encodings: attention is blind to order unless we add it.

* Sinusoidal (Vaswani et al., 2017): fixed, no parameters,
      PE[pos, 2i]   = sin(pos / 10000^(2i/d))
      PE[pos, 2i+1] = cos(pos / 10000^(2i/d))
  Each pair of channels is a clock of a different period, so relative
  offsets become linear functions of the encoding.
* Learned (GPT, BERT): a ``(max_len, d)`` table trained like any embedding.
  BART keeps two extra rows at the front (``offset=2``, a leftover of
  fairseq's padding-aware positions): position p reads row p + 2.
* Rotary (RoPE; LLaMA): nothing is added to the tokens; every
  query and key is *rotated*, channel pair by channel pair, by an angle
  proportional to its position (:class:`RotaryEmbedding`), so that a
  query-key score depends only on how far apart the two are.
* ALiBi (BLOOM): no vectors, no parameters; each head subtracts
  ``slope * distance`` from every score (:func:`alibi_bias`).
* Relative (T5): no vectors are added at all. Each head learns one scalar
  per *bucket* of the distance ``key - query``, added to the attention
  scores (:class:`RelativePositionBias`). Near distances get a bucket each,
  far ones share logarithmically wider buckets, and everything beyond
  ``max_distance`` shares the last one.

The sinusoidal and learned modules *add* the encoding to their input:
``forward(x, start)`` returns ``x + P[start:start + T]``. ``start`` lets
incremental decoding (KV cache) place new tokens after the ones already
seen; the learned table also takes a ``[B, T]`` array of positions, one per
row (left-padded batches, where each row counts from its first real token).
"""
from __future__ import annotations

import math

import numpy as np

from ..backend import DEFAULT_DTYPE, array_module, to_device, to_numpy
from .checks import check_array
from .module import Module, Parameter


def sinusoidal_table(max_len: int, d_model: int, dtype=DEFAULT_DTYPE):
    """``-> [max_len, d_model]``: the fixed table (odd ``d_model`` drops the last cosine)."""
    pos = np.arange(max_len, dtype=np.float64)[:, None]  # (L, 1)
    i2 = np.arange(0, d_model, 2, dtype=np.float64)[None, :]  # (1, ceil(d/2)) the "2i"
    angles = pos / np.power(10000.0, i2 / d_model)  # (L, ceil(d/2))
    table = np.empty((max_len, d_model), dtype=np.float64)
    table[:, 0::2] = np.sin(angles)
    table[:, 1::2] = np.cos(angles[:, : d_model // 2])
    return table.astype(dtype)


def _check_positions(name, x, start, max_len, d_model):
    check_array(f"{name} input", x, min_ndim=2, last_dim=d_model)
    T = x.shape[-2]
    if start < 0 or start + T > max_len:
        raise ValueError(
            f"{name}: positions {start}..{start + T - 1} requested, expected positions below max_len={max_len}"
        )
    return T


class SinusoidalPositionalEncoding(Module):
    """Adds the fixed sinusoidal table; its backward pass is the identity."""

    def __init__(self, d_model: int, max_len: int = 4096, *, dtype=DEFAULT_DTYPE):
        self.d_model, self.max_len = d_model, max_len
        self.table = to_device(sinusoidal_table(max_len, d_model, dtype))  # a buffer, not a Parameter

    def forward(self, x, start: int = 0):
        T = _check_positions("SinusoidalPositionalEncoding", x, start, self.max_len, self.d_model)
        return x + self.table[start : start + T].astype(x.dtype, copy=False)  # (..., T, D)

    def backward(self, dout):
        return dout  # y = x + constant


class LearnedPositionalEmbedding(Module):
    """Adds a learned row per position; initialised N(0, std^2).

    ``offset``: position p reads row ``p + offset`` of a ``(max_len + offset, d)``
    table (BART: 2). The first ``offset`` rows are never read and get no gradient.
    """

    def __init__(self, max_len: int, d_model: int, *, rng=None, std: float = 0.02, offset: int = 0,
                 dtype=DEFAULT_DTYPE):
        rng = rng if rng is not None else np.random.default_rng()
        if not isinstance(offset, (int, np.integer)) or offset < 0:
            raise ValueError(f"LearnedPositionalEmbedding offset: got {offset!r}, expected an integer >= 0")
        self.d_model, self.max_len, self.offset = d_model, max_len, int(offset)
        self.weight = Parameter(to_device((rng.standard_normal((max_len + offset, d_model)) * std).astype(dtype)))

    def forward(self, x, start=0):
        """``x [..., T, D] -> x + P``; ``start``: the first position (int) or a ``[B, T]`` array of positions."""
        if not isinstance(start, (int, np.integer)):  # one position per token, e.g. left-padded prompts
            positions = array_module(self.weight.data).asarray(start)
            check_array("LearnedPositionalEmbedding input", x, ndim=3, last_dim=self.d_model)
            if positions.shape != x.shape[:2] or int(positions.min()) < 0 or int(positions.max()) >= self.max_len:
                raise ValueError(f"LearnedPositionalEmbedding positions: got shape {tuple(positions.shape)}, "
                                 f"expected {tuple(x.shape[:2])} with values below max_len={self.max_len}")
            self.cache = positions
            return x + self.weight.data[positions + self.offset]  # (B, T, D) + (B, T, D)
        T = _check_positions("LearnedPositionalEmbedding", x, start, self.max_len, self.d_model)
        self.cache = (start, T)
        first = start + self.offset
        return x + self.weight.data[first : first + T]  # (..., T, D) + (T, D)

    def backward(self, dout):
        """Every sequence in the batch used the same rows, so their gradients add up."""
        if not isinstance(self.cache, tuple):  # positions per token: a lookup, whose gradient is a scatter-add
            from .embedding import embedding_backward

            self.weight.grad += embedding_backward(dout, (self.cache + self.offset, self.weight.data.shape))
            return dout
        start, T = self.cache
        xp = array_module(dout)
        first = start + self.offset
        self.weight.grad[first : first + T] += xp.reshape(dout, (-1, T, self.d_model)).sum(axis=0)
        return dout


# --------------------------------------------------------------------------
# T5's bucketed relative position bias
# --------------------------------------------------------------------------
def relative_position_buckets(relative_position, *, bidirectional: bool, num_buckets: int = 32,
                              max_distance: int = 128):
    """``relative_position [...] int (key - query) -> bucket ids [...]`` in ``[0, num_buckets)``.

    Bidirectional (encoder): half the buckets for keys on the left, half for
    keys on the right. Causal (decoder): keys on the right are never seen,
    so every bucket describes a distance to the left. Within a half, the
    first ``n/2`` distances get one bucket each and the rest share buckets
    whose width grows logarithmically up to ``max_distance``; for n = 16,
    max_distance = 128: distances 0..7 -> 0..7, 8..11 -> 8, ..., >= 128 -> 15.

    The logarithm is taken in float32 and truncated, as T5's reference code
    does, so the bucket boundaries fall on the same distances.
    """
    rp = np.asarray(relative_position, dtype=np.int64)
    buckets = np.zeros(rp.shape, dtype=np.int64)
    n = num_buckets
    if bidirectional:
        n //= 2
        buckets += (rp > 0) * n  # keys to the right use the upper half
        distance = np.abs(rp)
    else:
        distance = -np.minimum(rp, 0)  # keys to the left; the right is masked anyway
    max_exact = n // 2
    is_small = distance < max_exact
    with np.errstate(divide="ignore"):  # log(0) only where is_small picks the exact bucket
        scaled = (np.log(distance.astype(np.float32) / np.float32(max_exact))
                  / np.float32(math.log(max_distance / max_exact)) * np.float32(n - max_exact))
    large = max_exact + np.where(is_small, 0, scaled).astype(np.int64)
    large = np.minimum(large, n - 1)
    return buckets + np.where(is_small, distance, large)


class RelativePositionBias(Module):
    """T5's learned score bias: one scalar per (distance bucket, head).

    ``forward(Tq, Tk, start) -> bias [1, H, Tq, Tk]``, added to every
    attention score of its stack (``start``: the position of the first query,
    for KV-cached decoding). T5 computes it in the first layer and reuses it
    in all others, so ``backward`` receives the *sum* of every layer's
    score gradient. ``weight``: ``(num_buckets, n_heads)``, the layout of
    T5's ``relative_attention_bias.weight``.
    """

    def __init__(self, n_heads: int, *, bidirectional: bool, num_buckets: int = 32, max_distance: int = 128,
                 rng=None, std: float = 0.02, dtype=DEFAULT_DTYPE):
        rng = rng if rng is not None else np.random.default_rng()
        self.n_heads, self.bidirectional = n_heads, bidirectional
        self.num_buckets, self.max_distance = num_buckets, max_distance
        self.weight = Parameter(to_device((rng.standard_normal((num_buckets, n_heads)) * std).astype(dtype)))

    def buckets(self, Tq: int, Tk: int, start: int = 0):
        """``-> [Tq, Tk]`` bucket ids for queries at ``start..start+Tq-1`` and keys at ``0..Tk-1``."""
        rel = np.arange(Tk)[None, :] - (start + np.arange(Tq))[:, None]  # (Tq, Tk) key - query
        return relative_position_buckets(rel, bidirectional=self.bidirectional, num_buckets=self.num_buckets,
                                         max_distance=self.max_distance)

    def forward(self, Tq: int, Tk: int, start: int = 0):
        buckets = self.buckets(Tq, Tk, start)  # (Tq, Tk)
        xp = array_module(self.weight.data)
        buckets = xp.asarray(buckets)
        self.cache = buckets
        return self.weight.data[buckets].transpose(2, 0, 1)[None]  # (Tq, Tk, H) -> (1, H, Tq, Tk)

    def backward(self, dbias):
        """``dbias [..., H, Tq, Tk]``: a lookup's gradient is a scatter-add into the rows it read."""
        from .embedding import embedding_backward

        buckets = self.cache
        H = self.n_heads
        d = dbias.reshape(-1, H, *buckets.shape).sum(axis=0)  # (H, Tq, Tk) summed over the batch
        self.weight.grad += embedding_backward(d.transpose(1, 2, 0), (buckets, self.weight.data.shape))  # (n_b, H)
        return None


# --------------------------------------------------------------------------
# Rotary position embedding (RoPE, Su et al. 2021; LLaMA)
# --------------------------------------------------------------------------
def rope_angles(positions, head_size: int, theta: float = 10000.0):
    """``positions [...] int -> (cos, sin)``, each ``[..., head_size // 2]`` (float64).

    Channel pair ``i`` turns at the frequency ``theta ** (-2i / head_size)``:
    pair 0 turns once per token (period 2 pi tokens), the last pair almost
    not at all (period near ``2 pi theta``). Position ``p`` is the angle
    ``p * freq_i`` in every pair. Computed in float64 and cast by the caller,
    so long positions lose no precision to float32 products.
    """
    if head_size % 2:
        raise ValueError(f"rotary head_size: got {head_size}, expected an even number (channels rotate in pairs)")
    freq = 1.0 / theta ** (np.arange(0, head_size, 2, dtype=np.float64) / head_size)  # (hs/2,)
    angles = np.asarray(positions, dtype=np.float64)[..., None] * freq  # (..., hs/2)
    return np.cos(angles), np.sin(angles)


def rope_forward(x, cos, sin):
    """``x [..., T, hs], cos/sin [..., T, hs/2] -> [..., T, hs]``: rotate each channel pair by its angle.

    The pairs are ``(x[..., i], x[..., i + hs/2])``, the "rotate-half" layout
    of Hugging Face's Llama (the original paper pairs neighbours ``2i, 2i+1``;
    either works if the weights were trained with it). With ``a = x[:hs/2]``,
    ``b = x[hs/2:]``::

        out_a = a cos - b sin
        out_b = a sin + b cos

    Why it encodes *relative* position: a query at ``m`` and a key at ``n``,
    both rotated, have ``<R(m) q, R(n) k> = <q, R(n - m) k>`` (rotations
    compose and ``R(m)^T = R(-m)``), so attention scores depend on the
    offset ``n - m`` only. There are no parameters; ``cos`` and ``sin`` are
    the cache.
    """
    h = x.shape[-1] // 2
    a, b = x[..., :h], x[..., h:]  # (..., T, hs/2) each
    return _concat_halves(a * cos - b * sin, a * sin + b * cos), (cos, sin)  # (..., T, hs)


def rope_backward(dout, cache):
    """``dout [..., T, hs] -> dx``: rotate back by the same angle.

    The forward is ``out = R x`` with ``R`` a block of 2x2 rotations, so
    ``dx = R^T dout`` and ``R^T`` is the rotation by ``-angle``
    (``cos`` unchanged, ``sin`` negated)::

        dx_a =  da cos + db sin
        dx_b = -da sin + db cos
    """
    cos, sin = cache
    h = dout.shape[-1] // 2
    da, db = dout[..., :h], dout[..., h:]  # (..., T, hs/2) each
    return _concat_halves(da * cos + db * sin, db * cos - da * sin)  # (..., T, hs)


def _concat_halves(a, b):
    xp = array_module(a)
    return xp.concatenate([a, b], axis=-1)  # (..., hs/2) + (..., hs/2) -> (..., hs)


class RotaryEmbedding(Module):
    """Rotates queries and keys by their positions (no parameters).

    ``forward(x, positions)``: ``x [B, H, T, hs]``, ``positions`` either an
    int (the first position: tokens sit at ``start .. start + T - 1``, which is
    how a KV cache offsets new tokens) or an int array ``[B, T]`` (a position
    per row, for left-padded batches). Any position works: there is no
    table to run past, so a model with RoPE accepts sequences longer than
    it was trained on (whether it *predicts* well there is another matter).

    One module serves queries and keys alike; the attention layer keeps the
    caches of both calls (see :class:`~minitx.nn.MultiHeadAttention`).
    """

    def __init__(self, head_size: int, theta: float = 10000.0):
        if head_size % 2:
            raise ValueError(f"RotaryEmbedding head_size: got {head_size}, expected an even number")
        if not isinstance(theta, (int, float)) or not theta > 1.0:
            raise ValueError(f"RotaryEmbedding theta: got {theta!r}, expected a number > 1")
        self.head_size, self.theta = int(head_size), float(theta)

    def angles(self, positions, T: int, xp, dtype):
        """``(cos, sin)`` broadcastable to ``[B, 1, T, hs/2]``, on ``xp`` in ``dtype``."""
        if isinstance(positions, (int, np.integer)):
            pos = np.arange(int(positions), int(positions) + T)  # (T,)
        else:
            pos = np.asarray(to_numpy(positions))
            if pos.ndim != 2 or pos.shape[1] != T or pos.dtype.kind not in "iu":
                raise ValueError(f"rotary positions: got {pos.dtype} array of shape {pos.shape}, expected integer "
                                 f"(B, {T}), one position per token")
            pos = pos[:, None, :]  # (B, 1, T) made on the host; broadcast over heads
        cos, sin = rope_angles(pos, self.head_size, self.theta)
        return xp.asarray(cos.astype(dtype)), xp.asarray(sin.astype(dtype))

    def forward(self, x, positions=0):
        cos, sin = self.angles(positions, x.shape[-2], array_module(x), x.dtype)
        out, self.cache = rope_forward(x, cos, sin)
        return out

    def backward(self, dout):
        return rope_backward(dout, self.cache)


# --------------------------------------------------------------------------
# ALiBi: attention with linear biases (Press et al. 2022; BLOOM)
# --------------------------------------------------------------------------
def alibi_slopes(n_heads: int):
    """``-> [n_heads]`` float64: head ``h`` penalises distance with slope ``m_h``.

    For a power of two ``n``, the slopes are the geometric sequence
    ``2^(-8/n), 2^(-16/n), ..., 2^(-8)``: every head sees a different
    "attention span", from nearly flat to sharply local. For other counts
    (BLOOM's rule, from the paper's code): take the ``2^k <= n`` slopes of
    the largest power of two below ``n``, then fill the remaining heads
    with every *other* slope of the ``2^(k+1)`` sequence (its odd powers),
    which interleave between the first ones. ``n = 6``: the 4-head slopes
    ``1/4, 1/16, 1/64, 1/256`` plus the 8-head slopes ``1/2^1, 1/2^3``.
    """
    if not isinstance(n_heads, (int, np.integer)) or n_heads < 1:
        raise ValueError(f"alibi_slopes n_heads: got {n_heads!r}, expected an integer >= 1")
    k = 2 ** int(math.floor(math.log2(n_heads)))  # the largest power of two <= n_heads
    slopes = 2.0 ** (-8.0 / k * np.arange(1, k + 1))  # (k,) 2^(-8/k), 2^(-16/k), ...
    if k < n_heads:
        extra = 2.0 ** (-8.0 / (2 * k) * np.arange(1, 2 * (n_heads - k), 2))  # odd powers of the 2k sequence
        slopes = np.concatenate([slopes, extra])
    return slopes


def alibi_bias(n_heads: int, Tq: int, Tk: int, start: int = 0, dtype=np.float64):
    """``-> [n_heads, Tq, Tk]``: ``-m_h * (query position - key position)``, added to the scores.

    Queries sit at ``start .. start + Tq - 1`` (``start``: tokens already in
    the KV cache), keys at ``0 .. Tk - 1``. A key ``d`` tokens back costs
    ``m_h * d`` in head ``h``: no vectors are added to the tokens, and
    nothing limits how far positions go, which is why ALiBi extrapolates.
    Keys in the future get a positive bias, but the causal mask removes them.

    (BLOOM adds ``m_h * key_position`` instead: the two differ by
    ``m_h * query_position``, the same for every key of a query, and
    softmax does not change when a row is shifted by a constant. The
    relative form keeps the numbers small on long sequences.)
    """
    slopes = alibi_slopes(n_heads)  # (H,)
    distance = (start + np.arange(Tq))[:, None] - np.arange(Tk)[None, :]  # (Tq, Tk) how far back each key is
    return (-slopes[:, None, None] * distance).astype(dtype)  # (H, 1, 1) * (Tq, Tk) -> (H, Tq, Tk)
