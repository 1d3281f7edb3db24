"""LoRA: fine-tune a big matrix by learning a small correction to it.

Fine-tuning every weight of a pretrained model costs an optimizer state per
weight and a full copy of the model per task. Hu et al. (2021) observed that
the *change* a task needs is of low rank, and wrote it as a product of two
thin matrices beside the frozen weight::

    y = x W + b + s (x A) B          s = alpha / r
        [..., in] @ [in, out]             [..., in] @ [in, r] @ [r, out]

``W`` (in, out) and ``b`` (out,) are the pretrained layer's, frozen. ``A``
(in, r) starts random and ``B`` (r, out) starts at zero, so ``A B = 0`` and
the wrapped layer computes exactly what the base layer did: training starts
from the pretrained model, not near it. Only ``r (in + out)`` numbers train
instead of ``in * out``: for a 384 x 1152 ``qkv`` at rank 8, 12,288 instead
of 442,368 (2.8%).

``s = alpha / r`` keeps the size of the update roughly independent of the
rank: doubling ``r`` doubles the number of terms summed in ``(x A) B``, and
halving ``s`` compensates, so a learning rate tuned at one rank still works
at another.

Merging
-------
``(x A) B = x (A B)``, so the trained correction can be folded into the
weight: ``W' = W + s A B`` (:meth:`LoRALinear.merge`). The merged layer is a
plain ``x W' + b``, as fast as the base model, with no trace of the
adapter at inference. :meth:`LoRALinear.unmerge` subtracts the same product
again; ``W' - s A B`` equals ``W`` up to float rounding (one addition and
one subtraction of the same numbers: a few units in the last place).

The parameter names stay the base layer's (``blocks.0.attn.qkv.weight``,
``...qkv.bias``) plus ``...qkv.A`` and ``...qkv.B``, so a checkpoint of the
base model still loads into the frozen part, and the adapter alone is the
parameters whose names end in ``.A`` / ``.B``
(:func:`minitx.finetune.save_adapter`).
"""
from __future__ import annotations

import math

from ..backend import array_module, device_of, to_device
from .checks import check_array, check_positive_int
from .linear import Linear, linear_backward, linear_forward
from .module import Module, Parameter


def lora_forward(x, W, b, A, B, scale: float):
    """``[..., in], [in, out], [out] | None, [in, r], [r, out] -> [..., out]``.

    Caches the base layer's cache (``x``, ``W``), the low-rank activation
    ``h = x A`` (needed for dL/dB), and ``A``, ``B``, ``scale``.
    """
    out, base_cache = linear_forward(x, W, b)  # (..., out)  the frozen path: x W + b
    x2 = x.reshape(-1, x.shape[-1])  # (N, in), N = prod(leading dims)
    h = x2 @ A  # (N, in) @ (in, r) -> (N, r)   the input squeezed to r numbers
    out = out + (scale * (h @ B)).reshape(out.shape)  # (N, r) @ (r, out) -> (N, out) -> (..., out)
    return out, (base_cache, h, A, B, scale)


def lora_backward(dout, cache, *, weight_grad: bool = False):
    """Given dL/dy, return ``(dx, dW, db, dA, dB)`` (``dW`` is None unless ``weight_grad``).

    With y = x W + b + s h B and h = x A, over every position n:
        dL/dB = s h^T dL/dy                  (r, N) @ (N, out)   B is multiplied by s h
        dL/dh = s dL/dy B^T                  (N, out) @ (out, r)
        dL/dA = x^T dL/dh                    (in, N) @ (N, r)    h = x A, the Linear rule again
        dL/dx = dL/dy W^T + dL/dh A^T        both paths read x, so their gradients add
    The base path is :func:`~minitx.nn.linear.linear_backward`; W is
    normally frozen, so its (in, out) gradient, the biggest product here,
    is skipped.
    """
    base_cache, h, A, B, scale = cache
    dx, dW, db = linear_backward(dout, base_cache, weight_grad=weight_grad)  # the frozen path
    x2 = base_cache[0].reshape(-1, A.shape[0])  # (N, in)
    d2 = dout.reshape(-1, dout.shape[-1])  # (N, out)
    dB = scale * (h.T @ d2)  # (r, N) @ (N, out) -> (r, out)
    dh = scale * (d2 @ B.T)  # (N, out) @ (out, r) -> (N, r)
    dA = x2.T @ dh  # (in, N) @ (N, r) -> (in, r)
    dx = dx + (dh @ A.T).reshape(dx.shape)  # (N, r) @ (r, in) -> (N, in) -> (..., in)
    return dx, dW, db, dA, dB


