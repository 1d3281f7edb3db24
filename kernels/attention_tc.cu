// attention_tc.cu: flash attention forward on tensor cores (bf16 in, fp32 out).
//
// The same algorithm as attention_v2_flash_fwd in attention.cu (online
// softmax over tiles of keys, logsumexp written for the backward pass), with
// both matrix products on tensor cores: S = Q K^T and O += P V each run as
// mma.sync.m16n8k16 (bf16 operands, fp32 accumulation) through the wrapper
// mma_bf16_16816 in common.cuh.
//
// Layout: q [BH, Tq, hs], k and v [BH, Tk, hs] as uint16 arrays of bf16 bits
// (contiguous); o [BH, Tq, hs] and lse [BH, Tq] float32. keep (optional) is a
// [batch, Tk] uint8 padding mask. Masks follow attention.cu and minitx.nn:
// a masked score is MINITX_MASKED, so a query whose keys are all masked gets
// uniform weights, and its logsumexp is written as -inf.
//
// Work split. One block = WARPS warps = 16 * WARPS query rows; one warp owns
// 16 query rows for the whole kernel, which is exactly the M = 16 of one mma.
// The block walks over tiles of BC keys; each tile of K and V is staged in
// shared memory once and read by every warp. Per warp and key tile:
//
//   S[16, BC]  = Q[16, D] K_tile^T      (BC/8 n-tiles x D/16 k-steps of mma)
//   online softmax on S, in the registers that hold S (fp32)
//   O[16, D]  += P[16, BC] V_tile[BC, D] (D/8 n-tiles x BC/16 k-steps of mma)
//
// Fragment layouts (g = lane / 4, t = lane % 4; see mma_bf16_16816 in
// common.cuh). The accumulator of an m16n8 tile holds, per lane,
//   c[0], c[1] = row g,     columns 2t, 2t+1
//   c[2], c[3] = row g + 8, columns 2t, 2t+1
// and the A operand of an m16k16 product holds, per lane,
//   a[0] = row g,   k 2t..2t+1      a[2] = row g,   k 2t+8..2t+9
//   a[1] = row g+8, k 2t..2t+1      a[3] = row g+8, k 2t+8..2t+9
// So the accumulators of two neighbouring n8 tiles of S (keys 16kk..16kk+7
// and 16kk+8..16kk+15) ARE, element for element, the A fragment of P for the
// k16 step kk of the PV product: P never leaves the registers, it is only
// rounded to bf16 and packed two by two (pack_bf16x2).
//
// Each lane therefore holds two query rows (g and g + 8) and, of each row,
// 2 of every 8 keys. A row's max and sum are completed across the 4 lanes of
// a quad (lanes 4g..4g+3) with two __shfl_xor_sync steps (xor 1, xor 2).
//
// Online softmax recurrence, per query row, over key tiles (base 2: the
// scores are pre-multiplied by scale * log2(e), so exp2f is one instruction):
//   m_new = max(m, max_j s_j)                    running maximum
//   alpha = 2^(m - m_new)                        (m = -inf at first: alpha = 0)
//   p_j   = 2^(s_j - m_new)
//   l     = l * alpha + sum_j p_j                (fp32, before bf16 rounding)
//   O     = O * alpha + bf16(p) V
// and at the end O /= l, lse = (m + log2 l) * ln 2 (natural log, as v2).
// l is kept per lane (a partial sum over the lane's own keys) and reduced
// across the quad once at the end; alpha is the same for the 4 lanes.
//
// Shared memory (static): K tile sK[BC][D + 8] (a row per key: the B operand
// of S = Q K^T wants pairs of consecutive features of one key) and V tile
// *transposed* sVt[D][BC + 8] (a row per feature: the B operand of P V wants
// pairs of consecutive keys of one feature). The + 8 bf16 of padding shifts
// consecutive rows by 4 banks, so the 8 rows x 4 words of a fragment load hit
// 32 different banks. Q is loaded once, straight into A fragments (registers).
//
// Tiles past Tk and features past hs are zero-filled; scores of keys past Tk
// are -inf (weight exactly 0). With a causal mask and no padding mask
// (start >= 0), the block stops at the last key its last query can see, and a
// warp skips the tiles entirely above its own diagonal.
#include "common.cuh"

#define ATTN_TC_PAD 8  // bf16 elements of padding per shared-memory row

// 16 bytes moved as one load / store (8 bf16). Plain C++, no vector intrinsics.
struct __align__(16) Bits128 {
    unsigned int x, y, z, w;
};

// The bf16 bits at (row, col) of a [rows, hs] matrix, 0 outside it.
__device__ __forceinline__ unsigned int bf16_at(const unsigned short* __restrict__ m, int row, int col, int rows,
                                                int hs) {
    return (row < rows && col < hs) ? (unsigned int)m[(long long)row * hs + col] : 0u;
}

// Stage keys [k0, k0 + BC) of K and V ([Tk, hs] bf16 bits each) into
// sK[key][feature] and sVt[feature][key], zero-filling past Tk and hs.
// vec: hs % 8 == 0 and 16-byte aligned rows, so rows move in 16-byte chunks.
template <int D, int BC, int NT>
__device__ __forceinline__ void load_kv_tile(unsigned short (*sK)[D + ATTN_TC_PAD],
                                             unsigned short (*sVt)[BC + ATTN_TC_PAD],
                                             const unsigned short* __restrict__ kb,
                                             const unsigned short* __restrict__ vb, int k0, int Tk, int hs, bool vec) {
    if (vec) {
        constexpr int CH = D / 8;  // 16-byte chunks per row of the tile
        // K: chunk index fastest, so a warp reads whole rows (coalesced) and
        // writes them as 16-byte stores.
        for (int e = threadIdx.x; e < BC * CH; e += NT) {
            const int r = e / CH, c = e % CH, j = k0 + r;
            Bits128 val = {0u, 0u, 0u, 0u};
            if (j < Tk && 8 * c < hs) val = *reinterpret_cast<const Bits128*>(kb + (long long)j * hs + 8 * c);
            *reinterpret_cast<Bits128*>(&sK[r][8 * c]) = val;
        }
        // V, transposed: key index fastest, so the 32 lanes of a warp write 32
        // consecutive keys of one sVt row (16 words, no bank conflict).
        for (int e = threadIdx.x; e < BC * CH; e += NT) {
            const int r = e % BC, c = e / BC, j = k0 + r;
            Bits128 val = {0u, 0u, 0u, 0u};
            if (j < Tk && 8 * c < hs) val = *reinterpret_cast<const Bits128*>(vb + (long long)j * hs + 8 * c);
            const unsigned int w[4] = {val.x, val.y, val.z, val.w};
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                sVt[8 * c + 2 * i][r] = (unsigned short)(w[i] & 0xffffu);  // little-endian: lower feature first
                sVt[8 * c + 2 * i + 1][r] = (unsigned short)(w[i] >> 16);
            }
        }
    } else {
        for (int e = threadIdx.x; e < BC * D; e += NT) {
            const int r = e / D, d = e % D;
            sK[r][d] = (unsigned short)bf16_at(kb, k0 + r, d, Tk, hs);
            sVt[d][r] = (unsigned short)bf16_at(vb, k0 + r, d, Tk, hs);
        }
    }
}

