"""Launch arithmetic for every kernel variant, in plain Python.

Nothing here imports CuPy: the grid / block / shared-memory sizes and the
argument dtypes of each kernel are ordinary functions of the problem shape,
so the CPU test suite checks them (and checks the static shared memory
against what the compiler reports for the same template instance).

A *variant* is one template instance of one kernel version, e.g.
``matmul_v5_blocktile2d<128, 128, 8, 8, 8>``. Each version has a default
variant (the first listed) and possibly others that ``minitx bench kernels``
sweeps to pick tile sizes by measurement rather than by guess.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FLOAT_BYTES = 4
BF16_BYTES = 2
#: The default per-block dynamic shared memory; above it a kernel must opt in.
DEFAULT_SMEM_LIMIT = 48 * 1024
#: Opt-in shared memory per block, by compute capability (CUDA programming guide tables).
MAX_SMEM_OPTIN = {80: 163 * 1024, 86: 99 * 1024, 89: 99 * 1024, 90: 227 * 1024}
HEAD_SIZES = (32, 64, 128)  # flash kernels are instantiated for head sizes up to these
INT32_MAX = 2**31 - 1


def ceil_div(a: int, b: int) -> int:
    """How many tiles of size ``b`` cover ``a`` (``a >= 0``, ``b >= 1``)."""
    return -(-a // b)


@dataclass(frozen=True)
class Variant:
    """One compiled template instance: ``template<params...>`` in ``source``."""

    op: str  # "matmul", "matmul_bf16", "softmax", "layernorm_fwd", "layernorm_bwd", "attention_fwd", ...
    version: str  # "v5_blocktile2d": the rung of the ladder
    source: str  # file in kernels/
    template: str  # the __global__ function template
    params: tuple  # its template arguments, in order
    param_names: tuple

    @property
    def name_expression(self) -> str:
        """What NVRTC instantiates and ``RawModule.get_function`` looks up."""
        return f"{self.template}<{', '.join(str(p) for p in self.params)}>"

    @property
    def p(self) -> dict:
        return dict(zip(self.param_names, self.params))

    @property
    def label(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.p.items())

    @property
    def threads(self) -> int:
        """Threads per block."""
        p = self.p
        t = self.template
        if t in ("matmul_v1_naive", "matmul_v2_coalesced", "matmul_v3_smem"):
            return p["BS"] * p["BS"]
        if t == "matmul_v4_blocktile1d":
            return p["BM"] * p["BN"] // p["TM"]
        if t in ("matmul_v5_blocktile2d", "matmul_v6_vectorized"):
            return p["BM"] * p["BN"] // (p["TM"] * p["TN"])
        if t in ("matmul_v7_warptile", "matmul_bf16_mma", "matmul_bf16_mma_v2"):
            return (p["BM"] // p["WM"]) * (p["BN"] // p["WN"]) * 32
        if "WARPS" in p:
            return p["WARPS"] * 32
        if t == "attention_v1_naive":
            return p["NT"]
        if t == "attention_v2_flash_fwd":
            return 4 * p["BR"]
        if t == "attention_v2_flash_bwd":
            return 4 * p["BC"]
        if t in ("attention_v3_tc_fwd", "attention_v4_tc_fwd"):
            return 32 * p["WARPS"]  # one warp per 16 query rows
        if t == "attention_v3_tc_bwd":
            return 32 * p["WARPS"]  # one warp per 16 keys
        raise KeyError(t)

    @property
    def static_smem(self) -> int:
        """Bytes of ``__shared__`` arrays declared in the kernel (the compiler reports the same)."""
        p, t = self.p, self.template
        if t == "matmul_v3_smem":
            return 2 * p["BS"] * p["BS"] * FLOAT_BYTES
        if t in ("matmul_v4_blocktile1d", "matmul_v5_blocktile2d", "matmul_v6_vectorized", "matmul_v7_warptile"):
            return (p["BK"] * p["BM"] + p["BK"] * p["BN"]) * FLOAT_BYTES
        if t == "matmul_bf16_mma":
            return (p["BM"] + p["BN"]) * (p["BK"] + 8) * BF16_BYTES
        if t == "attention_v1_naive":
            return (p["NT"] // 32) * FLOAT_BYTES
        if t == "attention_v3_tc_fwd":  # sK[BC][D + 8] and sVt[D][BC + 8], bf16
            return (p["BC"] * (p["D"] + 8) + p["D"] * (p["BC"] + 8)) * BF16_BYTES
        return 0


def _v(op, version, source, template, names, *param_sets):
    return [Variant(op, version, source, template, tuple(ps), tuple(names)) for ps in param_sets]


_BLOCK = ("BM", "BN", "BK", "TM", "TN")
VARIANTS: list[Variant] = [
    *_v("matmul", "v1_naive", "matmul.cu", "matmul_v1_naive", ("BS",), (32,), (16,)),
    *_v("matmul", "v2_coalesced", "matmul.cu", "matmul_v2_coalesced", ("BS",), (32,), (16,)),
    *_v("matmul", "v3_smem", "matmul.cu", "matmul_v3_smem", ("BS",), (32,), (16,)),
    *_v("matmul", "v4_blocktile1d", "matmul.cu", "matmul_v4_blocktile1d", ("BM", "BN", "BK", "TM"),
        (64, 64, 8, 8), (128, 64, 8, 16)),
    *_v("matmul", "v5_blocktile2d", "matmul.cu", "matmul_v5_blocktile2d", _BLOCK,
        (128, 128, 8, 8, 8), (64, 64, 8, 4, 4), (128, 64, 16, 8, 8)),
    *_v("matmul", "v6_vectorized", "matmul.cu", "matmul_v6_vectorized", _BLOCK,
        (128, 128, 8, 8, 8), (128, 128, 16, 8, 8), (64, 64, 16, 4, 4)),
    *_v("matmul", "v7_warptile", "matmul.cu", "matmul_v7_warptile",
        ("BM", "BN", "BK", "WM", "WN", "WNITER", "TM", "TN"),
        (128, 128, 16, 64, 64, 4, 8, 4), (128, 128, 16, 64, 32, 2, 8, 4), (64, 128, 16, 32, 64, 4, 4, 4)),
    *_v("matmul_bf16", "mma_bf16", "matmul.cu", "matmul_bf16_mma", ("BM", "BN", "BK", "WM", "WN"),
        (128, 128, 32, 64, 32), (64, 64, 32, 32, 32), (128, 128, 32, 32, 64)),
    # The same with ldmatrix fragments and double-buffered cp.async tiles (dynamic shared memory).
    *_v("matmul_bf16", "mma_bf16_v2_pipelined", "matmul.cu", "matmul_bf16_mma_v2", ("BM", "BN", "BK", "WM", "WN"),
        (128, 128, 32, 64, 32), (64, 64, 32, 32, 32), (128, 128, 32, 32, 64)),
    *_v("softmax", "v1_online", "softmax.cu", "softmax_v1_online", ("WARPS",), (4,), (8,)),
    *_v("layernorm_fwd", "v1", "layernorm.cu", "layernorm_forward_v1", ("WARPS",), (4,), (8,)),
    *_v("layernorm_bwd", "v1", "layernorm.cu", "layernorm_backward_v1", ("WARPS",), (4,), (8,)),
    *_v("attention_fwd", "v1_naive", "attention.cu", "attention_v1_naive", ("NT",), (128,)),
    *_v("attention_fwd", "v2_flash", "attention.cu", "attention_v2_flash_fwd", ("D", "BR", "BC"),
        (32, 32, 32), (64, 32, 32), (64, 64, 32), (128, 32, 32), (128, 32, 16)),
    # Tensor cores (bf16 in, fp32 out): 16 query rows per warp, BC keys per tile.
    *_v("attention_tc_fwd", "v3_tc", "attention_tc.cu", "attention_v3_tc_fwd", ("D", "BC", "WARPS"),
        (32, 64, 4), (64, 64, 4), (128, 64, 4), (64, 32, 4), (128, 32, 4), (64, 64, 8), (128, 32, 8)),
    # v4: the same work split with ldmatrix fragments and double-buffered cp.async K/V tiles (dynamic
    # shared memory, 2 stages of K and V; Q is staged in stage 1 first, so 16 * WARPS <= 2 * BC).
    *_v("attention_tc_fwd", "v4_tc_pipelined", "attention_tc.cu", "attention_v4_tc_fwd", ("D", "BC", "WARPS"),
        (32, 64, 4), (64, 64, 4), (128, 64, 4), (64, 32, 4), (128, 32, 4), (64, 64, 8), (128, 64, 8),
        (64, 128, 4)),
    # Its backward: 16 keys per warp (BC = 16 * WARPS), BR queries per tile.
    *_v("attention_tc_bwd", "v3_tc", "attention_tc.cu", "attention_v3_tc_bwd", ("D", "BR", "WARPS"),
        (32, 64, 4), (64, 64, 4), (128, 32, 4), (64, 32, 4)),
    *_v("attention_delta", "v1", "attention.cu", "attention_bwd_delta", ("WARPS",), (4,)),
    *_v("attention_bwd", "v2_flash", "attention.cu", "attention_v2_flash_bwd", ("D", "BR", "BC"),
        (32, 32, 32), (64, 32, 32), (128, 32, 32), (128, 16, 32)),
]

MATMUL_VERSIONS = ("v1_naive", "v2_coalesced", "v3_smem", "v4_blocktile1d", "v5_blocktile2d", "v6_vectorized",
                   "v7_warptile")
SOURCES = tuple(sorted({v.source for v in VARIANTS}))


def variants(op: str, version: str | None = None) -> list[Variant]:
    """All variants of ``op`` (and ``version``), default first."""
    out = [v for v in VARIANTS if v.op == op and (version is None or v.version == version)]
    if not out:
        raise ValueError(f"kernel op={op!r} version={version!r}: no such variant; "
                         f"expected one of {sorted({(v.op, v.version) for v in VARIANTS})}")
    return out


def versions(op: str) -> list[str]:
    """The rungs of ``op``'s ladder, in registry order (e.g. ``["v3_tc", "v4_tc_pipelined"]``)."""
    return list(dict.fromkeys(v.version for v in VARIANTS if v.op == op))


