"""NumPy twins of the tiled GPU algorithms: the same loops, in the same order.

A CUDA kernel is hard to debug; its *algorithm* is not. Each function here
does what the matching kernel does, tile by tile (a block of threads becomes
a slice of an array), so the algorithm is proven on a CPU against the plain
maths before any GPU runs it. The tests compare these twins with the naive
formulas and with ``minitx.nn.attention``; the GPU tests then compare the
kernels with the same NumPy maths.

Mask semantics (shared with the kernels and with ``minitx.nn.attention``):
``causal`` lets query i see keys j <= i + (Tk - Tq); ``keep [B, Tk]`` is True
for real tokens. A masked score is the most negative float, so a query with
no visible key gets uniform weights over all Tk keys and a logsumexp of -inf.
"""
from __future__ import annotations

import math

import numpy as np

MASKED = np.finfo(np.float32).min


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


# --------------------------------------------------------------------------
# matmul, as the blocktiled kernels compute it
# --------------------------------------------------------------------------
def tiled_matmul(a, b, BM: int = 64, BN: int = 64, BK: int = 8):
    """``a [M, K] @ b [K, N]``, one (BM x BN) output tile at a time, BK-deep slices of K.

    Tiles past the matrix edge are zero-padded, exactly as the kernels load zeros.
    """
    M, K = a.shape
    K2, N = b.shape
    if K != K2:
        raise ValueError(f"tiled_matmul: inner sizes differ, got {K} and {K2}")
    c = np.zeros((M, N), dtype=np.result_type(a, b))
    for bm in range(0, M, BM):  # blockIdx.y
        for bn in range(0, N, BN):  # blockIdx.x
            acc = np.zeros((BM, BN), dtype=c.dtype)  # registers of the whole block
            for k0 in range(0, K, BK):
                As = np.zeros((BM, BK), dtype=c.dtype)  # shared memory, zero outside the matrix
                Bs = np.zeros((BK, BN), dtype=c.dtype)
                a_tile = a[bm:bm + BM, k0:k0 + BK]
                b_tile = b[k0:k0 + BK, bn:bn + BN]
                As[:a_tile.shape[0], :a_tile.shape[1]] = a_tile
                Bs[:b_tile.shape[0], :b_tile.shape[1]] = b_tile
                for kk in range(BK):  # the inner loop: an outer product per k
                    acc += np.outer(As[:, kk], Bs[kk, :])
            rows, cols = min(BM, M - bm), min(BN, N - bn)
            c[bm:bm + rows, bn:bn + cols] = acc[:rows, :cols]  # guarded write
    return c


# --------------------------------------------------------------------------
# online softmax
# --------------------------------------------------------------------------
def online_softmax(x, lanes: int = 32):
    """Softmax over the last axis with single-pass statistics, the way one warp does it.

    Lane l sees elements l, l + lanes, ...; each keeps a running (m, s) with
    s = sum exp(x - m); then the lanes' pairs are merged by
    ``s = s1 exp(m1 - m) + s2 exp(m2 - m)``, ``m = max(m1, m2)``.
    """
    x = np.asarray(x)
    C = x.shape[-1]
    rows = x.reshape(-1, C)
    m = np.full((rows.shape[0], lanes), -np.inf, dtype=rows.dtype)
    s = np.zeros_like(m)
    for j0 in range(0, C, lanes):  # one step of every lane's loop
        chunk = rows[:, j0:j0 + lanes]
        w = chunk.shape[1]
        m_new = np.maximum(m[:, :w], chunk)
        with np.errstate(invalid="ignore", over="ignore"):
            scale = np.where(np.isneginf(m[:, :w]), 0.0, np.exp(m[:, :w] - m_new))
        s[:, :w] = s[:, :w] * scale + np.exp(chunk - m_new)
        m[:, :w] = m_new
    # butterfly merge across lanes
    M = m.max(axis=1, keepdims=True)
    with np.errstate(invalid="ignore"):
        S = np.where(np.isneginf(m), 0.0, s * np.exp(m - M)).sum(axis=1, keepdims=True)
    y = np.exp(rows - M) / S
    return y.reshape(x.shape).astype(x.dtype, copy=False)


# --------------------------------------------------------------------------
# attention: masks, the naive formula, and the flash twins
# --------------------------------------------------------------------------
def allowed_mask(Tq: int, Tk: int, causal: bool, keep=None):
    """bool, broadcastable to ``[B, H, Tq, Tk]``: True where query i may see key j."""
    allowed = np.ones((Tq, Tk), dtype=bool)
    if causal:
        allowed &= np.arange(Tk)[None, :] <= np.arange(Tq)[:, None] + (Tk - Tq)
    if keep is not None:
        allowed = allowed[None, None] & np.asarray(keep, dtype=bool)[:, None, None, :]
    return allowed


