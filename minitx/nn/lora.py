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

Embeddings, and the tied head
-----------------------------
A token embedding is a Linear applied to a one-hot row (``onehot(id) W``,
``W`` of shape ``(V, D)``), so it takes the same correction
(:class:`LoRAEmbedding`, as PEFT does for ``nn.Embedding``)::

    W_eff = W + s A B            A (V, r), B (r, D)
    x = W_eff[ids] = W[ids] + s A[ids] B

Here the per-token factor ``A`` starts at zero and the shared ``B`` is
drawn N(0, 1) (PEFT's choice): a random ``A`` of Linear scale
(``1/sqrt(V)``) would make every row's update tiny. When the model *ties*
the embedding to its LM head (GPT-2: ``logits = h W^T``), the head must
score against the same ``W_eff``, and the backward adds both paths into
``dA``, ``dB``: see :meth:`LoRAEmbedding.effective_weight` and
:meth:`LoRAEmbedding.weight_backward`. That matters more than it looks:
in a small model the answer tokens' *head* rows are what a task changes
most, and a frozen tied matrix stops LoRA there.

Both layers share :class:`LoRALayer`: the factors, ``s``, ``delta_weight``
and merge/unmerge (``s A B`` has the weight's shape in both).

The parameter names stay the base layer's (``blocks.0.attn.qkv.weight``,
``...qkv.bias``) plus ``...qkv.A`` and ``...qkv.B``, so a checkpoint of the
base model still loads into the frozen part, and the adapter alone is the
parameters whose names end in ``.A`` / ``.B``
(:func:`minitx.finetune.save_adapter`).
"""
from __future__ import annotations

import math

import numpy as np

from ..backend import device_of, to_device
from .checks import check_array, check_positive_int
from .embedding import Embedding, embedding_backward, embedding_forward
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


class LoRALayer(Module):
    """What every LoRA layer shares: a frozen base ``weight`` plus ``s A B`` of the same shape.

    Subclasses (:class:`LoRALinear`, :class:`LoRAEmbedding`) say how the
    base is read (``forward`` / ``backward``), the factor shapes
    (:meth:`factor_shapes`) and how ``A`` and ``B`` start; the adapter
    arithmetic is here once: ``delta_weight``, ``merge``, ``unmerge``.
    """

    #: the plain layer this one wraps (set by each subclass)
    base_type: type = Module

    @classmethod
    def factor_shapes(cls, base, rank: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """``(A shape, B shape)`` for wrapping ``base`` at ``rank`` (what an adapter file must hold)."""
        raise NotImplementedError

    def _take_base(self, base, rank, alpha, rng) -> None:
        """Check the settings, take over ``base``'s Parameters (frozen) and set ``rank``, ``alpha``, ``scale``."""
        what = type(self).__name__
        if not isinstance(base, self.base_type):
            raise ValueError(f"{what} base: got {type(base).__name__}, expected a {self.base_type.__name__}")
        check_positive_int(f"{what} rank", rank)
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha) or alpha <= 0:
            raise ValueError(f"{what} alpha: got {alpha!r}, expected a finite number > 0")
        if rng is None:
            raise ValueError(f"{what} rng: got None, expected a numpy Generator (a factor is drawn from it)")
        self.rank, self.alpha = int(rank), float(alpha)
        self.scale = self.alpha / self.rank  # s = alpha / r, a Python float (never upcasts float32)
        self.weight = base.weight  # the base layer's Parameter, same name (a tied weight stays tied)
        self.weight.requires_grad = False
        self.merged = False

    def _factors(self, A, B) -> None:
        """Make ``A`` and ``B`` Parameters next to the base weight (its device, its dtype)."""
        dtype, device = self.weight.data.dtype, device_of(self.weight.data)
        self.A = Parameter(to_device(A.astype(dtype), device))
        self.B = Parameter(to_device(B.astype(dtype), device))

    def delta_weight(self):
        """``s A B``, the weight's shape, what merging adds to it."""
        return self.scale * (self.A.data @ self.B.data)

    def merge(self) -> None:
        """Fold the correction into the weight in place (``W += s A B``); forward then reads the base alone."""
        if self.merged:
            raise ValueError(f"{type(self).__name__}.merge: already merged, expected an unmerged layer (call "
                             "unmerge first)")
        self.weight.data += self.delta_weight()  # in place: whoever holds W sees the merged weight
        self.merged = True

    def unmerge(self) -> None:
        """Take the correction out of the weight again (``W -= s A B``): as before :meth:`merge`, up to rounding."""
        if not self.merged:
            raise ValueError(f"{type(self).__name__}.unmerge: not merged, expected a layer on which merge() was "
                             "called")
        self.weight.data -= self.delta_weight()
        self.merged = False

    def _check_unmerged(self, what: str) -> None:
        if self.merged:
            raise ValueError(f"{type(self).__name__}.{what}: the layer is merged (W holds s A B), expected unmerge() "
                             "before training it")


