// softmax.cu: softmax over the last axis of a contiguous [rows, C] float32 array.
//
// Matches minitx.nn.softmax.softmax_forward. One warp per row, WARPS rows per
// block. The statistics take ONE pass over the row with the "online softmax"
// recurrence (Milakov & Gimelshein, 2018): keep a running maximum m and a
// running sum s = sum_j exp(x_j - m); when a larger x arrives, rescale
//     s <- s * exp(m_old - m_new) + exp(x - m_new)
// Each lane runs it over its own strided elements, then the 32 partial (m, s)
// pairs are merged with the same rule by shuffles. A second read of the row
// writes y_j = exp(x_j - m) / s.
#include "common.cuh"

// Merge partial statistics (m, s) and (m2, s2) into (m, s).
__device__ __forceinline__ void online_merge(float& m, float& s, float m2, float s2) {
    const float mn = fmaxf(m, m2);
    // A lane that saw no element has m = -inf and s = 0: its term is 0 * 0.
    s = (m == -INFINITY ? 0.0f : s * expf(m - mn)) + (m2 == -INFINITY ? 0.0f : s2 * expf(m2 - mn));
    m = mn;
}

template <int WARPS>
__global__ void __launch_bounds__(WARPS * 32) softmax_v1_online(const float* __restrict__ x, float* __restrict__ y,
                                                                  int rows, int C) {
    const int row = blockIdx.x * WARPS + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= rows) return;  // whole warps leave together: shuffles stay safe
    const float* xr = x + (long long)row * C;
    float* yr = y + (long long)row * C;
    float m = -INFINITY, s = 0.0f;
    for (int j = lane; j < C; j += 32) {
        const float v = xr[j];
        if (v > m) { s = (m == -INFINITY ? 0.0f : s * expf(m - v)) + 1.0f; m = v; }
        else       { s += expf(v - m); }
    }
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) {
        const float m2 = __shfl_xor_sync(0xffffffffu, m, offset);
        const float s2 = __shfl_xor_sync(0xffffffffu, s, offset);
        online_merge(m, s, m2, s2);
    }
    const float inv = 1.0f / s;
    for (int j = lane; j < C; j += 32) yr[j] = expf(xr[j] - m) * inv;
}
