"""The CPU emulator for the CUDA kernels (minitx/cuda/emulator.py, simt.hpp).

An emulator that always says "fine" would be worse than none, so most tests
here hand it a small kernel with one deliberate bug and demand that it is
caught: a missing ``__syncthreads``, a write past the end of a buffer, an
overrun of dynamic shared memory, a divergent shuffle, an argument packed
with the wrong width, an output nobody wrote. The others pin the emulated
hardware semantics the real kernels rely on: thread and block numbering,
shuffles, atomics, the bf16 conversion and the ``mma.sync`` fragment layout
(checked against a hand-placed identity, not against the emulator's own
tables), flush-to-zero.

The kernels of ``kernels/*.cu`` themselves are run under the emulator by
``tests/test_kernels_gpu.py`` (device ``emulator``) and, inside a whole GPT
training step, by ``test_gpt_step_on_emulated_kernels_matches_numpy`` below.
"""
from __future__ import annotations

import numpy as np
import pytest

from minitx.cuda import emulator, launch
from minitx.cuda.launch import Launch

pytestmark = pytest.mark.skipif(emulator.available() is not None, reason=f"{emulator.available()}")

TEST_KERNELS = r"""
#include "common.cuh"

// Reverse each block's chunk of x through shared memory. With SYNC == 0 the
// barrier between the write and the read is missing: a bug whose effect
// depends on the order in which the threads run.
template <int SYNC>
__global__ void reverse_chunks(const float* x, float* y, int n) {
    __shared__ float tile[64];
    const int i = blockIdx.x * 64 + threadIdx.x;
    tile[threadIdx.x] = i < n ? x[i] : 0.0f;
    if (SYNC) __syncthreads();
    if (i < n) y[i] = tile[63 - threadIdx.x];  // another thread's slot
}

// Writes one element past the end of y (no bounds check on the last block).
__global__ void write_past_end(float* y, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    y[i] = 1.0f;
    (void)n;
}

// Reads dynamic shared memory at index `at` (past the end when at >= size).
__global__ void read_dynamic_smem(float* y, int at) {
    extern __shared__ float buf[];
    buf[threadIdx.x] = 0.0f;
    __syncthreads();
    if (threadIdx.x == 0) y[0] = buf[at];
}

// Only the lower half of the warp reaches the shuffle: undefined on a GPU.
__global__ void divergent_shuffle(float* y) {
    float v = threadIdx.x;
    if (threadIdx.x < 16) v = __shfl_xor_sync(0xffffffffu, v, 1);
    y[threadIdx.x] = v;
}

// Thread / block numbering, every shuffle flavour, atomics.
__global__ void numbering(int* ids, float* shuf, float* total) {
    const int t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    const int b = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
    const int nt = blockDim.x * blockDim.y * blockDim.z;
    ids[b * nt + t] = b * 1000 + t;
    const int lane = t % 32;
    const float v = (float)lane;
    float* s = shuf + (b * nt + t) * 4;
    s[0] = __shfl_xor_sync(0xffffffffu, v, 5);
    s[1] = __shfl_sync(0xffffffffu, v, (lane + 3) % 32);
    s[2] = warp_sum(v);
    s[3] = warp_max(v);
    atomicAdd(total, 1.0f);
}

// One mma.sync: A and B given as plain row-major bf16 arrays, each lane loads
// its fragments by the table in common.cuh, D written back row-major.
__global__ void one_mma(const unsigned short* A, const unsigned short* B, float* D) {
    const int lane = threadIdx.x, g = lane / 4, t = lane % 4;
    auto a_at = [&](int r, int c) { return (unsigned int)A[r * 16 + c]; };
    auto b_at = [&](int r, int c) { return (unsigned int)B[r * 8 + c]; };
    unsigned int a[4] = {a_at(g, 2 * t) | a_at(g, 2 * t + 1) << 16, a_at(g + 8, 2 * t) | a_at(g + 8, 2 * t + 1) << 16,
                         a_at(g, 2 * t + 8) | a_at(g, 2 * t + 9) << 16,
                         a_at(g + 8, 2 * t + 8) | a_at(g + 8, 2 * t + 9) << 16};
    unsigned int b[2] = {b_at(2 * t, g) | b_at(2 * t + 1, g) << 16, b_at(2 * t + 8, g) | b_at(2 * t + 9, g) << 16};
    float c[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    mma_bf16_16816(c, a, b);
    D[g * 8 + 2 * t] = c[0];
    D[g * 8 + 2 * t + 1] = c[1];
    D[(g + 8) * 8 + 2 * t] = c[2];
    D[(g + 8) * 8 + 2 * t + 1] = c[3];
}

__global__ void pack_pairs(const float* x, unsigned int* y, int n) {
    const int i = threadIdx.x;
    if (i < n) y[i] = pack_bf16x2(x[2 * i], x[2 * i + 1]);
}

// A float4 load from x + offset: misaligned unless offset is a multiple of 4.
__global__ void load_float4(const float* x, float* y, int offset) {
    const float4 v = *reinterpret_cast<const float4*>(x + offset);
    y[0] = v.x + v.y + v.z + v.w;
}

// Writes y[n] (one float past the end) when told to.
__global__ void write_one_past(float* y, int n) { if (threadIdx.x == 0) y[n] = 7.0f; }

// Four stacked 8x8 bf16 matrices in shared memory; lane l gives row l % 8 of matrix l / 8 (= tile row l).
template <int TRANS>
__global__ void load_matrices(const unsigned short* m, unsigned int* out) {
    __shared__ __align__(16) unsigned short tile[32][8];
    for (int i = threadIdx.x; i < 256; i += 32) tile[i / 8][i % 8] = m[i];
    __syncthreads();
    unsigned int r[4];
    if (TRANS) ldmatrix_x4_trans(r, &tile[threadIdx.x][0]);
    else ldmatrix_x4(r, &tile[threadIdx.x][0]);
    for (int j = 0; j < 4; ++j) out[threadIdx.x * 4 + j] = r[j];
}

// cp.async lands at the wait, not before; invalid copies zero-fill.
__global__ void async_copy(const float* src, float* before, float* after, int n_valid) {
    extern __shared__ float buf[];  // 32 x 4 floats
    const int t = threadIdx.x;
    cp_async_16(&buf[4 * t], src + 4 * t, t < n_valid);
    cp_async_commit();
    before[t] = buf[4 * t];  // too early: the copy has not landed
    cp_async_wait<0>();
    __syncthreads();
    after[t] = buf[4 * ((t + 1) % 32)];  // another thread's copy, after its wait and the barrier
}

// BUG planted: warp 0 starts loading the next tile into the half of the
// buffer that warp 1 is still about to read; a __syncthreads() belongs
// before the copy.
__global__ void war_race(const float* next, float* out) {
    extern __shared__ float buf[];  // 64 floats
    const int t = threadIdx.x;
    buf[t] = 1.0f;
    __syncthreads();
    if (t < 8) cp_async_16(&buf[4 * t], next + 4 * t, true);  // overwrites buf[0..31]
    cp_async_commit();
    out[t] = buf[63 - t];  // warp 1 reads buf[0..31]
    __syncthreads();
    cp_async_wait<0>();
}

__global__ void add_tiny(const float* x, float* y) { y[threadIdx.x] = x[threadIdx.x] * 1.0f + 0.0f; }

// Needs more fiber stack than a GPU thread would ever have: recursion with a big frame.
__global__ void deep_stack(float* y, int depth);
__device__ float burn(int depth) {
    volatile float big[4096];
    big[depth % 4096] = (float)depth;
    return depth == 0 ? big[0] : burn(depth - 1) + big[depth % 4096];
}
__global__ void deep_stack(float* y, int depth) { y[threadIdx.x] = burn(depth); }
"""
EXPRS = ["reverse_chunks<1>", "reverse_chunks<0>", "write_past_end", "read_dynamic_smem", "divergent_shuffle",
         "numbering", "one_mma", "pack_pairs", "add_tiny", "deep_stack", "load_float4", "write_one_past",
         "load_matrices<0>", "load_matrices<1>", "async_copy", "war_race"]


