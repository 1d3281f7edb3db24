"""Recurrent layers: a vanilla (tanh) RNN and a GRU, with backpropagation through time.

Before attention, a language model read a sentence one token at a time and
kept everything it had seen in one vector, the *hidden state* ``h``::

    h_t = f(x_t, h_{t-1})        one step per token, the same f at every step

Whatever the model needs later ("bank" of a *river* or of *cash*?) must
survive in ``h`` through every step in between. Two consequences, both
measured in :mod:`minitx.bench.rnn`:

* **Sequential in time.** ``h_t`` needs ``h_{t-1}``, so the T steps of a
  sequence cannot run at once: the forward pass below is a Python loop over
  time, and that loop is the point of this module, not a shortcut. (A
  transformer computes all T positions of a layer in one matrix product.)
  Everything that does *not* depend on the previous step is hoisted out of
  the loop: the input projections ``x_t W_ih`` of all T steps are one matrix
  product before it, and the weight gradients are one product after it.
  Inside the loop there are no loops over the batch or the hidden units.
* **Vanishing gradients.** Backpropagation through time multiplies the
  gradient by ``W_hh^T diag(1 - h_t^2)`` once per step back; over N steps
  that product shrinks (or explodes) geometrically, so a vanilla RNN barely
  learns dependencies N = 30, 60 tokens long. The GRU's update gate ``z``
  gives the state a path ``h_t = z * h_{t-1} + ...`` along which the
  gradient is multiplied by ``z`` (close to 1 where the cell decides to keep
  its memory) instead.

**The equations, exactly PyTorch's** (``torch.nn.RNN(nonlinearity="tanh")``
and ``torch.nn.GRU``, one layer, ``batch_first=True``)::

    RNN:  h_t = tanh(x_t W_ih + b_ih + h_{t-1} W_hh + b_hh)

    GRU:  r_t = sigmoid(x_t W_ir + b_ir + h_{t-1} W_hr + b_hr)        reset gate
          z_t = sigmoid(x_t W_iz + b_iz + h_{t-1} W_hz + b_hz)        update gate
          n_t = tanh(x_t W_in + b_in + r_t * (h_{t-1} W_hn + b_hn))   candidate
          h_t = (1 - z_t) * n_t + z_t * h_{t-1}

Note ``b_hn`` sits *inside* the reset product (PyTorch's and cuDNN's GRU;
the original paper of Cho et al. puts ``r`` on ``h`` before the product,
which is a different function). The RNN's two biases are redundant (only
their sum matters) and are kept so the weights map one to one.

**Weight layout.** minitx multiplies ``x @ W`` with ``W`` of shape
``(in, out)`` (see :mod:`minitx.nn.linear`); PyTorch stores the transpose.
The gate blocks are concatenated along the output axis in PyTorch's order
``r, z, n``. The mapping, for layer ``l`` of ``torch.nn.RNN/GRU``::

    minitx                     shape               torch
    weight_ih                  (I, G*H)            weight_ih_l{l}.T   (G*H, I)
    weight_hh                  (H, G*H)            weight_hh_l{l}.T   (G*H, H)
    bias_ih                    (G*H,)              bias_ih_l{l}
    bias_hh                    (G*H,)              bias_hh_l{l}

with G = 1 for the RNN and G = 3 (columns ``[r | z | n]``) for the GRU.

Shapes: ``B`` batch, ``T`` time steps, ``I`` input features, ``H`` hidden
units. Inputs are batch-first ``(B, T, I)``.
"""
from __future__ import annotations

import math

import numpy as np

from ..backend import DEFAULT_DTYPE, array_module, to_device
from .checks import check_array, check_positive_int
from .module import Module, Parameter


def sigmoid(x):
    """``1 / (1 + exp(-x))`` written as ``(1 + tanh(x / 2)) / 2``: the same function, never overflows."""
    xp = array_module(x)
    return 0.5 * (1.0 + xp.tanh(0.5 * x))