// Two consecutive bf16 of a shared-memory row as one 32-bit fragment register
// (the element with the smaller index in the low half, as pack_bf16x2 does).
__device__ __forceinline__ unsigned int smem_pair(const unsigned short* p) {
    return *reinterpret_cast<const unsigned int*>(p);
}

// One key tile of the online softmax, shared by v3 and v4 (their arithmetic
// is the same, in the same order). In: s = the S = Q K^T accumulators of
// this warp's 16 rows x BC keys starting at key k0 (fragment layout:
// s[n][0..1] row g, s[n][2..3] row g + 8, keys 8n + 2t, +1). Scales them to
// base 2, masks them (keys past
// Tk get -inf, weight exactly 0; masked keys MINITX_MASKED), completes the row
// maxima over the quad, rescales l and the O accumulators by
// alpha = 2^(m_old - m_new), and leaves P = 2^(S - m_new) (fp32) in s with
// l += this lane's share of the row sums.
template <int NS, int NO, int BC>
__device__ __forceinline__ void softmax_tile(float (&s)[NS][4], float (&acc)[NO][4], float (&m)[2], float (&l)[2],
                                             int k0, int Tk, int qw, int row0, int row1, int t, float scale_log2,
                                             int causal, int start, const unsigned char* __restrict__ keep_b) {
    // Only tiles that cross Tk, the causal diagonal of this warp (first query
    // qw), or have a padding mask test every element.
    const bool needs_mask = k0 + BC > Tk || keep_b != nullptr || (causal && k0 + BC - 1 > qw + start);
    float tile_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int n = 0; n < NS; ++n)
#pragma unroll
        for (int r = 0; r < 4; ++r) {
            float x = s[n][r] * scale_log2;
            if (needs_mask) {
                const int i = (r < 2) ? row0 : row1, j = k0 + 8 * n + 2 * t + (r & 1);
                x = (j >= Tk) ? -INFINITY : (attn_allowed(i, j, causal, start, keep_b) ? x : MINITX_MASKED);
            }
            s[n][r] = x;
            tile_max[r / 2] = fmaxf(tile_max[r / 2], x);
        }

    // Online softmax: complete the row maxima over the quad, rescale.
    float alpha[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
        tile_max[h] = fmaxf(tile_max[h], __shfl_xor_sync(0xffffffffu, tile_max[h], 1));
        tile_max[h] = fmaxf(tile_max[h], __shfl_xor_sync(0xffffffffu, tile_max[h], 2));
        const float m_new = fmaxf(m[h], tile_max[h]);  // finite: key k0 < Tk is in the tile
        alpha[h] = exp2f(m[h] - m_new);                // m = -inf on the first tile: alpha = 0
        m[h] = m_new;
        l[h] *= alpha[h];
    }
#pragma unroll
    for (int n = 0; n < NO; ++n) {
        acc[n][0] *= alpha[0]; acc[n][1] *= alpha[0];
        acc[n][2] *= alpha[1]; acc[n][3] *= alpha[1];
    }

    // P = 2^(S - m) in place; l sums the fp32 weights.
#pragma unroll
    for (int n = 0; n < NS; ++n)
#pragma unroll
        for (int r = 0; r < 4; ++r) {
            s[n][r] = exp2f(s[n][r] - m[r / 2]);  // -inf (past Tk) -> 0
            l[r / 2] += s[n][r];
        }
}

// The A fragment of k16 step kk of O += P V: the accumulators of S's n8
// tiles 2kk and 2kk + 1, rounded to bf16 and packed in pairs. Element for
// element they are already where the A layout wants them (see the top).
template <int NS>
__device__ __forceinline__ void p_fragment(const float (&s)[NS][4], int kk, unsigned int pa[4]) {
    pa[0] = pack_bf16x2(s[2 * kk][0], s[2 * kk][1]);          // row g,   keys 2t..
    pa[1] = pack_bf16x2(s[2 * kk][2], s[2 * kk][3]);          // row g+8, keys 2t..
    pa[2] = pack_bf16x2(s[2 * kk + 1][0], s[2 * kk + 1][1]);  // row g,   keys 2t+8..
    pa[3] = pack_bf16x2(s[2 * kk + 1][2], s[2 * kk + 1][3]);  // row g+8, keys 2t+8..
}

// The end of a forward kernel, shared by v3 and v4: finish the row sums over
// the quad, normalise this warp's O rows (g and g + 8 of its 16) and write
// them with their logsumexp (natural log; -inf for a fully masked row).
template <int NO>
__device__ __forceinline__ void write_rows(float* __restrict__ o, float* __restrict__ lse, const float (&acc)[NO][4],
                                           const float (&m)[2], float (&l)[2], int bh, int Tq, int hs, int row0,
                                           int row1, int t) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
        l[h] += __shfl_xor_sync(0xffffffffu, l[h], 1);
        l[h] += __shfl_xor_sync(0xffffffffu, l[h], 2);
    }
    const float inv[2] = {__frcp_rn(l[0]), __frcp_rn(l[1])};  // l >= 1: the maximum contributes 2^0
    const int rows[2] = {row0, row1};