def _test_source():
    from minitx.cuda import loader  # noqa: PLC0415

    return TEST_KERNELS.replace('#include "common.cuh"', (loader.KERNEL_DIR / "common.cuh").read_text())


def _test_program():
    return emulator.program_text(_test_source(), EXPRS, "tests/test_emulator.py")


@pytest.fixture(scope="module")
def module():
    return emulator.compile_text(_test_program(), "test_kernels")


def run(module, name, grid, block, *args, shared_mem=0, order="forward", cp_async="late"):
    emulator.EmulatorRuntime(order, cp_async).run(module, name, Launch(grid, block, shared_mem), args)


def test_a_correct_kernel_gives_the_same_answer_in_both_orders(module):
    x = np.arange(150, dtype=np.float32)
    for order in ("forward", "reverse"):
        y = np.full(150, np.nan, np.float32)
        run(module, "reverse_chunks<1>", (3, 1, 1), (64, 1, 1), x, y, np.int32(150), order=order)
        padded = np.concatenate([x, np.zeros(42, np.float32)])  # 3 chunks of 64, zeros past n
        np.testing.assert_array_equal(y, padded.reshape(3, 64)[:, ::-1].reshape(-1)[:150])


def test_a_missing_syncthreads_shows_up_in_one_of_the_orders(module):
    x = np.arange(128, dtype=np.float32)
    results = []
    for order in ("forward", "reverse"):
        y = np.full(128, np.nan, np.float32)
        run(module, "reverse_chunks<0>", (2, 1, 1), (64, 1, 1), x, y, np.int32(128), order=order)
        results.append(y)
    expect = np.concatenate([x[:64][::-1], x[64:][::-1]])
    # forward order: thread t reads slot 63 - t before thread 63 - t wrote it, for t < 32; reverse: the other half
    assert not np.array_equal(results[0], expect) and not np.array_equal(results[1], expect)