def naive_attention(q, k, v, causal: bool = False, keep=None):
    """The textbook formula, materialising the full ``[.., Tq, Tk]`` matrix. Returns ``(out, lse)``."""
    Tq, hs = q.shape[-2:]
    Tk = k.shape[-2]
    s = (q @ np.swapaxes(k, -1, -2)) * (1.0 / math.sqrt(hs))
    allowed = np.broadcast_to(allowed_mask(Tq, Tk, causal, keep), s.shape)
    s = np.where(allowed, s, MASKED)
    m = s.max(axis=-1, keepdims=True)
    e = np.exp(s - m)
    l = e.sum(axis=-1, keepdims=True)
    lse = np.where(allowed.any(axis=-1), (m + np.log(l))[..., 0], -np.inf)
    return (e / l) @ v, lse


def flash_attention_forward(q, k, v, causal: bool = False, keep=None, block_q: int = 32, block_k: int = 32):
    """The flash forward pass, tile by tile: ``q [.., Tq, hs], k, v [.., Tk, hs] -> (out, lse)``.

    For each tile of ``block_q`` queries (a thread block), loop over tiles of
    ``block_k`` keys, keeping per query a running max ``m``, running sum
    ``l = sum exp(s - m)`` and unnormalised output ``acc``. When the max
    grows, everything accumulated so far is rescaled by ``exp(m_old - m_new)``.
    Only ``O(block_q * block_k)`` scores exist at a time; ``lse = m + log l``
    is all the backward pass needs.
    """
    Tq, hs = q.shape[-2:]
    Tk = k.shape[-2]
    scale = 1.0 / math.sqrt(hs)
    lead = q.shape[:-2]
    out = np.empty(q.shape, dtype=q.dtype)
    lse = np.empty(lead + (Tq,), dtype=q.dtype)
    allowed_full = allowed_mask(Tq, Tk, causal, keep)  # (Tq, Tk) or (B, 1, Tq, Tk)
    skip_ok = causal and keep is None and Tk >= Tq  # no query can be fully masked: skip tiles above the diagonal
    for q0 in range(0, Tq, block_q):
        q1 = min(Tq, q0 + block_q)
        qt = q[..., q0:q1, :]  # (.., br, hs)
        m = np.full(lead + (q1 - q0, 1), -np.inf, dtype=q.dtype)
        l = np.zeros_like(m)
        acc = np.zeros(lead + (q1 - q0, hs), dtype=q.dtype)
        kend = min(Tk, q1 - 1 + (Tk - Tq) + 1) if skip_ok else Tk
        for k0 in range(0, kend, block_k):
            k1 = min(Tk, k0 + block_k)
            s = (qt @ np.swapaxes(k[..., k0:k1, :], -1, -2)) * scale  # (.., br, bc)
            s = np.where(allowed_full[..., q0:q1, k0:k1], s, MASKED)
            m_new = np.maximum(m, s.max(axis=-1, keepdims=True))
            alpha = np.exp(m - m_new)  # 0 on the first tile (m = -inf)
            p = np.exp(s - m_new)
            l = l * alpha + p.sum(axis=-1, keepdims=True)
            acc = acc * alpha + p @ v[..., k0:k1, :]
            m = m_new
        out[..., q0:q1, :] = acc / l
        lse[..., q0:q1] = np.where(m[..., 0] == MASKED, -np.inf, (m + np.log(l))[..., 0])
    return out, lse


