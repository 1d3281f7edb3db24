"""``minitx bench kernels``: time every kernel variant against its baseline on one GPU.

For each op, every variant (tile-size sweep included) and the baselines run
side by side in one process:

* fp32 matmul      vs ``cupy.matmul`` in strict fp32 (``CUPY_TF32=0``: cuBLAS without TF32)
* bf16 matmul      (``mma_bf16`` and ``mma_bf16_v2_pipelined``) vs PyTorch bf16 ``torch.matmul``
                   (cuBLAS tensor cores), if PyTorch is there
* attention fwd    vs naive CuPy attention (cuBLAS scores, softmax, cuBLAS PV) and
                   PyTorch ``scaled_dot_product_attention`` (bf16, flash backend)
* attention fwd bf16 (tensor cores, ``v3_tc`` and ``v4_tc_pipelined``) vs PyTorch SDPA in bf16, flash backend
                   forced with ``torch.nn.attention.sdpa_kernel`` (row group "attention_tc_fwd",
                   whose "% of baseline" is % of SDPA; its error is ~1e-3, from the bf16 weights);
                   the tensor-core backward vs SDPA's bf16 backward ("attention_tc_bwd")
* attention bwd    vs the naive CuPy backward
* softmax, LayerNorm vs the same formula in CuPy array ops (GB/s)

Timing: CUDA events around each launch, the L2 cache flushed (a 256 MiB
buffer overwritten) before every repetition, median of the repetitions after
a warm-up. Error: ``||out - ref|| / ||ref||`` against a float64 computation.
Writes ``kernels.jsonl`` (one JSON object per measurement), ``kernels.md``
(a Markdown table) and, with matplotlib, ``kernels_ladder.png``.

``device="emulator"`` runs the whole harness on the CPU emulator
(:mod:`minitx.cuda.emulator`) at tiny shapes, with wall-clock timing of a
single repetition: the figures mean nothing, but every code path of the
harness, every launch and every error column is exercised, so the one GPU
run does not die on a Python bug (``tests/test_bench_kernels.py``).
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import statistics
import time
import traceback
from pathlib import Path

import numpy as np

from minitx.cuda import launch

FLUSH_BYTES = 256 * 2**20


class Timer:
    """Median device time of a callable, with the L2 flushed before each repetition."""

    def __init__(self, cp, budget_s: float = 1.0, max_reps: int = 30, min_reps: int = 3):
        self.cp, self.budget_s, self.max_reps, self.min_reps = cp, budget_s, max_reps, min_reps
        self.flush = cp.empty(FLUSH_BYTES // 4, dtype=cp.float32)

    def __call__(self, fn) -> float:
        cp = self.cp
        fn()  # warm-up: compilation, module load, cuBLAS handles
        cp.cuda.Device().synchronize()
        start, end = cp.cuda.Event(), cp.cuda.Event()
        times: list[float] = []
        t0 = time.perf_counter()
        while len(times) < self.max_reps:
            self.flush.fill(len(times))
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(cp.cuda.get_elapsed_time(start, end))
            if len(times) >= self.min_reps and time.perf_counter() - t0 > self.budget_s:
                break
        return statistics.median(times)


class WallTimer:
    """The emulator's stand-in for :class:`Timer`: one call, wall-clock milliseconds (meaningless as speed)."""

    def __call__(self, fn) -> float:
        t0 = time.perf_counter()
        fn()
        return max((time.perf_counter() - t0) * 1e3, 1e-6)


class EmulatedCuPy:
    """The slice of the CuPy namespace the harness uses, backed by NumPy (arrays stay on the CPU)."""

    def __init__(self):
        from minitx.cuda.emulator import PoisonedNumPy  # noqa: PLC0415

        self._np = PoisonedNumPy()

    def __getattr__(self, name):
        return getattr(self._np, name)

    def asarray(self, x, dtype=None):
        if type(x).__module__.startswith("torch"):
            raise TypeError("a PyTorch tensor cannot reach the CPU emulator")
        return np.asarray(x, dtype=dtype)


