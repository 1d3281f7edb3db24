// matmul.cu: C[b] = A[b] @ B[b], a ladder of versions from naive to warptiled.
//
// Every version computes the same thing and takes the same arguments:
//   M, N, K                    C is M x N, A is M x K, B is K x N
//   A, a_rs, a_cs, a_bs        A[b](i, k) = A[b * a_bs + i * a_rs + k * a_cs]
//   B, b_rs, b_cs, b_bs        B[b](k, j) = B[b * b_bs + k * b_rs + j * b_cs]
//   C, c_rs, c_bs              C[b](i, j) = C[b * c_bs + i * c_rs + j]
//   vec_ok                     bit 0: A rows may be read as float4, bit 1: B rows,
//                              bit 2: C rows may be written as float4
// Row and column strides make transposes free: A^T is A with a_rs and a_cs
// swapped, which is how the backward pass gets dA = dC B^T and dB = A^T dC.
// The batch index is blockIdx.z. Every version handles any M, N, K >= 1:
// tiles that stick out of the matrix load zeros and skip their writes.
//
// The ladder follows the classic SGEMM worklog (naive -> coalesced -> shared
// memory -> 1-D and 2-D register blocking -> float4 -> warptiling); each step
// says what it fixes. minitx/cuda/launch.py holds the grid/block/shared-memory
// arithmetic for each version, and minitx/cuda/reference.py a NumPy twin of
// the tiled loop order.
#include "common.cuh"

#define MATMUL_ARGS                                                                   \
    int M, int N, int K,                                                              \
    const float* __restrict__ A, int a_rs, int a_cs, long long a_bs,                  \
    const float* __restrict__ B, int b_rs, int b_cs, long long b_bs,                  \
    float* __restrict__ C, int c_rs, long long c_bs, int vec_ok

// The bf16 tensor-core versions take the same arguments with A and B as
// uint16 arrays of bf16 bits (vec_ok unused).
#define MATMUL_BF16_ARGS                                                              \
    int M, int N, int K,                                                              \
    const unsigned short* __restrict__ A, int a_rs, int a_cs, long long a_bs,         \
    const unsigned short* __restrict__ B, int b_rs, int b_cs, long long b_bs,         \
    float* __restrict__ C, int c_rs, long long c_bs, int vec_ok

// Move the three base pointers to this block's batch entry.
#define MATMUL_BATCH_OFFSET()                                                         \
    A += (long long)blockIdx.z * a_bs;                                                \
    B += (long long)blockIdx.z * b_bs;                                                \
    C += (long long)blockIdx.z * c_bs

// Guarded element reads: zero outside the matrix.
#define LOAD_A(i, k) (((i) < M && (k) < K) ? A[(i) * a_rs + (k) * a_cs] : 0.0f)
#define LOAD_B(k, j) (((k) < K && (j) < N) ? B[(k) * b_rs + (j) * b_cs] : 0.0f)

// ---------------------------------------------------------------------------
// v1 naive: one thread per output element, block (BS, BS).
// threadIdx.x walks down the ROWS of C, so the 32 threads of a warp read 32
// different rows of A and write 32 different rows of C: every access is its
// own memory transaction. This is the version to beat.
// ---------------------------------------------------------------------------
template <int BS>
__global__ void matmul_v1_naive(MATMUL_ARGS) {
    MATMUL_BATCH_OFFSET();
    const int row = blockIdx.x * BS + threadIdx.x;
    const int col = blockIdx.y * BS + threadIdx.y;
    if (row >= M || col >= N) return;
    float acc = 0.0f;
    for (int k = 0; k < K; ++k) acc += A[row * a_rs + k * a_cs] * B[k * b_rs + col * b_cs];
    C[row * c_rs + col] = acc;
}