#pragma unroll
    for (int h = 0; h < 2; ++h) {
        if (rows[h] >= Tq) continue;
        float* orow = o + ((long long)bh * Tq + rows[h]) * hs;
#pragma unroll
        for (int n = 0; n < NO; ++n) {
            const int d = 8 * n + 2 * t;
            if (d < hs) orow[d] = acc[n][2 * h] * inv[h];
            if (d + 1 < hs) orow[d + 1] = acc[n][2 * h + 1] * inv[h];
        }
        if (t == 0)
            lse[(long long)bh * Tq + rows[h]] =
                (m[h] == MINITX_MASKED) ? -INFINITY : (m[h] + log2f(l[h])) * 0.6931471805599453f;
    }
}

// ---------------------------------------------------------------------------
// attention_v3_tc_fwd. D: head size rounded up (32, 64 or 128; hs <= D).
// BC: keys per tile (a multiple of 16). WARPS: warps per block (16 queries
// each). Grid (ceil(Tq / (16 * WARPS)), BH); static shared memory
// (BC * (D + 8) + D * (BC + 8)) * 2 bytes; no dynamic shared memory.
// ---------------------------------------------------------------------------
// (No __launch_bounds__: with it ptxas caps 8-warp blocks at 128 registers so
// that two blocks fit an SM, and spills; the CPU gate would fail.)
template <int D, int BC, int WARPS>
__global__ void attention_v3_tc_fwd(
    const unsigned short* __restrict__ q, const unsigned short* __restrict__ k, const unsigned short* __restrict__ v,
    float* __restrict__ o, float* __restrict__ lse, int H, int Tq, int Tk, int hs, float scale, int causal, int start,
    const unsigned char* __restrict__ keep) {
    constexpr int NT = WARPS * 32, BR = 16 * WARPS;
    constexpr int NS = BC / 8;   // n8 tiles of S per warp (keys)
    constexpr int NO = D / 8;    // n8 tiles of O per warp (features)
    constexpr int KQ = D / 16;   // k16 steps of S = Q K^T (features)
    constexpr int KP = BC / 16;  // k16 steps of O += P V (keys)
    static_assert(D % 16 == 0 && BC % 16 == 0, "mma tiles are 16 deep");
    __shared__ __align__(16) unsigned short sK[BC][D + ATTN_TC_PAD];
    __shared__ __align__(16) unsigned short sVt[D][BC + ATTN_TC_PAD];

    // Heaviest causal tiles (the last queries) first: better tail balance.
    const int qtile = gridDim.x - 1 - blockIdx.x;
    const int bh = blockIdx.y, q0 = qtile * BR;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int g = lane / 4, t = lane % 4;
    const int qw = q0 + 16 * warp;        // this warp's first query row
    const int row0 = qw + g, row1 = row0 + 8;  // this lane's two query rows
    const unsigned char* keep_b = keep ? keep + (long long)(bh / H) * Tk : nullptr;
    const unsigned short* qb = q + (long long)bh * Tq * hs;
    const unsigned short* kb = k + (long long)bh * Tk * hs;
    const unsigned short* vb = v + (long long)bh * Tk * hs;
    const bool vec = (hs % 8 == 0) && (reinterpret_cast<unsigned long long>(kb) % 16 == 0) &&
                     (reinterpret_cast<unsigned long long>(vb) % 16 == 0);
    const float scale_log2 = scale * 1.4426950408889634f;  // scores in base 2: exp(x) = 2^(x log2 e)

    // Q [16, D] as KQ A fragments, loaded once (zeros past Tq and hs).
    unsigned int qa[KQ][4];
#pragma unroll
    for (int ks = 0; ks < KQ; ++ks) {
        const int c = 16 * ks + 2 * t;
        qa[ks][0] = bf16_at(qb, row0, c, Tq, hs) | (bf16_at(qb, row0, c + 1, Tq, hs) << 16);
        qa[ks][1] = bf16_at(qb, row1, c, Tq, hs) | (bf16_at(qb, row1, c + 1, Tq, hs) << 16);
        qa[ks][2] = bf16_at(qb, row0, c + 8, Tq, hs) | (bf16_at(qb, row0, c + 9, Tq, hs) << 16);
        qa[ks][3] = bf16_at(qb, row1, c + 8, Tq, hs) | (bf16_at(qb, row1, c + 9, Tq, hs) << 16);
    }

    // Causal without padding: no query can be fully masked, so keys that no
    // query of the block (kend) or of the warp (warp_kend) can see are skipped.
    const bool skip_ok = causal && keep == nullptr && start >= 0;
    const int kend = skip_ok ? min(Tk, min(Tq - 1, q0 + BR - 1) + start + 1) : Tk;
    const int warp_kend = skip_ok ? min(Tk, min(Tq - 1, qw + 15) + start + 1) : Tk;
    const bool warp_active = qw < Tq;  // a warp wholly past Tq only helps load tiles

    // Running statistics of rows row0 (index 0) and row1 (index 1), base 2.
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};  // l: this lane's partial sum
    float acc[NO][4];  // O [16, D] accumulator fragments
#pragma unroll
    for (int n = 0; n < NO; ++n)
