"""The hot ops on the ``kernels`` backend: minitx's CUDA kernels behind the layers' contracts.

Each function here is the GPU twin of a functional pair in :mod:`minitx.nn`
(or of the GPT's LM head) and keeps its contract: same arguments, same
outputs; where the kernel saves different tensors for the backward pass, the
cache is a small named tuple (:class:`LayerNormKernelCache`,
:class:`AttentionKernelCache`) so the layer's backward can tell which path
produced it. The layers choose with one explicit line::

    if kernels_enabled(x) and ops.layernorm_supported(x, gamma, beta):
        return ops.layernorm_forward(x, gamma, beta, eps)      # minitx's kernel
    ...                                                        # NumPy / CuPy code

:func:`~minitx.backend.kernels_enabled` is false for NumPy arrays and for the
``numpy`` and ``cupy`` backends, so this module is never reached there.

What the kernels cover, and the fallbacks (to the CuPy path, same layer code):

==================  ================================================  ====================================
op                  kernel path                                       falls back to CuPy when
==================  ================================================  ====================================
Linear, LM head     ``matmul`` (``v7_warptile``), transposes as       not float32 (gradient checks use
                    strided views, no copies                          float64), an empty batch
softmax             ``softmax_v1_online`` over the last axis          not float32, empty
LayerNorm           ``layernorm_forward_v1`` / ``backward_v1``        not float32, empty, or
                                                                      ``2 * D * 4`` bytes > 48 KiB
                                                                      (D > 6144: the backward's
                                                                      shared-memory partials)
attention           ``attention_v2_flash_fwd`` / ``_bwd`` (causal     dropout on the attention weights
                    and key-padding masks; lse kept, weights never    while training, a dense
                    stored)                                           ``attn_mask``, ``return_weights``,
                                                                      head size > 128, not float32,
                                                                      more than 65535 batch x heads
==================  ================================================  ====================================

Two behaviours differ from the NumPy/CuPy path, on purpose:

* **No per-row NaN/Inf checks.** The NumPy path checks each row statistic and
  raises a ``ValueError`` naming the layer; on a GPU that check is a device
  sync per layer. The kernels path skips it: a NaN reaches the loss, and the
  trainer stops there with the same one-line "training diverged" error.
* **Attention weights are not kept** (``MultiHeadAttention.attn_weights`` is
  ``None`` after a flash forward): the point of flash attention is never to
  store the ``[B, H, Tq, Tk]`` matrix. Ask for ``return_weights=True`` to take
  the CuPy path and get them.

Numerics: the same float32 maths in a different order (tiled accumulation,
online softmax, atomics in the attention and LayerNorm backward passes), so
results agree with NumPy to float32 rounding, not bit for bit;
``tests/test_gpu_training.py`` states the tolerances.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .cuda import launch
from .cuda import ops as kernels

#: The matmul rung the layers use (the top of the fp32 ladder).
MATMUL_VERSION = "v7_warptile"
_GRID_YZ = 65535  # CUDA's limit on gridDim.y and gridDim.z
_MATMUL_BM = launch.default_variant("matmul", MATMUL_VERSION).p["BM"]  # output rows per block


def _float32(*arrays) -> bool:
    return all(a.dtype == np.float32 and a.size > 0 for a in arrays)


# --------------------------------------------------------------------------
# matmul: Linear and the tied LM head
# --------------------------------------------------------------------------
def matmul_supported(x, W) -> bool:
    """``x [..., K] @ W`` (2-D ``W``, either way round) fits the matmul kernel.

    float32, nothing empty, and every output dimension small enough for the
    grid (rows of the output run along gridDim.y: at most 65535 tiles of BM).
    """
    return _float32(x, W) and max(x.size // x.shape[-1], *W.shape) <= _GRID_YZ * _MATMUL_BM


def linear_forward(x, W, b=None):
    """:func:`minitx.nn.linear.linear_forward` on the matmul kernel; the cache is the NumPy one."""
    out = kernels.matmul(x.reshape(-1, x.shape[-1]), W, version=MATMUL_VERSION)  # (N, in) @ (in, out) -> (N, out)
    if b is not None:
        out += b
    return out.reshape(*x.shape[:-1], W.shape[1]), (x, W, b is not None)  # (..., out)


def linear_backward(dout, cache, *, weight_grad: bool = True):
    """:func:`minitx.nn.linear.linear_backward`: ``dx = dY W^T``, ``dW = X^T dY`` as transposed views (no dW if frozen)."""
    x, W, has_bias = cache
    x2 = x.reshape(-1, x.shape[-1])  # (N, in)
    d2 = dout.reshape(-1, dout.shape[-1])  # (N, out)
    dx = kernels.matmul(d2, W, trans_b=True, version=MATMUL_VERSION).reshape(x.shape)  # (N, out) @ (out, in)
    dW = kernels.matmul(x2, d2, trans_a=True, version=MATMUL_VERSION) if weight_grad else None  # (in, out)
    db = d2.sum(axis=0) if has_bias else None  # (out,)
    return dx, dW, db


def lm_head_forward(h, W):
    """``logits = h @ W^T`` (:func:`minitx.models.gpt.lm_head_forward`) with ``W^T`` as a strided view."""
    V = W.shape[0]
    logits = kernels.matmul(h.reshape(-1, h.shape[-1]), W, trans_b=True, version=MATMUL_VERSION)  # (N, D) @ (D, V)
    return logits.reshape(*h.shape[:-1], V), (h, W)  # (B, T, V)


def lm_head_backward(dlogits, cache):
    """``dh = dlogits @ W``, ``dW = dlogits^T @ h`` (:func:`minitx.models.gpt.lm_head_backward`)."""
    h, W = cache
    V, D = W.shape
    d2 = dlogits.reshape(-1, V)  # (N, V)
    dh = kernels.matmul(d2, W, version=MATMUL_VERSION).reshape(h.shape)  # (N, V) @ (V, D) -> (B, T, D)
    dW = kernels.matmul(d2, h.reshape(-1, D), trans_a=True, version=MATMUL_VERSION)  # (V, N) @ (N, D) -> (V, D)
    return dh, dW


# --------------------------------------------------------------------------
# softmax
# --------------------------------------------------------------------------
def softmax_supported(x) -> bool:
    return _float32(x)


def softmax_forward(x):
    """:func:`minitx.nn.softmax.softmax_forward`: returns ``(y, y)``; the backward pass is unchanged."""
    y = kernels.softmax(x)  # (..., C)
    return y, y


# --------------------------------------------------------------------------
# LayerNorm
# --------------------------------------------------------------------------
class LayerNormKernelCache(NamedTuple):
    """What the LayerNorm kernels keep: the input and per-row statistics (not ``xhat``)."""

    x: object  # (..., D)
    gamma: object  # (D,)
    mean: object  # (...,)
    rstd: object  # (...,)


def layernorm_supported(x, gamma, beta) -> bool:
    """float32, non-empty, and the backward's ``2 * D`` float partials fit 48 KiB of shared memory."""
    return _float32(x, gamma, beta) and 2 * x.shape[-1] * launch.FLOAT_BYTES <= launch.DEFAULT_SMEM_LIMIT