# --------------------------------------------------------------------------
# Vanilla RNN
# --------------------------------------------------------------------------
def rnn_forward(x, h0, W_ih, W_hh, b_ih, b_hh):
    """``x [B, T, I], h0 [B, H] -> out [B, T, H]`` (every h_t) and ``h_T [B, H]``.

    Returns ``(out, h_T), cache``. The cache keeps the input, the weights and
    every state ``h_0 .. h_T``: backpropagation through time needs each
    ``h_t`` (for tanh' = 1 - h_t^2) and each ``h_{t-1}`` (for dW_hh).
    """
    xp = array_module(x)
    B, T, _ = x.shape
    H = W_hh.shape[0]
    # Not recurrent, so done for all T steps at once: one matrix product.
    a_in = (x.reshape(B * T, -1) @ W_ih + b_ih).reshape(B, T, H)  # (B*T, I) @ (I, H) -> (B, T, H)
    states = xp.empty((B, T + 1, H), dtype=x.dtype)  # (B, T+1, H): states[:, t] = h_{t-1}, states[:, 0] = h0
    states[:, 0] = h0
    for t in range(T):  # the recurrence: h_t needs h_{t-1}, so time is a loop
        states[:, t + 1] = xp.tanh(a_in[:, t] + states[:, t] @ W_hh + b_hh)  # (B, H) @ (H, H) -> (B, H)
    out = states[:, 1:]  # (B, T, H)
    return (out, states[:, T]), (x, states, W_ih, W_hh)


def rnn_backward(dout, dh_T, cache):
    """Backpropagation through time; returns ``(dx, dh0, dW_ih, dW_hh, db_ih, db_hh)``.

    ``dout [B, T, H]`` is dL/dh_t from the layers above, ``dh_T [B, H]``
    dL/d(final state) (None = 0). Walking back from t = T-1 to 0:

        g_t  = dout_t + (gradient from step t+1)       h_t feeds the output *and* step t+1
        da_t = g_t * (1 - h_t^2)                       tanh'(a) = 1 - tanh(a)^2, a = pre-activation
        gradient to step t-1:  da_t W_hh^T             a_t = ... + h_{t-1} W_hh

    Only that last product is sequential. The weights are shared by all
    steps, so their gradients are sums over t (and over the batch), taken
    after the loop as one matrix product each:

        dW_hh = sum_t h_{t-1}^T da_t    dW_ih = sum_t x_t^T da_t    db_ih = db_hh = sum_t,b da_t
    """
    x, states, W_ih, W_hh = cache
    xp = array_module(dout)
    B, T, H = dout.shape
    da = xp.empty((B, T, H), dtype=dout.dtype)  # (B, T, H) dL/d(pre-activation) of every step
    dh = xp.zeros((B, H), dtype=dout.dtype) if dh_T is None else dh_T.copy()  # (B, H) gradient from step t+1
    for t in reversed(range(T)):
        g = dout[:, t] + dh  # (B, H)
        h = states[:, t + 1]  # (B, H) h_t
        da[:, t] = g * (1.0 - h * h)
        dh = da[:, t] @ W_hh.T  # (B, H) @ (H, H) -> (B, H): into h_{t-1}
    da2 = da.reshape(B * T, H)  # (B*T, H)
    dW_hh = states[:, :T].reshape(B * T, H).T @ da2  # (H, B*T) @ (B*T, H) -> (H, H)
    dW_ih = x.reshape(B * T, -1).T @ da2  # (I, B*T) @ (B*T, H) -> (I, H)
    dx = (da2 @ W_ih.T).reshape(x.shape)  # (B*T, H) @ (H, I) -> (B, T, I)
    db = da2.sum(axis=0)  # (H,)
    return dx, dh, dW_ih, dW_hh, db, db.copy()


