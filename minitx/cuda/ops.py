"""Launch wrappers: minitx's CUDA kernels as functions on CuPy arrays.

(Or on NumPy arrays, run by the CPU emulator: see :func:`use_runtime`.)

Each wrapper checks its inputs, works out the launch with
:mod:`minitx.cuda.launch`, packs the arguments with exact scalar types and
launches on CuPy's current stream. ``version`` picks a rung of the ladder;
``variant`` (a :class:`~minitx.cuda.launch.Variant`) pins exact tile sizes.

    >>> import cupy as cp                                    # doctest: +SKIP
    >>> from minitx.cuda import ops
    >>> a = cp.random.rand(300, 200, dtype=cp.float32); b = cp.random.rand(200, 70, dtype=cp.float32)
    >>> c = ops.matmul(a, b, version="v7_warptile")          # == a @ b
    >>> c_t = ops.matmul(b.T, a.T)                           # transposes are stride views, no copies
"""
from __future__ import annotations

import contextlib
import math

import numpy as np

from . import launch
from .loader import get_function


class CupyRuntime:
    """Where the wrappers' arrays live and how a kernel is launched: CuPy on a GPU.

    The wrappers below never name CuPy directly; they ask the active runtime
    for its array module (``xp``), a device pointer, the SM count and a
    launch. :mod:`minitx.cuda.emulator` supplies a second runtime that runs
    the very same kernel sources on the CPU over NumPy arrays, so the
    wrappers and the kernels are exercised in CI without a GPU.
    """

    array_kind = "CuPy"  # for error messages

    @property
    def xp(self):
        import cupy  # noqa: PLC0415 - only on a GPU

        return cupy

    def ptr(self, x) -> int:
        return x.data.ptr

    def sm_count(self) -> int:
        return self.xp.cuda.Device().attributes["MultiProcessorCount"]

    def launch(self, v: launch.Variant, cfg: launch.Launch, args: tuple) -> None:
        fn = get_function(v)
        if cfg.shared_mem > launch.DEFAULT_SMEM_LIMIT and fn.max_dynamic_shared_size_bytes < cfg.shared_mem:
            fn.max_dynamic_shared_size_bytes = cfg.shared_mem  # opt in above 48 KiB
        fn(cfg.grid, cfg.block, args, shared_mem=cfg.shared_mem)


_runtime = CupyRuntime()


@contextlib.contextmanager
def use_runtime(runtime):
    """Run the wrappers on ``runtime`` inside the ``with`` block (e.g. the CPU emulator)."""
    global _runtime
    before, _runtime = _runtime, runtime
    try:
        yield runtime
    finally:
        _runtime = before


def _cupy():
    """The active runtime's array module (CuPy, or NumPy under the emulator)."""
    return _runtime.xp


def _variant(op, version, variant, head_size=None):
    if variant is not None:
        if variant.op != op:
            raise ValueError(f"variant {variant.name_expression}: is for op {variant.op!r}, expected {op!r}")
        return variant
    return launch.default_variant(op, version, head_size)


def _run(v, cfg, *args):
    _runtime.launch(v, cfg, launch.pack_args(v.template, *args))


