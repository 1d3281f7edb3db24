// attention.cu: scaled dot-product attention, forward and backward, fp32.
//
// Matches minitx.nn.attention.scaled_dot_product_attention_{forward,backward}
// (without dropout). Layout: q [BH, Tq, hs], k and v [BH, Tk, hs], o [BH, Tq, hs],
// lse [BH, Tq], all contiguous; BH = batch * heads, and keep (optional) is a
// [batch, Tk] uint8 padding mask, 1 = a real token. Masks follow minitx:
// a masked score becomes the most negative float (MINITX_MASKED), so a query
// whose keys are ALL masked gets uniform weights over all Tk keys. For such a
// row the logsumexp written is -inf (the logsumexp of no visible score), and
// the backward pass knows from that to use weights 1/Tk and zero dS.
//
// Versions:
//   v1 naive fused   one block per query row: scores for every key in shared
//                    memory (O(Tk) per row), softmax, then weights @ V.
//   v2 flash         FlashAttention-2 style: one block per tile of BR queries,
//                    loops over tiles of BC keys held in shared memory and
//                    keeps a running max m, running sum l and unnormalised
//                    output acc per query ("online softmax"); writes o and
//                    lse = m + log(l). Never materialises the Tq x Tk matrix.
//   backward v2      one block per tile of BC keys, looping over query tiles;
//                    recomputes P = exp(S - lse) instead of storing it, uses
//                    D = rowsum(dO * O) (attention_bwd_delta), accumulates dK
//                    and dV in registers and adds dQ with atomics.
// With a causal mask and no padding mask (and Tk >= Tq), tiles that lie
// entirely above the diagonal are skipped: about half the work.
#include "common.cuh"

#define ATTN_FWD_ARGS                                                                  \
    const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v, \
    float* __restrict__ o, float* __restrict__ lse, int H, int Tq, int Tk, int hs,      \
    float scale, int causal, int start, const unsigned char* __restrict__ keep

// ---------------------------------------------------------------------------
// v1 naive fused: grid (Tq, BH), NT threads, dynamic shared memory
// (hs + Tk) floats: the query row, then the row of scores / weights.
// ---------------------------------------------------------------------------
template <int NT>
__global__ void __launch_bounds__(NT) attention_v1_naive(ATTN_FWD_ARGS) {
    extern __shared__ float smem[];
    __shared__ float red[NT / 32];
    float* sq = smem;        // [hs]
    float* ss = smem + hs;   // [Tk]
    const int i = blockIdx.x, bh = blockIdx.y;
    const unsigned char* keep_b = keep ? keep + (long long)(bh / H) * Tk : nullptr;
    const float* qi = q + ((long long)bh * Tq + i) * hs;
    const float* kb = k + (long long)bh * Tk * hs;
    const float* vb = v + (long long)bh * Tk * hs;
    for (int d = threadIdx.x; d < hs; d += NT) sq[d] = qi[d];
    __syncthreads();
    float mx = -INFINITY;
    for (int j = threadIdx.x; j < Tk; j += NT) {
        float s = 0.0f;
        for (int d = 0; d < hs; ++d) s += sq[d] * kb[(long long)j * hs + d];
        s = attn_allowed(i, j, causal, start, keep_b) ? s * scale : MINITX_MASKED;
        ss[j] = s;
        mx = fmaxf(mx, s);
    }
    mx = block_max<NT>(mx, red);
    float sum = 0.0f;
    for (int j = threadIdx.x; j < Tk; j += NT) { const float p = expf(ss[j] - mx); ss[j] = p; sum += p; }
    sum = block_sum<NT>(sum, red);  // its barriers also publish ss
    const float inv = 1.0f / sum;
    float* oi = o + ((long long)bh * Tq + i) * hs;
    for (int d = threadIdx.x; d < hs; d += NT) {
        float acc = 0.0f;
        for (int j = 0; j < Tk; ++j) acc += ss[j] * vb[(long long)j * hs + d];
        oi[d] = acc * inv;
    }
    if (threadIdx.x == 0) lse[(long long)bh * Tq + i] = (mx == MINITX_MASKED) ? -INFINITY : mx + logf(sum);
}