def flash_attention_backward(dout, q, k, v, out, lse, causal: bool = False, keep=None,
                             block_q: int = 32, block_k: int = 32):
    """The flash backward pass: returns ``(dq, dk, dv)``, recomputing P tile by tile.

        D   = rowsum(dO * O)                   (= rowsum(dP * P), one number per query)
        P   = exp(S - lse)                     recomputed, never stored
        dV += P^T dO       dP = dO V^T         dS = P * (dP - D)
        dK += dS^T Q scale                     dQ += dS K scale
    Blocks own key tiles (dK, dV stay local); dQ is summed over key tiles (the
    kernel does this with atomicAdd). A query with lse = -inf (every key
    masked) has uniform P = 1/Tk and dS = 0, as in ``minitx.nn.attention``.
    """
    Tq, hs = q.shape[-2:]
    Tk = k.shape[-2]
    scale = 1.0 / math.sqrt(hs)
    lead = q.shape[:-2]
    delta = (dout * out).sum(axis=-1)  # (.., Tq)
    dq = np.zeros_like(q)
    dk = np.empty_like(k)
    dv = np.empty_like(v)
    allowed_full = allowed_mask(Tq, Tk, causal, keep)
    if allowed_full.ndim == 4:
        allowed_full = np.broadcast_to(allowed_full, lead + (Tq, Tk))
    skip_ok = causal and keep is None and Tk >= Tq
    for k0 in range(0, Tk, block_k):  # one thread block per key tile
        k1 = min(Tk, k0 + block_k)
        kt, vt = k[..., k0:k1, :], v[..., k0:k1, :]
        dkt = np.zeros_like(kt)
        dvt = np.zeros_like(vt)
        qbegin = max(0, (k0 - (Tk - Tq)) // block_q * block_q) if skip_ok else 0
        for q0 in range(qbegin, Tq, block_q):
            q1 = min(Tq, q0 + block_q)
            qt, dot = q[..., q0:q1, :], dout[..., q0:q1, :]
            L = lse[..., q0:q1, None]  # (.., br, 1)
            s = (qt @ np.swapaxes(kt, -1, -2)) * scale  # (.., br, bc)
            allowed = allowed_full[..., q0:q1, k0:k1]
            fully_masked = np.isneginf(L)
            with np.errstate(invalid="ignore", over="ignore"):
                p = np.where(allowed, np.exp(s - np.where(fully_masked, 0.0, L)), 0.0)
            p = np.where(fully_masked, 1.0 / Tk, p).astype(q.dtype)
            dvt += np.swapaxes(p, -1, -2) @ dot
            dp = dot @ np.swapaxes(vt, -1, -2)  # (.., br, bc)
            ds = np.where(allowed & ~fully_masked, p * (dp - delta[..., q0:q1, None]), 0.0).astype(q.dtype)
            dkt += np.swapaxes(ds, -1, -2) @ qt * scale
            dq[..., q0:q1, :] += ds @ kt * scale
        dk[..., k0:k1, :] = dkt
        dv[..., k0:k1, :] = dvt
    return dq, dk, dv


# --------------------------------------------------------------------------
# bf16 tensor-core flash forward (kernels/attention_tc.cu)
# --------------------------------------------------------------------------
def bf16_round(x):
    """float32 values rounded to the nearest bfloat16 (ties to even), returned as float32.

    bfloat16 keeps the top 16 bits of a float32; this is what
    ``pack_bf16x2`` (``cvt.rn.bf16x2.f32``) does to each weight of P.
    """
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounding = np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))
    return ((u + rounding) & np.uint32(0xFFFF0000)).view(np.float32)


LOG2E = np.float32(1.4426950408889634)
LN2 = np.float32(0.6931471805599453)


def flash_attention_forward_bf16(q, k, v, causal: bool = False, keep=None, block_q: int = 64, block_k: int = 64):
    """The tensor-core flash forward, as ``attention_v3_tc_fwd`` computes it: ``-> (out, lse)`` float32.

    ``q [.., Tq, hs], k, v [.., Tk, hs]`` must already hold bf16 values
    (e.g. ``bf16_round(x)``): the kernel reads bf16. Everything else is
    float32, as in the kernel's registers:

        S = Q K^T                      (tensor cores: bf16 products, fp32 sums)
        s = S * scale * log2(e)        (base 2: the kernel calls exp2f)
        m_new = max(m, rowmax(s));  alpha = 2^(m - m_new);  p = 2^(s - m_new)
        l = l * alpha + rowsum(p)      (fp32 weights)
        O = O * alpha + bf16(p) V      (weights rounded to bf16 for the mma)
        out = O / l,  lse = (m + log2 l) * ln 2

    ``block_q`` is the block's query tile (16 * warps; each warp's 16 rows
    behave alike since rows are independent), ``block_k`` the key tile (BC).
    Keys past Tk score -inf (weight exactly 0); masked keys score MASKED, so
    a row with every key masked is uniform over all Tk keys with lse = -inf.
    With a causal mask and no padding mask (Tk >= Tq) the tiles above the
    diagonal are skipped, which changes nothing: their weights are exactly 0.
    """
    q, k, v = (np.asarray(t, dtype=np.float32) for t in (q, k, v))
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not np.array_equal(bf16_round(t), t):
            raise ValueError(f"flash_attention_forward_bf16 {name}: got float32 values that are not bf16, "
                             "expected inputs rounded with bf16_round")
    Tq, hs = q.shape[-2:]
    Tk = k.shape[-2]
    scale_log2 = np.float32(1.0 / math.sqrt(hs)) * LOG2E
    lead = q.shape[:-2]
    out = np.empty(q.shape, dtype=np.float32)
    lse = np.empty(lead + (Tq,), dtype=np.float32)
    allowed_full = allowed_mask(Tq, Tk, causal, keep)
    skip_ok = causal and keep is None and Tk >= Tq
    with np.errstate(over="ignore", invalid="ignore"):
        for q0 in range(0, Tq, block_q):  # one thread block
            q1 = min(Tq, q0 + block_q)
            qt = q[..., q0:q1, :]
            m = np.full(lead + (q1 - q0, 1), -np.inf, dtype=np.float32)
            l = np.zeros_like(m)
            acc = np.zeros(lead + (q1 - q0, hs), dtype=np.float32)
            kend = min(Tk, q1 - 1 + (Tk - Tq) + 1) if skip_ok else Tk
            for k0 in range(0, kend, block_k):
                k1 = min(Tk, k0 + block_k)
                s = (qt @ np.swapaxes(k[..., k0:k1, :], -1, -2)) * scale_log2  # (.., br, bc), base 2
                s = np.where(allowed_full[..., q0:q1, k0:k1], s, MASKED).astype(np.float32)
                m_new = np.maximum(m, s.max(axis=-1, keepdims=True))
                alpha = np.exp2(m - m_new)  # 0 on the first tile (m = -inf)
                p = np.exp2(s - m_new)
                l = l * alpha + p.sum(axis=-1, keepdims=True, dtype=np.float32)
                acc = acc * alpha + bf16_round(p) @ v[..., k0:k1, :]
                m = m_new
            out[..., q0:q1, :] = acc / l
            lse[..., q0:q1] = np.where(m[..., 0] == MASKED, -np.inf, (m[..., 0] + np.log2(l[..., 0])) * LN2)
    return out, lse