def test_a_write_past_the_end_of_a_buffer_is_reported_with_its_argument_and_thread(module):
    y = np.zeros(100, np.float32)  # 2 blocks of 64 threads: threads 100..127 write past the end
    with pytest.raises(emulator.EmulatorError, match=r"past the end of argument 0 \(shape \(100,\).*block \(1, 0, 0\), "
                                                     r"thread \(36, 0, 0\)"):
        run(module, "write_past_end", (2, 1, 1), (64, 1, 1), y, np.int32(100))


def test_a_write_just_past_the_end_is_caught_in_the_alignment_slack(module):
    y = np.zeros(5, np.float32)  # 20 bytes: the guarded copy keeps the address mod 16, so 12 bytes of slack follow
    with pytest.raises(emulator.EmulatorError, match=r"wrote within 16 bytes past the end of argument 0 \(shape \(5,\)"):
        run(module, "write_one_past", (1, 1, 1), (32, 1, 1), y, np.int32(5))
    run(module, "write_one_past", (1, 1, 1), (32, 1, 1), y, np.int32(4))
    assert y[4] == 7.0


def test_a_misaligned_vector_load_is_an_error_and_alignment_is_kept(module):
    x = np.arange(64, dtype=np.float32)
    for base in (x, x[4:]):  # 16-byte aligned starts, whatever their size
        y = np.zeros(1, np.float32)
        run(module, "load_float4", (1, 1, 1), (1, 1, 1), base, y, np.int32(8))
        assert y[0] == base[8:12].sum()
    with pytest.raises(emulator.EmulatorError, match="misaligned memory access"):
        run(module, "load_float4", (1, 1, 1), (1, 1, 1), x, np.zeros(1, np.float32), np.int32(1))


def test_reading_past_dynamic_shared_memory_is_reported(module):
    y = np.zeros(1, np.float32)
    run(module, "read_dynamic_smem", (1, 1, 1), (32, 1, 1), y, np.int32(31), shared_mem=32 * 4)
    assert y[0] == 0.0
    with pytest.raises(emulator.EmulatorError, match="past the end of dynamic shared memory"):
        run(module, "read_dynamic_smem", (1, 1, 1), (32, 1, 1), y, np.int32(40), shared_mem=32 * 4)


def test_a_divergent_shuffle_is_an_error(module):
    with pytest.raises(emulator.EmulatorError, match="16 of its 32 lanes are at a warp-wide operation"):
        run(module, "divergent_shuffle", (1, 1, 1), (32, 1, 1), np.zeros(32, np.float32))


def test_argument_widths_are_checked_against_the_kernel_signature(module):
    y = np.zeros(64, np.float32)
    with pytest.raises(emulator.EmulatorError, match="argument 1: packed as int64 .8 bytes., the kernel's parameter "
                                                     "has 4 bytes"):
        run(module, "write_past_end", (1, 1, 1), (64, 1, 1), y, np.int64(64))
    with pytest.raises(emulator.EmulatorError, match="packed 1 arguments, the kernel takes 2"):
        run(module, "write_past_end", (1, 1, 1), (64, 1, 1), y)


def test_launch_limits_of_the_gpu_are_enforced(module):
    with pytest.raises(emulator.EmulatorError, match="2048 threads per block"):
        run(module, "add_tiny", (1, 1, 1), (2048, 1, 1), np.zeros(1, np.float32), np.zeros(1, np.float32))
    with pytest.raises(emulator.EmulatorError, match="shared memory"):
        run(module, "read_dynamic_smem", (1, 1, 1), (32, 1, 1), np.zeros(1, np.float32), np.int32(0),
            shared_mem=300 * 1024)