// Copy a [rows, hs] tile starting at row r0 of a [T, hs] matrix into shared
// memory with row stride D + 1 (the +1 spreads a column over all banks),
// zero-filling rows past T and columns past hs.
template <int D>
__device__ __forceinline__ void load_tile(float* dst, const float* __restrict__ src, int r0, int rows, int T, int hs,
                                          int nthreads) {
    for (int e = threadIdx.x; e < rows * D; e += nthreads) {
        const int r = e / D, d = e % D;
        dst[r * (D + 1) + d] = (r0 + r < T && d < hs) ? src[(long long)(r0 + r) * hs + d] : 0.0f;
    }
}

// ---------------------------------------------------------------------------
// v2 flash forward. D: head size rounded up (32, 64 or 128; hs <= D).
// BR queries per block, 4 threads per query (NT = 4 * BR); thread t4 of a
// query owns keys t4, t4+4, ... of each key tile and output columns
// t4, t4+4, ... . Grid (ceil(Tq / BR), BH). Dynamic shared memory:
// (BR + 2 * BC) * (D + 1) floats for Q, K and V tiles.
// ---------------------------------------------------------------------------
template <int D, int BR, int BC>
// (No __launch_bounds__ here: with it, ptxas trades registers for occupancy
// and spills at D = 128; the CPU gate would fail.)
__global__ void attention_v2_flash_fwd(ATTN_FWD_ARGS) {
    constexpr int NT = 4 * BR, DP = D + 1, KPT = BC / 4, CPT = D / 4;
    static_assert(BC % 4 == 0 && D % 4 == 0, "tiles split over 4 threads per query");
    extern __shared__ float smem[];
    float* sQ = smem;             // [BR][D+1]
    float* sK = sQ + BR * DP;     // [BC][D+1]
    float* sV = sK + BC * DP;     // [BC][D+1]
    const int bh = blockIdx.y, q0 = blockIdx.x * BR;
    const int r = threadIdx.x / 4, t4 = threadIdx.x % 4, lane = threadIdx.x % 32;
    const int i = q0 + r;  // this thread's query
    const unsigned char* keep_b = keep ? keep + (long long)(bh / H) * Tk : nullptr;
    const float* kb = k + (long long)bh * Tk * hs;
    const float* vb = v + (long long)bh * Tk * hs;
    load_tile<D>(sQ, q + (long long)bh * Tq * hs, q0, BR, Tq, hs, NT);

    // Keys past the causal diagonal of the block's last query are all masked;
    // skip them when no row can be fully masked (no padding mask, start >= 0).
    int kend = Tk;
    if (causal && keep == nullptr && start >= 0) kend = min(Tk, min(Tq - 1, q0 + BR - 1) + start + 1);

    float m = -INFINITY, l = 0.0f, acc[CPT];
#pragma unroll
    for (int c = 0; c < CPT; ++c) acc[c] = 0.0f;

    for (int k0 = 0; k0 < kend; k0 += BC) {
        __syncthreads();  // previous tiles fully read (and sQ written, first time)
        load_tile<D>(sK, kb, k0, BC, Tk, hs, NT);
        load_tile<D>(sV, vb, k0, BC, Tk, hs, NT);
        __syncthreads();
        // S = Q K^T for this thread's KPT keys.
        float s[KPT], tile_max = -INFINITY;
#pragma unroll
        for (int jj = 0; jj < KPT; ++jj) {
            const int jl = t4 + 4 * jj, j = k0 + jl;
            float dot = 0.0f;
            for (int d = 0; d < hs; ++d) dot += sQ[r * DP + d] * sK[jl * DP + d];
            s[jj] = (j >= Tk) ? -INFINITY : (attn_allowed(i, j, causal, start, keep_b) ? dot * scale : MINITX_MASKED);
            tile_max = fmaxf(tile_max, s[jj]);
        }
        tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
        tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 2));
        // Online softmax: rescale what was accumulated under the old maximum.
        const float m_new = fmaxf(m, tile_max);          // finite: key k0 < Tk exists
        const float alpha = expf(m - m_new);             // m = -inf at first: alpha = 0
        float p[KPT], psum = 0.0f;