def rel_err(cp, out, ref) -> float:
    out = out.astype(cp.float64)
    if not bool(cp.isfinite(out).all()):
        return float("nan")
    return float(cp.linalg.norm(out - ref) / cp.linalg.norm(ref))


class Rows(list):
    """The measurements, each also appended to ``kernels.jsonl`` the moment it is taken.

    The GPU run is one shot under a time limit: if it is cut short, every row
    measured so far is on disk, and :func:`markdown_from_jsonl` turns it into
    the table.
    """

    def __init__(self, jsonl: Path | None = None):
        super().__init__()
        self.jsonl = jsonl
        self.failures: list[str] = []
        if jsonl is not None:
            jsonl.write_text("", encoding="utf-8")

    def append(self, row: dict) -> None:
        super().append(row)
        if self.jsonl is not None:
            with open(self.jsonl, "a", encoding="utf-8") as f:
                f.write(json.dumps({k: (list(v) if isinstance(v, tuple) else v) for k, v in row.items()}) + "\n")


def _record(rows, **kw):
    rows.append(kw)
    line = "  ".join(f"{k}={v}" for k, v in kw.items() if k in ("op", "version", "config", "ms", "tflops", "gbs",
                                                                  "pct_baseline", "err"))
    print(line, flush=True)


def bench_matmul(cp, timer, rows, n: int, sweep: bool = True):
    from minitx.cuda import ops  # noqa: PLC0415

    rng = cp.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=cp.float32)
    b = rng.standard_normal((n, n), dtype=cp.float32)
    ref = a.astype(cp.float64) @ b.astype(cp.float64)
    flops = 2.0 * n**3
    base_ms = timer(lambda: cp.matmul(a, b))
    shape = f"{n}x{n}x{n}"
    _record(rows, op="matmul", version="cupy.matmul (cuBLAS, TF32 off)", dtype="fp32", shape=shape, config="",
            ms=round(base_ms, 4), tflops=round(flops / base_ms / 1e9, 2), pct_baseline=100.0,
            err=f"{rel_err(cp, cp.matmul(a, b), ref):.1e}", baseline=True)
    out = cp.empty((n, n), dtype=cp.float32)
    for version in launch.MATMUL_VERSIONS:
        for v in launch.variants("matmul", version)[: None if sweep else 1]:
            if version in ("v1_naive", "v2_coalesced") and n > 4096:
                continue
            out.fill(cp.nan)
            ms = timer(lambda v=v: ops.matmul(a, b, variant=v, out=out))
            cfg = launch.matmul_launch(v, n, n, n)
            _record(rows, op="matmul", version=version, dtype="fp32", shape=shape, config=v.label,
                    grid=cfg.grid, block=cfg.block, smem=v.static_smem, ms=round(ms, 4),
                    tflops=round(flops / ms / 1e9, 2), pct_baseline=round(100 * base_ms / ms, 1),
                    err=f"{rel_err(cp, out, ref):.1e}")
    # bf16 tensor cores vs PyTorch
    ab, bb = ops.to_bf16_bits(a), ops.to_bf16_bits(b)
    ref16 = ops.from_bf16_bits(ab).astype(cp.float64) @ ops.from_bf16_bits(bb).astype(cp.float64)
    base16 = None
    try:
        import torch  # noqa: PLC0415

        ta = torch.as_tensor(a, device="cuda").to(torch.bfloat16)
        tb = torch.as_tensor(b, device="cuda").to(torch.bfloat16)
        base16 = timer(lambda: torch.matmul(ta, tb))
        tc = cp.asarray(torch.matmul(ta, tb).float())
        _record(rows, op="matmul", version="torch.matmul bf16", dtype="bf16", shape=shape, config="",
                ms=round(base16, 4), tflops=round(flops / base16 / 1e9, 2), pct_baseline=100.0,
                err=f"{rel_err(cp, tc, ref16):.1e}", baseline=True)
    except Exception as exc:  # noqa: BLE001 - PyTorch missing or without CUDA
        print(f"(PyTorch bf16 baseline skipped: {type(exc).__name__}: {exc})")
    # every rung (mma_bf16, mma_bf16_v2_pipelined); without the sweep, each rung's first variant
    for v in launch.variants("matmul_bf16"):
        if not sweep and v is not launch.default_variant("matmul_bf16", v.version):
            continue
        ms = timer(lambda v=v: ops.matmul_bf16(ab, bb, variant=v))
        c = ops.matmul_bf16(ab, bb, variant=v)
        _record(rows, op="matmul", version=v.version, dtype="bf16", shape=shape, config=v.label, ms=round(ms, 4),
                tflops=round(flops / ms / 1e9, 2),
                pct_baseline=round(100 * base16 / ms, 1) if base16 else None, err=f"{rel_err(cp, c, ref16):.1e}")