#pragma unroll
        for (int r = 0; r < 4; ++r) acc[n][r] = 0.0f;

    for (int k0 = 0; k0 < kend; k0 += BC) {
        __syncthreads();  // every warp is done with the previous tile
        load_kv_tile<D, BC, NT>(sK, sVt, kb, vb, k0, Tk, hs, vec);
        __syncthreads();
        if (!warp_active || k0 >= warp_kend) continue;  // still reaches the barriers above next time

        // S [16, BC] = Q K^T: for n8 tile n (keys k0+8n..k0+8n+7), the B
        // operand is K^T, i.e. b[0] = K[key 8n+g][features 16ks+2t, +1],
        // b[1] = the same 8 features later: consecutive in a row of sK.
        float s[NS][4];
#pragma unroll
        for (int n = 0; n < NS; ++n) {
            s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
#pragma unroll
            for (int ks = 0; ks < KQ; ++ks) {
                const unsigned int b[2] = {smem_pair(&sK[8 * n + g][16 * ks + 2 * t]),
                                           smem_pair(&sK[8 * n + g][16 * ks + 2 * t + 8])};
                mma_bf16_16816(s[n], qa[ks], b);
            }
        }

        softmax_tile<NS, NO, BC>(s, acc, m, l, k0, Tk, qw, row0, row1, t, scale_log2, causal, start, keep_b);

        // O += P V. The A fragment of k16 step kk is the S accumulators of n8
        // tiles 2kk and 2kk+1, rounded to bf16 and packed in pairs. The B
        // operand is V: b[0] = V[keys 16kk+2t, +1][feature 8n+g] = a pair of
        // consecutive keys in a row of sVt, b[1] = the same 8 keys later.
#pragma unroll
        for (int kk = 0; kk < KP; ++kk) {
            unsigned int pa[4];
            p_fragment(s, kk, pa);
#pragma unroll
            for (int n = 0; n < NO; ++n) {
                const unsigned int b[2] = {smem_pair(&sVt[8 * n + g][16 * kk + 2 * t]),
                                           smem_pair(&sVt[8 * n + g][16 * kk + 2 * t + 8])};
                mma_bf16_16816(acc[n], pa, b);
            }
        }
    }
    if (!warp_active) return;

    write_rows(o, lse, acc, m, l, bh, Tq, hs, row0, row1, t);
}

// ---------------------------------------------------------------------------
// attention_v3_tc_bwd: the backward pass on tensor cores (FlashAttention-2
// scheme, as attention_v2_flash_bwd but with every product an mma).
//
// One block per tile of BC = 16 * WARPS keys; warp w owns keys 16w..16w+15 of
// the tile and keeps their dK, dV [16, D] in accumulator fragments for the
// whole kernel. The block loops over tiles of BR queries; per warp and tile:
//
//   S^T  [16, BR] = K_w Q^T            dP^T [16, BR] = V_w dO^T
//   P^T  = exp(S^T * scale - lse)      recomputed from the forward's lse
//   dS^T = P^T * (dP^T - delta)        delta = rowsum(dO * O) (attention_bwd_delta)
//   dV  += P^T dO                      dK += dS^T Q        (scale applied at the end)
//
// S^T is computed transposed (keys as the mma's M) so that P^T and dS^T sit
// in accumulator fragments whose pairs of n8 tiles are A fragments of the dV
// and dK products: the register reuse of the forward, again. Their B operands
// (dO and Q with queries as K) are gathered from row-major shared memory with
// two 16-bit loads per register. dQ needs dS with queries as M, so dS^T goes
// through shared memory (bf16): the block then computes dQ_tile [BR, D] =
// dS [BR, BC] K [BC, D] split over warps (16 query rows x D / CG features
// each) and adds it to dq (fp32, zeroed by the caller) with atomicAdd.
//
// P and dS are rounded to bf16 for the mma (as FlashAttention does). A query
// whose lse is -inf (every key masked) has P = 1/Tk and dS = 0, as in v2.
// Dynamic shared memory (bf16 unless noted): sK, sV [BC][D + 8], sQ, sdO
// [BR][D + 8], sdS [BR][BC + 8], then float sL, sDelta [BR].
// ---------------------------------------------------------------------------

// Stage rows [r0, r0 + rows) of a [T, hs] bf16 matrix as dst[rows][D + 8],
// zero-filling past T and hs (16-byte chunks when vec).
template <int D, int NT>
__device__ __forceinline__ void load_rows_bf16(unsigned short* dst, const unsigned short* __restrict__ src, int r0,
                                               int rows, int T, int hs, bool vec) {
    constexpr int DS = D + ATTN_TC_PAD;
    if (vec) {
        constexpr int CH = D / 8;
        for (int e = threadIdx.x; e < rows * CH; e += NT) {
            const int r = e / CH, c = e % CH;
            Bits128 val = {0u, 0u, 0u, 0u};
            if (r0 + r < T && 8 * c < hs) val = *reinterpret_cast<const Bits128*>(src + (long long)(r0 + r) * hs + 8 * c);
            *reinterpret_cast<Bits128*>(dst + r * DS + 8 * c) = val;
        }
    } else {
        for (int e = threadIdx.x; e < rows * D; e += NT) {
            const int r = e / D, d = e % D;
            dst[r * DS + d] = (unsigned short)bf16_at(src, r0 + r, d, T, hs);
        }
    }
}

// The B fragment register holding M[row][col] (low half) and M[row + 1][col]:
// two consecutive rows of one column, for operands stored row-major.
__device__ __forceinline__ unsigned int smem_column_pair(const unsigned short* m, int stride, int row, int col) {
    return (unsigned int)m[row * stride + col] | ((unsigned int)m[(row + 1) * stride + col] << 16);
}

// An A fragment (16 x 16 at rows r, columns c of a row-major bf16 matrix in shared memory).
__device__ __forceinline__ void smem_a_fragment(unsigned int a[4], const unsigned short* m, int stride, int r, int c) {
    const int g = (threadIdx.x % 32) / 4, t = threadIdx.x % 4;
    a[0] = smem_pair(m + (r + g) * stride + c + 2 * t);
    a[1] = smem_pair(m + (r + g + 8) * stride + c + 2 * t);
    a[2] = smem_pair(m + (r + g) * stride + c + 2 * t + 8);
    a[3] = smem_pair(m + (r + g + 8) * stride + c + 2 * t + 8);
}

