# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 09 · From a naive matmul to flash attention, by hand
#
# minitx's CUDA kernels live in `kernels/*.cu`. A kernel is hard to step
# through; its *algorithm* is not. This lesson runs the same loops as the
# kernels, in NumPy, on the CPU (the "twins" in `minitx/cuda/reference.py`):
#
# 1. a matrix product the way a naive kernel computes it, one output at a time;
# 2. the tiled version: blocks of the output, slices of K staged in "shared memory";
# 3. the online softmax: one pass for the statistics;
# 4. flash attention forward and backward, tile by tile, checked against
#    `minitx.nn.attention`.
#
# Then the ladder chart: each kernel version as a percentage of cuBLAS on an
# H200. **Those GPU figures are unmeasured** until `tools/gpu_check.sh` has run
# on a GPU; the chart below says so when there is no report yet.

# %%
import json
import math
from pathlib import Path

import numpy as np

from minitx.cuda import launch
from minitx.cuda import reference as R
from minitx.nn.attention import scaled_dot_product_attention_backward, scaled_dot_product_attention_forward
from minitx.tutorial import FAST, plt, savefig

rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. The naive kernel: one thread per output
#
# `matmul_v1_naive` gives each thread one `C[i, j]` and a loop over `k`.
# In Python the same work is three nested loops; each output reads a whole
# row of A and column of B, so every input element is read N (or M) times.

# %%
def naive_matmul(a, b):
    M, K = a.shape
    N = b.shape[1]
    c = np.zeros((M, N))
    for i in range(M):          # blockIdx/threadIdx pick (i, j) on the GPU
        for j in range(N):
            acc = 0.0
            for k in range(K):
                acc += a[i, k] * b[k, j]
            c[i, j] = acc
    return c

M, K, N = (12, 10, 9) if FAST else (40, 30, 20)
a, b = rng.standard_normal((M, K)), rng.standard_normal((K, N))
print("naive == a @ b:", np.allclose(naive_matmul(a, b), a @ b))

# %% [markdown]
# ## 2. Tiling: reuse what you load
#
# A thread block computes a BM x BN tile of C. For each BK-deep slice of K it
# copies a BM x BK tile of A and a BK x BN tile of B into shared memory (zeros
# past the edge) and accumulates BK outer products. Global reads drop by a
# factor of the tile size: the loads per output go from 2K to about
# K (1/BN + 1/BM).

# %%
def global_reads(M, N, K, BM, BN):
    tiles = math.ceil(M / BM) * math.ceil(N / BN)
    return tiles * K * (BM + BN)

for BM, BN in [(1, 1), (32, 32), (128, 128)]:
    print(f"tile {BM:>3}x{BN:<3}: {global_reads(4096, 4096, 4096, BM, BN) / 1e9:7.2f} G element reads for 4096^3")

c = R.tiled_matmul(a, b, BM=8, BN=8, BK=4)
print("tiled == a @ b:", np.allclose(c, a @ b))

# %% [markdown]
# The launch arithmetic for each rung of the ladder is plain Python: grid,
# block and shared memory for a 4096^3 product.

# %%
for version in launch.MATMUL_VERSIONS:
    v = launch.default_variant("matmul", version)
    cfg = launch.matmul_launch(v, 4096, 4096, 4096)
    print(f"{version:15s} {v.label:40s} grid={cfg.grid} threads={v.threads:4d} smem={v.static_smem:5d} B")

# %% [markdown]
# ### The real kernels, on this CPU
#
# The twins above prove the *algorithm*. The CUDA text itself can run here
# too: `minitx.cuda.emulator` compiles `kernels/matmul.cu` with g++ and
# runs each CUDA thread as a fiber, each `__syncthreads()` as a point where
# every fiber of the block waits, each warp shuffle and tensor-core `mma.sync`
# by the rules of the PTX manual. Inside `emulator.activate()` the ordinary
# wrappers in `minitx.cuda.ops` take NumPy arrays. It is slow (one block at
# a time, one core) and says nothing about speed, but it checks indexing,
# tails of tiles, barriers and fragment layouts before any GPU is involved.
# Running the threads in reverse order is how it catches a missing
# `__syncthreads()`: the answer changes with the order.

# %%
from minitx.cuda import emulator, ops

why_not = emulator.available()
if why_not:
    print("emulator unavailable here:", why_not)
else:
    a32 = rng.standard_normal((37, 29)).astype(np.float32)  # sizes that fill no tile exactly
    b32 = rng.standard_normal((29, 53)).astype(np.float32)
    for order in ("forward", "reverse"):
        with emulator.activate(order) as device:
            for version in launch.MATMUL_VERSIONS:
                c = ops.matmul(a32, b32, version=version)
                err = np.abs(c - a32.astype(np.float64) @ b32).max()
                assert err < 1e-4, (version, order, err)
        print(f"{order:7s} thread order: {device.launches} kernel launches, every rung equals a @ b to < 1e-4")

# %% [markdown]
# ## 3. Online softmax
#
# Softmax needs the row maximum (for stability) and the sum of exponentials.
# Reading the row twice for that is wasteful; instead keep a running maximum
# `m` and a running sum `s` of `exp(x - m)`, rescaling `s` whenever `m` grows:
# `s <- s * exp(m_old - m_new) + exp(x - m_new)`. Partial results merge with
# the same rule, so 32 lanes can each do a strided share and combine.

# %%
x = rng.standard_normal((3, 50)) * 5
ref = np.exp(x - x.max(-1, keepdims=True))
ref /= ref.sum(-1, keepdims=True)
print("online softmax max error:", np.abs(R.online_softmax(x) - ref).max())