def default_variant(op: str, version: str | None = None, head_size: int | None = None) -> Variant:
    """The first listed variant; for flash kernels, the first whose D fits ``head_size``."""
    cands = variants(op, version)
    if head_size is not None and "D" in cands[0].p:
        D = head_dim_bucket(head_size)
        cands = [v for v in cands if v.p["D"] == D]
    return cands[0]


def name_expressions(source: str) -> list[str]:
    """Every template instance compiled from ``source`` (runtime and CPU gate use the same list)."""
    return [v.name_expression for v in VARIANTS if v.source == source]


def head_dim_bucket(head_size: int) -> int:
    """The smallest instantiated head size ``D >= head_size``."""
    for D in HEAD_SIZES:
        if head_size <= D:
            return D
    raise ValueError(f"attention head size: got {head_size}, expected at most {HEAD_SIZES[-1]}")


@dataclass(frozen=True)
class Launch:
    grid: tuple
    block: tuple
    shared_mem: int  # dynamic shared memory, bytes

    @property
    def total_smem(self) -> int:
        return self.shared_mem


# --------------------------------------------------------------------------
# Per-op launch configurations
# --------------------------------------------------------------------------
def _check_grid(grid):
    if grid[0] > INT32_MAX or grid[1] > 65535 or grid[2] > 65535:
        raise ValueError(f"grid {grid}: expected x < 2^31 and y, z <= 65535")
    return grid


