"""Positional encodings: attention is blind to order unless we add it.

* Sinusoidal (Vaswani et al., 2017): fixed, no parameters,
      PE[pos, 2i]   = sin(pos / 10000^(2i/d))
      PE[pos, 2i+1] = cos(pos / 10000^(2i/d))
  Each pair of channels is a clock of a different period, so relative
  offsets become linear functions of the encoding.
* Learned (GPT, BERT): a ``(max_len, d)`` table trained like any embedding.

Both modules *add* the encoding to their input: ``forward(x, start)`` returns
``x + P[start:start + T]``. ``start`` lets incremental decoding (KV cache)
place new tokens after the ones already seen.
"""
from __future__ import annotations

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
    """Adds a learned row per position; initialised N(0, std^2)."""

    def __init__(self, max_len: int, d_model: int, *, rng=None, std: float = 0.02, dtype=DEFAULT_DTYPE):
        rng = rng if rng is not None else np.random.default_rng()
        self.d_model, self.max_len = d_model, max_len
        self.weight = Parameter(to_device((rng.standard_normal((max_len, d_model)) * std).astype(dtype)))

    def forward(self, x, start: int = 0):
        T = _check_positions("LearnedPositionalEmbedding", x, start, self.max_len, self.d_model)
        self.cache = (start, T)
        return x + self.weight.data[start : start + T]  # (..., T, D) + (T, D)

    def backward(self, dout):
        """Every sequence in the batch used the same rows, so their gradients add up."""
        start, T = self.cache
        xp = array_module(dout)
        self.weight.grad[start : start + T] += xp.reshape(dout, (-1, T, self.d_model)).sum(axis=0)
        return dout