class LoRALinear(LoRALayer):
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

    base_type = Linear

    @classmethod
    def factor_shapes(cls, base, rank):
        return (base.in_features, rank), (rank, base.out_features)  # A (in, r), B (r, out)

    def __init__(self, base: Linear, rank: int, alpha: float, *, rng):
        self._take_base(base, rank, alpha, rng)
        self.in_features, self.out_features = base.in_features, base.out_features
        self.bias = base.bias
        if self.bias is not None:
            self.bias.requires_grad = False
        bound = 1.0 / math.sqrt(self.in_features)
        A = rng.uniform(-bound, bound, (self.in_features, self.rank))  # (in, r)
        self._factors(A, np.zeros((self.rank, self.out_features)))  # B (r, out) = 0: starts as the base

    def forward(self, x):
        check_array("LoRALinear input", x, min_ndim=1, last_dim=self.in_features)
        b = None if self.bias is None else self.bias.data
        if self.merged:  # W already holds s A B
            out, self.cache = linear_forward(x, self.weight.data, b)
            return out
        out, self.cache = lora_forward(x, self.weight.data, b, self.A.data, self.B.data, self.scale)
        return out

    def backward(self, dout):
        self._check_unmerged("backward")
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

    to_plain = to_linear

    def __repr__(self):
        return (f"LoRALinear(in={self.in_features}, out={self.out_features}, rank={self.rank}, "
                f"alpha={self.alpha}{', merged' if self.merged else ''})")


# --------------------------------------------------------------------------
# The token embedding (and the head tied to it)
# --------------------------------------------------------------------------
def lora_embedding_forward(ids, W, A, B, scale: float):
    """``[...] int, [V, D], [V, r], [r, D] -> [..., D]``: ``W[ids] + s A[ids] B``, without forming ``W + s A B``.

    Caches the ids (for the scatter-adds) and ``a = A[ids]`` (for dL/dB).
    """
    out, (ids, w_shape) = embedding_forward(ids, W)  # (..., D)  the frozen rows
    a = A[ids]  # (..., r)  each position's r numbers
    out = out + scale * (a @ B)  # (..., r) @ (r, D) -> (..., D)
    return out, (ids, w_shape, a, A, B, scale)


def lora_embedding_backward(dout, cache, *, weight_grad: bool = False):
    """Given dL/dx for ``x = W[ids] + s A[ids] B``, return ``(dW, dA, dB)`` (``dW`` None unless ``weight_grad``).

    Row ``n`` of the output reads row ``ids[n]`` of ``A``, so, as for a
    plain embedding, the gradients of the looked-up rows are scattered back:
        dL/dB      = s sum_n A[ids[n]]^T dL/dx[n]     = s a^T dL/dx       (r, N) @ (N, D)
        dL/dA[v]   = s sum_{n: ids[n] = v} dL/dx[n] B^T                   scatter-add of (N, D) @ (D, r)
        dL/dW[v]   = sum_{n: ids[n] = v} dL/dx[n]                         (only when W trains)
    """
    ids, w_shape, a, A, B, scale = cache
    D, r = w_shape[1], A.shape[1]
    d2 = dout.reshape(-1, D)  # (N, D)
    dB = scale * (a.reshape(-1, r).T @ d2)  # (r, N) @ (N, D) -> (r, D)
    dA = embedding_backward(scale * (dout @ B.T), (ids, A.shape))  # (..., D) @ (D, r) -> (..., r), scattered: (V, r)
    dW = embedding_backward(dout, (ids, w_shape)) if weight_grad else None  # (V, D)
    return dW, dA, dB


def lora_weight_backward(dW_eff, A, B, scale: float):
    """``(dA, dB)`` for a use of ``W_eff = W + s A B`` whose gradient is ``dW_eff`` (V, D): the tied head's.

    Element-wise, W_eff[v, d] = W[v, d] + s sum_k A[v, k] B[k, d], so
        dL/dA = s dL/dW_eff B^T          (V, D) @ (D, r) -> (V, r)
        dL/dB = s A^T dL/dW_eff          (r, V) @ (V, D) -> (r, D)
    (and dL/dW = dL/dW_eff, the frozen path).
    """
    return scale * (dW_eff @ B.T), scale * (A.T @ dW_eff)