def matmul_launch(v: Variant, M: int, N: int, K: int, batch: int = 1) -> Launch:
    """Grid/block for C[batch, M, N] = A[batch, M, K] @ B[batch, K, N]."""
    for name, val in (("M", M), ("N", N), ("K", K), ("batch", batch)):
        if val < 1:
            raise ValueError(f"matmul {name}: got {val}, expected >= 1")
    p = v.p
    if v.template == "matmul_v1_naive":  # x walks rows of C, y columns
        return Launch(_check_grid((ceil_div(M, p["BS"]), ceil_div(N, p["BS"]), batch)), (p["BS"], p["BS"], 1), 0)
    if v.template in ("matmul_v2_coalesced", "matmul_v3_smem"):
        return Launch(_check_grid((ceil_div(N, p["BS"]), ceil_div(M, p["BS"]), batch)), (v.threads, 1, 1), 0)
    smem = 0
    if v.template == "matmul_bf16_mma_v2":  # two stages of As [BM][BK + 8] and Bs [BK][BN + 8], bf16
        smem = 2 * (p["BM"] * (p["BK"] + 8) + p["BK"] * (p["BN"] + 8)) * BF16_BYTES
    return Launch(_check_grid((ceil_div(N, p["BN"]), ceil_div(M, p["BM"]), batch)), (v.threads, 1, 1), smem)


