"""Linear (fully connected) layer: ``y = x @ W + b``.

Weight layout: ``W`` has shape ``(in_features, out_features)``, so the forward
pass reads left to right like the maths. (PyTorch's ``nn.Linear`` stores the
transpose, ``(out, in)``; GPT-2's checkpoints store ``(in, out)`` like us.
Importers map explicitly.)
"""
from __future__ import annotations

import math

import numpy as np

from .. import ops
from ..backend import DEFAULT_DTYPE, kernels_enabled, to_device
from .checks import check_array
from .module import Module, Parameter


def linear_forward(x, W, b=None):
    """``[..., in], [in, out], [out] -> [..., out]``; caches ``x`` and ``W``."""
    if kernels_enabled(x) and ops.matmul_supported(x, W):  # "kernels" backend: minitx's CUDA matmul
        return ops.linear_forward(x, W, b)
    # One 2-D product over all leading positions: NumPy runs (B, T, in) @ (in, out)
    # as B separate small products, which is several times slower.
    out = x.reshape(-1, x.shape[-1]) @ W  # (N, in) @ (in, out) -> (N, out), N = prod(leading dims)
    if b is not None:
        out += b
    return out.reshape(*x.shape[:-1], W.shape[1]), (x, W, b is not None)  # (..., out)


def linear_backward(dout, cache, *, weight_grad: bool = True):
    """Given dL/dy, return ``(dx, dW, db)`` (``db`` is None without a bias).

    With y = x W + b, summed over every leading (batch, time) position n:
        dL/dx[n] = dL/dy[n] W^T         dL/dW = sum_n x[n]^T dL/dy[n]
        dL/db    = sum_n dL/dy[n]
    Flattening the leading axes turns the sum over n into one matrix product.
    ``weight_grad=False`` (a frozen W) skips dL/dW, a third of the layer's
    backward work, and returns None for it.
    """
    if kernels_enabled(dout) and ops.matmul_supported(dout, cache[1]):  # "kernels" backend
        return ops.linear_backward(dout, cache, weight_grad=weight_grad)
    x, W, has_bias = cache
    x2 = x.reshape(-1, x.shape[-1])  # (N, in)
    d2 = dout.reshape(-1, dout.shape[-1])  # (N, out)
    dx = (d2 @ W.T).reshape(x.shape)  # (N, out) @ (out, in) -> (N, in) -> (..., in)
    dW = x2.T @ d2 if weight_grad else None  # (in, N) @ (N, out) -> (in, out)
    db = d2.sum(axis=0) if has_bias else None  # (out,)
    return dx, dW, db


class Linear(Module):
    """``y = x @ weight + bias`` with ``weight`` of shape ``(in_features, out_features)``.

    Initialised like PyTorch's ``nn.Linear``: uniform in +-1/sqrt(in_features),
    which keeps the output variance near the input variance.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, rng=None, dtype=DEFAULT_DTYPE):
        rng = rng if rng is not None else np.random.default_rng()
        bound = 1.0 / math.sqrt(in_features)
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter(to_device(rng.uniform(-bound, bound, (in_features, out_features)).astype(dtype)))
        self.bias = Parameter(to_device(rng.uniform(-bound, bound, (out_features,)).astype(dtype))) if bias else None

    def forward(self, x):
        check_array("Linear input", x, min_ndim=1, last_dim=self.in_features)
        out, self.cache = linear_forward(x, self.weight.data, None if self.bias is None else self.bias.data)
        return out

    def backward(self, dout):
        dx, dW, db = linear_backward(dout, self.cache, weight_grad=self.weight.requires_grad)
        if dW is not None:
            self.weight.grad += dW
        if self.bias is not None and self.bias.requires_grad:
            self.bias.grad += db
        return dx