def test_a_fiber_stack_overflow_is_reported_not_a_crash(module):
    with pytest.raises(emulator.EmulatorError, match="memory fault"):
        run(module, "deep_stack", (1, 1, 1), (32, 1, 1), np.zeros(32, np.float32), np.int32(100))


def test_thread_numbering_shuffles_and_atomics(module):
    grid, block = (2, 3, 1), (8, 4, 2)  # 64 threads = 2 warps per block, 6 blocks
    nt, nb = 64, 6
    ids = np.zeros(nb * nt, np.int32)
    shuf = np.zeros((nb * nt, 4), np.float32)
    total = np.zeros(1, np.float32)
    run(module, "numbering", grid, block, ids, shuf, total)
    b, t = np.divmod(np.arange(nb * nt), nt)
    np.testing.assert_array_equal(ids, b * 1000 + t)
    lane = t % 32
    np.testing.assert_array_equal(shuf[:, 0], lane ^ 5)
    np.testing.assert_array_equal(shuf[:, 1], (lane + 3) % 32)
    np.testing.assert_array_equal(shuf[:, 2], np.full(nb * nt, sum(range(32))))
    np.testing.assert_array_equal(shuf[:, 3], np.full(nb * nt, 31))
    assert total[0] == nb * nt


def test_mma_fragments_follow_the_ptx_tables(module):
    """D = A @ B for integer-valued A, B (exact in bf16 and fp32), with A's and B's
    entries all different, so any permutation of a fragment changes D."""
    from minitx.cuda.ops import from_bf16_bits, to_bf16_bits  # noqa: PLC0415

    rng = np.random.default_rng(0)
    A = rng.permutation(256).reshape(16, 16).astype(np.float32) - 128
    B = rng.permutation(128).reshape(16, 8).astype(np.float32) - 64
    D = np.full((16, 8), np.nan, np.float32)
    run(module, "one_mma", (1, 1, 1), (32, 1, 1), to_bf16_bits(A), to_bf16_bits(B), D)
    assert np.array_equal(from_bf16_bits(to_bf16_bits(A)), A)
    np.testing.assert_array_equal(D, A.astype(np.float64) @ B.astype(np.float64))
    # a plain identity as B picks out A's first eight columns: the layout of A alone
    D2 = np.full((16, 8), np.nan, np.float32)
    run(module, "one_mma", (1, 1, 1), (32, 1, 1), to_bf16_bits(A), to_bf16_bits(np.eye(16, 8, dtype=np.float32)), D2)
    np.testing.assert_array_equal(D2, A[:, :8])