def rows_launch(v: Variant, rows: int) -> Launch:
    """One warp per row, WARPS rows per block (softmax, layernorm forward, attention delta)."""
    w = v.p["WARPS"]
    return Launch(_check_grid((ceil_div(rows, w), 1, 1)), (w * 32, 1, 1), 0)


def layernorm_bwd_launch(v: Variant, rows: int, D: int, sm_count: int = 132) -> tuple:
    """Enough blocks to fill the GPU a few times; each takes a contiguous run of rows.

    Returns ``(launch, rows_per_block)``. Shared memory holds the block's partial
    dgamma and dbeta: ``2 * D`` floats.
    """
    w = v.p["WARPS"]
    blocks = max(1, min(ceil_div(rows, w), 4 * sm_count))
    rows_per_block = ceil_div(rows, blocks)
    blocks = ceil_div(rows, rows_per_block)
    return Launch((blocks, 1, 1), (w * 32, 1, 1), 2 * D * FLOAT_BYTES), rows_per_block


def attention_fwd_launch(v: Variant, BH: int, Tq: int, Tk: int, hs: int) -> Launch:
    p = v.p
    if v.template == "attention_v1_naive":
        return Launch(_check_grid((Tq, BH, 1)), (p["NT"], 1, 1), (hs + Tk) * FLOAT_BYTES)
    if hs > p["D"]:
        raise ValueError(f"attention head size: got {hs}, expected at most D={p['D']} for {v.name_expression}")
    smem = (p["BR"] + 2 * p["BC"]) * (p["D"] + 1) * FLOAT_BYTES
    return Launch(_check_grid((ceil_div(Tq, p["BR"]), BH, 1)), (v.threads, 1, 1), smem)


def _check_attention_shape(v: Variant, BH: int, Tq: int, Tk: int, hs: int) -> dict:
    """Sizes >= 1 and a head that fits the variant's D; returns the variant's parameters."""
    for name, val in (("BH", BH), ("Tq", Tq), ("Tk", Tk), ("hs", hs)):
        if val < 1:
            raise ValueError(f"attention {name}: got {val}, expected >= 1")
    if hs > v.p["D"]:
        raise ValueError(f"attention head size: got {hs}, expected at most D={v.p['D']} for {v.name_expression}")
    return v.p


def attention_tc_fwd_launch(v: Variant, BH: int, Tq: int, Tk: int, hs: int) -> Launch:
    """Tensor-core forward: one block per 16 * WARPS queries.

    v3's shared memory is static (no dynamic part); v4's is dynamic: two
    stages of K and V tiles, ``[BC][D + 8]`` bf16 each (sQ overlays stage 1).
    """
    p = _check_attention_shape(v, BH, Tq, Tk, hs)
    smem = 0
    if v.template == "attention_v4_tc_fwd":
        smem = 2 * 2 * p["BC"] * (p["D"] + 8) * BF16_BYTES
    return Launch(_check_grid((ceil_div(Tq, 16 * p["WARPS"]), BH, 1)), (v.threads, 1, 1), smem)


def attention_tc_bwd_launch(v: Variant, BH: int, Tq: int, Tk: int, hs: int) -> Launch:
    """Tensor-core backward: one block per 16 * WARPS keys; dynamic shared memory for the K, V, Q, dO, dS tiles."""
    p = _check_attention_shape(v, BH, Tq, Tk, hs)
    BC, BR, DS = 16 * p["WARPS"], p["BR"], p["D"] + 8
    smem = (2 * BC * DS + 2 * BR * DS + BR * (BC + 8)) * BF16_BYTES + 2 * BR * FLOAT_BYTES
    return Launch(_check_grid((ceil_div(Tk, BC), BH, 1)), (v.threads, 1, 1), smem)


def attention_bwd_launch(v: Variant, BH: int, Tq: int, Tk: int, hs: int) -> Launch:
    p = v.p
    if hs > p["D"]:
        raise ValueError(f"attention head size: got {hs}, expected at most D={p['D']} for {v.name_expression}")
    BR, BC, DP = p["BR"], p["BC"], p["D"] + 1
    floats = (2 * BC + 2 * BR) * DP + 2 * BR * (BC + 1) + 2 * BR
    return Launch(_check_grid((ceil_div(Tk, BC), BH, 1)), (v.threads, 1, 1), floats * FLOAT_BYTES)


