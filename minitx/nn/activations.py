"""Activation functions: ReLU, the two GELUs, tanh and SiLU.

GELU(x) = x * Phi(x), where Phi is the standard normal CDF: the input is
kept in proportion to how likely a standard normal variable is to be below
it. GPT-2 and BERT used a tanh approximation of Phi; PyTorch's default is the
exact erf form. Both are here, with their derivatives.

Constants are Python floats, not NumPy float64 scalars: under NumPy 2's
promotion rules a float64 *scalar* would silently turn float32 arrays into
float64 (and make everything 2x slower).
"""
from __future__ import annotations

import math

import numpy as np

from ..backend import array_module, erf
from .module import Module

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_GELU_C = 0.044715


def relu_forward(x):
    """``[...] -> [...]``: max(x, 0); caches the sign pattern."""
    mask = x > 0
    return x * mask, mask


def relu_backward(dout, mask):
    """dReLU/dx is 1 where x > 0 and 0 elsewhere (we pick 0 at exactly 0)."""
    return dout * mask


def gelu_tanh_forward(x):
    """GELU, tanh approximation: 0.5 x (1 + tanh(c (x + 0.044715 x^3))), c = sqrt(2/pi)."""
    xp = array_module(x)
    u = x * x
    u *= x  # x*x*x: much cheaper than x**3
    u *= _GELU_C
    u += x
    u *= _SQRT_2_OVER_PI  # u = c (x + 0.044715 x^3), built in one buffer
    t = xp.tanh(u, out=u)
    y = t + 1.0
    y *= x
    y *= 0.5  # 0.5 x (1 + t)
    return y, (x, t)


def gelu_tanh_backward(dout, cache):
    """Product rule on 0.5 x (1 + t), t = tanh(u), u = c (x + 0.044715 x^3):
        dy/dx = 0.5 (1 + t) + 0.5 x (1 - t^2) c (1 + 3 * 0.044715 x^2)
    reusing the saved t instead of evaluating tanh again.
    """
    x, t = cache
    xp = array_module(x)
    du = x * x
    du *= _SQRT_2_OVER_PI * 3.0 * _GELU_C
    du += _SQRT_2_OVER_PI  # du/dx = c (1 + 3 * 0.044715 x^2)
    d = t * t
    xp.subtract(1.0, d, out=d)  # 1 - t^2 = dtanh/du
    d *= x
    d *= du
    d += t
    d += 1.0
    d *= 0.5  # dy/dx, with in-place steps (these are the biggest arrays of the block)
    d *= dout
    return d


def _erf_float32(z):
    """``erf`` to about 1e-7 (absolute), vectorised: for float32 arrays on the CPU.

    :func:`minitx.backend.erf` is exact but calls ``math.erf`` once per element,
    which made BERT's exact GELU most of MiniLM's run time. For float32 results
    an approximation with error below float32's own rounding is as good:
    ``erfc(z) = t exp(-z^2 + P(t))``, ``t = 1 / (1 + |z| / 2)``, P a degree-9
    polynomial (Numerical Recipes' ``erfcc``, fractional error < 1.2e-7),
    evaluated in float64 so that ``1 - erfc`` does not cancel. Float64 inputs
    (the gradient checks) keep the exact path.
    """
    a = np.abs(z, dtype=np.float64)  # (...) |z| in float64
    t = a * 0.5
    t += 1.0
    np.reciprocal(t, out=t)  # t = 1 / (1 + |z|/2)
    p = t * 0.17087277
    for c in (-0.82215223, 1.48851587, -1.13520398, 0.27886807, -0.18628806, 0.09678418, 0.37409196, 1.00002368):
        p += c
        p *= t  # Horner's rule in place: no temporaries
    p -= 1.26551223
    a *= a
    p -= a  # P(t) - z^2
    np.exp(p, out=p)
    p *= t  # erfc(|z|)
    erfc = p
    np.subtract(1.0, erfc, out=erfc)  # erf(|z|)
    return np.copysign(erfc, z, dtype=np.float64).astype(z.dtype)  # erf is odd


def gelu_erf_forward(x):
    """Exact GELU: x * Phi(x) with Phi(x) = 0.5 (1 + erf(x / sqrt 2))."""
    z = x * _INV_SQRT_2
    fast = array_module(x) is np and x.dtype.itemsize <= 4
    phi_cdf = 0.5 * (1.0 + (_erf_float32(z) if fast else erf(z)))
    return x * phi_cdf, (x, phi_cdf)


def gelu_erf_backward(dout, cache):
    """d/dx [x Phi(x)] = Phi(x) + x phi(x), where phi(x) = exp(-x^2/2) / sqrt(2 pi)."""
    x, phi_cdf = cache
    xp = array_module(x)
    pdf = _INV_SQRT_2PI * xp.exp(-0.5 * (x * x))
    return dout * (phi_cdf + x * pdf)


def tanh_forward(x):
    """``[...] -> [...]``: tanh (BERT's pooler squashes the [CLS] vector with it); caches the output."""
    y = array_module(x).tanh(x)
    return y, y


def tanh_backward(dout, y):
    """d tanh(x)/dx = 1 - tanh(x)^2, from the saved output."""
    return dout * (1.0 - y * y)


def silu_forward(x):
    """SiLU (swish): x * sigmoid(x); caches x and the sigmoid."""
    xp = array_module(x)
    sig = 1.0 / (1.0 + xp.exp(-x))
    return x * sig, (x, sig)


def silu_backward(dout, cache):
    """d/dx [x s(x)] = s + x s (1 - s), with s = sigmoid(x) saved by the forward pass."""
    x, sig = cache
    return dout * (sig * (1.0 + x * (1.0 - sig)))


_ACTIVATIONS = {
    "relu": (relu_forward, relu_backward),
    "gelu": (gelu_tanh_forward, gelu_tanh_backward),
    "gelu_tanh": (gelu_tanh_forward, gelu_tanh_backward),
    "gelu_exact": (gelu_erf_forward, gelu_erf_backward),
    "tanh": (tanh_forward, tanh_backward),
    "silu": (silu_forward, silu_backward),
}


def get_activation(name: str):
    """``(forward, backward)`` for ``"relu"``, ``"gelu"`` (= ``"gelu_tanh"``), ``"gelu_exact"``, ``"tanh"`` or ``"silu"``."""
    if name not in _ACTIVATIONS:
        raise ValueError(f"activation: got {name!r}, expected one of {sorted(_ACTIVATIONS)}")
    return _ACTIVATIONS[name]


class Activation(Module):
    """A parameter-free activation chosen by name."""

    def __init__(self, name: str = "gelu"):
        self.name = name
        self._forward, self._backward = get_activation(name)

    def forward(self, x):
        out, self.cache = self._forward(x)
        return out

    def backward(self, dout):
        return self._backward(dout, self.cache)


class ReLU(Activation):
    def __init__(self):
        super().__init__("relu")


class GELU(Activation):
    """``GELU(approximate="tanh")`` (GPT-2) or ``GELU(approximate="none")`` (exact, PyTorch default)."""

    def __init__(self, approximate: str = "tanh"):
        if approximate not in ("tanh", "none"):
            raise ValueError(f"GELU approximate: got {approximate!r}, expected 'tanh' or 'none'")
        super().__init__("gelu_tanh" if approximate == "tanh" else "gelu_exact")