def _naive_attention(cp, q, k, v, causal):
    """cuBLAS scores, softmax, cuBLAS PV: the O(T^2)-memory baseline."""
    hs = q.shape[-1]
    s = cp.matmul(q, k.swapaxes(-1, -2)) * (1.0 / math.sqrt(hs))
    if causal:
        Tq, Tk = s.shape[-2:]
        mask = cp.arange(Tk)[None, :] <= cp.arange(Tq)[:, None] + (Tk - Tq)
        s = cp.where(mask, s, cp.float32(np.finfo(np.float32).min))
    s = s - s.max(axis=-1, keepdims=True)
    p = cp.exp(s)
    p /= p.sum(axis=-1, keepdims=True)
    return cp.matmul(p, v), p


def _naive_attention_backward(cp, dout, q, k, v, p, causal):
    hs = q.shape[-1]
    dv = cp.matmul(p.swapaxes(-1, -2), dout)
    dp = cp.matmul(dout, v.swapaxes(-1, -2))
    ds = p * (dp - (dp * p).sum(axis=-1, keepdims=True)) * (1.0 / math.sqrt(hs))
    return cp.matmul(ds, k), cp.matmul(ds.swapaxes(-1, -2), q), dv


def _sdpa_flash_only():
    """(context manager, name): PyTorch SDPA held to its flash backend, or left to choose on older PyTorch."""
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: PLC0415

        return sdpa_kernel(SDPBackend.FLASH_ATTENTION), "flash"
    except ImportError:
        return contextlib.nullcontext(), "default"