// ---------------------------------------------------------------------------
// v2 coalesced: the same arithmetic, but consecutive threads take consecutive
// COLUMNS of C. A warp now reads one row of B and writes one row of C in a
// few wide transactions, and all its threads share the same A element
// (a broadcast). Block: BS*BS threads in one dimension.
// ---------------------------------------------------------------------------
template <int BS>
__global__ void matmul_v2_coalesced(MATMUL_ARGS) {
    MATMUL_BATCH_OFFSET();
    const int row = blockIdx.y * BS + threadIdx.x / BS;
    const int col = blockIdx.x * BS + threadIdx.x % BS;
    if (row >= M || col >= N) return;
    float acc = 0.0f;
    for (int k = 0; k < K; ++k) acc += A[row * a_rs + k * a_cs] * B[k * b_rs + col * b_cs];
    C[row * c_rs + col] = acc;
}

// ---------------------------------------------------------------------------
// v3 shared-memory tiles: the block stages a BS x BS tile of A and of B in
// shared memory, then every thread reads BS values of each from there.
// Each global element is now read by one thread instead of BS threads.
// ---------------------------------------------------------------------------
template <int BS>
__global__ void matmul_v3_smem(MATMUL_ARGS) {
    MATMUL_BATCH_OFFSET();
    __shared__ float As[BS][BS];
    __shared__ float Bs[BS][BS];
    const int ty = threadIdx.x / BS, tx = threadIdx.x % BS;
    const int row = blockIdx.y * BS + ty;
    const int col = blockIdx.x * BS + tx;
    float acc = 0.0f;
    for (int k0 = 0; k0 < K; k0 += BS) {
        As[ty][tx] = LOAD_A(row, k0 + tx);
        Bs[ty][tx] = LOAD_B(k0 + ty, col);
        __syncthreads();  // the tiles are complete
#pragma unroll
        for (int kk = 0; kk < BS; ++kk) acc += As[ty][kk] * Bs[kk][tx];
        __syncthreads();  // everyone is done reading before the next load
    }
    if (row < M && col < N) C[row * c_rs + col] = acc;
}

// ---------------------------------------------------------------------------
// v4 1-D blocktiling: each thread computes TM outputs in one column. The B
// value it needs is loaded from shared memory once and reused TM times, so
// shared-memory traffic per FMA drops by about TM. Tile BM x BN, depth BK;
// BM*BN/TM threads. A is stored transposed (As[k][m]) so a thread's TM
// values sit next to each other.
// ---------------------------------------------------------------------------
template <int BM, int BN, int BK, int TM>
__global__ void matmul_v4_blocktile1d(MATMUL_ARGS) {
    constexpr int NT = BM * BN / TM;
    MATMUL_BATCH_OFFSET();
    __shared__ float As[BK][BM];
    __shared__ float Bs[BK][BN];
    const int bm = blockIdx.y * BM, bn = blockIdx.x * BN;
    const int threadCol = threadIdx.x % BN, threadRow = threadIdx.x / BN;
    float acc[TM] = {0.0f};
    for (int k0 = 0; k0 < K; k0 += BK) {
        for (int i = threadIdx.x; i < BM * BK; i += NT) {
            const int m = i / BK, k = i % BK;
            As[k][m] = LOAD_A(bm + m, k0 + k);
        }
        for (int i = threadIdx.x; i < BK * BN; i += NT) {
            const int k = i / BN, n = i % BN;
            Bs[k][n] = LOAD_B(k0 + k, bn + n);
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < BK; ++kk) {
            const float b = Bs[kk][threadCol];
#pragma unroll
            for (int i = 0; i < TM; ++i) acc[i] += As[kk][threadRow * TM + i] * b;
        }
        __syncthreads();
    }
    const int col = bn + threadCol;
#pragma unroll
    for (int i = 0; i < TM; ++i) {
        const int row = bm + threadRow * TM + i;
        if (row < M && col < N) C[row * c_rs + col] = acc[i];
    }
}