def max_dynamic_smem(v: Variant) -> int:
    """The largest dynamic shared memory this variant can ask for at its largest supported shape."""
    p = v.p
    if v.template == "attention_v2_flash_fwd":
        return attention_fwd_launch(v, 1, 1, 1, p["D"]).shared_mem
    if v.template == "attention_v2_flash_bwd":
        return attention_bwd_launch(v, 1, 1, 1, p["D"]).shared_mem
    if v.template == "attention_v3_tc_bwd":
        return attention_tc_bwd_launch(v, 1, 1, 1, p["D"]).shared_mem
    if v.template == "attention_v4_tc_fwd":
        return attention_tc_fwd_launch(v, 1, 1, 1, p["D"]).shared_mem
    if v.template == "matmul_bf16_mma_v2":
        return matmul_launch(v, 1, 1, 1).shared_mem
    return 0


# --------------------------------------------------------------------------
# Argument packing: the C signature of each kernel, and the NumPy scalar type
# each Python value must become (CuPy passes NumPy scalars by value with
# exactly their dtype's size; a wrong width silently scrambles the arguments).
# --------------------------------------------------------------------------
_MATMUL_SIG = ("i32", "i32", "i32", "ptr", "i32", "i32", "i64", "ptr", "i32", "i32", "i64", "ptr", "i32", "i64", "i32")
SIGNATURES = {
    "matmul_v1_naive": _MATMUL_SIG, "matmul_v2_coalesced": _MATMUL_SIG, "matmul_v3_smem": _MATMUL_SIG,
    "matmul_v4_blocktile1d": _MATMUL_SIG, "matmul_v5_blocktile2d": _MATMUL_SIG,
    "matmul_v6_vectorized": _MATMUL_SIG, "matmul_v7_warptile": _MATMUL_SIG, "matmul_bf16_mma": _MATMUL_SIG,
    "matmul_bf16_mma_v2": _MATMUL_SIG,
    "softmax_v1_online": ("ptr", "ptr", "i32", "i32"),
    "layernorm_forward_v1": ("ptr", "ptr", "ptr", "ptr", "ptr", "ptr", "i32", "i32", "f32"),
    "layernorm_backward_v1": ("ptr",) * 8 + ("i32", "i32", "i32"),
    "attention_v1_naive": ("ptr",) * 5 + ("i32",) * 4 + ("f32", "i32", "i32", "ptr"),
    "attention_v2_flash_fwd": ("ptr",) * 5 + ("i32",) * 4 + ("f32", "i32", "i32", "ptr"),
    "attention_v3_tc_fwd": ("ptr",) * 5 + ("i32",) * 4 + ("f32", "i32", "i32", "ptr"),
    "attention_v4_tc_fwd": ("ptr",) * 5 + ("i32",) * 4 + ("f32", "i32", "i32", "ptr"),
    "attention_v3_tc_bwd": ("ptr",) * 9 + ("i32",) * 4 + ("f32", "i32", "i32", "ptr"),
    "attention_bwd_delta": ("ptr", "ptr", "ptr", "i32", "i32"),
    "attention_v2_flash_bwd": ("ptr",) * 9 + ("i32",) * 4 + ("f32", "i32", "i32", "ptr"),
}
_SCALAR = {"i32": np.int32, "i64": np.int64, "f32": np.float32}
_LIMITS = {"i32": (-(2**31), 2**31 - 1), "i64": (-(2**63), 2**63 - 1)}


def pack_args(template: str, *values) -> tuple:
    """Convert Python values to the exact scalar types of ``template``'s C signature.

    Arrays (anything with a ``data`` attribute or a ``__cuda_array_interface__``)
    pass through for ``ptr`` slots; ``None`` becomes a null pointer.
    """
    sig = SIGNATURES[template]
    if len(values) != len(sig):
        raise ValueError(f"{template}: got {len(values)} arguments, expected {len(sig)}")
    out = []
    for n, (kind, val) in enumerate(zip(sig, values)):
        if kind == "ptr":
            if val is None:
                out.append(np.uint64(0))
            elif isinstance(val, (int, float, np.generic)):
                raise TypeError(f"{template} argument {n}: got scalar {val!r}, expected an array (pointer)")
            else:
                out.append(val)
        elif kind == "f32":
            out.append(np.float32(val))
        else:
            ival = int(val)
            lo, hi = _LIMITS[kind]
            if not lo <= ival <= hi:
                raise ValueError(f"{template} argument {n}: got {ival}, expected a value that fits {kind}")
            out.append(_SCALAR[kind](ival))
    return tuple(out)
