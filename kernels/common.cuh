// common.cuh: helpers shared by every minitx kernel source.
//
// The loader (minitx/cuda/loader.py) pastes this file into each .cu that
// says `#include "common.cuh"`, so CuPy's compile cache key (a hash of the
// source text) changes whenever this header changes.
#pragma once

// Round up an integer division: how many tiles of size b cover a.
#define CEIL_DIV(a, b) (((a) + (b) - 1) / (b))

// The score given to a masked (query, key) pair. minitx.nn.attention uses
// the most negative finite float, not -inf, so that a row whose keys are
// all masked becomes uniform instead of NaN; the kernels do the same.
#define MINITX_MASKED (-3.402823466e+38f)

// NVRTC compiles without the C library headers, so INFINITY is ours to define.
#ifndef INFINITY
#define INFINITY (__int_as_float(0x7f800000))
#endif

// The sum / maximum of `v` over the 32 lanes of a warp, by butterfly
// shuffles: after log2(32) = 5 steps every lane holds the result.
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
    return v;
}

// bfloat16 is the top 16 bits of a float32. minitx passes bf16 tensors as
// uint16 arrays (NumPy and CuPy have no bfloat16 dtype), so the kernels
// convert by hand instead of including cuda_bf16.h.
__device__ __forceinline__ float bf16_to_float(unsigned short h) {
    return __uint_as_float(((unsigned int)h) << 16);
}

// The pieces of inline PTX below are the only hardware-specific code in
// minitx's kernels. The CPU emulator (minitx/cuda/emulator.py) compiles these
// sources with g++ and defines MINITX_EMULATOR, supplying its own versions
// that follow the same PTX ISA rules; kernels must reach tensor cores, bf16
// conversion, ldmatrix and cp.async through these wrappers only.
#ifndef MINITX_EMULATOR
// Two floats -> two bf16 packed in one 32-bit register (lo in the low half),
// rounded to nearest even by the hardware conversion (sm_80+).
__device__ __forceinline__ unsigned int pack_bf16x2(float lo, float hi) {
    unsigned int r;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}

// One warp-wide tensor-core instruction: D (16x8, fp32) += A (16x16, bf16,
// row-major) x B (16x8, bf16, column-major). Each of the 32 lanes holds a
// fixed piece of each matrix ("fragment"); with g = lane / 4 and t = lane % 4:
//   a[0] = A[g][2t..2t+1]      a[1] = A[g+8][2t..2t+1]
//   a[2] = A[g][2t+8..2t+9]    a[3] = A[g+8][2t+8..2t+9]
//   b[0] = B[2t..2t+1][g]      b[1] = B[2t+8..2t+9][g]      (pairs along k)
//   c[0..1] = D[g][2t..2t+1]   c[2..3] = D[g+8][2t..2t+1]
// (PTX ISA, "Matrix fragments for mma.m16n8k16 with floating point type").
__device__ __forceinline__ void mma_bf16_16816(float c[4], const unsigned int a[4], const unsigned int b[2]) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
        "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// ldmatrix: four 8x8 matrices of 16-bit elements from shared memory into
// mma fragments, one instruction for what would be four 32-bit loads per
// lane. Lane l gives the address of row (l % 8) of matrix (l / 8) (16 bytes,
// 16-byte aligned). Lane l receives, in r[j], row l / 4 of matrix j,
// elements 2 * (l % 4) and 2 * (l % 4) + 1 (the lower index in the low half):
// exactly an A or B fragment register of mma.m16n8k16.
__device__ __forceinline__ void ldmatrix_x4(unsigned int r[4], const void* smem_row) {
    const unsigned int addr = static_cast<unsigned int>(__cvta_generic_to_shared(smem_row));
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(addr));
}

// The same with each 8x8 matrix transposed on the way: lane l receives, in
// r[j], elements (2 * (l % 4), l / 4) and (2 * (l % 4) + 1, l / 4) of matrix
// j, i.e. two consecutive ROWS of one column (for a B operand stored k-major).
__device__ __forceinline__ void ldmatrix_x4_trans(unsigned int r[4], const void* smem_row) {
    const unsigned int addr = static_cast<unsigned int>(__cvta_generic_to_shared(smem_row));
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(addr));
}

// cp.async (sm_80+): copy 16 bytes global -> shared without passing through
// registers and without waiting. With valid == false nothing is read and
// the 16 bytes are zero-filled (tails of tiles). The copies a thread issued
// are grouped by cp_async_commit(); cp_async_wait<N>() returns when at most
// N of the thread's groups are still in flight. Other threads' copies are
// visible only after a __syncthreads() that follows their wait.
__device__ __forceinline__ void cp_async_16(void* smem, const void* gmem, bool valid) {
    const unsigned int addr = static_cast<unsigned int>(__cvta_generic_to_shared(smem));
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(addr), "l"(gmem), "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;" ::"n"(N));
}
#endif  // MINITX_EMULATOR

// Block-wide reductions for blocks of NT threads (a multiple of 32). `red`
// is a __shared__ scratch array of at least NT/32 floats. Every thread gets
// the result.
template <int NT>
__device__ __forceinline__ float block_max(float v, float* red) {
    v = warp_max(v);
    __syncthreads();  // red may still be in use by a previous reduction
    if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = v;
    __syncthreads();
    float r = red[0];
#pragma unroll
    for (int w = 1; w < NT / 32; ++w) r = fmaxf(r, red[w]);
    return r;
}

template <int NT>
__device__ __forceinline__ float block_sum(float v, float* red) {
    v = warp_sum(v);
    __syncthreads();
    if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = v;
    __syncthreads();
    float r = 0.0f;
#pragma unroll
    for (int w = 0; w < NT / 32; ++w) r += red[w];
    return r;
}

// May query i see key j? Causal: j <= i + start (start = Tk - Tq aligns the
// last query with the last key, as in KV-cache decoding). Padding: keep[j]
// is 1 for real tokens, 0 for padding (keep == nullptr: no padding mask).
__device__ __forceinline__ bool attn_allowed(int i, int j, int causal, int start, const unsigned char* keep) {
    if (causal && j > i + start) return false;
    if (keep != nullptr && keep[j] == 0) return false;
    return true;
}