def bench_attention(cp, timer, rows, B: int, H: int, T: int, hs: int, causal: bool = True, sweep: bool = True):
    from minitx.cuda import ops  # noqa: PLC0415

    rng = cp.random.default_rng(1)
    q, k, v = (rng.standard_normal((B, H, T, hs), dtype=cp.float32) for _ in range(3))
    dout = rng.standard_normal((B, H, T, hs), dtype=cp.float32)
    shape = f"B{B} H{H} T{T} hs{hs}{' causal' if causal else ''}"
    flops = 4.0 * B * H * T * T * hs * (0.5 if causal else 1.0)
    ref, p64 = _naive_attention(cp, *(t.astype(cp.float64) for t in (q, k, v)), causal)
    base_ms = timer(lambda: _naive_attention(cp, q, k, v, causal))
    o_naive, p = _naive_attention(cp, q, k, v, causal)
    _record(rows, op="attention_fwd", version="naive CuPy (cuBLAS)", dtype="fp32", shape=shape, config="",
            ms=round(base_ms, 4), tflops=round(flops / base_ms / 1e9, 2), pct_baseline=100.0,
            err=f"{rel_err(cp, o_naive, ref):.1e}", baseline=True, memory="O(T^2)")
    for v_ in launch.variants("attention_fwd"):
        default = launch.default_variant("attention_fwd", "v2_flash", hs)
        if "D" in v_.p and (v_.p["D"] < hs or (not sweep and v_ is not default)):
            continue
        ms = timer(lambda v_=v_: ops.attention_forward(q, k, v, causal=causal, version=v_.version, variant=v_))
        o, _ = ops.attention_forward(q, k, v, causal=causal, version=v_.version, variant=v_)
        cfg = launch.attention_fwd_launch(v_, B * H, T, T, hs)
        _record(rows, op="attention_fwd", version=v_.version, dtype="fp32", shape=shape, config=v_.label,
                grid=cfg.grid, block=cfg.block, smem=cfg.shared_mem, ms=round(ms, 4),
                tflops=round(flops / ms / 1e9, 2), pct_baseline=round(100 * base_ms / ms, 1),
                err=f"{rel_err(cp, o, ref):.1e}", memory="O(T)")
    # bf16: PyTorch SDPA (flash backend) and minitx's tensor-core kernel on the same bf16 inputs.
    bits = [ops.to_bf16_bits(t) for t in (q, k, v)]
    ref16 = _naive_attention(cp, *(ops.from_bf16_bits(b).astype(cp.float64) for b in bits), causal)[0]
    sdpa_ms = None
    try:
        import torch  # noqa: PLC0415
        import torch.nn.functional as F  # noqa: PLC0415

        flash_only, backend = _sdpa_flash_only()
        tq, tk, tv = (torch.as_tensor(t, device="cuda").to(torch.bfloat16) for t in (q, k, v))
        with flash_only:
            sdpa_ms = timer(lambda: F.scaled_dot_product_attention(tq, tk, tv, is_causal=causal))
            o = cp.asarray(F.scaled_dot_product_attention(tq, tk, tv, is_causal=causal).float())
        _record(rows, op="attention_fwd", version=f"torch SDPA bf16 ({backend})", dtype="bf16", shape=shape,
                config="", ms=round(sdpa_ms, 4), tflops=round(flops / sdpa_ms / 1e9, 2),
                pct_baseline=round(100 * base_ms / sdpa_ms, 1), err=f"{rel_err(cp, o, ref):.1e}", baseline=True)
        # The tensor-core group: its "% of baseline" is % of SDPA's speed (the target: >= 50).
        _record(rows, op="attention_tc_fwd", version=f"torch SDPA bf16 ({backend})", dtype="bf16", shape=shape,
                config="", ms=round(sdpa_ms, 4), tflops=round(flops / sdpa_ms / 1e9, 2), pct_baseline=100.0,
                err=f"{rel_err(cp, o, ref16):.1e}", baseline=True)
    except Exception as exc:  # noqa: BLE001
        print(f"(PyTorch SDPA baseline skipped: {type(exc).__name__}: {exc})")
    # Every rung (v3_tc, v4_tc_pipelined); without the sweep, each rung's default variant for hs.
    defaults_tc = [launch.default_variant("attention_tc_fwd", ver, hs) for ver in launch.versions("attention_tc_fwd")]
    for v_ in launch.variants("attention_tc_fwd"):
        if v_.p["D"] < hs or (not sweep and v_ not in defaults_tc):
            continue
        ms = timer(lambda v_=v_: ops.attention_forward_bf16(*bits, causal=causal, variant=v_))
        o, _ = ops.attention_forward_bf16(*bits, causal=causal, variant=v_)
        cfg = launch.attention_tc_fwd_launch(v_, B * H, T, T, hs)
        _record(rows, op="attention_tc_fwd", version=v_.version, dtype="bf16", shape=shape, config=v_.label,
                grid=cfg.grid, block=cfg.block, smem=v_.static_smem + cfg.shared_mem, ms=round(ms, 4),
                tflops=round(flops / ms / 1e9, 2), pct_baseline=round(100 * sdpa_ms / ms, 1) if sdpa_ms else None,
                err=f"{rel_err(cp, o, ref16):.1e}", memory="O(T)")
    # The tensor-core backward against PyTorch SDPA's bf16 backward (flash backend when available); its
    # accuracy is a GPU test (tests/test_kernels_gpu.py), so no error column here.
    sdpa_bwd_ms = None
    try:
        import torch  # noqa: PLC0415
        import torch.nn.functional as F  # noqa: PLC0415

        flash_only, backend = _sdpa_flash_only()
        tq, tk, tv = (torch.as_tensor(t, device="cuda").to(torch.bfloat16).requires_grad_(True) for t in (q, k, v))
        tdo = torch.as_tensor(dout, device="cuda").to(torch.bfloat16)
        with flash_only:
            tout = F.scaled_dot_product_attention(tq, tk, tv, is_causal=causal)
            sdpa_bwd_ms = timer(lambda: torch.autograd.grad(tout, (tq, tk, tv), tdo, retain_graph=True))
        _record(rows, op="attention_tc_bwd", version=f"torch SDPA bf16 backward ({backend})", dtype="bf16",
                shape=shape, config="", ms=round(sdpa_bwd_ms, 4), tflops=round(2.5 * flops / sdpa_bwd_ms / 1e9, 2),
                pct_baseline=100.0, err="", baseline=True)
        del tq, tk, tv, tdo, tout
    except Exception as exc:  # noqa: BLE001
        print(f"(PyTorch SDPA backward baseline skipped: {type(exc).__name__}: {exc})")
    o16, lse16 = ops.attention_forward_bf16(*bits, causal=causal)
    do_bits = ops.to_bf16_bits(dout)
    default_bwd = launch.default_variant("attention_tc_bwd", "v3_tc", hs)
    for v_ in launch.variants("attention_tc_bwd", "v3_tc"):
        if v_.p["D"] < hs or (not sweep and v_ is not default_bwd):
            continue
        ms = timer(lambda v_=v_: ops.attention_backward_bf16(do_bits, *bits, o16, lse16, causal=causal, variant=v_))
        cfg = launch.attention_tc_bwd_launch(v_, B * H, T, T, hs)
        _record(rows, op="attention_tc_bwd", version=v_.version, dtype="bf16", shape=shape, config=v_.label,
                grid=cfg.grid, block=cfg.block, smem=cfg.shared_mem, ms=round(ms, 4),
                tflops=round(2.5 * flops / ms / 1e9, 2),
                pct_baseline=round(100 * sdpa_bwd_ms / ms, 1) if sdpa_bwd_ms else None, err="")
    del ref16
    # backward
    grads_ref = _naive_attention_backward(cp, dout.astype(cp.float64), *(t.astype(cp.float64) for t in (q, k, v)),
                                          p64, causal)
    del p64
    base_b = timer(lambda: _naive_attention_backward(cp, dout, q, k, v, p, causal))
    _record(rows, op="attention_bwd", version="naive CuPy (cuBLAS)", dtype="fp32", shape=shape, config="",
            ms=round(base_b, 4), tflops=round(2.5 * flops / base_b / 1e9, 2), pct_baseline=100.0, err="", baseline=True)
    o, lse = ops.attention_forward(q, k, v, causal=causal)
    for v_ in launch.variants("attention_bwd"):
        if v_.p["D"] < hs or (not sweep and v_ is not launch.default_variant("attention_bwd", "v2_flash", hs)):
            continue
        ms = timer(lambda v_=v_: ops.attention_backward(dout, q, k, v, o, lse, causal=causal, variant=v_))
        grads = ops.attention_backward(dout, q, k, v, o, lse, causal=causal, variant=v_)
        err = max(rel_err(cp, g, r) for g, r in zip(grads, grads_ref))
        cfg = launch.attention_bwd_launch(v_, B * H, T, T, hs)
        _record(rows, op="attention_bwd", version=v_.version, dtype="fp32", shape=shape, config=v_.label,
                grid=cfg.grid, block=cfg.block, smem=cfg.shared_mem, ms=round(ms, 4),
                tflops=round(2.5 * flops / ms / 1e9, 2), pct_baseline=round(100 * base_b / ms, 1), err=f"{err:.1e}")