# --------------------------------------------------------------------------
# GRU
# --------------------------------------------------------------------------
def gru_forward(x, h0, W_ih, W_hh, b_ih, b_hh):
    """``x [B, T, I], h0 [B, H] -> out [B, T, H]`` and ``h_T [B, H]``; PyTorch's GRU (gates r, z, n).

    Returns ``(out, h_T), cache``. Cached per step: the previous state
    ``h_{t-1}``, the gates ``r, z``, the candidate ``n`` and the hidden
    product ``h_{t-1} W_hn + b_hn`` (the reset gate multiplies it, so dr
    needs it), each ``(B, T, H)``.
    """
    xp = array_module(x)
    B, T, _ = x.shape
    H = W_hh.shape[0]
    gi = (x.reshape(B * T, -1) @ W_ih + b_ih).reshape(B, T, 3, H)  # (B*T, I) @ (I, 3H) -> (B, T, 3, H): [r|z|n]
    states = xp.empty((B, T + 1, H), dtype=x.dtype)  # (B, T+1, H): states[:, t] = h_{t-1}
    r, z, n, hn = (xp.empty((B, T, H), dtype=x.dtype) for _ in range(4))  # (B, T, H) each
    states[:, 0] = h0
    for t in range(T):  # the recurrence: sequential in time
        h = states[:, t]  # (B, H)
        gh = (h @ W_hh + b_hh).reshape(B, 3, H)  # (B, H) @ (H, 3H) -> (B, 3, H)
        r[:, t] = sigmoid(gi[:, t, 0] + gh[:, 0])
        z[:, t] = sigmoid(gi[:, t, 1] + gh[:, 1])
        hn[:, t] = gh[:, 2]
        n[:, t] = xp.tanh(gi[:, t, 2] + r[:, t] * gh[:, 2])
        states[:, t + 1] = (1.0 - z[:, t]) * n[:, t] + z[:, t] * h
    out = states[:, 1:]  # (B, T, H)
    return (out, states[:, T]), (x, states, r, z, n, hn, W_ih, W_hh)


def gru_backward(dout, dh_T, cache):
    """Backpropagation through time for the GRU; returns ``(dx, dh0, dW_ih, dW_hh, db_ih, db_hh)``.

    At step t, with g = dL/dh_t (from the output and from step t+1), and
    pre-activations a_r, a_z (sigmoid inputs) and a_n (tanh input):

        h_t = (1 - z) n + z h_{t-1}        ->  dn = g (1 - z),   dz = g (h_{t-1} - n),   dh_{t-1} += g z
        n = tanh(a_n), a_n = gi_n + r hn   ->  da_n = dn (1 - n^2);  dgi_n = da_n;  dhn = da_n r;  dr = da_n hn
        r = sigmoid(a_r), z = sigmoid(a_z) ->  da_r = dr r (1 - r),  da_z = dz z (1 - z)

    (sigmoid' = s (1 - s), tanh' = 1 - tanh^2). The input projections gi
    receive ``[da_r | da_z | da_n]``, the hidden projections gh = h W_hh + b_hh
    receive ``[da_r | da_z | da_n * r]``: the reset gate sits between gh_n and
    a_n, which is exactly where ``b_hn`` lives. Then
    ``dh_{t-1} += dgh W_hh^T``; the weight gradients are summed over steps
    after the loop, one product each.
    """
    x, states, r, z, n, hn, W_ih, W_hh = cache
    xp = array_module(dout)
    B, T, H = dout.shape
    dgi = xp.empty((B, T, 3, H), dtype=dout.dtype)  # (B, T, 3, H) dL/d(x W_ih + b_ih), gates [r|z|n]
    dgh = xp.empty((B, T, 3, H), dtype=dout.dtype)  # (B, T, 3, H) dL/d(h W_hh + b_hh)
    dh = xp.zeros((B, H), dtype=dout.dtype) if dh_T is None else dh_T.copy()  # (B, H)
    for t in reversed(range(T)):
        g = dout[:, t] + dh  # (B, H)
        h_prev, rt, zt, nt = states[:, t], r[:, t], z[:, t], n[:, t]
        da_n = g * (1.0 - zt) * (1.0 - nt * nt)
        da_r = da_n * hn[:, t] * rt * (1.0 - rt)
        da_z = g * (h_prev - nt) * zt * (1.0 - zt)
        dgi[:, t, 0], dgi[:, t, 1], dgi[:, t, 2] = da_r, da_z, da_n
        dgh[:, t, 0], dgh[:, t, 1], dgh[:, t, 2] = da_r, da_z, da_n * rt
        dh = g * zt + dgh[:, t].reshape(B, 3 * H) @ W_hh.T  # (B, 3H) @ (3H, H) -> (B, H): into h_{t-1}
    dgi2 = dgi.reshape(B * T, 3 * H)  # (B*T, 3H)
    dgh2 = dgh.reshape(B * T, 3 * H)  # (B*T, 3H)
    dW_hh = states[:, :T].reshape(B * T, H).T @ dgh2  # (H, B*T) @ (B*T, 3H) -> (H, 3H)
    dW_ih = x.reshape(B * T, -1).T @ dgi2  # (I, B*T) @ (B*T, 3H) -> (I, 3H)
    dx = (dgi2 @ W_ih.T).reshape(x.shape)  # (B*T, 3H) @ (3H, I) -> (B, T, I)
    return dx, dh, dW_ih, dW_hh, dgi2.sum(axis=0), dgh2.sum(axis=0)


