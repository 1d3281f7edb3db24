"""The loss every next-token language model trains with, written once.

A language model maps token ids ``[B, T]`` to logits ``[B, T, V]``; its
loss is the mean cross-entropy against the next tokens. The GPT and the RNN
language model differ in what happens between the ids and the logits, not
here, so both take these three methods from one mixin. A model using it
has a ``forward(idx)``, a ``backward(dlogits)`` and a token embedding
``wte`` (whose device the targets are moved to).

    loss, _ = model.loss(x, y)
    model.backward_loss()        # dL/dtheta added into every p.grad
"""
from __future__ import annotations

from ..backend import array_module, device_of, to_device
from ..nn.loss import IGNORE_INDEX, cross_entropy_backward, cross_entropy_forward


class NextTokenLoss:
    """``loss(idx, targets)`` / ``backward_loss(scale)`` for a model with ``forward``, ``backward`` and ``wte``."""

    def loss(self, idx, targets, *, label_smoothing: float = 0.0):
        """Forward + mean cross-entropy (targets of -100 are ignored); returns ``(loss, logits)``.

        Keeps what :meth:`backward_loss` needs in ``self.loss_cache``.
        """
        logits = self.forward(idx)  # (B, T, V)
        loss, self.loss_cache = cross_entropy_forward(logits, self._on_weights_device(targets),
                                                      label_smoothing=label_smoothing)
        return float(loss), logits

    def count_targets(self, idx, targets) -> int:
        """How many targets :meth:`loss` averages over (the -100s are not counted): a data-parallel share's weight."""
        return int((targets != IGNORE_INDEX).sum())

    def backward_loss(self, scale: float = 1.0) -> None:
        """Backward from the last :meth:`loss`; ``scale`` multiplies dL (gradient accumulation uses 1/k)."""
        self.backward(cross_entropy_backward(scale, self.loss_cache))  # dlogits: (B, T, V)

    def _on_weights_device(self, a):
        """``a`` (token ids, targets) on the device of the weights; unchanged when it is there already."""
        w = self.wte.weight.data
        return a if array_module(a) is array_module(w) else to_device(a, device_of(w))


__all__ = ["NextTokenLoss"]