template <int D, int BR, int WARPS>
__global__ void attention_v3_tc_bwd(
    const unsigned short* __restrict__ q, const unsigned short* __restrict__ k, const unsigned short* __restrict__ v,
    const unsigned short* __restrict__ dout, const float* __restrict__ lse, const float* __restrict__ delta,
    float* __restrict__ dq, float* __restrict__ dk, float* __restrict__ dv, int H, int Tq, int Tk, int hs,
    float scale, int causal, int start, const unsigned char* __restrict__ keep) {
    constexpr int NT = WARPS * 32, BC = 16 * WARPS, DS = D + ATTN_TC_PAD, SS = BC + ATTN_TC_PAD;
    constexpr int NQ = BR / 8;    // n8 tiles of S^T (queries)
    constexpr int KQ = D / 16;    // k16 steps of S^T = K Q^T (features)
    constexpr int KB = BR / 16;   // k16 steps of dV, dK (queries)
    constexpr int NO = D / 8;     // n8 tiles of dK, dV (features)
    constexpr int RG = BR / 16;   // dQ: warps split into RG row groups ...
    constexpr int CG = WARPS / RG;  // ... times CG column groups
    constexpr int NQD = NO / CG;  // n8 tiles of dQ per warp
    static_assert(BR % 16 == 0 && D % 16 == 0 && WARPS % RG == 0 && NO % CG == 0, "tile shapes");
    extern __shared__ __align__(16) unsigned char smem_raw[];
    unsigned short* sK = reinterpret_cast<unsigned short*>(smem_raw);  // [BC][DS]
    unsigned short* sV = sK + BC * DS;                                   // [BC][DS]
    unsigned short* sQ = sV + BC * DS;                                   // [BR][DS]
    unsigned short* sdO = sQ + BR * DS;                                  // [BR][DS]
    unsigned short* sdS = sdO + BR * DS;                                 // [BR][SS]
    float* sL = reinterpret_cast<float*>(sdS + BR * SS);                 // [BR]
    float* sDelta = sL + BR;                                             // [BR]

    const int bh = blockIdx.y, k0 = blockIdx.x * BC;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    const int kw = 16 * warp;                       // the warp's keys within the tile
    const int keys[2] = {k0 + kw + g, k0 + kw + g + 8};  // this lane's two keys (accumulator rows)
    const unsigned char* keep_b = keep ? keep + (long long)(bh / H) * Tk : nullptr;
    const long long qoff = (long long)bh * Tq * hs, koff = (long long)bh * Tk * hs;
    const bool vec = hs % 8 == 0 && reinterpret_cast<unsigned long long>(q + qoff) % 16 == 0 &&
                     reinterpret_cast<unsigned long long>(k + koff) % 16 == 0 &&
                     reinterpret_cast<unsigned long long>(v + koff) % 16 == 0 &&
                     reinterpret_cast<unsigned long long>(dout + qoff) % 16 == 0;
    const float scale_log2 = scale * 1.4426950408889634f, uniform = 1.0f / Tk;
    load_rows_bf16<D, NT>(sK, k + koff, k0, BC, Tk, hs, vec);
    load_rows_bf16<D, NT>(sV, v + koff, k0, BC, Tk, hs, vec);

    float dK[NO][4], dV[NO][4];
#pragma unroll
    for (int n = 0; n < NO; ++n)
#pragma unroll
        for (int r = 0; r < 4; ++r) dK[n][r] = dV[n][r] = 0.0f;

    // Causal without padding: queries before qbegin see none of this tile's keys.
    int qbegin = 0;
    if (causal && keep == nullptr && start >= 0) qbegin = max(0, (k0 - start) / BR * BR);

    for (int q0 = qbegin; q0 < Tq; q0 += BR) {
        __syncthreads();  // previous tile's sQ, sdO, sdS fully read (and sK, sV written, first time)
        load_rows_bf16<D, NT>(sQ, q + qoff, q0, BR, Tq, hs, vec);
        load_rows_bf16<D, NT>(sdO, dout + qoff, q0, BR, Tq, hs, vec);
        for (int r = threadIdx.x; r < BR; r += NT) {
            const bool in = q0 + r < Tq;
            sL[r] = in ? lse[(long long)bh * Tq + q0 + r] : 0.0f;
            sDelta[r] = in ? delta[(long long)bh * Tq + q0 + r] : 0.0f;
        }
        __syncthreads();

        // S^T = K_w Q^T and dP^T = V_w dO^T, [16 keys, BR queries] each.
        float st[NQ][4], dpt[NQ][4];
#pragma unroll
        for (int n = 0; n < NQ; ++n)
#pragma unroll
            for (int r = 0; r < 4; ++r) st[n][r] = dpt[n][r] = 0.0f;
#pragma unroll
        for (int ks = 0; ks < KQ; ++ks) {
            unsigned int ak[4], av[4];
            smem_a_fragment(ak, sK, DS, kw, 16 * ks);
            smem_a_fragment(av, sV, DS, kw, 16 * ks);
#pragma unroll
            for (int n = 0; n < NQ; ++n) {
                const unsigned short* qrow = sQ + (8 * n + g) * DS + 16 * ks + 2 * t;
                const unsigned short* drow = sdO + (8 * n + g) * DS + 16 * ks + 2 * t;
                const unsigned int bq[2] = {smem_pair(qrow), smem_pair(qrow + 8)};
                const unsigned int bd[2] = {smem_pair(drow), smem_pair(drow + 8)};
                mma_bf16_16816(st[n], ak, bq);
                mma_bf16_16816(dpt[n], av, bd);
            }
        }

        // P^T and dS^T in place. Element (n, r): key keys[r / 2], query q0 + 8n + 2t + (r & 1).
#pragma unroll
        for (int n = 0; n < NQ; ++n)
#pragma unroll
            for (int r = 0; r < 4; ++r) {
                const int qi = 8 * n + 2 * t + (r & 1), i = q0 + qi, j = keys[r / 2];
                float p = 0.0f, ds = 0.0f;
                if (i < Tq && j < Tk) {
                    const float L = sL[qi];
                    if (L == -INFINITY) {
                        p = uniform;  // every key of this query is masked: uniform weights, no gradient to S
                    } else if (attn_allowed(i, j, causal, start, keep_b)) {
                        p = exp2f(st[n][r] * scale_log2 - L * 1.4426950408889634f);
                        ds = p * (dpt[n][r] - sDelta[qi]);
                    }
                }
                st[n][r] = p;
                dpt[n][r] = ds;
            }

        // dV += P^T dO and dK += dS^T Q: A from the registers above (n8 tiles
        // 2kk, 2kk+1 = k16 step kk over queries), B = dO / Q [queries, features].
#pragma unroll
        for (int kk = 0; kk < KB; ++kk) {
            const unsigned int pa[4] = {pack_bf16x2(st[2 * kk][0], st[2 * kk][1]),
                                        pack_bf16x2(st[2 * kk][2], st[2 * kk][3]),
                                        pack_bf16x2(st[2 * kk + 1][0], st[2 * kk + 1][1]),
                                        pack_bf16x2(st[2 * kk + 1][2], st[2 * kk + 1][3])};
            const unsigned int da[4] = {pack_bf16x2(dpt[2 * kk][0], dpt[2 * kk][1]),
                                        pack_bf16x2(dpt[2 * kk][2], dpt[2 * kk][3]),
                                        pack_bf16x2(dpt[2 * kk + 1][0], dpt[2 * kk + 1][1]),
                                        pack_bf16x2(dpt[2 * kk + 1][2], dpt[2 * kk + 1][3])};
            const int qr = 16 * kk + 2 * t;
#pragma unroll
            for (int n = 0; n < NO; ++n) {
                const int f = 8 * n + g;
                const unsigned int bd[2] = {smem_column_pair(sdO, DS, qr, f), smem_column_pair(sdO, DS, qr + 8, f)};
                const unsigned int bq[2] = {smem_column_pair(sQ, DS, qr, f), smem_column_pair(sQ, DS, qr + 8, f)};
                mma_bf16_16816(dV[n], pa, bd);
                mma_bf16_16816(dK[n], da, bq);
            }
            // dS^T -> sdS[query][key] in bf16, for the dQ product below.
#pragma unroll
            for (int h = 0; h < 2; ++h)
#pragma unroll
                for (int r = 0; r < 4; ++r)
                    sdS[(16 * kk + 8 * h + 2 * t + (r & 1)) * SS + kw + g + 8 * (r / 2)] =
                        (unsigned short)(pack_bf16x2(dpt[2 * kk + h][r], 0.0f) & 0xffffu);
        }
        __syncthreads();  // sdS complete

        // dQ [BR, D] += scale * dS [BR, BC] K [BC, D]: warp = (row group rg, column group cg).
        const int rg = warp % RG, cg = warp / RG;
        float dqa[NQD][4];
#pragma unroll
        for (int n = 0; n < NQD; ++n)
#pragma unroll
            for (int r = 0; r < 4; ++r) dqa[n][r] = 0.0f;
#pragma unroll
        for (int kk = 0; kk < BC / 16; ++kk) {
            unsigned int a[4];
            smem_a_fragment(a, sdS, SS, 16 * rg, 16 * kk);
#pragma unroll
            for (int n = 0; n < NQD; ++n) {
                const int f = 8 * (cg * NQD + n) + g;
                const unsigned int b[2] = {smem_column_pair(sK, DS, 16 * kk + 2 * t, f),
                                           smem_column_pair(sK, DS, 16 * kk + 2 * t + 8, f)};
                mma_bf16_16816(dqa[n], a, b);
            }
        }
#pragma unroll
        for (int n = 0; n < NQD; ++n)
#pragma unroll
            for (int r = 0; r < 4; ++r) {
                const int i = q0 + 16 * rg + g + 8 * (r / 2), d = 8 * (cg * NQD + n) + 2 * t + (r & 1);
                if (i < Tq && d < hs && dqa[n][r] != 0.0f) atomicAdd(&dq[qoff + (long long)i * hs + d], dqa[n][r] * scale);
            }
    }

    // dK (times scale) and dV for this lane's two keys.
#pragma unroll
    for (int h = 0; h < 2; ++h) {
        if (keys[h] >= Tk) continue;
#pragma unroll
        for (int n = 0; n < NO; ++n)
#pragma unroll
            for (int c = 0; c < 2; ++c) {
                const int d = 8 * n + 2 * t + c;
                if (d < hs) {
                    dk[koff + (long long)keys[h] * hs + d] = dK[n][2 * h + c] * scale;
                    dv[koff + (long long)keys[h] * hs + d] = dV[n][2 * h + c];
                }
            }
    }
}