def test_ldmatrix_hands_out_the_ptx_fragments(module):
    m = np.arange(256, dtype=np.uint16) * 3 + 1  # four 8x8 matrices, every element different
    M = m.reshape(4, 8, 8).astype(np.uint32)
    lane = np.arange(32)[:, None]
    j = np.arange(4)[None, :]
    for trans in (0, 1):
        out = np.zeros(128, np.uint32)
        run(module, f"load_matrices<{trans}>", (1, 1, 1), (32, 1, 1), m, out)
        if trans:
            expect = M[j, 2 * (lane % 4), lane // 4] | (M[j, 2 * (lane % 4) + 1, lane // 4] << 16)
        else:
            expect = M[j, lane // 4, 2 * (lane % 4)] | (M[j, lane // 4, 2 * (lane % 4) + 1] << 16)
        np.testing.assert_array_equal(out.reshape(32, 4), expect)


def test_cp_async_lands_at_the_wait_and_zero_fills(module):
    src = np.arange(1, 129, dtype=np.float32)
    before = np.zeros(32, np.float32)
    after = np.zeros(32, np.float32)
    run(module, "async_copy", (1, 1, 1), (32, 1, 1), src, before, after, np.int32(20), shared_mem=128 * 4)
    assert np.isnan(before).all()  # read before the wait: the poisoned shared memory, not the data
    nxt = (np.arange(32) + 1) % 32
    np.testing.assert_array_equal(after, np.where(nxt < 20, src[4 * nxt], 0.0))


def test_a_copy_into_a_buffer_still_being_read_shows_when_copies_land_early(module):
    """cp.async may land any time before its wait; landing late hides this bug, landing early shows it."""
    nxt = np.full(32, 7.0, np.float32)
    outs = {}
    for land in ("late", "early"):
        out = np.zeros(64, np.float32)
        run(module, "war_race", (1, 1, 1), (64, 1, 1), nxt, out, shared_mem=64 * 4, cp_async=land)
        outs[land] = out
    np.testing.assert_array_equal(outs["late"], np.ones(64, np.float32))
    assert (outs["early"][32:] == 7.0).all()  # warp 1 read the next tile's data


def test_bf16_packing_rounds_to_nearest_even_like_the_numpy_helper(module):
    from minitx.cuda.ops import to_bf16_bits  # noqa: PLC0415

    rng = np.random.default_rng(1)
    x = rng.standard_normal(64).astype(np.float32)
    x[:4] = [1.0 + 2**-8, 1.0 + 3 * 2**-8, -2.5, 0.0]  # ties go to even
    y = np.zeros(32, np.uint32)
    run(module, "pack_pairs", (1, 1, 1), (32, 1, 1), x, y, np.int32(32))
    bits = to_bf16_bits(x).astype(np.uint32)
    np.testing.assert_array_equal(y & 0xFFFF, bits[0::2])
    np.testing.assert_array_equal(y >> 16, bits[1::2])


def test_subnormals_flush_to_zero_as_with_ftz(module):
    x = np.array([1e-40, -1e-41, 1.0, 2e-38], np.float32)
    y = np.full(4, np.nan, np.float32)
    run(module, "add_tiny", (1, 1, 1), (4, 1, 1), x, y)
    np.testing.assert_array_equal(y, np.array([0.0, 0.0, 1.0, 2e-38], np.float32))


def test_outputs_the_wrappers_allocate_start_as_nan():
    xp = emulator.PoisonedNumPy()
    assert np.isnan(xp.empty((3, 2), dtype=np.float32)).all()
    assert (xp.empty(4, dtype=np.uint8) == 0xAB).all()
    assert xp.zeros(2).sum() == 0 and xp.ndarray is np.ndarray


def test_the_test_schedule_names_match_the_emulator():
    import test_kernels_gpu  # noqa: PLC0415 - the ids its parametrized tests use

    assert test_kernels_gpu.SCHEDULES == ["-".join(s) for s in emulator.SCHEDULES]
    assert [emulator.schedule_for(i) for i in (0, 5, 8)] == [
        dict(order="forward", cp_async="late", schedule="greedy"),
        dict(order="reverse", cp_async="late", schedule="lockstep"),
        dict(order="forward", cp_async="late", schedule="greedy")]


def test_bad_order_is_refused():
    with pytest.raises(ValueError, match="expected 'forward' or 'reverse'"):
        emulator.EmulatorRuntime("sideways")
    with pytest.raises(ValueError, match="expected 'late' or 'early'"):
        emulator.EmulatorRuntime("forward", "never")
    with pytest.raises(ValueError, match="schedule: got 'random', expected 'greedy' or 'lockstep'"):
        emulator.EmulatorRuntime("forward", "late", "random")


def test_every_kernel_source_builds_and_lists_every_instance():
    for source in launch.SOURCES:
        module = emulator.build(source)
        assert set(module.index) == set(launch.name_expressions(source))
        for v in [v for v in launch.VARIANTS if v.source == source]:
            assert module.param_sizes(v.name_expression) == [
                {"ptr": 8, "i32": 4, "i64": 8, "f32": 4}[k] for k in launch.SIGNATURES[v.template]], v.name_expression


def test_the_portable_ucontext_fibers_give_the_same_results():
    """Machines other than x86-64 switch fibers with ucontext; the x86-64 build can be told to as well."""
    portable = emulator.compile_text(_test_program(), "test_kernels", defines=("MINITX_EMU_UCONTEXT",))
    test_thread_numbering_shuffles_and_atomics(portable)
    test_mma_fragments_follow_the_ptx_tables(portable)
    test_a_missing_syncthreads_shows_up_in_one_of_the_orders(portable)
    test_a_write_past_the_end_of_a_buffer_is_reported_with_its_argument_and_thread(portable)


@pytest.mark.parametrize("arch", [80, 90])
def test_the_same_test_kernels_compile_for_the_gpu(arch, nvrtc):
    """The planted-bug kernels use every wrapper of common.cuh (mma, bf16 packing, ldmatrix, cp.async):
    NVRTC compiling them proves the wrappers' inline PTX, which unused inline functions would not."""
    from minitx.cuda import loader

    result = loader.nvrtc_compile_text(_test_source(), tuple(EXPRS), arch, "test_emulator.cu")
    assert set(result.lowered) == set(EXPRS) and len(result.cubin) > 0