#pragma unroll
        for (int jj = 0; jj < KPT; ++jj) { p[jj] = expf(s[jj] - m_new); psum += p[jj]; }
        psum += __shfl_xor_sync(0xffffffffu, psum, 1);
        psum += __shfl_xor_sync(0xffffffffu, psum, 2);
        l = l * alpha + psum;
#pragma unroll
        for (int c = 0; c < CPT; ++c) acc[c] *= alpha;
        // acc += P V: the weights of the other 3 threads of this query arrive by shuffle.
#pragma unroll
        for (int jj = 0; jj < KPT; ++jj)
#pragma unroll
            for (int src = 0; src < 4; ++src) {
                const float pj = __shfl_sync(0xffffffffu, p[jj], (lane & ~3) | src);
                const float* vrow = sV + (src + 4 * jj) * DP;
#pragma unroll
                for (int c = 0; c < CPT; ++c) acc[c] += pj * vrow[t4 + 4 * c];
            }
        m = m_new;
    }
    if (i < Tq) {
        float* oi = o + ((long long)bh * Tq + i) * hs;
        const float inv = __frcp_rn(l);  // intrinsic reciprocal: no slow-path call (which would spill)
#pragma unroll
        for (int c = 0; c < CPT; ++c) {
            const int d = t4 + 4 * c;
            if (d < hs) oi[d] = acc[c] * inv;
        }
        if (t4 == 0) lse[(long long)bh * Tq + i] = (m == MINITX_MASKED) ? -INFINITY : m + logf(l);
    }
}

// ---------------------------------------------------------------------------
// Backward preprocessing: delta[row] = sum_d dO[row, d] * O[row, d]
// (= rowsum(dP * P), the term the softmax backward subtracts). One warp per row.
// ---------------------------------------------------------------------------
template <int WARPS>
__global__ void __launch_bounds__(WARPS * 32) attention_bwd_delta(const float* __restrict__ dout,
                                                                    const float* __restrict__ out,
                                                                    float* __restrict__ delta, int rows, int hs) {
    const int row = blockIdx.x * WARPS + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= rows) return;
    float acc = 0.0f;
    for (int d = lane; d < hs; d += 32) acc += dout[(long long)row * hs + d] * out[(long long)row * hs + d];
    acc = warp_sum(acc);
    if (lane == 0) delta[row] = acc;
}

