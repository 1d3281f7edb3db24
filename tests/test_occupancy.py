"""Theoretical occupancy (minitx/cuda/occupancy.py): the rules on hand-worked cases, then every variant.

The hand-worked cases follow the CUDA occupancy rules for sm_80 / sm_90:
64 warps, 32 blocks, 65536 registers in 4 sub-partitions (allocated per warp
in units of 256), shared memory in units of 128 bytes plus 1 KiB reserved
per block (228 KiB per SM on sm_90, 164 KiB on sm_80).
"""
from __future__ import annotations

import pytest

from minitx.cuda import launch
from minitx.cuda.occupancy import occupancy, table, to_markdown


@pytest.mark.parametrize("arch, threads, regs, smem, blocks, limiter", [
    (90, 256, 32, 0, 8, "warps"),               # 1024 regs/warp: 16 warps per sub-partition, 64 in all
    (90, 128, 255, 0, 2, "registers"),          # 8192 regs/warp: 2 per sub-partition = 8 warps = 2 blocks
    (90, 256, 114, 8192, 2, "registers"),       # 3648 -> 3840 regs/warp: 4 per sub-partition, 16 warps
    (90, 32, 96, 0, 20, "registers"),           # 3072 regs/warp: 5 per sub-partition (not 65536/3072 = 21)
    (90, 32, 16, 0, 32, "blocks"),              # tiny blocks: the 32-block cap
    (90, 128, 32, 100 * 1024, 2, "shared memory"),  # (102400 + 1024) B per block in 233472 B
    (80, 128, 32, 100 * 1024, 1, "shared memory"),  # sm_80 has 167936 B per SM
    (90, 1024, 96, 0, 0, "registers"),          # 32 warps x 3072 = 98304 > 65536 registers per block
])
def test_hand_worked_cases(arch, threads, regs, smem, blocks, limiter):
    occ = occupancy(arch, threads, regs, smem)
    assert (occ.blocks_per_sm, occ.limiter) == (blocks, limiter)
    assert occ.warps_per_sm == blocks * -(-threads // 32)
    assert occ.fraction == occ.warps_per_sm / 64


def test_bad_arguments():
    with pytest.raises(ValueError, match="got sm_75, expected one of"):
        occupancy(75, 128, 32, 0)
    with pytest.raises(ValueError, match="threads=0"):
        occupancy(90, 0, 32, 0)


@pytest.mark.parametrize("arch", [80, 90])
def test_every_variant_fits_at_least_one_block(arch, nvrtc):
    rows = table(arch)  # a compile failure here fails the test
    assert {r["variant"] for r in rows} == {v.name_expression for v in launch.VARIANTS}
    assert all(r["blocks"] >= 1 for r in rows), [r["variant"] for r in rows if r["blocks"] < 1]
    md = to_markdown(rows, arch)
    assert md.count("\n") == len(rows) + 2 and f"occupancy (sm_{arch})" in md
