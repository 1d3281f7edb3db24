"""Embedding: a lookup table from token ids to vectors.

``out[b, t] = W[ids[b, t]]``. It is the same as multiplying a one-hot row
vector by ``W``, which is why its gradient is a scatter-add: every position
that looked up row ``i`` adds its upstream gradient into ``dW[i]``.
"""
from __future__ import annotations

import numpy as np

from ..backend import DEFAULT_DTYPE, array_module, to_device
from .checks import check_array
from .module import Module, Parameter


def embedding_forward(ids, W):
    """``[...] int, [V, D] -> [..., D]``; caches the ids."""
    return W[ids], (ids, W.shape)  # (..., D)


def embedding_backward(dout, cache):
    """dL/dW[i] = sum of dL/dout[n] over the positions n where ids[n] == i.

    A plain ``dW[ids] += dout`` would be wrong: when an id appears twice,
    fancy-index assignment keeps only one of the two additions. On the CPU
    we sort the positions by id and add up each run of equal ids with
    ``add.reduceat`` (one vectorised pass); elsewhere ``add.at``, the
    unbuffered scatter-add, does the same job (on NumPy it is several times
    slower, on CuPy it is an atomic add).
    """
    ids, w_shape = cache
    xp = array_module(dout)
    dW = xp.zeros(w_shape, dtype=dout.dtype)  # (V, D)
    flat = ids.reshape(-1).astype(xp.int64, copy=False)  # (N,)
    rows = dout.reshape(-1, w_shape[1])  # (N, D)
    if xp is not np:
        xp.add.at(dW, flat, rows)
        return dW
    order = np.argsort(flat, kind="stable")  # positions grouped by id, in a fixed order
    sorted_ids = flat[order]  # (N,) e.g. [2, 2, 5, 7, 7, 7]
    starts = np.flatnonzero(np.diff(sorted_ids, prepend=-1))  # first position of each run: [0, 2, 3]
    dW[sorted_ids[starts]] = np.add.reduceat(rows[order], starts, axis=0)  # one summed row per distinct id
    return dW


class Embedding(Module):
    """A ``(num_embeddings, embedding_dim)`` table, initialised N(0, 1) like PyTorch."""

    def __init__(self, num_embeddings: int, embedding_dim: int, *, rng=None, std: float = 1.0, dtype=DEFAULT_DTYPE):
        rng = rng if rng is not None else np.random.default_rng()
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.weight = Parameter(to_device((rng.standard_normal((num_embeddings, embedding_dim)) * std).astype(dtype)))

    def forward(self, ids):
        check_array("Embedding ids", ids, kind="iu")
        if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= self.num_embeddings):
            bad = int(ids.min()) if int(ids.min()) < 0 else int(ids.max())
            raise ValueError(f"Embedding ids: got id {bad}, expected ids in [0, {self.num_embeddings})")
        out, self.cache = embedding_forward(ids, self.weight.data)
        return out

    def backward(self, dout):
        self.weight.grad += embedding_backward(dout, self.cache)
        return None  # ids are integers: there is no gradient to pass further down

    # A head tied to this table goes through these two, so that an adapter on the table
    # (minitx.nn.lora.LoRAEmbedding, which overrides both) reaches the head too.
    def effective_weight(self):
        """The ``(V, D)`` matrix a tied LM head scores against: the table itself."""
        return self.weight.data

    def weight_backward(self, dW) -> None:
        """Add a tied head's gradient ``dW`` ``(V, D)`` into the table's."""
        self.weight.grad += dW