// ---------------------------------------------------------------------------
// v2 flash backward. One block per tile of BC keys (4 threads per key,
// NT = 4 * BC), looping over tiles of BR queries. For each pair of tiles:
//   S  = Q K^T * scale            P  = exp(S - lse)   (recomputed, 0 if masked)
//   dV += P^T dO                  dP = dO V^T
//   dS = P * (dP - delta)         dK += dS^T Q * scale,   dQ += dS K * scale
// dK, dV live in registers for the whole loop; dQ (zeroed by the caller) is
// accumulated across key tiles with atomicAdd. Grid (ceil(Tk / BC), BH).
// Dynamic shared memory: (2*BC + 2*BR) * (D+1) + 2 * BR * (BC+1) + 2 * BR floats.
// ---------------------------------------------------------------------------
template <int D, int BR, int BC>
__global__ void __launch_bounds__(4 * BC) attention_v2_flash_bwd(
    const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,
    const float* __restrict__ dout, const float* __restrict__ lse, const float* __restrict__ delta,
    float* __restrict__ dq, float* __restrict__ dk, float* __restrict__ dv,
    int H, int Tq, int Tk, int hs, float scale, int causal, int start, const unsigned char* __restrict__ keep) {
    constexpr int NT = 4 * BC, DP = D + 1, SP = BC + 1, QPT = BR / 4, CPT = D / 4;
    static_assert(BR % 4 == 0 && D % 4 == 0, "tiles split over 4 threads per key");
    extern __shared__ float smem[];
    float* sK = smem;              // [BC][D+1]
    float* sV = sK + BC * DP;      // [BC][D+1]
    float* sQ = sV + BC * DP;      // [BR][D+1]
    float* sdO = sQ + BR * DP;     // [BR][D+1]
    float* sP = sdO + BR * DP;     // [BR][BC+1]
    float* sdS = sP + BR * SP;     // [BR][BC+1]
    float* sL = sdS + BR * SP;     // [BR]
    float* sDelta = sL + BR;       // [BR]
    const int bh = blockIdx.y, k0 = blockIdx.x * BC;
    const int kr = threadIdx.x / 4, t4 = threadIdx.x % 4;
    const int j = k0 + kr;  // this thread's key
    const unsigned char* keep_b = keep ? keep + (long long)(bh / H) * Tk : nullptr;
    const long long qoff = (long long)bh * Tq * hs, koff = (long long)bh * Tk * hs;
    load_tile<D>(sK, k + koff, k0, BC, Tk, hs, NT);
    load_tile<D>(sV, v + koff, k0, BC, Tk, hs, NT);

    float dK[CPT], dV[CPT];
#pragma unroll
    for (int c = 0; c < CPT; ++c) dK[c] = dV[c] = 0.0f;

    // Queries that cannot see key k0 or later contribute nothing (causal, no padding).
    int qbegin = 0;
    if (causal && keep == nullptr && start >= 0) qbegin = max(0, (k0 - start) / BR * BR);
    const float uniform = 1.0f / Tk;

    for (int q0 = qbegin; q0 < Tq; q0 += BR) {
        __syncthreads();  // previous query tile fully read
        load_tile<D>(sQ, q + qoff, q0, BR, Tq, hs, NT);
        load_tile<D>(sdO, dout + qoff, q0, BR, Tq, hs, NT);
        for (int r = threadIdx.x; r < BR; r += NT) {
            const bool in = q0 + r < Tq;
            sL[r] = in ? lse[(long long)bh * Tq + q0 + r] : 0.0f;
            sDelta[r] = in ? delta[(long long)bh * Tq + q0 + r] : 0.0f;
        }
        __syncthreads();
        // P and dS for this thread's key and queries t4, t4+4, ...
#pragma unroll
        for (int qq = 0; qq < QPT; ++qq) {
            const int r = t4 + 4 * qq, i = q0 + r;
            float p = 0.0f, ds = 0.0f;
            if (i < Tq && j < Tk) {
                const float L = sL[r];
                if (L == -INFINITY) {
                    p = uniform;  // every key of this query is masked: uniform weights, no gradient to S
                } else if (attn_allowed(i, j, causal, start, keep_b)) {
                    float s = 0.0f, dp = 0.0f;
                    for (int d = 0; d < hs; ++d) {
                        s += sQ[r * DP + d] * sK[kr * DP + d];
                        dp += sdO[r * DP + d] * sV[kr * DP + d];
                    }
                    p = expf(s * scale - L);
                    ds = p * (dp - sDelta[r]);
                }
            }
            sP[r * SP + kr] = p;
            sdS[r * SP + kr] = ds;
        }
        __syncthreads();
        // dV += P^T dO and dK += dS^T Q for this thread's key row and columns.
        for (int r = 0; r < BR; ++r) {
            const float p = sP[r * SP + kr], ds = sdS[r * SP + kr];
#pragma unroll
            for (int c = 0; c < CPT; ++c) {
                dV[c] += p * sdO[r * DP + t4 + 4 * c];
                dK[c] += ds * sQ[r * DP + t4 + 4 * c];
            }
        }
        // dQ[q0 + r, d] += scale * sum over this tile's keys of dS[r, key] K[key, d].
        for (int e = threadIdx.x; e < BR * hs; e += NT) {
            const int r = e / hs, d = e % hs;
            if (q0 + r >= Tq) continue;
            float acc = 0.0f;
            for (int c = 0; c < BC; ++c) acc += sdS[r * SP + c] * sK[c * DP + d];
            if (acc != 0.0f) atomicAdd(&dq[qoff + (long long)(q0 + r) * hs + d], acc * scale);
        }
    }
    if (j < Tk) {
#pragma unroll
        for (int c = 0; c < CPT; ++c) {
            const int d = t4 + 4 * c;
            if (d < hs) {
                dk[koff + (long long)j * hs + d] = dK[c] * scale;
                dv[koff + (long long)j * hs + d] = dV[c];
            }
        }
    }
}
