"""Positional encodings: attention is blind to order unless we add it.

* Sinusoidal (Vaswani et al., 2017): fixed, no parameters,
      PE[pos, 2i]   = sin(pos / 10000^(2i/d))
      PE[pos, 2i+1] = cos(pos / 10000^(2i/d))
  Each pair of channels is a clock of a different period, so relative
  offsets become linear functions of the encoding.
* Learned (GPT, BERT): a ``(max_len, d)`` table trained like any embedding.
  BART keeps two extra rows at the front (``offset=2``, a leftover of
  fairseq's padding-aware positions): position p reads row p + 2.
* Relative (T5): no vectors are added at all. Each head learns one scalar
  per *bucket* of the distance ``key - query``, added to the attention
  scores (:class:`RelativePositionBias`). Near distances get a bucket each,
  far ones share logarithmically wider buckets, and everything beyond
  ``max_distance`` shares the last one.

Both modules *add* the encoding to their input: ``forward(x, start)`` returns
``x + P[start:start + T]``. ``start`` lets incremental decoding (KV cache)
place new tokens after the ones already seen.
"""
from __future__ import annotations

import math

import numpy as np

from ..backend import DEFAULT_DTYPE, array_module, to_device
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

    def forward(self, x, start: int = 0):
        T = _check_positions("LearnedPositionalEmbedding", x, start, self.max_len, self.d_model)
        self.cache = (start, T)
        first = start + self.offset
        return x + self.weight.data[first : first + T]  # (..., T, D) + (T, D)

    def backward(self, dout):
        """Every sequence in the batch used the same rows, so their gradients add up."""
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