// ---------------------------------------------------------------------------
// attention_v4_tc_fwd: v3's algorithm with the shared-memory side rebuilt.
//
// v3 spends its time waiting on memory: every fragment register is its own
// 32-bit shared-memory load, and each K/V tile is loaded (and V transposed)
// synchronously between two barriers while the tensor cores sit idle. v4
// changes three things and keeps everything else (the work split, the masks,
// the online softmax on the accumulators, P fed from registers):
//
// 1. ldmatrix. One ldmatrix_x4 hands every lane four fragment registers at
//    once. Lane l names the address of row (l % 8) of 8x8 matrix (l / 8);
//    lane l receives, in r[j], row l / 4 = g, elements 2t and 2t + 1 of
//    matrix j (t = l % 4), or, with .trans, elements (2t, g) and (2t + 1, g).
//    So, per x4 (see the three uses below for which matrix is which):
//      Q  (A of S = Q K^T)  non-trans from sQ[query][feature]: a[0..3];
//      K  (B of S = Q K^T)  non-trans from sK[key][feature]: b[0], b[1] of
//                           two neighbouring n8 tiles of keys (b wants pairs
//                           of consecutive features of one key: a row pair);
//      V  (B of O += P V)   .trans from sV[key][feature]: b[0], b[1] of two
//                           neighbouring n8 tiles of features (b wants pairs
//                           of consecutive KEYS of one feature: a column
//                           pair, which the transposing load gathers), so V
//                           is stored as it comes and no longer transposed.
//
// 2. cp.async, double-buffered. K and V tiles travel global -> shared in
//    16-byte chunks (cp_async_16, zero-filled past Tk and hs) without going
//    through registers, into two stages. While the warps compute on tile i
//    (stage i % 2), the copies of tile i + 1 (stage (i + 1) % 2) are in
//    flight. One barrier per tile suffices:
//
//      prologue: issue Q and tile 0 -> stage 0; commit; wait; barrier;
//                Q fragments via ldmatrix (Q's staging area is stage 1)
//      tile i:   wait<0>     this thread's copies of tile i have landed
//                          (tile i is the only group in flight here)
//                barrier     (a) everyone's copies of tile i are visible,
//                            (b) every warp has finished tile i - 1, i.e.
//                                stopped reading stage (i + 1) % 2 (and,
//                                for i = 0, read its Q fragments)
//                issue tile i + 1 -> stage (i + 1) % 2; commit
//                compute tile i from stage i % 2
//
//    When hs % 8 != 0 (or a base pointer is not 16-byte aligned) a row
//    cannot be cut into aligned 16-byte chunks; the tile is then stored with
//    an ordinary element loop at the same point of the schedule. The barrier
//    at the top of the next tile orders those stores exactly as it orders
//    the async copies, so the kernel stays correct (it only loses overlap).
//
// 3. Layout. Every shared row is D + 8 bf16 (2D + 16 bytes): 16-byte
//    aligned, as ldmatrix and cp.async need, and consecutive rows start
//    16 bytes further along the 128-byte bank window, so the 8 row addresses
//    of one 8x8 matrix fall into 8 different groups of 4 banks (no conflict).
//
// Dynamic shared memory, bf16 elements, DS = D + 8:
//   stage s (s = 0, 1):  sK_s [BC][DS], then sV_s [BC][DS]
//   sQ [BR][DS] overlays stage 1 (BR <= 2 BC): Q is read once into
//   registers before tile 1 is issued there.
// Total 4 * BC * DS * 2 bytes (launch.py: attention_tc_fwd_launch).
// ---------------------------------------------------------------------------

