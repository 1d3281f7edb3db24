"""Position-wise feed-forward network: the same two-layer MLP at every position.

    FFN(x) = W2 act(W1 x + b1) + b2,   W1: (d_model, d_ff), W2: (d_ff, d_model)
Attention mixes information *between* positions; the MLP transforms each
position on its own, and holds most of a transformer's parameters (d_ff is
usually 4 * d_model).

Gated variant (T5 v1.1, Shazeer 2020, "GLU variants"): two input matrices,
one through the activation and one linear, multiplied element-wise:
    FFN(x) = W2 (act(W1 x) * (W3 x))
With SiLU (``x * sigmoid(x)``) as ``act`` this is **SwiGLU**, LLaMA's
feed-forward (:class:`SwiGLU`). The gate lets each hidden unit scale its
linear part up, down or to zero depending on the input, which in Shazeer's
experiments beat a plain MLP of the same parameter count; to keep that count,
LLaMA shrinks ``d_ff`` to about ``(2/3) 4 d_model`` (three matrices instead of two).
"""
from __future__ import annotations

import numpy as np

from ..backend import DEFAULT_DTYPE
from .activations import Activation
from .dropout import Dropout
from .linear import Linear
from .module import Module


class FeedForward(Module):
    """``[..., d_model] -> [..., d_model]``: Linear, activation, dropout, Linear.

    Dropout sits on the wide hidden layer, as in PyTorch's transformer layers;
    the block around this module applies its own dropout to the residual branch.
    """

    def __init__(self, d_model: int, d_ff: int | None = None, *, activation: str = "gelu", dropout: float = 0.0,
                 bias: bool = True, gated: bool = False, rng=None, dtype=DEFAULT_DTYPE):
        rng = rng if rng is not None else np.random.default_rng()
        d_ff = 4 * d_model if d_ff is None else d_ff
        self.gated = gated
        self.fc = Linear(d_model, d_ff, bias, rng=rng, dtype=dtype)
        if gated:
            self.fc_gate = Linear(d_model, d_ff, bias, rng=rng, dtype=dtype)  # the linear factor W3
        self.act = Activation(activation)
        self.drop = Dropout(dropout, rng=rng)
        self.proj = Linear(d_ff, d_model, bias, rng=rng, dtype=dtype)

    def forward(self, x):
        a = self.act(self.fc(x))  # (..., d_ff)
        if self.gated:
            g = self.fc_gate(x)  # (..., d_ff)
            self.gate_cache = (a, g)
            a = a * g
        return self.proj(self.drop(a))  # (..., d_model)

    def backward(self, dout):
        dh = self.drop.backward(self.proj.backward(dout))  # (..., d_ff)
        if not self.gated:
            return self.fc.backward(self.act.backward(dh))  # (..., d_model)
        # h = a * g, element by element, so dh/da = g and dh/dg = a: each factor's gradient is dh times the
        # other. a = act(x W1) continues through the activation's own backward (SiLU: sigmoid(z) (1 + z (1 -
        # sigmoid(z)))); g = x W3 is linear.
        a, g = self.gate_cache
        dx = self.fc.backward(self.act.backward(dh * g))  # (..., d_model)
        return dx + self.fc_gate.backward(dh * a)  # x feeds both branches: the gradients add


class SwiGLU(FeedForward):
    """LLaMA's feed-forward: ``W2 (silu(x W1) * (x W3))``, no biases by default.

    The gated :class:`FeedForward` with the SiLU activation: ``fc`` is W1
    (Llama's ``gate_proj``, the factor that goes through SiLU), ``fc_gate``
    is W3 (``up_proj``, the linear factor), ``proj`` is W2 (``down_proj``).
    ``d_ff`` is the hidden width (each of W1 and W3 is ``d_model x d_ff``).
    """

    def __init__(self, d_model: int, d_ff: int, *, bias: bool = False, dropout: float = 0.0, rng=None,
                 dtype=DEFAULT_DTYPE):
        super().__init__(d_model, d_ff, activation="silu", dropout=dropout, bias=bias, gated=True, rng=rng,
                         dtype=dtype)