// ---------------------------------------------------------------------------
// v5 2-D blocktiling: each thread computes a TM x TN patch of C as an outer
// product of TM values of A and TN values of B held in registers: TM*TN FMAs
// for TM+TN shared-memory loads. BM*BN/(TM*TN) threads per block.
// ---------------------------------------------------------------------------
template <int BM, int BN, int BK, int TM, int TN>
__global__ void __launch_bounds__(BM * BN / (TM * TN)) matmul_v5_blocktile2d(MATMUL_ARGS) {
    constexpr int NT = BM * BN / (TM * TN);
    MATMUL_BATCH_OFFSET();
    __shared__ float As[BK][BM];
    __shared__ float Bs[BK][BN];
    const int bm = blockIdx.y * BM, bn = blockIdx.x * BN;
    const int threadCol = threadIdx.x % (BN / TN), threadRow = threadIdx.x / (BN / TN);
    float acc[TM][TN] = {{0.0f}};
    float regM[TM], regN[TN];
    for (int k0 = 0; k0 < K; k0 += BK) {
        for (int i = threadIdx.x; i < BM * BK; i += NT) {
            const int m = i / BK, k = i % BK;
            As[k][m] = LOAD_A(bm + m, k0 + k);
        }
        for (int i = threadIdx.x; i < BK * BN; i += NT) {
            const int k = i / BN, n = i % BN;
            Bs[k][n] = LOAD_B(k0 + k, bn + n);
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < BK; ++kk) {
#pragma unroll
            for (int i = 0; i < TM; ++i) regM[i] = As[kk][threadRow * TM + i];
#pragma unroll
            for (int j = 0; j < TN; ++j) regN[j] = Bs[kk][threadCol * TN + j];
#pragma unroll
            for (int i = 0; i < TM; ++i)
#pragma unroll
                for (int j = 0; j < TN; ++j) acc[i][j] += regM[i] * regN[j];
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < TM; ++i) {
        const int row = bm + threadRow * TM + i;
#pragma unroll
        for (int j = 0; j < TN; ++j) {
            const int col = bn + threadCol * TN + j;
            if (row < M && col < N) C[row * c_rs + col] = acc[i][j];
        }
    }
}

// Shared by v6 and v7: stage one BM x BK tile of A (transposed, As[k][m]) and
// one BK x BN tile of B (Bs[k][n]) with 16-byte loads where the layout allows
// (vec_ok) and the 4 elements are inside the matrix, element loads otherwise.
template <int BM, int BN, int BK, int NT>
__device__ __forceinline__ void load_tiles_float4(
    float (*As)[BM], float (*Bs)[BN], int M, int N, int K,
    const float* __restrict__ A, int a_rs, int a_cs, const float* __restrict__ B, int b_rs, int b_cs,
    int bm, int bn, int k0, int vec_ok) {
    static_assert(BK % 4 == 0 && BN % 4 == 0, "float4 tiles need multiples of 4");
    for (int i = threadIdx.x; i < BM * BK / 4; i += NT) {
        const int m = i / (BK / 4), k = (i % (BK / 4)) * 4;
        const int gm = bm + m, gk = k0 + k;
        float4 v;
        if ((vec_ok & 1) && gm < M && gk + 3 < K) {
            v = *reinterpret_cast<const float4*>(&A[gm * a_rs + gk]);
        } else {
            v.x = LOAD_A(gm, gk); v.y = LOAD_A(gm, gk + 1); v.z = LOAD_A(gm, gk + 2); v.w = LOAD_A(gm, gk + 3);
        }
        As[k][m] = v.x; As[k + 1][m] = v.y; As[k + 2][m] = v.z; As[k + 3][m] = v.w;
    }
    for (int i = threadIdx.x; i < BK * BN / 4; i += NT) {
        const int k = i / (BN / 4), n = (i % (BN / 4)) * 4;
        const int gk = k0 + k, gn = bn + n;
        float4 v;
        if ((vec_ok & 2) && gk < K && gn + 3 < N) {
            v = *reinterpret_cast<const float4*>(&B[gk * b_rs + gn]);
        } else {
            v.x = LOAD_B(gk, gn); v.y = LOAD_B(gk, gn + 1); v.z = LOAD_B(gk, gn + 2); v.w = LOAD_B(gk, gn + 3);
        }
        *reinterpret_cast<float4*>(&Bs[k][n]) = v;
    }
}

// Write a row of TN results starting at (row, col): float4 stores where allowed.
template <int TN>
__device__ __forceinline__ void store_row(float* __restrict__ C, int c_rs, int M, int N, int row, int col,
                                          const float* vals, int vec_ok) {
    if (row >= M) return;
    if ((vec_ok & 4) && (TN % 4 == 0) && col + TN - 1 < N) {
#pragma unroll
        for (int j = 0; j < TN; j += 4)
            *reinterpret_cast<float4*>(&C[row * c_rs + col + j]) = make_float4(vals[j], vals[j + 1], vals[j + 2], vals[j + 3]);
    } else {
#pragma unroll
        for (int j = 0; j < TN; ++j)
            if (col + j < N) C[row * c_rs + col + j] = vals[j];
    }
}

// ---------------------------------------------------------------------------
// v6 vectorized: v5 with 16-byte (float4) global loads and stores, and
// 16-byte shared-memory reads of the register fragments. Four times fewer
// load instructions for the same bytes.
// ---------------------------------------------------------------------------
template <int BM, int BN, int BK, int TM, int TN>
__global__ void __launch_bounds__(BM * BN / (TM * TN)) matmul_v6_vectorized(MATMUL_ARGS) {
    constexpr int NT = BM * BN / (TM * TN);
    static_assert(TM % 4 == 0 && TN % 4 == 0, "float4 fragments");
    MATMUL_BATCH_OFFSET();
    __shared__ __align__(16) float As[BK][BM];
    __shared__ __align__(16) float Bs[BK][BN];
    const int bm = blockIdx.y * BM, bn = blockIdx.x * BN;
    const int threadCol = threadIdx.x % (BN / TN), threadRow = threadIdx.x / (BN / TN);
    float acc[TM][TN] = {{0.0f}};
    float regM[TM], regN[TN];
    for (int k0 = 0; k0 < K; k0 += BK) {
        load_tiles_float4<BM, BN, BK, NT>(As, Bs, M, N, K, A, a_rs, a_cs, B, b_rs, b_cs, bm, bn, k0, vec_ok);
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < BK; ++kk) {
#pragma unroll
            for (int i = 0; i < TM; i += 4)
                *reinterpret_cast<float4*>(&regM[i]) = *reinterpret_cast<const float4*>(&As[kk][threadRow * TM + i]);
#pragma unroll
            for (int j = 0; j < TN; j += 4)
                *reinterpret_cast<float4*>(&regN[j]) = *reinterpret_cast<const float4*>(&Bs[kk][threadCol * TN + j]);
#pragma unroll
            for (int i = 0; i < TM; ++i)
#pragma unroll
                for (int j = 0; j < TN; ++j) acc[i][j] += regM[i] * regN[j];
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < TM; ++i)
        store_row<TN>(C, c_rs, M, N, bm + threadRow * TM + i, bn + threadCol * TN, acc[i], vec_ok);
}

// ---------------------------------------------------------------------------
// v7 warptiling: one more level of tiling between the block and the thread.
// Each warp owns a WM x WN piece of the block tile, split into WMITER x WNITER
// sub-tiles of WSUBM x WSUBN; inside a sub-tile each lane owns TM x TN. The
// lanes of a warp now read neighbouring shared-memory words (fewer bank
// conflicts) and the compiler can keep a warp's working set in registers.
// ---------------------------------------------------------------------------
template <int BM, int BN, int BK, int WM, int WN, int WNITER, int TM, int TN>
__global__ void __launch_bounds__((BM / WM) * (BN / WN) * 32) matmul_v7_warptile(MATMUL_ARGS) {
    constexpr int NT = (BM / WM) * (BN / WN) * 32;
    constexpr int WMITER = (WM * WN) / (32 * TM * TN * WNITER);
    constexpr int WSUBM = WM / WMITER, WSUBN = WN / WNITER;
    static_assert(WMITER >= 1 && WM % WMITER == 0 && WN % WNITER == 0, "warp tile must split evenly");
    static_assert((WSUBN / TN) * (WSUBM / TM) == 32, "a sub-tile is exactly one warp of TM x TN patches");
    static_assert(TM % 4 == 0 && TN % 4 == 0, "float4 fragments");
    MATMUL_BATCH_OFFSET();
    __shared__ __align__(16) float As[BK][BM];
    __shared__ __align__(16) float Bs[BK][BN];
    const int bm = blockIdx.y * BM, bn = blockIdx.x * BN;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int warpCol = warp % (BN / WN), warpRow = warp / (BN / WN);
    const int laneCol = lane % (WSUBN / TN), laneRow = lane / (WSUBN / TN);
    float acc[WMITER * TM][WNITER * TN] = {{0.0f}};
    float regM[WMITER * TM], regN[WNITER * TN];
    for (int k0 = 0; k0 < K; k0 += BK) {
        load_tiles_float4<BM, BN, BK, NT>(As, Bs, M, N, K, A, a_rs, a_cs, B, b_rs, b_cs, bm, bn, k0, vec_ok);
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < BK; ++kk) {
#pragma unroll
            for (int wm = 0; wm < WMITER; ++wm)
#pragma unroll
                for (int i = 0; i < TM; i += 4)
                    *reinterpret_cast<float4*>(&regM[wm * TM + i]) =
                        *reinterpret_cast<const float4*>(&As[kk][warpRow * WM + wm * WSUBM + laneRow * TM + i]);
#pragma unroll
            for (int wn = 0; wn < WNITER; ++wn)
#pragma unroll
                for (int j = 0; j < TN; j += 4)
                    *reinterpret_cast<float4*>(&regN[wn * TN + j]) =
                        *reinterpret_cast<const float4*>(&Bs[kk][warpCol * WN + wn * WSUBN + laneCol * TN + j]);
#pragma unroll
            for (int i = 0; i < WMITER * TM; ++i)
#pragma unroll
                for (int j = 0; j < WNITER * TN; ++j) acc[i][j] += regM[i] * regN[j];
        }
        __syncthreads();
    }
#pragma unroll
    for (int wm = 0; wm < WMITER; ++wm)
#pragma unroll
        for (int i = 0; i < TM; ++i)
#pragma unroll
            for (int wn = 0; wn < WNITER; ++wn)
                store_row<TN>(C, c_rs, M, N, bm + warpRow * WM + wm * WSUBM + laneRow * TM + i,
                              bn + warpCol * WN + wn * WSUBN + laneCol * TN, &acc[wm * TM + i][wn * TN], vec_ok);
}

