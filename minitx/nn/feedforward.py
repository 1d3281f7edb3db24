"""Position-wise feed-forward network: the same two-layer MLP at every position.

    FFN(x) = W2 act(W1 x + b1) + b2,   W1: (d_model, d_ff), W2: (d_ff, d_model)
Attention mixes information *between* positions; the MLP transforms each
position on its own, and holds most of a transformer's parameters (d_ff is
usually 4 * d_model).

Gated variant (T5 v1.1, Shazeer 2020, "GLU variants"): two input matrices,
one through the activation and one linear, multiplied element-wise:
    FFN(x) = W2 (act(W1 x) * (W3 x))
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
        a, g = self.gate_cache  # h = a * g: each factor's gradient is dh times the other
        dx = self.fc.backward(self.act.backward(dh * g))  # (..., d_model)
        return dx + self.fc_gate.backward(dh * a)  # x feeds both branches: the gradients add
