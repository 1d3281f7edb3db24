"""Layer normalisation: normalise each feature vector, then scale and shift.

For one row x of D features:
    mu   = mean(x)                    var  = mean((x - mu)^2)
    xhat = (x - mu) / sqrt(var + eps)  y    = gamma * xhat + beta
Every position is normalised on its own (unlike BatchNorm), so LayerNorm
behaves the same in training and inference and for any batch size.

The row means are computed as a matrix-vector product, ``x @ a`` with
``a = [1/D, ..., 1/D]^T``: mathematically ``mean(x, axis=-1)``, but one BLAS
call instead of a reduction plus a division, which matters when a decoding
step pushes a single token through a dozen LayerNorms.
"""
from __future__ import annotations

import numpy as np

from .. import ops
from ..backend import DEFAULT_DTYPE, array_module, kernels_enabled, to_device
from .checks import check_array, check_finite_rows
from .module import Module, Parameter


_AVERAGERS: dict = {}


def _averager(xp, D: int, dtype):
    """The ``(D, 1)`` column of 1/D that turns a matmul into a row mean (made once per size)."""
    key = (xp, D, dtype)
    column = _AVERAGERS.get(key)
    if column is None:
        column = _AVERAGERS[key] = xp.full((D, 1), 1.0 / D, dtype=dtype)
    return column


def layernorm_forward(x, gamma, beta, eps: float = 1e-5):
    """``[..., D], [D], [D] -> [..., D]``; caches ``xhat``, ``rstd`` and ``gamma``."""
    if kernels_enabled(x) and ops.layernorm_supported(x, gamma, beta):  # "kernels" backend: minitx's kernel
        return ops.layernorm_forward(x, gamma, beta, eps)  # caches (x, gamma, mean, rstd) instead
    xp = array_module(x)
    mean = _averager(xp, x.shape[-1], x.dtype)  # (D, 1)
    mu = x @ mean  # (..., D) @ (D, 1) -> (..., 1) row means
    check_finite_rows("LayerNorm input", mu)  # one NaN/Inf in a row poisons its mean
    xc = x - mu  # (..., D)
    var = (xc * xc) @ mean  # (..., 1) biased variance, as in the paper
    var += eps
    rstd = xp.power(var, -0.5, out=var)  # (..., 1) 1 / sqrt(var + eps)
    xhat = xc
    xhat *= rstd  # (..., D), in place of xc
    y = xhat * gamma
    y += beta  # (..., D)
    return y, (xhat, rstd, gamma)


def layernorm_backward(dy, cache):
    """Return ``(dx, dgamma, dbeta)``.

    dgamma and dbeta are the usual sums over positions of dy*xhat and dy.
    For dx, write g = dy * gamma (the gradient reaching xhat). xhat depends on
    every x_j through mu and var; differentiating xhat_i = (x_i - mu) * rstd:
        dxhat_i/dx_j = rstd * (delta_ij - 1/D - xhat_i * xhat_j / D)
    so, summing g_i * dxhat_i/dx_j over i:
        dx = rstd * (g - mean(g) - xhat * mean(g * xhat))
    """
    if isinstance(cache, ops.LayerNormKernelCache):  # the forward ran minitx's kernel
        return ops.layernorm_backward(dy, cache)
    xhat, rstd, gamma = cache
    xp = array_module(dy)
    D = xhat.shape[-1]
    mean = _averager(xp, D, dy.dtype)  # (D, 1)
    g = dy * gamma  # (..., D)
    mean_g = g @ mean  # (..., 1)
    mean_gx = (g * xhat) @ mean  # (..., 1)
    g -= mean_g
    dx = xhat * mean_gx
    xp.subtract(g, dx, out=dx)
    dx *= rstd  # rstd * (g - mean(g) - xhat * mean(g * xhat)), (..., D)
    dy2 = dy.reshape(-1, D)
    dgamma = xp.einsum("nd,nd->d", dy2, xhat.reshape(-1, D))  # (D,) sum over positions of dy * xhat
    dbeta = dy2.sum(axis=0)  # (D,)
    return dx, dgamma, dbeta