def layernorm_forward(x, gamma, beta, eps: float = 1e-5):
    y, (mean, rstd) = kernels.layernorm_forward(x, gamma, beta, eps)  # (..., D), (...), (...)
    return y, LayerNormKernelCache(x, gamma, mean, rstd)


def layernorm_backward(dy, cache: LayerNormKernelCache):
    """Return ``(dx, dgamma, dbeta)``, the kernel's version of the formula in :mod:`minitx.nn.norm`."""
    return kernels.layernorm_backward(dy, cache.x, cache.gamma, cache.mean, cache.rstd)


# --------------------------------------------------------------------------
# attention (flash forward/backward, with structured masks)
# --------------------------------------------------------------------------
class AttentionKernelCache(NamedTuple):
    """Flash attention keeps ``q, k, v``, the output and the logsumexp per query; no weights."""

    q: object  # (B, H, Tq, hs)
    k: object  # (B, H, Tk, hs)
    v: object  # (B, H, Tk, hs)
    out: object  # (B, H, Tq, hs)
    lse: object  # (B, H, Tq)
    causal: bool
    keep: object  # (B, Tk) bool, True = a real key; or None


def attention_supported(q, k, v, *, dropout_active: bool, attn_mask, return_weights: bool) -> bool:
    """The flash kernels cover causal and key-padding masks, float32, head size <= 128, no dropout."""
    return (not dropout_active and attn_mask is None and not return_weights and _float32(q, k, v)
            and k.shape == v.shape and q.shape[-1] == k.shape[-1] and q.shape[-1] <= launch.HEAD_SIZES[-1]
            and q.shape[0] * q.shape[1] <= _GRID_YZ)


def attention_forward(q, k, v, *, causal: bool, key_padding_mask=None):
    """``q [B, H, Tq, hs], k, v [B, H, Tk, hs] -> out [B, H, Tq, hs]`` and the cache.

    ``causal`` is bottom-right aligned (query i sees keys j <= i + Tk - Tq), which is
    exactly :func:`minitx.nn.attention.causal_mask` with ``start = past`` under a KV cache.
    ``key_padding_mask [B, Tk]``: True = padding (the kernel takes its inverse, ``keep``).
    """
    keep = None if key_padding_mask is None else ~key_padding_mask  # (B, Tk)
    out, lse = kernels.attention_forward(q, k, v, causal=causal, keep=keep)  # (B, H, Tq, hs), (B, H, Tq)
    return out, AttentionKernelCache(q, k, v, out, lse, causal, keep)


def attention_backward(dout, cache: AttentionKernelCache):
    """Return ``(dq, dk, dv)``: recompute the weights from the logsumexp, ``D = rowsum(dO * O)``."""
    c = cache
    return kernels.attention_backward(dout, c.q, c.k, c.v, c.out, c.lse, causal=c.causal, keep=c.keep)


__all__ = ["MATMUL_VERSION", "AttentionKernelCache", "LayerNormKernelCache", "attention_backward",
           "attention_forward", "attention_supported", "layernorm_backward", "layernorm_forward",
           "layernorm_supported", "linear_backward", "linear_forward", "lm_head_backward", "lm_head_forward",
           "matmul_supported", "softmax_forward", "softmax_supported"]