# --------------------------------------------------------------------------
# Modules
# --------------------------------------------------------------------------
class _Recurrent(Module):
    """One recurrent layer (shared by :class:`RNN` and :class:`GRU`); ``GATES`` blocks of H columns."""

    GATES = 1
    NAME = "RNN"
    _forward = staticmethod(rnn_forward)
    _backward = staticmethod(rnn_backward)

    def __init__(self, input_size: int, hidden_size: int, *, rng=None, dtype=DEFAULT_DTYPE):
        check_positive_int(f"{self.NAME} input_size", input_size)
        check_positive_int(f"{self.NAME} hidden_size", hidden_size)
        rng = rng if rng is not None else np.random.default_rng()
        self.input_size, self.hidden_size = input_size, hidden_size
        G, H = self.GATES, hidden_size
        bound = 1.0 / math.sqrt(H)  # PyTorch's init: every weight and bias uniform in +-1/sqrt(H)

        def uniform(*shape):
            return Parameter(to_device(rng.uniform(-bound, bound, shape).astype(dtype)))

        self.weight_ih = uniform(input_size, G * H)
        self.weight_hh = uniform(H, G * H)
        self.bias_ih = uniform(G * H)
        self.bias_hh = uniform(G * H)

    def forward(self, x, h0=None):
        """``x [B, T, I]`` (and optionally ``h0 [B, H]``, default zeros) -> ``(out [B, T, H], h_T [B, H])``."""
        check_array(f"{self.NAME} input", x, ndim=3, last_dim=self.input_size)
        B, H = x.shape[0], self.hidden_size
        if h0 is None:
            h0 = array_module(x).zeros((B, H), dtype=x.dtype)  # (B, H)
        else:
            check_array(f"{self.NAME} h0", h0, ndim=2, last_dim=H)
            if h0.shape[0] != B:
                raise ValueError(f"{self.NAME} h0: got shape {tuple(h0.shape)}, expected ({B}, {H}) "
                                 "(one state per sequence of the batch)")
        (out, h_T), self.cache = self._forward(x, h0, self.weight_ih.data, self.weight_hh.data, self.bias_ih.data,
                                               self.bias_hh.data)
        return out, h_T

    def backward(self, dout, dh_T=None):
        """``dout [B, T, H]`` (and ``dh_T [B, H]``) -> ``(dx [B, T, I], dh0 [B, H])``; adds the weight gradients."""
        dx, dh0, dW_ih, dW_hh, db_ih, db_hh = self._backward(dout, dh_T, self.cache)
        self.weight_ih.grad += dW_ih
        self.weight_hh.grad += dW_hh
        self.bias_ih.grad += db_ih
        self.bias_hh.grad += db_hh
        return dx, dh0


class RNN(_Recurrent):
    """One layer of ``h_t = tanh(x_t W_ih + b_ih + h_{t-1} W_hh + b_hh)``: ``torch.nn.RNN``'s equations.

    Example::

        >>> import numpy as np
        >>> layer = RNN(3, 5, rng=np.random.default_rng(0))
        >>> out, h_T = layer(np.ones((2, 4, 3), np.float32))
        >>> out.shape, h_T.shape, bool((out[:, -1] == h_T).all())
        ((2, 4, 5), (2, 5), True)
    """


class GRU(_Recurrent):
    """One GRU layer with PyTorch's gates (r, z, n) and ``b_hn`` inside the reset product; see the module docs."""

    GATES = 3
    NAME = "GRU"
    _forward = staticmethod(gru_forward)
    _backward = staticmethod(gru_backward)


CELLS = {"rnn": RNN, "gru": GRU}

__all__ = ["CELLS", "GRU", "RNN", "gru_backward", "gru_forward", "rnn_backward", "rnn_forward", "sigmoid"]
