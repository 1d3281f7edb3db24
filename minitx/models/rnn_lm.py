"""An RNN language model: the architecture transformers replaced.

    idx     (B, T)      integer token ids
    x = wte[idx]                              token embedding           (B, T, E)
    x, _ = layer_l(x)  for l = 1..n_layer     RNN or GRU over time      (B, T, H)
    logits = x @ head.weight + head.bias      a linear LM head          (B, T, V)

There is no positional embedding: a recurrent layer reads the tokens in
order, so position is implicit in *when* a token arrived. Nor is there an
attention mask: the state ``h_t`` has only ever seen tokens ``0..t``, so the
model is causal by construction. Everything it knows about the past at step
t is in ``h_t``, a vector of ``hidden_size`` numbers.

The model keeps GPT's training contract (``loss(idx, targets) -> (loss,
logits)``, ``backward_loss(scale)``), so :class:`~minitx.train.trainer.Trainer`
trains it unchanged. Every sequence of a batch starts from a zero state
(``h0 = 0``); there is no state carried from batch to batch.

Parameter names::

    wte.weight                                  (V, E)
    layers.{l}.weight_ih (I, G*H), layers.{l}.weight_hh (H, G*H),
    layers.{l}.bias_ih, layers.{l}.bias_hh (G*H,)   G = 1 (rnn) or 3 (gru); see minitx.nn.rnn
    head.weight (H, V), head.bias (V,)

Example::

    >>> import numpy as np
    >>> model = RNNLM(RNNConfig(vocab_size=11, n_embd=8, hidden_size=16, cell="gru"), seed=0)
    >>> model.forward(np.array([[1, 2, 3]])).shape
    (1, 3, 11)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..backend import DEFAULT_DTYPE
from ..nn import Embedding, Linear, Module, ModuleList
from ..nn.checks import check_positive_int
from ..nn.rnn import CELLS
from .config import PresetConfig
from .lm_loss import NextTokenLoss

PRESETS: dict[str, dict] = {
    "rnn-test": dict(cell="rnn", n_embd=8, hidden_size=16, n_layer=1),  # unit tests: milliseconds
    "gru-test": dict(cell="gru", n_embd=8, hidden_size=16, n_layer=1),
}


@dataclass
class RNNConfig(PresetConfig):
    """The shape of an :class:`RNNLM`: ``cell`` is ``"rnn"`` (tanh) or ``"gru"``."""

    vocab_size: int
    n_embd: int = 64  # the embedding width E (the first layer's input size)
    hidden_size: int = 128  # H: the whole memory of the model
    n_layer: int = 1
    cell: str = "rnn"

    PRESETS = PRESETS

    def __post_init__(self):
        for name in ("vocab_size", "n_embd", "hidden_size", "n_layer"):
            check_positive_int(f"RNNConfig {name}", getattr(self, name))
        if self.cell not in CELLS:
            raise ValueError(f"RNNConfig cell: got {self.cell!r}, expected one of {sorted(CELLS)}")


class RNNLM(NextTokenLoss, Module):
    """Embedding -> ``n_layer`` recurrent layers -> linear head; trains through the one Trainer.

    ``forward(idx) -> logits``, ``backward(dlogits)``, ``loss`` and
    ``backward_loss`` mirror :class:`~minitx.models.gpt.GPT`. ``states``
    after a forward pass holds each layer's hidden states ``(B, T, H)``
    (what the tutorial plots).
    """

    def __init__(self, config: RNNConfig, *, seed: int = 0, rng=None, dtype=DEFAULT_DTYPE):
        self.config = config
        self.rng = rng if rng is not None else np.random.default_rng(seed)
        c, rng, cell = config, self.rng, CELLS[config.cell]
        self.wte = Embedding(c.vocab_size, c.n_embd, rng=rng, dtype=dtype)
        self.layers = ModuleList([cell(c.n_embd if i == 0 else c.hidden_size, c.hidden_size, rng=rng, dtype=dtype)
                                  for i in range(c.n_layer)])
        self.head = Linear(c.hidden_size, c.vocab_size, rng=rng, dtype=dtype)
        self.states: list = []

    def forward(self, idx):
        """``idx [B, T] int -> logits [B, T, V]``, every sequence from a zero state."""
        if getattr(idx, "ndim", None) != 2:
            raise ValueError(f"RNNLM idx: got shape {tuple(getattr(idx, 'shape', ()))}, expected (B, T) token ids")
        x = self.wte(self._on_weights_device(idx))  # (B, T, E)
        self.states = []
        for layer in self.layers:
            x, _ = layer(x)  # (B, T, H)
            self.states.append(x)
        return self.head(x)  # (B, T, H) @ (H, V) -> (B, T, V)

    def backward(self, dlogits):
        """``dlogits [B, T, V]``: add every parameter's gradient; returns None (ids have none)."""
        dx = self.head.backward(dlogits)  # (B, T, H)
        for layer in reversed(list(self.layers)):
            dx, _ = layer.backward(dx)  # (B, T, H) -> (B, T, I); the final state fed nothing, so dh_T = 0
        self.wte.backward(dx)


__all__ = ["PRESETS", "RNNLM", "RNNConfig"]