class LoRALinear(Module):
    """A :class:`~minitx.nn.linear.Linear` plus a trainable low-rank correction: ``x W + b + (alpha/r) (x A) B``.

    ``base``'s own ``weight`` and ``bias`` Parameters are taken over (the
    same objects, so a tied or shared weight stays shared) and frozen; ``A``
    ``(in, rank)`` is drawn from ``rng`` uniform in +-1/sqrt(in), like a
    Linear's weight, and ``B`` ``(rank, out)`` is zero. ``merge()`` /
    ``unmerge()`` fold the correction into W and back (see the module docs).

    >>> import numpy as np
    >>> base = Linear(4, 3, rng=np.random.default_rng(0))
    >>> lora = LoRALinear(base, rank=2, alpha=4.0, rng=np.random.default_rng(1))
    >>> x = np.ones((5, 4), dtype=np.float32)
    >>> bool(np.array_equal(lora(x), base(x)))   # B = 0: exactly the base layer
    True
    """

    def __init__(self, base: Linear, rank: int, alpha: float, *, rng):
        if not isinstance(base, Linear):
            raise ValueError(f"LoRALinear base: got {type(base).__name__}, expected a Linear")
        check_positive_int("LoRALinear rank", rank)
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha) or alpha <= 0:
            raise ValueError(f"LoRALinear alpha: got {alpha!r}, expected a finite number > 0")
        if rng is None:
            raise ValueError("LoRALinear rng: got None, expected a numpy Generator (A is drawn from it)")
        self.in_features, self.out_features = base.in_features, base.out_features
        self.rank, self.alpha = int(rank), float(alpha)
        self.scale = self.alpha / self.rank  # s = alpha / r, a Python float (never upcasts float32)
        self.weight, self.bias = base.weight, base.bias  # the base layer's Parameters, same names
        self.weight.requires_grad = False
        if self.bias is not None:
            self.bias.requires_grad = False
        dtype = base.weight.data.dtype
        bound = 1.0 / math.sqrt(self.in_features)
        A = rng.uniform(-bound, bound, (self.in_features, self.rank)).astype(dtype)  # (in, r)
        self.A = Parameter(to_device(A, device_of(base.weight.data)))  # next to W, on its device
        xp = array_module(base.weight.data)
        self.B = Parameter(xp.zeros((self.rank, self.out_features), dtype=dtype))  # (r, out): starts as the base
        self.merged = False

    def delta_weight(self):
        """``s A B``: ``[in, r] @ [r, out] -> [in, out]``, what merging adds to W."""
        return self.scale * (self.A.data @ self.B.data)

    def merge(self) -> None:
        """Fold the correction into W in place (``W += s A B``); forward then runs the base product alone."""
        if self.merged:
            raise ValueError("LoRALinear.merge: already merged, expected an unmerged layer (call unmerge first)")
        self.weight.data += self.delta_weight()  # in place: whoever holds W sees the merged weight
        self.merged = True

    def unmerge(self) -> None:
        """Take the correction out of W again (``W -= s A B``): W as before :meth:`merge`, up to float rounding."""
        if not self.merged:
            raise ValueError("LoRALinear.unmerge: not merged, expected a layer on which merge() was called")
        self.weight.data -= self.delta_weight()
        self.merged = False

    def forward(self, x):
        check_array("LoRALinear input", x, min_ndim=1, last_dim=self.in_features)
        b = None if self.bias is None else self.bias.data
        if self.merged:  # W already holds s A B
            out, self.cache = linear_forward(x, self.weight.data, b)
            return out
        out, self.cache = lora_forward(x, self.weight.data, b, self.A.data, self.B.data, self.scale)
        return out

    def backward(self, dout):
        if self.merged:
            raise ValueError("LoRALinear.backward: the layer is merged (W holds s A B), expected unmerge() before "
                             "training it")
        dx, dW, db, dA, dB = lora_backward(dout, self.cache, weight_grad=self.weight.requires_grad)
        if dW is not None:  # the base weight was unfrozen on purpose
            self.weight.grad += dW
        if self.bias is not None and self.bias.requires_grad:
            self.bias.grad += db
        if self.A.requires_grad:
            self.A.grad += dA
        if self.B.requires_grad:
            self.B.grad += dB
        return dx

    def to_linear(self) -> Linear:
        """A plain :class:`Linear` holding this layer's ``weight`` and ``bias`` (merge first to keep the adapter).

        No new weights are drawn: the Linear is given the same Parameters.
        """
        plain = Linear.__new__(Linear)  # skip Linear.__init__'s random draw; the weights are set below
        plain.in_features, plain.out_features = self.in_features, self.out_features
        plain.weight, plain.bias = self.weight, self.bias
        return plain

    def __repr__(self):
        return (f"LoRALinear(in={self.in_features}, out={self.out_features}, rank={self.rank}, "
                f"alpha={self.alpha}{', merged' if self.merged else ''})")


__all__ = ["LoRALinear", "lora_backward", "lora_forward"]
