"""Dropout: during training, zero each activation with probability ``p``.

The survivors are scaled by 1/(1-p) ("inverted dropout") so the expected
value of every activation is unchanged, and evaluation needs no rescaling:
in eval mode dropout is the identity.

Randomness comes from an explicit ``numpy.random.Generator`` so a training
run is reproducible and its RNG state can be saved in a checkpoint.

On the GPU the mask is still drawn on the host by that generator and then
copied to the device (one ``cupy.asarray``). A choice, not an accident: the
same seed gives the same masks on CPU and GPU, a checkpoint's RNG state (a
NumPy PCG64 state in JSON) resumes a GPU run exactly, and there is one RNG
to reason about. The cost is host work and a host-to-device copy per
dropout layer while training; with ``dropout=0`` (the default) there is none.
"""
from __future__ import annotations

import numpy as np

from ..backend import array_module
from .checks import check_probability
from .module import Module


def dropout_forward(x, p: float, rng, training: bool = True):
    """``[...] -> [...]``; caches the scaled keep-mask (``None`` when it is the identity)."""
    if not training or p == 0.0:
        return x, None
    keep = rng.random(x.shape, dtype=np.float32) >= p  # (...) True with probability 1-p, drawn on the host
    mask = keep.astype(x.dtype) * (1.0 / (1.0 - p))
    xp = array_module(x)
    if xp is not np:
        mask = xp.asarray(mask)  # a GPU x: the host-drawn mask follows it to the device
    return x * mask, mask


def dropout_backward(dout, mask):
    """y = x * mask, so dx = dout * mask (the same survivors, the same scale)."""
    return dout if mask is None else dout * mask


class Dropout(Module):
    def __init__(self, p: float = 0.0, *, rng=None):
        check_probability("dropout p", p)
        self.p = float(p)
        self.rng = rng if rng is not None else np.random.default_rng()

    def forward(self, x):
        out, self.cache = dropout_forward(x, self.p, self.rng, self.training)
        return out

    def backward(self, dout):
        return dropout_backward(dout, self.cache)