# --------------------------------------------------------------------------
# matmul
# --------------------------------------------------------------------------
def _matrix_view(x, name, dtype):
    """``[..., R, C]`` (2-D or 3-D) -> (x, batch, rows, cols, row_stride, col_stride, batch_stride) in elements."""
    cp = _cupy()
    if not isinstance(x, cp.ndarray) or x.dtype != dtype or x.ndim not in (2, 3):
        raise ValueError(f"matmul {name}: got {type(x).__name__} {getattr(x, 'dtype', '')} "
                         f"with shape {getattr(x, 'shape', '')}, "
                         f"expected a 2-D or 3-D {_runtime.array_kind} {np.dtype(dtype).name} array")
    item = x.itemsize
    if any(s < 0 or s % item for s in x.strides):
        x = cp.ascontiguousarray(x)
    strides = [s // item for s in x.strides]
    if x.ndim == 2:
        return x, 1, x.shape[0], x.shape[1], strides[0], strides[1], 0
    return x, x.shape[0], x.shape[1], x.shape[2], strides[1], strides[2], strides[0]


def matmul_vec_flags(a_cs, a_rs, a_bs, a_ptr, b_cs, b_rs, b_bs, b_ptr, c_rs, c_bs, c_ptr, batch) -> int:
    """The ``vec_ok`` bits: which operands may use 16-byte (float4) accesses.

    Rows must be contiguous (column stride 1), every row start 16-byte aligned
    (row stride a multiple of 4 floats, base pointer aligned, and the batch
    stride too when there is more than one batch entry).
    """
    def ok(cs, rs, bs, ptr):
        return cs == 1 and rs % 4 == 0 and ptr % 16 == 0 and (batch == 1 or bs % 4 == 0)

    return (1 if ok(a_cs, a_rs, a_bs, a_ptr) else 0) | (2 if ok(b_cs, b_rs, b_bs, b_ptr) else 0) | \
        (4 if ok(1, c_rs, c_bs, c_ptr) else 0)


def matmul(a, b, *, version: str = "v7_warptile", variant=None, trans_a: bool = False, trans_b: bool = False, out=None):
    """``a [(batch,) M, K] @ b [(batch,) K, N] -> [(batch,) M, N]`` float32 with a minitx kernel.

    A 2-D operand next to a 3-D one is shared by every batch entry (batch
    stride 0), which is how ``x [B, T, D] @ W [D, F]`` runs without copies.
    ``trans_a`` / ``trans_b`` multiply by the transpose of the last two axes
    (a strided view, no copy): ``dX = dY @ W^T`` is ``matmul(dy, w, trans_b=True)``.
    """
    cp = _cupy()
    v = _variant("matmul", version, variant)
    a, ba, M, K, a_rs, a_cs, a_bs = _matrix_view(a, "a", np.float32)
    b, bb, K2, N, b_rs, b_cs, b_bs = _matrix_view(b, "b", np.float32)
    if trans_a:
        M, K, a_rs, a_cs = K, M, a_cs, a_rs
    if trans_b:
        K2, N, b_rs, b_cs = N, K2, b_cs, b_rs
    if K != K2:
        raise ValueError(f"matmul: inner sizes differ, got a (.., {M}, {K}) and b (.., {K2}, {N})")
    if ba != bb and min(ba, bb) != 1:
        raise ValueError(f"matmul: batch sizes {ba} and {bb}, expected equal or one of them 2-D")
    batch = max(ba, bb)
    if ba == 1:
        a_bs = 0
    if bb == 1:
        b_bs = 0
    shape = (M, N) if a.ndim == 2 and b.ndim == 2 else (batch, M, N)
    c = cp.empty(shape, dtype=cp.float32) if out is None else out
    if c.shape != shape or c.dtype != cp.float32 or not c.flags.c_contiguous:
        raise ValueError(f"matmul out: got {c.shape} {c.dtype}, expected a C-contiguous float32 array of shape {shape}")
    vec = matmul_vec_flags(a_cs, a_rs, a_bs, _runtime.ptr(a), b_cs, b_rs, b_bs, _runtime.ptr(b), N, M * N,
                           _runtime.ptr(c), batch)
    cfg = launch.matmul_launch(v, M, N, K, batch)
    _run(v, cfg, M, N, K, a, a_rs, a_cs, a_bs, b, b_rs, b_cs, b_bs, c, N, M * N if batch > 1 else 0, vec)
    return c


# --------------------------------------------------------------------------
# bfloat16 (as uint16 bit patterns) and the tensor-core matmul
# --------------------------------------------------------------------------
def to_bf16_bits(x):
    """float32 array -> uint16 array of bfloat16 bits, rounded to nearest even (NumPy or CuPy)."""
    from ..backend import array_module  # noqa: PLC0415

    xp = array_module(x)
    u = xp.ascontiguousarray(x, dtype=xp.float32).view(xp.uint32)
    rounding = xp.uint32(0x7FFF) + ((u >> xp.uint32(16)) & xp.uint32(1))
    return ((u + rounding) >> xp.uint32(16)).astype(xp.uint16)


def from_bf16_bits(h):
    """uint16 array of bfloat16 bits -> float32 array."""
    from ..backend import array_module  # noqa: PLC0415

    xp = array_module(h)
    return (h.astype(xp.uint32) << xp.uint32(16)).view(xp.float32)


def matmul_bf16(a_bits, b_bits, *, version: str = "mma_bf16", variant=None):
    """Tensor-core matmul: bf16 ``a [(batch,) M, K]`` @ bf16 ``b`` -> float32, fp32 accumulation.

    ``version``: ``"mma_bf16"`` (``matmul_bf16_mma``) or ``"mma_bf16_v2_pipelined"``
    (``matmul_bf16_mma_v2``: ldmatrix fragments, double-buffered cp.async
    tiles for row-major operands); a ``variant`` of either wins.
    """
    cp = _cupy()
    if variant is None and version not in launch.versions("matmul_bf16"):
        raise ValueError(f"matmul_bf16 version: got {version!r}, expected one of {launch.versions('matmul_bf16')}")
    v = _variant("matmul_bf16", version, variant)
    a, ba, M, K, a_rs, a_cs, a_bs = _matrix_view(a_bits, "a", np.uint16)
    b, bb, K2, N, b_rs, b_cs, b_bs = _matrix_view(b_bits, "b", np.uint16)
    if K != K2:
        raise ValueError(f"matmul_bf16: inner sizes differ, got K={K} and {K2}")
    if ba != bb and min(ba, bb) != 1:
        raise ValueError(f"matmul_bf16: batch sizes {ba} and {bb}, expected equal or one of them 2-D")
    batch = max(ba, bb)
    a_bs, b_bs = (0 if ba == 1 else a_bs), (0 if bb == 1 else b_bs)
    shape = (M, N) if a.ndim == 2 and b.ndim == 2 else (batch, M, N)
    c = cp.empty(shape, dtype=cp.float32)
    cfg = launch.matmul_launch(v, M, N, K, batch)
    _run(v, cfg, M, N, K, a, a_rs, a_cs, a_bs, b, b_rs, b_cs, b_bs, c, N, M * N if batch > 1 else 0, 0)
    return c


# --------------------------------------------------------------------------
# softmax and LayerNorm (last axis, contiguous rows)
# --------------------------------------------------------------------------
def _rows(x, name):
    cp = _cupy()
    if not isinstance(x, cp.ndarray) or x.dtype != cp.float32 or x.ndim < 1 or x.size == 0:
        raise ValueError(f"{name}: got {type(x).__name__} {getattr(x, 'dtype', '')} {getattr(x, 'shape', '')}, "
                         f"expected a non-empty {_runtime.array_kind} float32 array")
    return cp.ascontiguousarray(x)


def softmax(x, *, variant=None):
    """Softmax over the last axis (one pass for the statistics, one to write)."""
    cp = _cupy()
    x = _rows(x, "softmax input")
    v = _variant("softmax", None, variant)
    C = x.shape[-1]
    rows = x.size // C
    y = cp.empty_like(x)
    _run(v, launch.rows_launch(v, rows), x, y, rows, C)
    return y


def layernorm_forward(x, gamma, beta, eps: float = 1e-5, *, variant=None):
    """``[..., D] -> y [..., D]``, and ``(mean, rstd)`` per row for the backward pass."""
    cp = _cupy()
    x = _rows(x, "LayerNorm input")
    D = x.shape[-1]
    rows = x.size // D
    v = _variant("layernorm_fwd", None, variant)
    y = cp.empty_like(x)
    mean = cp.empty(x.shape[:-1], dtype=cp.float32)
    rstd = cp.empty(x.shape[:-1], dtype=cp.float32)
    _run(v, launch.rows_launch(v, rows), x, cp.ascontiguousarray(gamma), cp.ascontiguousarray(beta), y, mean, rstd,
         rows, D, eps)
    return y, (mean, rstd)


def layernorm_backward(dy, x, gamma, mean, rstd, *, variant=None):
    """Return ``(dx, dgamma, dbeta)``."""
    cp = _cupy()
    dy, x = _rows(dy, "LayerNorm dy"), _rows(x, "LayerNorm input")
    D = x.shape[-1]
    rows = x.size // D
    v = _variant("layernorm_bwd", None, variant)
    dx = cp.empty_like(x)
    dgamma = cp.zeros(D, dtype=cp.float32)
    dbeta = cp.zeros(D, dtype=cp.float32)
    sm = _runtime.sm_count()
    cfg, per_block = launch.layernorm_bwd_launch(v, rows, D, sm)
    _run(v, cfg, dy, x, cp.ascontiguousarray(gamma), mean, rstd, dx, dgamma, dbeta, rows, D, per_block)
    return dx, dgamma, dbeta


# --------------------------------------------------------------------------
# attention
# --------------------------------------------------------------------------
def _attn_inputs(q, k, v, keep, dtype=np.float32, what="float32"):
    """Accept ``[B, H, T, hs]`` (or ``[BH, T, hs]``); return contiguous 3-D views and the head count."""
    cp = _cupy()
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, cp.ndarray) or t.dtype != dtype or t.ndim not in (3, 4):
            raise ValueError(f"attention {name}: got {getattr(t, 'dtype', type(t).__name__)} {getattr(t, 'shape', '')}, "
                             f"expected a {_runtime.array_kind} {what} array [B, H, T, hs] or [BH, T, hs]")
    if q.shape[:-2] != k.shape[:-2] or k.shape != v.shape or q.shape[-1] != k.shape[-1]:
        raise ValueError(f"attention: shapes q {q.shape}, k {k.shape}, v {v.shape}; expected matching batch/heads, "
                         "k and v equal, one head size")
    H = q.shape[1] if q.ndim == 4 else 1
    B = q.shape[0]
    Tq, hs, Tk = q.shape[-2], q.shape[-1], k.shape[-2]
    if keep is not None:
        if q.ndim != 4 or keep.shape != (B, Tk):
            raise ValueError(f"attention keep mask: got shape {getattr(keep, 'shape', None)}, expected (B, Tk) = "
                             f"({B}, {Tk}) with q of shape [B, H, Tq, hs]")
        keep = cp.ascontiguousarray(keep.astype(cp.uint8))
    flat = [cp.ascontiguousarray(t).reshape(-1, t.shape[-2], hs) for t in (q, k, v)]
    return (*flat, H, Tq, Tk, hs, keep)