# %% [markdown]
# ## 4. Flash attention
#
# The same rescaling trick applied to attention: for a tile of queries, walk
# over tiles of keys; keep per query the running max `m`, the running sum
# `l` and the *unnormalised* output `acc = sum_j exp(s_j - m) v_j`. At the
# end `out = acc / l` and `lse = m + log l`. The T x T score matrix never
# exists, only one tile of it at a time: memory is O(T), not O(T^2).
#
# The backward pass recomputes `P = exp(S - lse)` tile by tile and needs
# one more number per query, `D = rowsum(dO * O)`:
# `dS = P * (dO V^T - D)`.

# %%
B, H, T, hs = (1, 2, 40, 8) if FAST else (2, 4, 200, 16)
q, k, v = (rng.standard_normal((B, H, T, hs)) for _ in range(3))
keep = rng.random((B, T)) > 0.2  # padding mask: True = a real token
allowed = np.broadcast_to(R.allowed_mask(T, T, causal=True, keep=keep), (B, H, T, T))

out_ref, weights, cache = scaled_dot_product_attention_forward(q, k, v, mask=allowed)
out, lse = R.flash_attention_forward(q, k, v, causal=True, keep=keep, block_q=16, block_k=16)
print("flash forward vs minitx.nn.attention:", np.abs(out - out_ref).max())

dout = rng.standard_normal(out.shape)
grads_ref = scaled_dot_product_attention_backward(dout, cache)
grads = R.flash_attention_backward(dout, q, k, v, out, lse, causal=True, keep=keep, block_q=16, block_k=16)
for name, g, r in zip(("dq", "dk", "dv"), grads, grads_ref):
    print(f"flash backward {name}: max error {np.abs(g - r).max():.2e}")

# %% [markdown]
# How much memory does each approach hold at once? The naive version keeps the
# full score matrix per head; flash keeps one tile.

# %%
for T_ in (1024, 4096, 16384):
    naive = T_ * T_ * 4
    flash = 32 * 32 * 4
    print(f"T={T_:6d}: naive scores {naive / 2**20:8.1f} MiB per head, flash tile {flash / 2**10:.1f} KiB per block")

# %% [markdown]
# ### On tensor cores: the same loop in bf16
#
# `attention_v3_tc_fwd` (`kernels/attention_tc.cu`) runs both products of
# this loop on tensor cores: Q, K, V arrive in bfloat16, `S = Q K^T` and
# `O += P V` accumulate in fp32, and the softmax weights P are rounded to
# bf16 before the second product, straight out of the registers that held S.
# That rounding is the only new error: each weight moves by at most 2^-8 of
# itself, so every output moves by at most `2^-8 * sum_j p_j |v_j|`. Its twin
# `R.flash_attention_forward_bf16` shows it against float64 attention:

# %%
qb, kb, vb = (R.bf16_round(t.astype(np.float32)) for t in (q, k, v))  # what the kernel reads
out16, lse16 = R.flash_attention_forward_bf16(qb, kb, vb, causal=True, keep=keep, block_q=16, block_k=16)
ref16, _ = R.naive_attention(*(t.astype(np.float64) for t in (qb, kb, vb)), causal=True, keep=keep)
bound16, _ = R.naive_attention(*(t.astype(np.float64) for t in (qb, kb)), np.abs(vb.astype(np.float64)),
                               causal=True, keep=keep)
print(f"bf16 flash vs float64: max error {np.abs(out16 - ref16).max():.2e}, "
      f"worst fraction of the bound used {np.max(np.abs(out16 - ref16) / (2**-8 * bound16 + 1e-6)):.2f}")

# %% [markdown]
# The next rung, `attention_v4_tc_fwd`, changes none of that arithmetic; it
# changes how the data reaches the tensor cores. One `ldmatrix` instruction
# hands each lane four fragment registers at once (with `.trans` it gathers
# V's pairs of consecutive keys from an ordinary row-major tile), and
# `cp.async` copies the next K/V tile into a second buffer while the current
# one is being multiplied, so the tensor cores stop waiting on memory. With
# the same tiles it produces the very same bits as v3 on the emulator: a
# pipeline is a change of schedule, not of mathematics.

# %% [markdown]
# ## 5. The measured ladder
#
# `tools/gpu_check.sh` writes `kernels.jsonl`; a copy committed under
# `benchmarks/` is plotted here. Without one, the chart is empty and says
# "unmeasured": no figure in minitx is invented.

# %%
reports = sorted(Path(__file__).resolve().parent.parent.glob("benchmarks/*/kernels.jsonl")) \
    if "__file__" in globals() else []
rows = [json.loads(line) for line in reports[-1].read_text().splitlines()] if reports else []
best = {}
for r in rows:
    if r["op"] == "matmul" and r["dtype"] == "fp32" and not r.get("baseline"):
        best[r["version"]] = max(best.get(r["version"], 0.0), r["pct_baseline"])
pyplot = plt()
if pyplot:
    fig, ax = pyplot.subplots(figsize=(7, 3))
    names = list(best) or list(launch.MATMUL_VERSIONS)
    ax.bar(names, [best.get(n, 0.0) for n in names])
    ax.axhline(100, color="k", lw=0.8, ls="--")
    ax.set_ylabel("% of cuBLAS fp32")
    ax.set_title("fp32 matmul ladder on the GPU" + ("" if best else " (unmeasured: no GPU report yet)"))
    ax.tick_params(axis="x", rotation=30)
    savefig(fig, "09_kernel_ladder")
print("ladder:", best or "unmeasured")
