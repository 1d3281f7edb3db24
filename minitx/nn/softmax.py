"""Softmax and log-softmax over the last axis, and their backward passes.

softmax(x)_i = exp(x_i) / sum_j exp(x_j). Subtracting the row maximum first
changes nothing mathematically (it cancels) but keeps exp() from overflowing.
"""
from __future__ import annotations

from .. import ops
from ..backend import array_module, kernels_enabled
from .checks import check_finite_rows


def softmax_forward(x, name: str = "softmax input", *, overwrite_input: bool = False):
    """``[..., C] -> [..., C]`` probabilities; caches the output.

    ``name`` is what an error message calls ``x`` if it holds NaN or Inf.
    ``overwrite_input=True`` computes in ``x``'s own memory: attention uses it
    on its freshly made ``(B, H, T, T)`` scores, saving an allocation.
    """
    if kernels_enabled(x) and ops.softmax_supported(x):  # "kernels" backend: minitx's CUDA softmax
        return ops.softmax_forward(x)
    xp = array_module(x)
    m = x.max(axis=-1, keepdims=True)  # (..., 1)
    check_finite_rows(name, m)
    e = xp.subtract(x, m, out=x if overwrite_input else None)
    xp.exp(e, out=e)
    e /= e.sum(axis=-1, keepdims=True)
    return e, e


def softmax_backward(dy, y):
    """The Jacobian is dy_i/dx_j = y_i (delta_ij - y_j), so
        dx_j = sum_i dy_i y_i (delta_ij - y_j) = y_j (dy_j - sum_i dy_i y_i)
    which costs O(C) per row instead of building the C x C Jacobian.
    """
    dx = dy - (dy * y).sum(axis=-1, keepdims=True)
    dx *= y
    return dx


def log_softmax_forward(x):
    """``[..., C] -> [..., C]``: x - logsumexp(x); caches softmax(x)."""
    xp = array_module(x)
    m = x.max(axis=-1, keepdims=True)  # (..., 1)
    check_finite_rows("log_softmax input", m)
    shifted = x - m  # (..., C)
    e = xp.exp(shifted)  # (..., C)
    total = e.sum(axis=-1, keepdims=True)  # (..., 1)
    out = shifted
    out -= xp.log(total)  # x - m - log(sum exp(x - m)) = x - logsumexp(x), in place
    probs = e
    probs /= total  # softmax(x), from the same exponentials: no second exp()
    return out, probs


def log_softmax_backward(dy, probs):
    """y_i = x_i - logsumexp(x), and d logsumexp / dx_j = softmax_j, so
        dx_j = dy_j - softmax_j * sum_i dy_i
    """
    return dy - probs * dy.sum(axis=-1, keepdims=True)