// Stage rows [r0, r0 + rows) of a [T, hs] bf16 matrix into dst[rows][D + 8],
// zero past T and hs. async: 16-byte cp.async chunks (hs % 8 == 0 and an
// aligned base; the caller commits); otherwise a synchronous element loop.
template <int D, int NT>
__device__ __forceinline__ void stage_rows_v4(unsigned short* dst, const unsigned short* __restrict__ src, int r0,
                                              int rows, int T, int hs, bool async) {
    constexpr int DS = D + ATTN_TC_PAD;
    if (async) {
        constexpr int CH = D / 8;  // 16-byte chunks per row; chunk index fastest: a warp reads whole rows
        for (int e = threadIdx.x; e < rows * CH; e += NT) {
            const int r = e / CH, c = e % CH;
            const bool valid = r0 + r < T && 8 * c < hs;  // hs % 8 == 0: a chunk is all in or all out
            const unsigned short* from = valid ? src + (long long)(r0 + r) * hs + 8 * c : src;  // not read if !valid
            cp_async_16(dst + r * DS + 8 * c, from, valid);
        }
    } else {
        for (int e = threadIdx.x; e < rows * D; e += NT) {
            const int r = e / D, d = e % D;
            dst[r * DS + d] = (unsigned short)bf16_at(src, r0 + r, d, T, hs);
        }
    }
}

// D: head size rounded up (32, 64 or 128; hs <= D). BC: keys per tile (a
// multiple of 16). WARPS: warps per block, 16 queries each (BR = 16 WARPS
// <= 2 BC). Grid (ceil(Tq / BR), BH); dynamic shared memory 8 * BC * (D + 8)
// bytes. Arguments and conventions exactly as attention_v3_tc_fwd.
template <int D, int BC, int WARPS>
__global__ void attention_v4_tc_fwd(
    const unsigned short* __restrict__ q, const unsigned short* __restrict__ k, const unsigned short* __restrict__ v,
    float* __restrict__ o, float* __restrict__ lse, int H, int Tq, int Tk, int hs, float scale, int causal, int start,
    const unsigned char* __restrict__ keep) {
    constexpr int NT = WARPS * 32, BR = 16 * WARPS, DS = D + ATTN_TC_PAD;
    constexpr int NS = BC / 8;   // n8 tiles of S per warp (keys)
    constexpr int NO = D / 8;    // n8 tiles of O per warp (features)
    constexpr int KQ = D / 16;   // k16 steps of S = Q K^T (features)
    constexpr int KP = BC / 16;  // k16 steps of O += P V (keys)
    static_assert(D % 16 == 0 && BC % 16 == 0, "mma tiles are 16 deep; ldmatrix_x4 covers two n8 tiles");
    static_assert(BR <= 2 * BC, "sQ overlays stage 1 (2 * BC rows)");
    extern __shared__ __align__(16) unsigned char smem_raw[];
    unsigned short* const smem = reinterpret_cast<unsigned short*>(smem_raw);
    // stage s: sK at smem + 2 s BC DS, sV right after it; sQ overlays stage 1
    unsigned short* const sQ = smem + 2 * BC * DS;

    const int qtile = gridDim.x - 1 - blockIdx.x;  // heaviest causal tiles first, as v3
    const int bh = blockIdx.y, q0 = qtile * BR;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int g = lane / 4, t = lane % 4;
    const int qw = q0 + 16 * warp;             // this warp's first query row
    const int row0 = qw + g, row1 = row0 + 8;  // this lane's two query rows (accumulator rows g, g + 8)
    const unsigned char* keep_b = keep ? keep + (long long)(bh / H) * Tk : nullptr;
    const unsigned short* qb = q + (long long)bh * Tq * hs;
    const unsigned short* kb = k + (long long)bh * Tk * hs;
    const unsigned short* vb = v + (long long)bh * Tk * hs;
    const bool async = (hs % 8 == 0) && (reinterpret_cast<unsigned long long>(qb) % 16 == 0) &&
                       (reinterpret_cast<unsigned long long>(kb) % 16 == 0) &&
                       (reinterpret_cast<unsigned long long>(vb) % 16 == 0);
    const float scale_log2 = scale * 1.4426950408889634f;  // scores in base 2

    // The row and column each lane names for its ldmatrix_x4 (matrix l / 8, row l % 8):
    //   lm_r16 = l % 16        matrices 0/1 rows 0-7/8-15, then again (Q: query; V: key)
    //   lm_c16 = 8 (l / 16)    matrices 0/1 at column 0, matrices 2/3 at column 8
    //   lm_rK  = (l % 8) + 8 (l / 16),  lm_cK = 8 ((l / 8) % 2)   (K: see below)
    const int lm_r16 = lane % 16, lm_c16 = 8 * (lane / 16);
    const int lm_rK = lane % 8 + 8 * (lane / 16), lm_cK = 8 * ((lane / 8) % 2);

    // Causal without padding: skip keys no query of the block (kend) or of
    // the warp (warp_kend) can see, exactly as v3.
    const bool skip_ok = causal && keep == nullptr && start >= 0;
    const int kend = skip_ok ? min(Tk, min(Tq - 1, q0 + BR - 1) + start + 1) : Tk;
    const int warp_kend = skip_ok ? min(Tk, min(Tq - 1, qw + 15) + start + 1) : Tk;
    const bool warp_active = qw < Tq;  // a warp wholly past Tq only helps load tiles

    // Prologue: Q [BR, D] into sQ (stage 1) and tile 0 into stage 0, one group.
    stage_rows_v4<D, NT>(sQ, qb, q0, BR, Tq, hs, async);
    stage_rows_v4<D, NT>(smem, kb, 0, BC, Tk, hs, async);
    stage_rows_v4<D, NT>(smem + BC * DS, vb, 0, BC, Tk, hs, async);
    cp_async_commit();
    cp_async_wait<0>();
    __syncthreads();  // everyone's Q rows have landed

    // Q [16, D] of this warp as KQ A fragments. k16 step ks: matrix 0 = rows
    // 0-7, features 16ks..+7 (a[0]); matrix 1 = rows 8-15 (a[1]); matrices 2, 3
    // = the same rows, features 16ks+8..+15 (a[2], a[3]).
    unsigned int qa[KQ][4];
#pragma unroll
    for (int ks = 0; ks < KQ; ++ks) ldmatrix_x4(qa[ks], sQ + (16 * warp + lm_r16) * DS + 16 * ks + lm_c16);

    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};  // rows g, g + 8; l: this lane's partial sum
    float acc[NO][4];  // O [16, D] accumulator fragments
