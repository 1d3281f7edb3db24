// layernorm.cu: LayerNorm over the last axis of a contiguous [rows, D] array.
//
// Matches minitx.nn.norm.layernorm_forward / layernorm_backward. One warp per
// row, WARPS rows per block.
//   forward : mean and variance in two passes over the row (the second pass
//             re-reads from cache; two passes avoid the cancellation of
//             E[x^2] - E[x]^2), then y = (x - mean) * rstd * gamma + beta.
//             Saves mean and rstd per row for the backward pass.
//   backward: with g = dy * gamma and xhat = (x - mean) * rstd,
//             dx = rstd * (g - mean(g) - xhat * mean(g * xhat)),
//             dgamma = sum over rows of dy * xhat, dbeta = sum of dy.
//             The column sums are accumulated per block in shared memory,
//             then added to the global dgamma/dbeta with one atomicAdd per
//             column per block (so the caller zeroes them first).
#include "common.cuh"

template <int WARPS>
__global__ void __launch_bounds__(WARPS * 32) layernorm_forward_v1(
    const float* __restrict__ x, const float* __restrict__ gamma, const float* __restrict__ beta,
    float* __restrict__ y, float* __restrict__ mean_out, float* __restrict__ rstd_out, int rows, int D, float eps) {
    const int row = blockIdx.x * WARPS + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= rows) return;
    const float* xr = x + (long long)row * D;
    float* yr = y + (long long)row * D;
    float sum = 0.0f;
    for (int j = lane; j < D; j += 32) sum += xr[j];
    const float mean = warp_sum(sum) / D;
    float sq = 0.0f;
    for (int j = lane; j < D; j += 32) { const float c = xr[j] - mean; sq += c * c; }
    const float rstd = rsqrtf(warp_sum(sq) / D + eps);
    for (int j = lane; j < D; j += 32) yr[j] = (xr[j] - mean) * rstd * gamma[j] + beta[j];
    if (lane == 0) { mean_out[row] = mean; rstd_out[row] = rstd; }
}

// Dynamic shared memory: 2 * D floats (the block's partial dgamma, dbeta).
template <int WARPS>
__global__ void __launch_bounds__(WARPS * 32) layernorm_backward_v1(
    const float* __restrict__ dy, const float* __restrict__ x, const float* __restrict__ gamma,
    const float* __restrict__ mean_in, const float* __restrict__ rstd_in,
    float* __restrict__ dx, float* __restrict__ dgamma, float* __restrict__ dbeta, int rows, int D, int rows_per_block) {
    extern __shared__ float smem[];
    float* s_dgamma = smem;
    float* s_dbeta = smem + D;
    for (int j = threadIdx.x; j < 2 * D; j += WARPS * 32) smem[j] = 0.0f;
    __syncthreads();
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int first = blockIdx.x * rows_per_block;
    const int last = min(rows, first + rows_per_block);
    for (int row = first + warp; row < last; row += WARPS) {
        const float* dyr = dy + (long long)row * D;
        const float* xr = x + (long long)row * D;
        float* dxr = dx + (long long)row * D;
        const float mean = mean_in[row], rstd = rstd_in[row];
        float sg = 0.0f, sgx = 0.0f;
        for (int j = lane; j < D; j += 32) {
            const float xhat = (xr[j] - mean) * rstd, g = dyr[j] * gamma[j];
            sg += g; sgx += g * xhat;
        }
        const float mean_g = warp_sum(sg) / D, mean_gx = warp_sum(sgx) / D;
        for (int j = lane; j < D; j += 32) {
            const float xhat = (xr[j] - mean) * rstd, d = dyr[j], g = d * gamma[j];
            dxr[j] = rstd * (g - mean_g - xhat * mean_gx);
            atomicAdd(&s_dgamma[j], d * xhat);  // the block's warps share columns
            atomicAdd(&s_dbeta[j], d);
        }
    }
    __syncthreads();
    for (int j = threadIdx.x; j < D; j += WARPS * 32) {
        atomicAdd(&dgamma[j], s_dgamma[j]);
        atomicAdd(&dbeta[j], s_dbeta[j]);
    }
}