// Write a warp's MT x NTL grid of m16n8 fp32 accumulator tiles to C (row
// stride c_rs) at (row0, col0), skipping what falls outside M x N. Lane
// (g, t) holds rows g and g + 8, columns 2t and 2t + 1 of each tile.
template <int MT, int NTL>
__device__ __forceinline__ void store_mma_tile(float* __restrict__ C, int c_rs, int M, int N, int row0, int col0,
                                               const float (&acc)[MT][NTL][4], int g, int t) {
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int nt = 0; nt < NTL; ++nt) {
            const int row = row0 + mt * 16 + g, col = col0 + nt * 8 + 2 * t;
#pragma unroll
            for (int half = 0; half < 2; ++half) {
                const int r = row + 8 * half;
                if (r < M && col < N) C[r * c_rs + col] = acc[mt][nt][2 * half];
                if (r < M && col + 1 < N) C[r * c_rs + col + 1] = acc[mt][nt][2 * half + 1];
            }
        }
}

// ---------------------------------------------------------------------------
// bf16 tensor cores: C (fp32) = A (bf16) @ B (bf16), accumulated in fp32 by
// mma.sync.m16n8k16. A and B arrive as uint16 arrays of bf16 bits, with the
// same stride arguments as the fp32 versions (vec_ok is unused).
// The block stages A as As[m][k] and B *transposed* as Bs[n][k], so each
// lane's fragment pairs (two consecutive k) are one 32-bit shared load. Rows
// are padded by 8 bf16 so the 8 rows a fragment load touches fall in
// different banks. Each warp owns WM x WN = (WM/16) x (WN/8) mma tiles.
// ---------------------------------------------------------------------------
template <int BM, int BN, int BK, int WM, int WN>
__global__ void __launch_bounds__((BM / WM) * (BN / WN) * 32) matmul_bf16_mma(MATMUL_BF16_ARGS) {
    constexpr int NT = (BM / WM) * (BN / WN) * 32;
    constexpr int MT = WM / 16, NTL = WN / 8, PAD = 8;
    static_assert(BK % 16 == 0 && WM % 16 == 0 && WN % 8 == 0, "mma tile shape");
    MATMUL_BATCH_OFFSET();
    __shared__ __align__(16) unsigned short As[BM][BK + PAD];
    __shared__ __align__(16) unsigned short Bs[BN][BK + PAD];
    const int bm = blockIdx.y * BM, bn = blockIdx.x * BN;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int warpCol = warp % (BN / WN), warpRow = warp / (BN / WN);
    const int g = lane / 4, t = lane % 4;
    float acc[MT][NTL][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int nt = 0; nt < NTL; ++nt)
#pragma unroll
            for (int r = 0; r < 4; ++r) acc[mt][nt][r] = 0.0f;
    for (int k0 = 0; k0 < K; k0 += BK) {
        for (int i = threadIdx.x; i < BM * BK; i += NT) {
            const int m = i / BK, k = i % BK, gm = bm + m, gk = k0 + k;
            As[m][k] = (gm < M && gk < K) ? A[gm * a_rs + gk * a_cs] : (unsigned short)0;
        }
        for (int i = threadIdx.x; i < BK * BN; i += NT) {
            const int k = i / BN, n = i % BN, gk = k0 + k, gn = bn + n;
            Bs[n][k] = (gk < K && gn < N) ? B[gk * b_rs + gn * b_cs] : (unsigned short)0;
        }
        __syncthreads();
#pragma unroll
        for (int ks = 0; ks < BK; ks += 16) {
            unsigned int a[MT][4], b[NTL][2];
#pragma unroll
            for (int mt = 0; mt < MT; ++mt) {
                const int r = warpRow * WM + mt * 16 + g, c = ks + 2 * t;
                a[mt][0] = *reinterpret_cast<const unsigned int*>(&As[r][c]);
                a[mt][1] = *reinterpret_cast<const unsigned int*>(&As[r + 8][c]);
                a[mt][2] = *reinterpret_cast<const unsigned int*>(&As[r][c + 8]);
                a[mt][3] = *reinterpret_cast<const unsigned int*>(&As[r + 8][c + 8]);
            }
#pragma unroll
            for (int nt = 0; nt < NTL; ++nt) {
                const int n = warpCol * WN + nt * 8 + g, c = ks + 2 * t;
                b[nt][0] = *reinterpret_cast<const unsigned int*>(&Bs[n][c]);
                b[nt][1] = *reinterpret_cast<const unsigned int*>(&Bs[n][c + 8]);
            }
#pragma unroll
            for (int mt = 0; mt < MT; ++mt)
#pragma unroll
                for (int nt = 0; nt < NTL; ++nt) mma_bf16_16816(acc[mt][nt], a[mt], b[nt]);
        }
        __syncthreads();
    }
    store_mma_tile<MT, NTL>(C, c_rs, M, N, bm + warpRow * WM, bn + warpCol * WN, acc, g, t);
}