#pragma unroll
    for (int n = 0; n < NO; ++n)
#pragma unroll
        for (int r = 0; r < 4; ++r) acc[n][r] = 0.0f;

    for (int k0 = 0, stage = 0; k0 < kend; k0 += BC, stage ^= 1) {
        cp_async_wait<0>();  // this thread's copies of tile k0 (the only group in flight) have landed
        __syncthreads();     // all of tile k0 is visible; nobody reads stage ^ 1 (tile k0 - BC, or sQ) any more
        if (k0 + BC < kend) {  // tile k0 + BC flies while this one is computed
            unsigned short* next = smem + 2 * (stage ^ 1) * BC * DS;
            stage_rows_v4<D, NT>(next, kb, k0 + BC, BC, Tk, hs, async);
            stage_rows_v4<D, NT>(next + BC * DS, vb, k0 + BC, BC, Tk, hs, async);
            cp_async_commit();
        }
        if (!warp_active || k0 >= warp_kend) continue;  // still reaches the next barrier
        const unsigned short* sK = smem + 2 * stage * BC * DS;  // [BC][DS]
        const unsigned short* sV = sK + BC * DS;                // [BC][DS]

        // S [16, BC] = Q K^T. The B operand of n8 tile n is K^T: b[0] =
        // K[key 8n+g][features 16ks+2t, +1], b[1] = 8 features later. One
        // non-transposed x4 over rows of sK fetches both registers of tiles n
        // and n + 1: matrix 0 = keys 8n..+7, features 16ks..+7 (b[0] of n);
        // matrix 1 = same keys, features +8 (b[1] of n); matrices 2, 3 = keys
        // 8(n+1)..+7 (b[0], b[1] of n + 1). Lane l: key row 8n + lm_rK,
        // feature column 16ks + lm_cK.
        float s[NS][4];
#pragma unroll
        for (int n = 0; n < NS; ++n) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
#pragma unroll
        for (int ks = 0; ks < KQ; ++ks)
#pragma unroll
            for (int n = 0; n < NS; n += 2) {
                unsigned int kf[4];
                ldmatrix_x4(kf, sK + (8 * n + lm_rK) * DS + 16 * ks + lm_cK);
                mma_bf16_16816(s[n], qa[ks], kf);
                mma_bf16_16816(s[n + 1], qa[ks], kf + 2);
            }

        softmax_tile<NS, NO, BC>(s, acc, m, l, k0, Tk, qw, row0, row1, t, scale_log2, causal, start, keep_b);

        // O += P V. A fragment of k16 step kk: the S accumulators of n8 tiles
        // 2kk and 2kk + 1 in bf16 (as v3). B of n8 tile n: b[0] = V[keys
        // 16kk+2t, +1][feature 8n+g], b[1] = 8 keys later. One transposed x4
        // over rows of sV: matrix 0 = keys 16kk..+7, features 8n..+7 (b[0] of
        // n); matrix 1 = keys 16kk+8..+15 (b[1] of n); matrices 2, 3 = features
        // 8(n+1)..+7 (b[0], b[1] of n + 1). Lane l: key row 16kk + lm_r16,
        // feature column 8n + lm_c16.
#pragma unroll
        for (int kk = 0; kk < KP; ++kk) {
            unsigned int pa[4];
            p_fragment(s, kk, pa);
#pragma unroll
            for (int n = 0; n < NO; n += 2) {
                unsigned int vf[4];
                ldmatrix_x4_trans(vf, sV + (16 * kk + lm_r16) * DS + 8 * n + lm_c16);
                mma_bf16_16816(acc[n], pa, vf);
                mma_bf16_16816(acc[n + 1], pa, vf + 2);
            }
        }
    }
    if (!warp_active) return;

    write_rows(o, lse, acc, m, l, bh, Tq, hs, row0, row1, t);
}