def attention_forward(q, k, v, *, causal: bool = False, keep=None, version: str = "v2_flash", variant=None):
    """Scaled dot-product attention. Returns ``(out, lse)``, shaped like ``q`` and ``q.shape[:-1]``.

    ``keep``: bool ``[B, Tk]``, True for real tokens (the inverse of
    ``key_padding_mask``); ``causal``: query i sees keys j <= i + (Tk - Tq).
    """
    cp = _cupy()
    q3, k3, v3, H, Tq, Tk, hs, keep = _attn_inputs(q, k, v, keep)
    kv = _variant("attention_fwd", version, variant, head_size=hs if version != "v1_naive" else None)
    BH = q3.shape[0]
    o = cp.empty_like(q3)
    lse = cp.empty((BH, Tq), dtype=cp.float32)
    cfg = launch.attention_fwd_launch(kv, BH, Tq, Tk, hs)
    _run(kv, cfg, q3, k3, v3, o, lse, H, Tq, Tk, hs, 1.0 / math.sqrt(hs), int(causal), Tk - Tq, keep)
    return o.reshape(q.shape), lse.reshape(q.shape[:-1])


def attention_forward_bf16(q_bits, k_bits, v_bits, *, causal: bool = False, keep=None, version: str = "v3_tc",
                           variant=None):
    """Flash attention on tensor cores: bf16 in, float32 ``(out, lse)`` out.

    ``version``: ``"v3_tc"`` (``attention_v3_tc_fwd``, plain shared-memory
    loads) or ``"v4_tc_pipelined"`` (``attention_v4_tc_fwd``: ldmatrix
    fragments, double-buffered cp.async tiles; any head size, with 16-byte
    async copies when ``hs % 8 == 0``); a ``variant`` of either wins.

    ``q_bits [B, H, Tq, hs]`` (or ``[BH, Tq, hs]``), ``k_bits``, ``v_bits``
    ``[.., Tk, hs]``: uint16 arrays of bf16 bits (:func:`to_bf16_bits`).
    Both products run as bf16 ``mma.sync`` with fp32 accumulation; the
    softmax is fp32, and its weights are rounded to bf16 before ``P V``
    (what FlashAttention does too). ``out`` is shaped like ``q_bits``,
    ``lse`` like ``q_bits.shape[:-1]``; ``causal`` and ``keep`` as in
    :func:`attention_forward`. Head size at most 128.
    """
    cp = _cupy()
    if variant is None and version not in launch.versions("attention_tc_fwd"):
        raise ValueError(f"attention_forward_bf16 version: got {version!r}, expected one of "
                         f"{launch.versions('attention_tc_fwd')}")
    for name, t in (("q_bits", q_bits), ("k_bits", k_bits), ("v_bits", v_bits)):
        shape = getattr(t, "shape", None)
        if shape is not None and 0 in tuple(shape):
            raise ValueError(f"attention_forward_bf16 {name}: got shape {tuple(shape)}, expected no empty axis")
    q3, k3, v3, H, Tq, Tk, hs, keep = _attn_inputs(q_bits, k_bits, v_bits, keep, np.uint16,
                                                    "uint16 (bf16 bits)")
    kv = _variant("attention_tc_fwd", version, variant, head_size=hs)
    BH = q3.shape[0]
    o = cp.empty((BH, Tq, hs), dtype=cp.float32)
    lse = cp.empty((BH, Tq), dtype=cp.float32)
    cfg = launch.attention_tc_fwd_launch(kv, BH, Tq, Tk, hs)
    _run(kv, cfg, q3, k3, v3, o, lse, H, Tq, Tk, hs, 1.0 / math.sqrt(hs), int(causal), Tk - Tq, keep)
    return o.reshape(q_bits.shape), lse.reshape(q_bits.shape[:-1])