// ---------------------------------------------------------------------------
// matmul_bf16_mma_v2: matmul_bf16_mma with ldmatrix fragments and
// double-buffered cp.async tiles (the treatment attention_v4_tc_fwd gives
// attention; see the notes there on ldmatrix's lane-to-row mapping).
//
// Tiles are stored as they lie in a row-major matrix, in dynamic shared
// memory: As[m][k] (BM x BK) and Bs[k][n] (BK x BN, no transposing on the
// way in), each row padded by 8 bf16 (16 bytes: aligned rows, and the 8
// row addresses of one ldmatrix fall in 8 different groups of banks).
//   A fragment (16 x 16 at rows r, columns ks): ldmatrix_x4 over rows of As;
//     matrices = rows r..r+7 / r+8..r+15 at column ks (a[0], a[1]), then
//     the same rows at column ks + 8 (a[2], a[3]). Lane l: row r + l % 16,
//     column ks + 8 (l / 16).
//   B fragments of two neighbouring n8 tiles (n, n + 8): b wants pairs of
//     consecutive k of one column, so ldmatrix_x4_trans over rows of Bs:
//     matrices = k rows ks..+7 / ks+8..+15 of columns n..n+7 (b[0], b[1] of
//     tile n), then columns n+8..n+15 (tile n + 8). Lane l: row ks + l % 16,
//     column n + 8 (l / 16).
// Two stages; tile i + 1 is copied while tile i is multiplied:
//   prologue: issue tile 0 -> stage 0; commit
//   tile i:   wait<0>        this thread's copies of tile i have landed
//             __syncthreads  all of tile i is visible, and every warp is done
//                            with tile i - 1, whose stage is refilled next
//             issue tile i + 1 -> the other stage; commit
//             multiply tile i
// A operand by 16-byte cp.async when A is row-major with a_rs % 8 == 0,
// K % 8 == 0 and a 16-byte aligned base (the same for B with b_rs and N);
// otherwise (transposed views, odd sizes) that operand's tile is stored by
// an element loop at the same point of the schedule, which the same barrier
// orders (correct, without the overlap). vec_ok is unused.
// Dynamic shared memory: 2 * (BM * (BK + 8) + BK * (BN + 8)) * 2 bytes.
// ---------------------------------------------------------------------------

