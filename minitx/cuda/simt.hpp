// simt.hpp: a CPU emulator for minitx's CUDA kernels (the C++ half).
//
// minitx/cuda/emulator.py compiles a kernel source from kernels/ with g++,
// with this header in front of it, and calls minitx_emu_launch() through
// ctypes. The kernel text is the same text NVRTC compiles for the GPU; only
// the CUDA vocabulary is given a CPU meaning here:
//
//   a CUDA thread      one fiber with its own stack (a 20-instruction context
//                      switch on x86-64, ucontext elsewhere); every thread
//                      of a block is a fiber, and the blocks of the grid run
//                      one after another
//   __syncthreads()    the fiber parks; when every live thread of the block
//                      is parked there, all of them go on
//   __shfl_*_sync      the 32 lanes of a warp meet at a warp barrier, swap
//                      values through a per-warp mailbox, meet again
//   mma.sync (bf16)    the lanes post their fragments to the mailbox; the
//                      first lane through rebuilds A (16x16) and B (16x8)
//                      from all 32 of them by the PTX ISA fragment tables and
//                      computes A @ B once; each lane adds its own four
//                      elements to its accumulators
//   ldmatrix           lanes post their row addresses; each lane reads its
//                      two elements of each 8x8 matrix by the PTX tables
//   cp.async           "late" (default): recorded, and copied only when the
//                      issuing thread waits for its group (a tile read too
//                      early is stale or NaN); "early": copied at once (a
//                      buffer overwritten while others still read it shows)
//   __shared__         a static array (one block runs at a time); dynamic
//                      shared memory is a buffer filled with NaN before each
//                      block, so reading what nobody wrote shows up
//
// What it catches: wrong indexing of every kind (including fragment layouts),
// missing barriers that matter for the order in which threads happen to run
// (launches can run threads and blocks in reverse order; the tests do so on
// odd seeds), warps that reach different barriers, reads and writes past the
// end of any global or dynamic shared buffer (guard pages; the fault is
// reported with its block and thread), vector accesses at misaligned
// addresses (-fsanitize=alignment traps), unwritten outputs (poisoned with
// NaN), cp.async tiles read before their wait. What it cannot catch:
// anything about speed, and memory-model races that no sequential schedule
// of the threads shows.
#pragma once

#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <cstddef>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(__x86_64__)
#include <xmmintrin.h>
#endif

#define MINITX_EMULATOR 1

// ---------------------------------------------------------------------------
// CUDA keywords with a CPU meaning
// ---------------------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __shared__ static