def attention_backward(dout, q, k, v, out, lse, *, causal: bool = False, keep=None, variant=None):
    """Flash backward: returns ``(dq, dk, dv)`` shaped like ``q, k, v``."""
    cp = _cupy()
    q3, k3, v3, H, Tq, Tk, hs, keep = _attn_inputs(q, k, v, keep)
    BH = q3.shape[0]
    do3 = cp.ascontiguousarray(dout, dtype=cp.float32).reshape(BH, Tq, hs)
    o3 = cp.ascontiguousarray(out).reshape(BH, Tq, hs)
    lse2 = cp.ascontiguousarray(lse, dtype=cp.float32).reshape(BH, Tq)
    delta = cp.empty((BH, Tq), dtype=cp.float32)
    dv_ = launch.default_variant("attention_delta")
    _run(dv_, launch.rows_launch(dv_, BH * Tq), do3, o3, delta, BH * Tq, hs)
    bv = _variant("attention_bwd", "v2_flash", variant, head_size=hs)
    dq = cp.zeros_like(q3)
    dk = cp.empty_like(k3)
    dv = cp.empty_like(v3)
    cfg = launch.attention_bwd_launch(bv, BH, Tq, Tk, hs)
    _run(bv, cfg, q3, k3, v3, do3, lse2, delta, dq, dk, dv, H, Tq, Tk, hs, 1.0 / math.sqrt(hs), int(causal), Tk - Tq,
         keep)
    return dq.reshape(q.shape), dk.reshape(k.shape), dv.reshape(v.shape)