// Stage the tile rows [r0, r0 + ROWS) x columns [c0, c0 + COLS) of a
// [rows, cols] bf16 matrix (strides rs, cs) as dst[ROWS][COLS + 8], zero
// outside the matrix. async: cs == 1 and 16-byte aligned chunks that are all
// in or all out (cols % 8 == 0, rs % 8 == 0, aligned base).
template <int ROWS, int COLS, int NT>
__device__ __forceinline__ void stage_tile_bf16(unsigned short* dst, const unsigned short* __restrict__ src,
                                                int r0, int c0, int rows, int cols, int rs, int cs, bool async) {
    constexpr int LD = COLS + 8;
    if (async) {
        constexpr int CH = COLS / 8;  // 16-byte chunks per tile row
        for (int e = threadIdx.x; e < ROWS * CH; e += NT) {
            const int r = e / CH, c = 8 * (e % CH), gr = r0 + r, gc = c0 + c;
            const bool valid = gr < rows && gc < cols;
            cp_async_16(dst + r * LD + c, valid ? src + (long long)gr * rs + gc : src, valid);
        }
    } else {
        for (int e = threadIdx.x; e < ROWS * COLS; e += NT) {
            const int r = e / COLS, c = e % COLS, gr = r0 + r, gc = c0 + c;
            dst[r * LD + c] = (gr < rows && gc < cols) ? src[(long long)gr * rs + (long long)gc * cs] : (unsigned short)0;
        }
    }
}

