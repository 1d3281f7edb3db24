"""Theoretical occupancy of every kernel variant, from what the compiler reports.

How many blocks of a kernel fit on one SM at once is decided by four budgets,
and the smallest wins:

* threads: at most 64 warps (2048 threads) per SM;
* blocks: at most 32 resident blocks per SM;
* registers: 65536 per SM in 4 sub-partitions of 16384 (one per warp
  scheduler; a warp's registers come from one of them), handed out per warp
  in units of 256: ``ceil(regs_per_thread * 32 / 256) * 256`` per warp, so
  ``4 * floor(16384 / that)`` warps fit; a block may not ask for more than
  65536 in all;
* shared memory: 228 KiB per SM on sm_90 (164 KiB on sm_80), handed out per
  block in units of 128 bytes, with 1 KiB per block reserved by the system.

Occupancy is resident warps / 64. It is not speed (a GEMM at 12% occupancy
can beat one at 100% by keeping data in registers), but it says which budget
a kernel spends, and a variant that fits zero blocks cannot launch at all.
The registers and static shared memory come from ptxas (:func:`minitx.cuda.loader.nvrtc_compile`,
no GPU needed); the dynamic shared memory from :mod:`minitx.cuda.launch`.

    python -m minitx.cuda.occupancy            # a Markdown table for sm_90 (and sm_80 with --arch 80)
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass

from . import launch


@dataclass(frozen=True)
class SMLimits:
    """Per-SM resources of one compute capability (CUDA C++ Programming Guide, 'Compute capabilities')."""

    arch: int
    max_warps: int = 64
    max_blocks: int = 32
    registers: int = 65536
    register_unit: int = 256  # registers are allocated per warp in this granularity
    sub_partitions: int = 4  # the register file is split between the SM's 4 warp schedulers
    smem_bytes: int = 228 * 1024
    smem_unit: int = 128
    smem_reserved_per_block: int = 1024


LIMITS = {80: SMLimits(80, smem_bytes=164 * 1024), 90: SMLimits(90)}


@dataclass(frozen=True)
class Occupancy:
    blocks_per_sm: int
    warps_per_sm: int
    fraction: float  # warps_per_sm / max_warps
    limiter: str  # "warps", "blocks", "registers" or "shared memory"


def _round_up(x: int, unit: int) -> int:
    return -(-x // unit) * unit


def occupancy(arch: int, threads: int, registers: int, smem: int) -> Occupancy:
    """Blocks per SM for a block of ``threads`` threads using ``registers`` per thread and ``smem`` bytes."""
    if arch not in LIMITS:
        raise ValueError(f"occupancy arch: got sm_{arch}, expected one of {sorted(LIMITS)}")
    if threads < 1 or registers < 0 or smem < 0:
        raise ValueError(f"occupancy: got threads={threads}, registers={registers}, smem={smem}; "
                         "expected threads >= 1 and the rest >= 0")
    lim = LIMITS[arch]
    warps = -(-threads // 32)
    per_warp_regs = _round_up(max(registers, 1) * 32, lim.register_unit)
    warps_by_regs = lim.sub_partitions * ((lim.registers // lim.sub_partitions) // per_warp_regs)
    budgets = {
        "warps": lim.max_warps // warps,
        "blocks": lim.max_blocks,
        "registers": warps_by_regs // warps if per_warp_regs * warps <= lim.registers else 0,
        "shared memory": lim.smem_bytes // _round_up(smem + lim.smem_reserved_per_block, lim.smem_unit),
    }
    limiter = min(budgets, key=budgets.get)
    blocks = budgets[limiter]
    return Occupancy(blocks, blocks * warps, blocks * warps / lim.max_warps, limiter)


#: The shape each op's dynamic shared memory is evaluated at (the benchmark's attention shape).
T_BENCH = 4096


def variant_smem(v: launch.Variant) -> tuple[int, int]:
    """(static, dynamic) shared memory of ``v`` at the benchmark shape (dynamic at its largest head size)."""
    if v.template == "attention_v1_naive":
        return v.static_smem, launch.attention_fwd_launch(v, 1, 1, T_BENCH, 64).shared_mem
    if v.template == "layernorm_backward_v1":
        return v.static_smem, launch.layernorm_bwd_launch(v, 65536, 4096)[0].shared_mem
    return v.static_smem, launch.max_dynamic_smem(v)


def table(arch: int = 90) -> list[dict]:
    """One row per variant: resources from ptxas (compiled for ``sm_<arch>``) and the occupancy they allow."""
    from . import loader  # noqa: PLC0415

    rows = []
    for source in launch.SOURCES:
        result = loader.nvrtc_compile(source, arch)
        for v in [v for v in launch.VARIANTS if v.source == source]:
            res = result.for_expression(v.name_expression)
            static, dynamic = variant_smem(v)
            occ = occupancy(arch, v.threads, res.registers, static + dynamic)
            rows.append(dict(op=v.op, variant=v.name_expression, threads=v.threads, registers=res.registers,
                             smem=static + dynamic, blocks=occ.blocks_per_sm, warps=occ.warps_per_sm,
                             occupancy=occ.fraction, limiter=occ.limiter))
    return rows


def to_markdown(rows, arch: int) -> str:
    lines = [f"| op | variant | threads | registers | shared memory (B) | blocks / SM | occupancy (sm_{arch}) "
             "| limited by |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['op']} | `{r['variant']}` | {r['threads']} | {r['registers']} | {r['smem']} | "
                     f"{r['blocks']} | {100 * r['occupancy']:.0f}% | {r['limiter']} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="theoretical occupancy of every minitx kernel variant "
                                                 "(needs CuPy and NVRTC, not a GPU)")
    parser.add_argument("--arch", type=int, choices=sorted(LIMITS), default=90, help="compute capability (default 90)")
    args = parser.parse_args(argv)
    print(to_markdown(table(args.arch), args.arch), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