def bench_rows(cp, timer, rows_out, n_rows: int, C: int):
    from minitx.cuda import ops  # noqa: PLC0415

    rng = cp.random.default_rng(2)
    x = rng.standard_normal((n_rows, C), dtype=cp.float32)
    shape = f"{n_rows}x{C}"
    nbytes = 2 * x.nbytes  # read once, write once

    def cupy_softmax():
        e = cp.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    x64 = x.astype(cp.float64)
    e64 = cp.exp(x64 - x64.max(axis=-1, keepdims=True))
    ref = e64 / e64.sum(axis=-1, keepdims=True)
    base = timer(cupy_softmax)
    _record(rows_out, op="softmax", version="CuPy array ops", dtype="fp32", shape=shape, config="", ms=round(base, 4),
            gbs=round(nbytes / base / 1e6, 1), pct_baseline=100.0, err=f"{rel_err(cp, cupy_softmax(), ref):.1e}",
            baseline=True)
    for v in launch.variants("softmax"):
        ms = timer(lambda v=v: ops.softmax(x, variant=v))
        _record(rows_out, op="softmax", version=v.version, dtype="fp32", shape=shape, config=v.label, ms=round(ms, 4),
                gbs=round(nbytes / ms / 1e6, 1), pct_baseline=round(100 * base / ms, 1),
                err=f"{rel_err(cp, ops.softmax(x, variant=v), ref):.1e}")
    gamma = rng.standard_normal(C, dtype=cp.float32)
    beta = rng.standard_normal(C, dtype=cp.float32)

    def cupy_ln():
        mu = x.mean(axis=-1, keepdims=True)
        xc = x - mu
        return xc / cp.sqrt((xc * xc).mean(axis=-1, keepdims=True) + 1e-5) * gamma + beta

    mu = x64.mean(axis=-1, keepdims=True)
    ref = (x64 - mu) / cp.sqrt(((x64 - mu) ** 2).mean(axis=-1, keepdims=True) + 1e-5) * gamma + beta
    base = timer(cupy_ln)
    _record(rows_out, op="layernorm_fwd", version="CuPy array ops", dtype="fp32", shape=shape, config="",
            ms=round(base, 4), gbs=round(nbytes / base / 1e6, 1), pct_baseline=100.0,
            err=f"{rel_err(cp, cupy_ln(), ref):.1e}", baseline=True)
    for v in launch.variants("layernorm_fwd"):
        ms = timer(lambda v=v: ops.layernorm_forward(x, gamma, beta, variant=v))
        _record(rows_out, op="layernorm_fwd", version=v.version, dtype="fp32", shape=shape, config=v.label,
                ms=round(ms, 4), gbs=round(nbytes / ms / 1e6, 1), pct_baseline=round(100 * base / ms, 1),
                err=f"{rel_err(cp, ops.layernorm_forward(x, gamma, beta, variant=v)[0], ref):.1e}")
    _, (mean, rstd) = ops.layernorm_forward(x, gamma, beta)
    dy = rng.standard_normal((n_rows, C), dtype=cp.float32)
    for v in launch.variants("layernorm_bwd"):
        ms = timer(lambda v=v: ops.layernorm_backward(dy, x, gamma, mean, rstd, variant=v))
        _record(rows_out, op="layernorm_bwd", version=v.version, dtype="fp32", shape=shape, config=v.label,
                ms=round(ms, 4), gbs=round(3 * x.nbytes / ms / 1e6, 1), pct_baseline=None, err="")