template <int BM, int BN, int BK, int WM, int WN>
__global__ void __launch_bounds__((BM / WM) * (BN / WN) * 32) matmul_bf16_mma_v2(MATMUL_BF16_ARGS) {
    constexpr int NT = (BM / WM) * (BN / WN) * 32;
    constexpr int MT = WM / 16, NTL = WN / 8;
    constexpr int LA = BK + 8, LB = BN + 8;             // padded row lengths of As, Bs
    constexpr int STAGE = BM * LA + BK * LB;            // bf16 elements per stage
    static_assert(BK % 16 == 0 && WM % 16 == 0 && WN % 16 == 0, "mma tiles; ldmatrix_x4 covers two n8 tiles");
    MATMUL_BATCH_OFFSET();
    extern __shared__ __align__(16) unsigned char smem_raw[];
    unsigned short* const smem = reinterpret_cast<unsigned short*>(smem_raw);  // stage s: As at s STAGE, Bs after
    const int bm = blockIdx.y * BM, bn = blockIdx.x * BN;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int warpCol = warp % (BN / WN), warpRow = warp / (BN / WN);
    const int lm_r = lane % 16, lm_c = 8 * (lane / 16);  // this lane's ldmatrix row and column offsets
    const bool a_async = a_cs == 1 && a_rs % 8 == 0 && K % 8 == 0 && reinterpret_cast<unsigned long long>(A) % 16 == 0;
    const bool b_async = b_cs == 1 && b_rs % 8 == 0 && N % 8 == 0 && reinterpret_cast<unsigned long long>(B) % 16 == 0;

    float acc[MT][NTL][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int nt = 0; nt < NTL; ++nt)
#pragma unroll
            for (int r = 0; r < 4; ++r) acc[mt][nt][r] = 0.0f;

    // Prologue: tile 0 into stage 0.
    stage_tile_bf16<BM, BK, NT>(smem, A, bm, 0, M, K, a_rs, a_cs, a_async);
    stage_tile_bf16<BK, BN, NT>(smem + BM * LA, B, 0, bn, K, N, b_rs, b_cs, b_async);
    cp_async_commit();

    for (int k0 = 0, stage = 0; k0 < K; k0 += BK, stage ^= 1) {
        cp_async_wait<0>();  // this thread's copies of tile k0 (the only group in flight)
        __syncthreads();     // everyone's copies visible; the other stage is no longer read
        if (k0 + BK < K) {   // tile k0 + BK flies while this one is multiplied
            unsigned short* next = smem + (stage ^ 1) * STAGE;
            stage_tile_bf16<BM, BK, NT>(next, A, bm, k0 + BK, M, K, a_rs, a_cs, a_async);
            stage_tile_bf16<BK, BN, NT>(next + BM * LA, B, k0 + BK, bn, K, N, b_rs, b_cs, b_async);
            cp_async_commit();
        }
        const unsigned short* As = smem + stage * STAGE;  // [BM][LA]
        const unsigned short* Bs = As + BM * LA;          // [BK][LB]
#pragma unroll
        for (int ks = 0; ks < BK; ks += 16) {
            unsigned int a[MT][4], b[NTL][2];
#pragma unroll
            for (int mt = 0; mt < MT; ++mt)
                ldmatrix_x4(a[mt], As + (warpRow * WM + mt * 16 + lm_r) * LA + ks + lm_c);
#pragma unroll
            for (int nt = 0; nt < NTL; nt += 2) {
                unsigned int r[4];  // b[0], b[1] of n8 tile nt, then of tile nt + 1
                ldmatrix_x4_trans(r, Bs + (ks + lm_r) * LB + warpCol * WN + nt * 8 + lm_c);
                b[nt][0] = r[0]; b[nt][1] = r[1]; b[nt + 1][0] = r[2]; b[nt + 1][1] = r[3];
            }
#pragma unroll
            for (int mt = 0; mt < MT; ++mt)
#pragma unroll
                for (int nt = 0; nt < NTL; ++nt) mma_bf16_16816(acc[mt][nt], a[mt], b[nt]);
        }
    }
    const int g = lane / 4, t = lane % 4;
    store_mma_tile<MT, NTL>(C, c_rs, M, N, bm + warpRow * WM, bn + warpCol * WN, acc, g, t);
}