def attention_backward_bf16(dout_bits, q_bits, k_bits, v_bits, out, lse, *, causal: bool = False, keep=None,
                            variant=None):
    """Flash backward on tensor cores (``attention_v3_tc_bwd``): returns float32 ``(dq, dk, dv)``.

    ``dout_bits``, ``q_bits``, ``k_bits``, ``v_bits``: uint16 bf16 bits shaped
    as for :func:`attention_forward_bf16`; ``out`` and ``lse``: float32, what
    that forward returned. ``delta = rowsum(dO * O)`` comes from
    ``attention_bwd_delta``; P and dS are rounded to bf16 for the mma.
    """
    cp = _cupy()
    for name, t in (("q_bits", q_bits), ("k_bits", k_bits), ("v_bits", v_bits)):
        shape = getattr(t, "shape", None)
        if shape is not None and 0 in tuple(shape):
            raise ValueError(f"attention_backward_bf16 {name}: got shape {tuple(shape)}, expected no empty axis")
    q3, k3, v3, H, Tq, Tk, hs, keep = _attn_inputs(q_bits, k_bits, v_bits, keep, np.uint16, "uint16 (bf16 bits)")
    BH = q3.shape[0]
    for name, t, dtype, shape in (("dout_bits", dout_bits, np.uint16, q_bits.shape),
                                  ("out", out, np.float32, q_bits.shape), ("lse", lse, np.float32, q_bits.shape[:-1])):
        if not isinstance(t, cp.ndarray) or t.dtype != dtype or t.shape != shape:
            raise ValueError(f"attention_backward_bf16 {name}: got {getattr(t, 'dtype', type(t).__name__)} "
                             f"{getattr(t, 'shape', '')}, expected a {_runtime.array_kind} {np.dtype(dtype).name} "
                             f"array of shape {shape}")
    do3 = cp.ascontiguousarray(dout_bits).reshape(BH, Tq, hs)
    o3 = cp.ascontiguousarray(out).reshape(BH, Tq, hs)
    lse2 = cp.ascontiguousarray(lse).reshape(BH, Tq)
    delta = cp.empty((BH, Tq), dtype=cp.float32)
    dv_ = launch.default_variant("attention_delta")
    _run(dv_, launch.rows_launch(dv_, BH * Tq), cp.ascontiguousarray(from_bf16_bits(do3)), o3, delta, BH * Tq, hs)
    bv = _variant("attention_tc_bwd", "v3_tc", variant, head_size=hs)
    dq = cp.zeros((BH, Tq, hs), dtype=cp.float32)
    dk = cp.empty((BH, Tk, hs), dtype=cp.float32)
    dv = cp.empty((BH, Tk, hs), dtype=cp.float32)
    cfg = launch.attention_tc_bwd_launch(bv, BH, Tq, Tk, hs)
    _run(bv, cfg, q3, k3, v3, do3, lse2, delta, dq, dk, dv, H, Tq, Tk, hs, 1.0 / math.sqrt(hs), int(causal), Tk - Tq,
         keep)
    return dq.reshape(q_bits.shape), dk.reshape(k_bits.shape), dv.reshape(v_bits.shape)