def to_markdown(rows) -> str:
    cols = ("op", "version", "dtype", "shape", "config", "ms", "tflops", "gbs", "pct_baseline", "err")
    heads = ("op", "version", "dtype", "shape", "launch config", "median ms", "TFLOP/s", "GB/s", "% of baseline",
             "rel. error vs fp64")
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for r in rows:
        lines.append("| " + " | ".join("" if r.get(c) is None else str(r.get(c)) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def plot_ladder(rows, path: Path) -> bool:
    from minitx.tutorial import plt  # noqa: PLC0415

    pyplot = plt()
    mm = [r for r in rows if r["op"] == "matmul" and r["dtype"] == "fp32" and not r.get("baseline")]
    if pyplot is None or not mm:
        return False
    best: dict = {}
    for r in mm:
        best[r["version"]] = max(best.get(r["version"], 0.0), r["pct_baseline"])
    fig, ax = pyplot.subplots(figsize=(7, 3.5))
    ax.bar(list(best), list(best.values()), color="tab:blue")
    ax.axhline(100, color="k", lw=0.8, ls="--")
    ax.set_ylabel("% of cupy.matmul (fp32)")
    ax.set_title(f"fp32 matmul ladder, {mm[0]['shape']}")
    ax.tick_params(axis="x", rotation=30)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    pyplot.close(fig)
    return True


def run(out_dir: str | Path, ops=("matmul", "attention", "rows"), quick: bool = False, budget_s: float = 0.6,
        device: str = "cuda") -> list:
    """Run the benchmarks; write kernels.jsonl / kernels.md / kernels_ladder.png into ``out_dir``.

    ``device="emulator"``: a dry run of the harness on the CPU emulator at tiny shapes (see the module doc).
    """
    if device not in ("cuda", "emulator"):
        raise ValueError(f"bench kernels device: got {device!r}, expected 'cuda' or 'emulator'")
    if os.environ.get("CUPY_TF32", "0") != "0":
        raise ValueError("CUPY_TF32 is set: the fp32 baseline must be strict fp32; run with CUPY_TF32=0")
    os.environ["CUPY_TF32"] = "0"
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = Rows(out / "kernels.jsonl")
    if device == "emulator":
        from minitx.cuda import emulator  # noqa: PLC0415

        cp, timer = EmulatedCuPy(), WallTimer()
        print("device: CPU emulator (a dry run of the harness: the timings mean nothing)", flush=True)
        with emulator.activate():
            _run_all(cp, timer, rows, ops, sizes=TINY)
    else:
        import cupy as cp  # noqa: PLC0415

        timer = Timer(cp, budget_s=budget_s)
        dev = cp.cuda.Device()
        props = cp.cuda.runtime.getDeviceProperties(dev.id)
        print(f"device: {props['name'].decode()} (sm_{dev.compute_capability})", flush=True)
        _run_all(cp, timer, rows, ops, sizes=QUICK if quick else FULL)
    (out / "kernels.md").write_text(_title(device) + to_markdown(rows), encoding="utf-8")
    plot_ladder(rows, out / "kernels_ladder.png")
    return rows


def _title(device: str) -> str:
    if device == "emulator":
        return ("**Emulator dry run (CPU): every figure below is a wall-clock time of emulated code, "
                "not a measurement**\n\n")
    return ""


def markdown_from_jsonl(jsonl: str | Path) -> str:
    """The Markdown table of whatever rows a (possibly interrupted) run wrote to ``kernels.jsonl``."""
    path = Path(jsonl)
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return to_markdown(rows)


#: Problem sizes: matmul n; attention runs (B, H, T, hs, causal, sweep); rows (n_rows, C).
FULL = dict(matmul=4096, attention=((4, 16, 4096, 64, True, True), (4, 16, 4096, 128, False, False)),
            rows=(65536, 4096))
QUICK = dict(matmul=1024, attention=((2, 4, 512, 64, True, True),), rows=(4096, 1024))
TINY = dict(matmul=72, attention=((1, 2, 40, 32, True, True), (1, 1, 33, 128, False, False)), rows=(9, 200))


def _run_all(cp, timer, rows, ops, sizes) -> None:
    """Every section; one that fails is reported (a row and ``rows.failures``) and the others still run."""
    sections = []
    if "matmul" in ops:
        sections.append(("matmul", bench_matmul, (sizes["matmul"],), {"sweep": True}))
    if "attention" in ops:
        for B, H, T, hs, causal, sweep in sizes["attention"]:
            sections.append(("attention", bench_attention, (B, H, T, hs), {"causal": causal, "sweep": sweep}))
    if "rows" in ops:
        sections.append(("rows", bench_rows, sizes["rows"], {}))
    for name, fn, args, kwargs in sections:
        try:
            fn(cp, timer, rows, *args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - one shot on borrowed hardware: keep measuring the rest
            message = f"{name} {args}: {type(exc).__name__}: {exc}"
            print(f"SECTION FAILED: {message}", flush=True)
            traceback.print_exc()
            rows.failures.append(message)
            _record(rows, op=name, version=f"FAILED: {type(exc).__name__}", dtype="", shape=str(args), config="",
                    err=str(exc)[:200])