class LoRAEmbedding(LoRALayer):
    """An :class:`~minitx.nn.embedding.Embedding` plus a low-rank correction: ``W_eff = W + (alpha/r) A B``.

    ``A`` ``(V, rank)`` starts at zero and ``B`` ``(rank, D)`` is drawn
    N(0, 1) from ``rng`` (PEFT's initialisation for embeddings), so
    ``W_eff = W`` at the start. ``forward(ids)`` is ``W_eff[ids]``
    (computed as ``W[ids] + s A[ids] B``).

    A model that ties its LM head to this table reads the head's matrix
    from :meth:`effective_weight` and hands the head's gradient to
    :meth:`weight_backward`; a plain :class:`Embedding` has the same two
    methods (its weight, and ``weight.grad +=``), so the model's code is the
    same with or without the adapter.

    >>> import numpy as np
    >>> base = Embedding(10, 4, rng=np.random.default_rng(0))
    >>> lora = LoRAEmbedding(base, rank=2, alpha=4.0, rng=np.random.default_rng(1))
    >>> ids = np.array([[1, 2, 2]])
    >>> bool(np.array_equal(lora(ids), base(ids)))   # A = 0: exactly the base table
    True
    """

    base_type = Embedding

    @classmethod
    def factor_shapes(cls, base, rank):
        return (base.num_embeddings, rank), (rank, base.embedding_dim)  # A (V, r), B (r, D)

    def __init__(self, base: Embedding, rank: int, alpha: float, *, rng):
        self._take_base(base, rank, alpha, rng)
        self.num_embeddings, self.embedding_dim = base.num_embeddings, base.embedding_dim
        B = rng.standard_normal((self.rank, self.embedding_dim))  # (r, D)
        self._factors(np.zeros((self.num_embeddings, self.rank)), B)  # A (V, r) = 0: starts as the base

    def effective_weight(self):
        """``W_eff`` ``(V, D)``: ``W + s A B`` (``W`` itself once merged), what a tied head scores against."""
        return self.weight.data if self.merged else self.weight.data + self.delta_weight()

    def weight_backward(self, dW_eff) -> None:
        """Add the gradient of a use of :meth:`effective_weight` (the tied head's ``dW``) into ``A``, ``B``."""
        self._check_unmerged("weight_backward")
        dA, dB = lora_weight_backward(dW_eff, self.A.data, self.B.data, self.scale)
        self._add_grads(dW_eff if self.weight.requires_grad else None, dA, dB)

    def _add_grads(self, dW, dA, dB) -> None:
        if dW is not None:  # the base table was unfrozen on purpose
            self.weight.grad += dW
        if self.A.requires_grad:
            self.A.grad += dA
        if self.B.requires_grad:
            self.B.grad += dB

    def forward(self, ids):
        check_array("LoRAEmbedding ids", ids, kind="iu")
        if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= self.num_embeddings):
            bad = int(ids.min()) if int(ids.min()) < 0 else int(ids.max())
            raise ValueError(f"LoRAEmbedding ids: got id {bad}, expected ids in [0, {self.num_embeddings})")
        if self.merged:  # W already holds s A B
            out, self.cache = embedding_forward(ids, self.weight.data)
            return out
        out, self.cache = lora_embedding_forward(ids, self.weight.data, self.A.data, self.B.data, self.scale)
        return out

    def backward(self, dout):
        self._check_unmerged("backward")
        self._add_grads(*lora_embedding_backward(dout, self.cache, weight_grad=self.weight.requires_grad))
        return None  # ids are integers: there is no gradient to pass further down

    def to_embedding(self) -> Embedding:
        """A plain :class:`Embedding` holding this layer's ``weight`` (merge first to keep the adapter)."""
        plain = Embedding.__new__(Embedding)  # skip Embedding.__init__'s random draw
        plain.num_embeddings, plain.embedding_dim = self.num_embeddings, self.embedding_dim
        plain.weight = self.weight
        return plain

    to_plain = to_embedding

    def __repr__(self):
        return (f"LoRAEmbedding(num={self.num_embeddings}, dim={self.embedding_dim}, rank={self.rank}, "
                f"alpha={self.alpha}{', merged' if self.merged else ''})")


#: Which LoRA layer wraps which plain layer (what apply_lora looks for).
LORA_LAYERS = {Linear: LoRALinear, Embedding: LoRAEmbedding}


__all__ = ["LORA_LAYERS", "LoRAEmbedding", "LoRALayer", "LoRALinear", "lora_backward", "lora_embedding_backward",
           "lora_embedding_forward", "lora_forward", "lora_weight_backward"]