struct uint3 { unsigned int x, y, z; };
struct dim3 { unsigned int x = 1, y = 1, z = 1; };
struct __attribute__((aligned(8))) float2 { float x, y; };
struct __attribute__((aligned(16))) float4 { float x, y, z, w; };
struct __attribute__((aligned(16))) int4 { int x, y, z, w; };
struct __attribute__((aligned(16))) uint4 { unsigned int x, y, z, w; };
inline float2 make_float2(float x, float y) { return {x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }

// CUDA's min/max accept mixed argument types.
template <class A, class B>
inline std::common_type_t<A, B> min(A a, B b) {
    using T = std::common_type_t<A, B>;
    return T(a) < T(b) ? T(a) : T(b);
}
template <class A, class B>
inline std::common_type_t<A, B> max(A a, B b) {
    using T = std::common_type_t<A, B>;
    return T(a) < T(b) ? T(b) : T(a);
}

inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fsqrt_rn(float x) { return sqrtf(x); }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline float __int_as_float(int i) { float f; memcpy(&f, &i, 4); return f; }
inline float __uint_as_float(unsigned int i) { float f; memcpy(&f, &i, 4); return f; }
inline int __float_as_int(float f) { int i; memcpy(&i, &f, 4); return i; }
inline unsigned int __float_as_uint(float f) { unsigned int i; memcpy(&i, &f, 4); return i; }

// ---------------------------------------------------------------------------
// The machine: one launch at a time, one block at a time, one fiber per thread
// ---------------------------------------------------------------------------
namespace minitx_emu {

// ---------------------------------------------------------------------------
// Fibers. A context is what a switch saves: on x86-64 the stack pointer,
// with the callee-saved registers and the FP control words pushed on the
// fiber's own stack (everything else is dead across a call, by the ABI);
// ucontext elsewhere (portable, but it makes a system call per switch).
// ---------------------------------------------------------------------------
void fiber_trampoline();

#if defined(__x86_64__) && !defined(MINITX_EMU_UCONTEXT)
extern "C" void minitx_emu_switch(void** save_sp, void* load_sp);
asm(R"(
    .text
    .p2align 4
    .globl minitx_emu_switch
    .hidden minitx_emu_switch
    .type minitx_emu_switch, @function
minitx_emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $16, %rsp
    fnstcw (%rsp)
    stmxcsr 8(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    fldcw (%rsp)
    ldmxcsr 8(%rsp)
    addq $16, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size minitx_emu_switch, .-minitx_emu_switch
)");

struct Context {
    void* sp = nullptr;
};
inline void switch_context(Context& from, Context& to) { minitx_emu_switch(&from.sp, to.sp); }

// Lay out a new stack as if minitx_emu_switch had saved it just before
// calling fiber_trampoline: the first switch to it "returns" there.
inline void make_fiber(Context& c, char* stack, size_t size) {
    uintptr_t top = ((uintptr_t)(stack + size)) & ~(uintptr_t)15;
    uint64_t* sp = reinterpret_cast<uint64_t*>(top);
    *--sp = 0;                                   // fake return address of the trampoline (it never returns)
    *--sp = (uint64_t)(uintptr_t)&fiber_trampoline;  // where `ret` goes; rsp is then 8 mod 16, as after a call
    for (int r = 0; r < 6; ++r) *--sp = 0;       // rbp, rbx, r12-r15
    sp -= 2;                                     // the FP control words
    uint16_t fpcw;
    asm volatile("fnstcw %0" : "=m"(fpcw));
    memcpy(sp, &fpcw, 2);
    const uint32_t mxcsr = _mm_getcsr();
    memcpy(reinterpret_cast<char*>(sp) + 8, &mxcsr, 4);
    c.sp = sp;
}
#else
struct Context {
    ucontext_t uc;
};
inline void switch_context(Context& from, Context& to) { swapcontext(&from.uc, &to.uc); }
inline void make_fiber(Context& c, char* stack, size_t size) {
    getcontext(&c.uc);
    c.uc.uc_stack.ss_sp = stack;
    c.uc.uc_stack.ss_size = size;
    c.uc.uc_link = nullptr;  // the trampoline never returns
    makecontext(&c.uc, fiber_trampoline, 0);
}
#endif

enum State { READY, AT_BLOCK_BARRIER, AT_WARP_BARRIER, DONE };

struct AsyncCopy {  // one cp.async in flight: 16 bytes, or 16 zeros
    void* dst;
    const void* src;
    bool valid;
};

struct Thread {
    Context ctx;
    uint3 tid;
    int linear, warp, lane;
    State state;
    std::vector<AsyncCopy> uncommitted;           // cp.async issued since the last commit
    std::vector<std::vector<AsyncCopy>> groups;   // committed groups, oldest first, not yet landed
};

constexpr int MAILBOX_WORDS = 16;  // per lane: enough for an mma's A, B and C fragments
constexpr size_t STACK_BYTES = 256 * 1024;
constexpr size_t GUARD_BYTES = 4096;

struct WarpMma {  // one warp's mma product, computed once and read by its 32 lanes
    float d[16][8];
    int lanes_done = 0;
};

struct Machine {
    dim3 grid, block;
    uint3 block_idx;
    std::vector<Thread> threads;
    std::vector<uint32_t> mailbox;  // [warps][32][MAILBOX_WORDS]
    std::vector<WarpMma> mma;       // [warps]
    char* stacks = nullptr;
    size_t stacks_bytes = 0;
    unsigned char* dyn_smem = nullptr;
    size_t dyn_smem_bytes = 0;
    void (*invoke)(void**) = nullptr;
    void** args = nullptr;
    Context scheduler;
    sigjmp_buf escape;
    bool failed = false;
    bool land_early = false;  // cp.async lands at issue instead of at the wait
    char error[1024];
};

inline Machine* M = nullptr;   // the launch in progress
inline Thread* cur = nullptr;  // the fiber running now

inline void fail(const char* what) {
    if (!M->failed) {
        M->failed = true;
        snprintf(M->error, sizeof M->error, "%s (block (%u, %u, %u), thread (%u, %u, %u))", what, M->block_idx.x,
                 M->block_idx.y, M->block_idx.z, cur ? cur->tid.x : 0, cur ? cur->tid.y : 0, cur ? cur->tid.z : 0);
    }
}

// Park the running fiber in `s` and return to the scheduler.
inline void park(State s) {
    cur->state = s;
    Thread* me = cur;
    switch_context(me->ctx, M->scheduler);
    cur = me;
}

inline void syncthreads() { park(AT_BLOCK_BARRIER); }
inline void warp_barrier() { park(AT_WARP_BARRIER); }
inline uint32_t* mailbox(int warp, int lane) {
    return &M->mailbox[((size_t)warp * 32 + lane) * MAILBOX_WORDS];
}
inline void* dynamic_smem() { return M->dyn_smem; }

// A warp-wide value exchange: post `v`, wait for the warp, read lane `src`'s.
template <class T>
inline T exchange(unsigned int mask, T v, int src) {
    static_assert(sizeof(T) <= 8, "shuffles move at most 8 bytes");
    if (mask != 0xffffffffu) fail("a shuffle with a partial lane mask (the emulator supports full warps only)");
    memcpy(mailbox(cur->warp, cur->lane), &v, sizeof(T));
    warp_barrier();
    T r;
    memcpy(&r, mailbox(cur->warp, src & 31), sizeof(T));
    warp_barrier();  // nobody overwrites the mailbox before every lane has read it
    return r;
}

// bf16 <-> float, round to nearest even (what cvt.rn.bf16x2.f32 does).
inline uint32_t float_to_bf16(float f) {
    uint32_t u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0u;  // NaN stays NaN
    return (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
}
inline float bf16_bits_to_float(uint32_t h) { return __uint_as_float(h << 16); }

// mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32, by the PTX ISA's
// fragment tables ("Matrix fragments for mma.m16n8k16 with floating point
// type"), with g = lane / 4 and t = lane % 4. A register holds two bf16, the
// lower-indexed element in the low 16 bits.
//   A (16 x 16, row-major):  a0: rows g,   cols 2t, 2t+1     a1: rows g+8, cols 2t, 2t+1
//                            a2: rows g,   cols 2t+8, 2t+9   a3: rows g+8, cols 2t+8, 2t+9
//   B (16 x 8, "col"):       b0: rows 2t, 2t+1 of col g      b1: rows 2t+8, 2t+9 of col g
//   C, D (16 x 8, fp32):     c0, c1: row g, cols 2t, 2t+1    c2, c3: row g+8, cols 2t, 2t+1
inline void mma_m16n8k16_bf16(float c[4], const unsigned int a[4], const unsigned int b[2]) {
    uint32_t* box = mailbox(cur->warp, cur->lane);
    for (int i = 0; i < 4; ++i) box[i] = a[i];
    box[4] = b[0];
    box[5] = b[1];
    warp_barrier();
    // The first lane through rebuilds A and B from all 32 mailboxes and
    // computes the warp's A @ B once; every lane then adds its own 4 elements.
    WarpMma& w = M->mma[cur->warp];
    if (w.lanes_done == 0) {
        float A[16][16], B[16][8];
        for (int l = 0; l < 32; ++l) {
            const uint32_t* f = mailbox(cur->warp, l);
            const int g = l / 4, t = l % 4;
            const int arow[4] = {g, g + 8, g, g + 8}, acol[4] = {2 * t, 2 * t, 2 * t + 8, 2 * t + 8};
            for (int r = 0; r < 4; ++r) {
                A[arow[r]][acol[r]] = bf16_bits_to_float(f[r] & 0xffffu);
                A[arow[r]][acol[r] + 1] = bf16_bits_to_float(f[r] >> 16);
            }
            for (int r = 0; r < 2; ++r) {
                B[2 * t + 8 * r][g] = bf16_bits_to_float(f[4 + r] & 0xffffu);
                B[2 * t + 8 * r + 1][g] = bf16_bits_to_float(f[4 + r] >> 16);
            }
        }
        for (int row = 0; row < 16; ++row)
            for (int col = 0; col < 8; ++col) {
                float acc = 0.0f;  // bf16 x bf16 is exact in fp32; the sum is fp32
                for (int k = 0; k < 16; ++k) acc += A[row][k] * B[k][col];
                w.d[row][col] = acc;
            }
    }
    const int g = cur->lane / 4, t = cur->lane % 4;
    for (int i = 0; i < 4; ++i) c[i] += w.d[g + 8 * (i / 2)][2 * t + (i % 2)];
    if (++w.lanes_done == 32) w.lanes_done = 0;  // the last lane resets it for the next mma
    warp_barrier();  // nobody posts new fragments before every lane has read
}

// ldmatrix.sync.aligned.m8n8.x4[.trans].shared.b16: every lane posts the
// row address it was given; lane l then reads, for matrix j, the two 16-bit
// elements the PTX ISA assigns it (see ldmatrix_x4 in common.cuh).
inline void ldmatrix(unsigned int r[4], const void* row, bool trans) {
    if (((uintptr_t)row & 15) != 0) fail("ldmatrix: a row address that is not 16-byte aligned");
    memcpy(mailbox(cur->warp, cur->lane), &row, sizeof row);
    warp_barrier();
    auto row_of = [&](int src_lane) {
        const unsigned char* p;
        memcpy(&p, mailbox(cur->warp, src_lane), sizeof p);
        return p;
    };
    const int l = cur->lane;
    for (int j = 0; j < 4; ++j) {
        uint16_t lo, hi;
        if (!trans) {  // row l / 4, elements 2 (l % 4) and 2 (l % 4) + 1
            const unsigned char* p = row_of(8 * j + l / 4) + 4 * (l % 4);
            memcpy(&lo, p, 2);
            memcpy(&hi, p + 2, 2);
        } else {  // rows 2 (l % 4) and 2 (l % 4) + 1, element l / 4
            memcpy(&lo, row_of(8 * j + 2 * (l % 4)) + 2 * (l / 4), 2);
            memcpy(&hi, row_of(8 * j + 2 * (l % 4) + 1) + 2 * (l / 4), 2);
        }
        r[j] = (unsigned int)lo | ((unsigned int)hi << 16);
    }
    warp_barrier();
}

// cp.async: a copy may land any time between its issue and the wait for its
// group, and the emulator takes the two extremes. Late (the default): the
// copy is only recorded and lands when the issuing thread waits, so a kernel
// that reads the tile before cp_async_wait (or, for other threads' copies,
// before the __syncthreads after it) reads stale or NaN-poisoned shared
// memory. Early: it lands at once, so a copy issued into a buffer that other
// warps are still reading (a missing barrier before the next tile) corrupts
// what they read.
inline void cp_async(void* dst, const void* src, bool valid) {
    if (((uintptr_t)dst & 15) != 0 || (valid && ((uintptr_t)src & 15) != 0))
        fail("cp.async: a 16-byte copy with an address that is not 16-byte aligned");
    if (M->land_early) {  // the other legal extreme: the copy lands the moment it is issued
        if (valid) memcpy(dst, src, 16);
        else memset(dst, 0, 16);
        return;
    }
    cur->uncommitted.push_back({dst, src, valid});
}
inline void cp_async_commit_group() {
    cur->groups.push_back(std::move(cur->uncommitted));
    cur->uncommitted.clear();
}
inline void cp_async_wait_group(int pending) {
    while ((int)cur->groups.size() > pending) {
        for (const AsyncCopy& c : cur->groups.front()) {
            if (c.valid) memcpy(c.dst, c.src, 16);
            else memset(c.dst, 0, 16);
        }
        cur->groups.erase(cur->groups.begin());
    }
}

}  // namespace minitx_emu

// One fiber's life: run the kernel body, report done, hand control back for good.
inline void minitx_emu::fiber_trampoline() {
    M->invoke(M->args);
    cur->state = DONE;
    Context dead;
    switch_context(dead, M->scheduler);
    __builtin_unreachable();
}

namespace minitx_emu {

// Run every fiber of the current block until all are parked or done, then
// open whichever barrier is complete. Returns false (with M->error) on a
// deadlock or a fault.
// Run the lanes of warp w that are READY (in order, or reversed) until each
// parks or finishes. Returns false on a fault.
inline bool run_warp_lanes(int w, bool reverse) {
    const int n = (int)M->threads.size();
    const int first = 32 * w, last = min(n, 32 * (w + 1));
    for (int k = 0; k < last - first; ++k) {
        Thread& t = M->threads[reverse ? last - 1 - k : first + k];
        if (t.state != READY) continue;
        cur = &t;
        switch_context(M->scheduler, t.ctx);
        cur = nullptr;
        if (M->failed) return false;
    }
    return true;
}

// Warp w after its lanes ran: 1 if all its live lanes wait at a warp-wide
// operation (released: READY again), 0 if none does, -1 (with M->error) if
// only some do.
inline int release_warp(int w) {
    const int n = (int)M->threads.size();
    const int first = 32 * w, last = min(n, 32 * (w + 1));
    int live = 0, at_warp = 0;
    for (int l = first; l < last; ++l) {
        live += M->threads[l].state != DONE;
        at_warp += M->threads[l].state == AT_WARP_BARRIER;
    }
    if (at_warp == 0) return 0;
    if (at_warp != live || live != last - first) {
        snprintf(M->error, sizeof M->error,
                 "warp %d of block (%u, %u, %u): %d of its %d lanes are at a warp-wide operation, "
                 "the others have exited or wait at __syncthreads (divergent shuffle or mma)",
                 w, M->block_idx.x, M->block_idx.y, M->block_idx.z, at_warp, last - first);
        M->failed = true;
        return -1;
    }
    for (int l = first; l < last; ++l) M->threads[l].state = READY;
    return 1;
}

// Run one block. Between two __syncthreads the warps are scheduled one of
// two ways, both legal on a GPU:
//   greedy    each warp runs all the way to the next __syncthreads (or its
//             end) before the next warp starts: warps drift as far apart
//             as a barrier allows, so a warp that writes what another has
//             not read yet (or reads what it has not written yet) shows;
//   lockstep  all warps advance one warp-wide operation at a time.
// With `reverse`, warps (and lanes inside a warp) go last to first.
inline bool run_block(bool reverse, bool lockstep) {
    const int n = (int)M->threads.size();
    const int warps = (n + 31) / 32;
    for (int i = 0; i < n; ++i) {
        Thread& t = M->threads[i];
        t.state = READY;
        t.uncommitted.clear();
        t.groups.clear();
        make_fiber(t.ctx, M->stacks + (size_t)i * STACK_BYTES + GUARD_BYTES, STACK_BYTES - GUARD_BYTES);
    }
    if (M->dyn_smem_bytes) {  // NaN in every float slot: reading an unwritten word is visible
        for (size_t i = 0; i + 4 <= M->dyn_smem_bytes; i += 4) memcpy(M->dyn_smem + i, "\xff\xff\xff\x7f", 4);
    }
    for (;;) {
        bool released = false;
        for (int k = 0; k < warps; ++k) {
            const int w = reverse ? warps - 1 - k : k;
            for (;;) {
                if (!run_warp_lanes(w, reverse)) return false;
                if (lockstep) break;  // the others get a turn before this warp goes on
                const int r = release_warp(w);
                if (r < 0) return false;
                if (r == 0) break;  // at __syncthreads, or finished
            }
        }
        if (lockstep) {
            for (int w = 0; w < warps; ++w) {
                const int r = release_warp(w);
                if (r < 0) return false;
                released |= r > 0;
            }
            if (released) continue;
        }
        bool any_live = false;
        for (const Thread& t : M->threads) any_live |= t.state != DONE;
        if (!any_live) return true;
        // Every live thread waits at __syncthreads (threads that exited count as arrived).
        for (Thread& t : M->threads)
            if (t.state == AT_BLOCK_BARRIER) t.state = READY;
    }
}

inline void on_fault(int sig, siginfo_t* info, void*) {
    char what[160];
    if (sig == SIGILL)  // the alignment sanitizer's trap
        snprintf(what, sizeof what, "misaligned memory access (a vector load or store at an address its type's "
                                    "alignment does not divide; a fault on the GPU)");
    else
        snprintf(what, sizeof what, "memory fault at address 0x%llx", (unsigned long long)(uintptr_t)info->si_addr);
    fail(what);
    siglongjmp(M->escape, 1);
}

}  // namespace minitx_emu

#define threadIdx (minitx_emu::cur->tid)
#define blockIdx (minitx_emu::M->block_idx)
#define blockDim (minitx_emu::M->block)
#define gridDim (minitx_emu::M->grid)
#define __syncthreads() minitx_emu::syncthreads()
#define __syncwarp(...) minitx_emu::warp_barrier()

template <class T>
inline T __shfl_sync(unsigned int mask, T v, int src, int width = 32) {
    (void)width;
    return minitx_emu::exchange(mask, v, src);
}
template <class T>
inline T __shfl_xor_sync(unsigned int mask, T v, int lane_mask, int width = 32) {
    (void)width;
    return minitx_emu::exchange(mask, v, minitx_emu::cur->lane ^ lane_mask);
}
template <class T>
inline T __shfl_down_sync(unsigned int mask, T v, unsigned int delta, int width = 32) {
    (void)width;
    const int src = minitx_emu::cur->lane + (int)delta;
    return minitx_emu::exchange(mask, v, src < 32 ? src : minitx_emu::cur->lane);
}

// One block runs at a time on one OS thread, so a plain read-modify-write is atomic.
template <class T>
inline T atomicAdd(T* address, T value) {
    const T old = *address;
    *address = old + value;
    return old;
}

// The hardware-specific wrappers common.cuh leaves to the emulator.
inline unsigned int pack_bf16x2(float lo, float hi) {
    return minitx_emu::float_to_bf16(lo) | (minitx_emu::float_to_bf16(hi) << 16);
}
inline void mma_bf16_16816(float c[4], const unsigned int a[4], const unsigned int b[2]) {
    minitx_emu::mma_m16n8k16_bf16(c, a, b);
}
inline void ldmatrix_x4(unsigned int r[4], const void* smem_row) { minitx_emu::ldmatrix(r, smem_row, false); }
inline void ldmatrix_x4_trans(unsigned int r[4], const void* smem_row) { minitx_emu::ldmatrix(r, smem_row, true); }
inline void cp_async_16(void* smem, const void* gmem, bool valid) { minitx_emu::cp_async(smem, gmem, valid); }
inline void cp_async_commit() { minitx_emu::cp_async_commit_group(); }
template <int N>
inline void cp_async_wait() {
    minitx_emu::cp_async_wait_group(N);
}

// ---------------------------------------------------------------------------
// Kernel table: how emulator.py finds, checks and calls each template instance
// ---------------------------------------------------------------------------
namespace minitx_emu {

template <class F>
struct Signature;
template <class... P>
struct Signature<void (*)(P...)> {
    static constexpr int count = sizeof...(P);
    static inline const size_t sizes[sizeof...(P) + 1] = {sizeof(P)..., 0};
    template <auto F, size_t... I>
    static void call(void** a, std::index_sequence<I...>) {
        F(*static_cast<std::remove_cv_t<P>*>(a[I])...);
    }
};

template <auto F>
void invoke(void** args) {
    using S = Signature<decltype(F)>;
    S::template call<F>(args, std::make_index_sequence<S::count>{});
}

struct Entry {
    const char* name;  // the name expression launch.py uses, e.g. "softmax_v1_online<4>"
    void (*invoke)(void**);
    int param_count;
    const size_t* param_sizes;
};

// Run one kernel launch: every block of `grid`, each as block_threads fibers.
// `args` is what cuLaunchKernel takes: one pointer to each argument's value.
// `mode`: bit 0 runs blocks and threads in reverse order, bit 1 lands cp.async
// copies at issue, bit 2 schedules warps in lockstep instead of greedily. Returns 0, or 1 with a one-line reason in `err`.
constexpr int MODE_REVERSE = 1, MODE_CP_ASYNC_EARLY = 2, MODE_LOCKSTEP = 4;
inline int launch(const Entry& e, dim3 grid, dim3 block, void* dyn_smem, size_t dyn_smem_bytes, void** args,
                  int mode, char* err, size_t errlen) {
    const bool reverse = (mode & MODE_REVERSE) != 0;
    Machine m;
    M = &m;
    m.grid = grid;
    m.block = block;
    m.invoke = e.invoke;
    m.args = args;
    m.dyn_smem = static_cast<unsigned char*>(dyn_smem);
    m.dyn_smem_bytes = dyn_smem_bytes;
    m.land_early = (mode & MODE_CP_ASYNC_EARLY) != 0;
    m.error[0] = 0;
    const int n = (int)(block.x * block.y * block.z);
    m.threads.resize(n);
    for (int i = 0; i < n; ++i) {  // threadIdx.x varies fastest; warps are runs of 32 linear ids
        Thread& t = m.threads[i];
        t.linear = i;
        t.warp = i / 32;
        t.lane = i % 32;
        t.tid = {i % block.x, (i / block.x) % block.y, i / (block.x * block.y)};
    }
    m.mailbox.assign((size_t)((n + 31) / 32) * 32 * MAILBOX_WORDS, 0u);
    m.mma.assign((size_t)((n + 31) / 32), WarpMma{});
    m.stacks_bytes = (size_t)n * STACK_BYTES;
    void* st = mmap(nullptr, m.stacks_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (st == MAP_FAILED) {
        snprintf(err, errlen, "could not map %zu bytes of fiber stacks", m.stacks_bytes);
        M = nullptr;
        return 1;
    }
    m.stacks = static_cast<char*>(st);
    for (int i = 0; i < n; ++i) mprotect(m.stacks + (size_t)i * STACK_BYTES, GUARD_BYTES, PROT_NONE);

    // Faults (a guard page after a buffer, or a fiber's stack guard) come back here.
    std::vector<char> alt(64 * 1024);
    stack_t ss{}, old_ss{};
    ss.ss_sp = alt.data();
    ss.ss_size = alt.size();
    sigaltstack(&ss, &old_ss);
    struct sigaction sa{}, old_segv{}, old_bus{}, old_ill{};
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &old_segv);
    sigaction(SIGBUS, &sa, &old_bus);
    sigaction(SIGILL, &sa, &old_ill);
#if defined(__x86_64__)
    const unsigned int mxcsr = _mm_getcsr();
    _mm_setcsr(mxcsr | 0x8040);  // flush-to-zero and denormals-are-zero, as -ftz=true on the GPU
#endif
    int rc = 0;
    if (sigsetjmp(m.escape, 1) == 0) {
        const long long blocks = (long long)grid.x * grid.y * grid.z;
        for (long long b = 0; b < blocks && rc == 0; ++b) {
            const long long id = reverse ? blocks - 1 - b : b;
            m.block_idx = {(unsigned)(id % grid.x), (unsigned)((id / grid.x) % grid.y),
                           (unsigned)(id / ((long long)grid.x * grid.y))};
            if (!run_block(reverse, (mode & MODE_LOCKSTEP) != 0)) rc = 1;
        }
    } else {
        rc = 1;
    }
#if defined(__x86_64__)
    _mm_setcsr(mxcsr);
#endif
    sigaction(SIGSEGV, &old_segv, nullptr);
    sigaction(SIGBUS, &old_bus, nullptr);
    sigaction(SIGILL, &old_ill, nullptr);
    sigaltstack(&old_ss, nullptr);
    munmap(m.stacks, m.stacks_bytes);
    if (rc) snprintf(err, errlen, "%s", m.error[0] ? m.error : "kernel failed");
    M = nullptr;
    cur = nullptr;
    return rc;
}

#define MINITX_EMU_ENTRY(expr, ...)                                                          \
    minitx_emu::Entry {                                                                      \
        expr, &minitx_emu::invoke<&__VA_ARGS__>, minitx_emu::Signature<decltype(&__VA_ARGS__)>::count, \
            minitx_emu::Signature<decltype(&__VA_ARGS__)>::sizes                             \
    }

}  // namespace minitx_emu