class LayerNorm(Module):
    """LayerNorm over the last dimension, with learnable ``weight`` (gamma) and ``bias`` (beta)."""

    def __init__(self, d_model: int, eps: float = 1e-5, *, dtype=DEFAULT_DTYPE):
        self.d_model, self.eps = d_model, eps
        self.weight = Parameter(to_device(np.ones(d_model, dtype=dtype)))
        self.bias = Parameter(to_device(np.zeros(d_model, dtype=dtype)))

    def forward(self, x):
        check_array("LayerNorm input", x, min_ndim=1, last_dim=self.d_model)
        y, self.cache = layernorm_forward(x, self.weight.data, self.bias.data, self.eps)
        return y

    def backward(self, dy):
        dx, dgamma, dbeta = layernorm_backward(dy, self.cache)
        self.weight.grad += dgamma
        self.bias.grad += dbeta
        return dx


# --------------------------------------------------------------------------
# Scale-only normalisation (T5's LayerNorm, also called RMSNorm)
# --------------------------------------------------------------------------
def rmsnorm_forward(x, gamma, eps: float = 1e-6):
    """``[..., D], [D] -> [..., D]``: ``y = gamma * x / sqrt(mean(x^2) + eps)``.

    T5 normalises only the *scale* of each row: no mean is subtracted and
    there is no bias (Zhang & Sennrich's RMSNorm). The row mean of x^2 uses
    the same matrix-vector trick as :func:`layernorm_forward`. Caches
    ``xhat``, ``rstd`` and ``gamma``.
    """
    xp = array_module(x)
    mean = _averager(xp, x.shape[-1], x.dtype)  # (D, 1)
    ms = (x * x) @ mean  # (..., 1) mean of squares
    check_finite_rows("RMSNorm input", ms)
    ms += eps
    rstd = xp.power(ms, -0.5, out=ms)  # (..., 1) 1 / sqrt(mean(x^2) + eps)
    xhat = x * rstd  # (..., D)
    return xhat * gamma, (xhat, rstd, gamma)


def rmsnorm_backward(dy, cache):
    """Return ``(dx, dgamma)``.

    With g = dy * gamma (the gradient reaching xhat) and xhat_i = x_i * r,
    r = (mean(x^2) + eps)^(-1/2), dr/dx_j = -r^3 x_j / D, so
        dxhat_i/dx_j = r * (delta_ij - xhat_i * xhat_j / D)
        dx = r * (g - xhat * mean(g * xhat))
    which is LayerNorm's gradient without the ``- mean(g)`` term (no mean was
    subtracted, so none comes back).
    """
    xhat, rstd, gamma = cache
    xp = array_module(dy)
    D = xhat.shape[-1]
    mean = _averager(xp, D, dy.dtype)  # (D, 1)
    g = dy * gamma  # (..., D)
    mean_gx = (g * xhat) @ mean  # (..., 1)
    dx = g - xhat * mean_gx
    dx *= rstd  # (..., D)
    dgamma = xp.einsum("nd,nd->d", dy.reshape(-1, D), xhat.reshape(-1, D))  # (D,)
    return dx, dgamma


class RMSNorm(Module):
    """Scale-only normalisation with a learnable ``weight`` and no bias (T5's ``T5LayerNorm``)."""

    def __init__(self, d_model: int, eps: float = 1e-6, *, dtype=DEFAULT_DTYPE):
        self.d_model, self.eps = d_model, eps
        self.weight = Parameter(to_device(np.ones(d_model, dtype=dtype)))

    def forward(self, x):
        check_array("RMSNorm input", x, min_ndim=1, last_dim=self.d_model)
        y, self.cache = rmsnorm_forward(x, self.weight.data, self.eps)
        return y

    def backward(self, dy):
        dx, dgamma = rmsnorm_backward(dy, self.cache)
        self.weight.grad += dgamma
        return dx


NORMS = ("layernorm", "rmsnorm")


def make_norm(kind: str, d_model: int, eps: float, *, dtype=DEFAULT_DTYPE) -> Module:
    """``"layernorm"`` (mean and scale, with bias) or ``"rmsnorm"`` (scale only, T5)."""
    if kind == "layernorm":
        return LayerNorm(d_model, eps, dtype=dtype)
    if kind == "rmsnorm":
        return RMSNorm(d_model, eps, dtype=dtype)
    raise ValueError(f"norm: got {kind!r}, expected one of {NORMS}")