def flash_attention_backward_bf16(dout, q, k, v, out, lse, causal: bool = False, keep=None,
                                  block_q: int = 64, block_k: int = 64):
    """The tensor-core flash backward, as ``attention_v3_tc_bwd`` computes it: ``-> (dq, dk, dv)`` float32.

    ``dout, q, k, v`` hold bf16 values (the kernel reads bf16), ``out`` and
    ``lse`` are the forward's float32 results. The loop of
    :func:`flash_attention_backward` (blocks own ``block_k`` keys, loop over
    ``block_q`` queries), in float32, with P and dS rounded to bf16 before
    they enter a product (the mma operands):

        P   = exp(S scale - lse)            dP = dO V^T        dS = P (dP - D)
        dV += bf16(P)^T dO     dK += bf16(dS)^T Q scale     dQ += bf16(dS) K scale
    """
    dout, q, k, v, out, lse = (np.asarray(t, dtype=np.float32) for t in (dout, q, k, v, out, lse))
    for name, t in (("dout", dout), ("q", q), ("k", k), ("v", v)):
        if not np.array_equal(bf16_round(t), t):
            raise ValueError(f"flash_attention_backward_bf16 {name}: got float32 values that are not bf16, "
                             "expected inputs rounded with bf16_round")
    Tq, hs = q.shape[-2:]
    Tk = k.shape[-2]
    scale = np.float32(1.0 / math.sqrt(hs))
    lead = q.shape[:-2]
    delta = (dout * out).sum(axis=-1, dtype=np.float32)  # attention_bwd_delta
    dq = np.zeros_like(q)
    dk = np.empty_like(k)
    dv = np.empty_like(v)
    allowed_full = np.broadcast_to(allowed_mask(Tq, Tk, causal, keep), lead + (Tq, Tk))
    skip_ok = causal and keep is None and Tk >= Tq
    for k0 in range(0, Tk, block_k):  # one thread block per key tile
        k1 = min(Tk, k0 + block_k)
        kt, vt = k[..., k0:k1, :], v[..., k0:k1, :]
        dkt = np.zeros_like(kt)
        dvt = np.zeros_like(vt)
        qbegin = max(0, (k0 - (Tk - Tq)) // block_q * block_q) if skip_ok else 0
        for q0 in range(qbegin, Tq, block_q):
            q1 = min(Tq, q0 + block_q)
            qt, dot = q[..., q0:q1, :], dout[..., q0:q1, :]
            L = lse[..., q0:q1, None]
            s = qt @ np.swapaxes(kt, -1, -2)  # (.., br, bc)
            allowed = allowed_full[..., q0:q1, k0:k1]
            fully_masked = np.isneginf(L)
            with np.errstate(invalid="ignore", over="ignore"):
                p = np.where(allowed, np.exp2(s * (scale * LOG2E) - np.where(fully_masked, 0, L) * LOG2E), 0)
            p = np.where(fully_masked, np.float32(1.0) / np.float32(Tk), p).astype(np.float32)
            dp = dot @ np.swapaxes(vt, -1, -2)
            ds = np.where(allowed & ~fully_masked, p * (dp - delta[..., q0:q1, None]), 0).astype(np.float32)
            p16, ds16 = bf16_round(p), bf16_round(ds)
            dvt += np.swapaxes(p16, -1, -2) @ dot
            dkt += np.swapaxes(ds16, -1, -2) @ qt
            dq[..., q0:q1, :] += (ds16 @ kt) * scale
        dk[..., k0:k1, :] = dkt * scale
        dv[..., k0:k1, :] = dvt
    return dq, dk, dv
