"""Kernel property tests: every kernel variant against NumPy, over hypothesis-drawn shapes.

Each test runs on two devices:

* ``cuda``: the real GPU through CuPy. Marked ``gpu``: skipped (with the
  reason) without CuPy and a CUDA device.
* ``emulator``: the same kernel source on the CPU emulator
  (:mod:`minitx.cuda.emulator`), through the same wrappers in
  :mod:`minitx.cuda.ops`, over NumPy arrays. This runs in CI. Odd-numbered
  seeds run the threads and blocks in reverse order, so a kernel whose answer
  depends on thread order (a missing barrier) fails one of them; seeds with
  bit 1 set land ``cp.async`` copies at issue rather than at the wait (a copy
  into a buffer still being read fails one, a read before the wait the other);
  bit 2 interleaves warps at every warp-wide operation instead of running
  each to the next barrier on its own;
  reads and writes past the end of any buffer and unwritten outputs fail too.

References are computed in float64 on the CPU from the very float32 (or
bf16-rounded) inputs the kernel sees; the check is the relative error
``||out - ref|| / ||ref||`` (llm.c's ``tol + |ref| * eps`` in norm form):
  fp32 kernels      <= 2e-5   (fp32 rounding grows ~sqrt(K) * 6e-8)
  bf16 tensor cores <= 2e-5 against the bf16-rounded inputs (fp32 accumulation),
                    <= 2e-2 against the unrounded float32 inputs (relative to |a| @ |b|).
Inputs are standard normal (no subnormals: CuPy compiles with -ftz=true).
Outputs given through ``out=`` are poisoned with NaN first, so an unwritten
element fails.
"""
from __future__ import annotations

import contextlib
import os

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from minitx.cuda import launch
from minitx.cuda import reference as R
from minitx.nn.attention import scaled_dot_product_attention_backward, scaled_dot_product_attention_forward
from minitx.nn.norm import layernorm_backward, layernorm_forward
from minitx.nn.softmax import softmax_forward

FP32_TOL = 2e-5
# 12 examples per variant; HYPOTHESIS_PROFILE=thorough (a bug hunt) uses the profile's 300 instead
FEW = settings() if os.environ.get("HYPOTHESIS_PROFILE") == "thorough" else settings(max_examples=12)


class Device:
    """Where a test's kernels run: ``cuda`` (CuPy on a GPU) or ``emulator`` (NumPy on the CPU)."""

    def __init__(self, name: str):
        self.name = name
        self.emulated = name == "emulator"

    def __repr__(self):
        return self.name

    @contextlib.contextmanager
    def session(self, seed: int = 0):
        """The launches inside run on this device (the emulator alternates thread order by seed)."""
        if self.emulated:
            from minitx.cuda import emulator  # noqa: PLC0415

            # seed % 8 picks one of eight legal schedules: thread order x when cp.async copies land x how
            # warps interleave between barriers (emulator.schedule_for)
            with emulator.activate(**emulator.schedule_for(seed)):
                yield self
        else:
            yield self

    def put(self, x):
        if self.emulated:
            return np.array(x, copy=True)
        import cupy  # noqa: PLC0415

        return cupy.asarray(x)

    def get(self, x):
        return np.asarray(x) if self.emulated else x.get()

    def full(self, shape, value, dtype=np.float32):
        return np.full(shape, value, dtype) if self.emulated else self.put(np.full(shape, value, dtype))


def _emulator_missing():
    from minitx.cuda import emulator  # noqa: PLC0415

    return emulator.available()


DEVICES = [
    pytest.param(Device("cuda"), id="cuda", marks=pytest.mark.gpu),
    pytest.param(Device("emulator"), id="emulator",
                 marks=pytest.mark.skipif(_emulator_missing() is not None, reason=str(_emulator_missing()))),
]
on_devices = pytest.mark.parametrize("dev", DEVICES)
# The emulator's eight schedules, by seed % 8 (see Device.session); the GPU ignores them.
SCHEDULES = ["forward-late-greedy", "reverse-late-greedy", "forward-early-greedy", "reverse-early-greedy",
             "forward-late-lockstep", "reverse-late-lockstep", "forward-early-lockstep", "reverse-early-lockstep"]


def rel_err(out, ref, scale: float = 0.0) -> float:
    """``||out - ref|| / max(||ref||, scale)``: ``scale`` is the size the result would have
    without cancellation, for results that can be exactly zero (dQ of a query with one key)."""
    out = np.asarray(out, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    assert out.shape == ref.shape, (out.shape, ref.shape)
    assert np.all(np.isfinite(out)), "NaN/Inf in the kernel output (unwritten element?)"
    return float(np.linalg.norm(out - ref) / max(np.linalg.norm(ref), scale, 1e-30))


dim = st.one_of(st.sampled_from([1, 2, 3, 5, 7, 31, 33, 64, 127, 129, 131]), st.integers(1, 300))
MATMUL_VARIANTS = launch.variants("matmul")


@on_devices
@pytest.mark.parametrize("variant", MATMUL_VARIANTS, ids=[v.name_expression for v in MATMUL_VARIANTS])
@FEW
@given(M=dim, N=dim, K=dim, batch=st.sampled_from([0, 1, 3]), ta=st.booleans(), tb=st.booleans(),
       shared_b=st.booleans(), seed=st.integers(0, 2**16))
def test_matmul(dev, variant, M, N, K, batch, ta, tb, shared_b, seed):
    from minitx.cuda import ops  # noqa: PLC0415

    rng = np.random.default_rng(seed)
    lead = () if batch == 0 else (batch,)
    a = rng.standard_normal(lead + ((K, M) if ta else (M, K))).astype(np.float32)
    b_lead = () if shared_b else lead
    b = rng.standard_normal(b_lead + ((N, K) if tb else (K, N))).astype(np.float32)
    a64 = np.swapaxes(a, -1, -2) if ta else a
    b64 = np.swapaxes(b, -1, -2) if tb else b
    ref = a64.astype(np.float64) @ b64.astype(np.float64)
    with dev.session(seed):
        out = dev.full(ref.shape, np.nan)
        c = ops.matmul(dev.put(a), dev.put(b), variant=variant, trans_a=ta, trans_b=tb, out=out)
    assert rel_err(dev.get(c), ref) <= FP32_TOL


BF16_VARIANTS = launch.variants("matmul_bf16")


@on_devices
@pytest.mark.parametrize("variant", BF16_VARIANTS, ids=[v.name_expression for v in BF16_VARIANTS])
@FEW
@given(M=dim, N=dim, K=dim, batch=st.sampled_from([0, 2]), seed=st.integers(0, 2**16))
def test_matmul_bf16_tensor_cores(dev, variant, M, N, K, batch, seed):
    from minitx.cuda import ops  # noqa: PLC0415

    rng = np.random.default_rng(seed)
    lead = () if batch == 0 else (batch,)
    a = rng.standard_normal(lead + (M, K)).astype(np.float32)
    b = rng.standard_normal(lead + (K, N)).astype(np.float32)
    ab, bb = ops.to_bf16_bits(a), ops.to_bf16_bits(b)
    with dev.session(seed):
        c = dev.get(ops.matmul_bf16(dev.put(ab), dev.put(bb), variant=variant))
    exact = ops.from_bf16_bits(ab).astype(np.float64) @ ops.from_bf16_bits(bb).astype(np.float64)
    assert rel_err(c, exact) <= FP32_TOL
    # against the unrounded inputs the bf16 rounding (2^-9 per element) shows; measured against the size of
    # the terms |a| @ |b|, since a single dot product can cancel to far below them (M = N = 1, K = 235 did)
    terms = np.abs(a.astype(np.float64)) @ np.abs(b.astype(np.float64))
    assert rel_err(c, a.astype(np.float64) @ b.astype(np.float64), scale=float(np.linalg.norm(terms))) <= 2e-2


# The pipelined bf16 GEMM, case by case in both thread orders: both operands by 16-byte cp.async
# (row-major, K and N multiples of 8), one of them only, neither (odd sizes), transposed views
# (column stride != 1: the element-loop path), a 2-D B shared by every batch entry, K tails.
GEMM_V2_CASES = [  # M, N, K, batch (0: 2-D), a transposed, b transposed
    (1, 1, 1, 0, False, False), (37, 29, 53, 0, False, False), (64, 64, 64, 0, False, False),
    (130, 72, 200, 0, False, False), (33, 70, 40, 0, False, False), (129, 131, 24, 2, False, False),
    (40, 24, 96, 3, True, False), (17, 16, 48, 0, False, True), (100, 48, 33, 2, True, True),
]
GEMM_V2_VARIANTS = launch.variants("matmul_bf16", "mma_bf16_v2_pipelined")


@on_devices
@pytest.mark.parametrize("order", range(8), ids=SCHEDULES)
@pytest.mark.parametrize("case", GEMM_V2_CASES, ids=lambda c: "M{}N{}K{}b{}{}{}".format(
    *c[:4], "tA" if c[4] else "", "tB" if c[5] else ""))
def test_matmul_bf16_v2_paths(dev, case, order):
    """Every v2 variant to fp32 accuracy against float64 on the bf16 inputs, and, with the same
    tiles, bit for bit the result of the unpipelined rung on the emulator (same mma order)."""
    if not dev.emulated and order:
        pytest.skip("the eight schedules are the emulator's; the GPU runs each case once (schedule 0)")
    from minitx.cuda import ops  # noqa: PLC0415

    M, N, K, batch, ta, tb = case
    rng = np.random.default_rng(M * N + K)
    lead = () if batch == 0 else (batch,)
    ab = ops.to_bf16_bits(rng.standard_normal(lead + ((K, M) if ta else (M, K))).astype(np.float32))
    bb = ops.to_bf16_bits(rng.standard_normal((K, N) if batch == 3 else lead + ((N, K) if tb else (K, N)))
                          .astype(np.float32))
    exact = (ops.from_bf16_bits(np.swapaxes(ab, -1, -2) if ta else ab).astype(np.float64)
             @ ops.from_bf16_bits(np.swapaxes(bb, -1, -2) if tb else bb).astype(np.float64))
    a_d, b_d = dev.put(ab), dev.put(bb)
    a_in = a_d.swapaxes(-1, -2) if ta else a_d  # a strided view on the device: column stride != 1
    b_in = b_d.swapaxes(-1, -2) if tb else b_d
    for variant in GEMM_V2_VARIANTS:
        twin = [w for w in launch.variants("matmul_bf16", "mma_bf16") if w.params == variant.params]
        with dev.session(order):
            c = dev.get(ops.matmul_bf16(a_in, b_in, variant=variant))
            c1 = dev.get(ops.matmul_bf16(a_in, b_in, variant=twin[0])) if twin else None
        assert rel_err(c, exact) <= FP32_TOL, variant.name_expression
        if twin and dev.emulated:
            np.testing.assert_array_equal(c, c1, err_msg=variant.name_expression)


@on_devices
@pytest.mark.parametrize("variant", launch.variants("softmax"), ids=lambda v: v.name_expression)
@FEW
@given(rows=st.integers(1, 70), C=st.one_of(dim, st.integers(1000, 5000)), scale=st.sampled_from([1.0, 30.0]),
       seed=st.integers(0, 2**16))
def test_softmax(dev, variant, rows, C, scale, seed):
    from minitx.cuda import ops  # noqa: PLC0415

    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((rows, C)) * scale).astype(np.float32)
    x[0, : C // 2] = R.MASKED  # masked scores; and a fully masked row if C == 1
    with dev.session(seed):
        y = dev.get(ops.softmax(dev.put(x), variant=variant))
    ref, _ = softmax_forward(x.astype(np.float64))
    assert rel_err(y, ref) <= FP32_TOL


@on_devices
@pytest.mark.parametrize("fwd", launch.variants("layernorm_fwd"), ids=lambda v: v.name_expression)
@FEW
@given(rows=st.integers(1, 300), D=st.one_of(dim, st.sampled_from([768, 1024, 4096])), seed=st.integers(0, 2**16))
def test_layernorm_forward_backward(dev, fwd, rows, D, seed):
    from minitx.cuda import ops  # noqa: PLC0415

    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((rows, D)) * 3 + 1).astype(np.float32)
    gamma = rng.standard_normal(D).astype(np.float32)
    beta = rng.standard_normal(D).astype(np.float32)
    dy = rng.standard_normal((rows, D)).astype(np.float32)
    ref, cache = layernorm_forward(x.astype(np.float64), gamma.astype(np.float64), beta.astype(np.float64))
    rdx, rdg, rdb = layernorm_backward(dy.astype(np.float64), cache)
    rstd_terms = dy * gamma / np.sqrt(x.astype(np.float64).var(-1, keepdims=True) + 1e-5)
    with dev.session(seed):
        y, (mean, rstd) = ops.layernorm_forward(dev.put(x), dev.put(gamma), dev.put(beta), variant=fwd)
        assert rel_err(dev.get(y), ref) <= FP32_TOL
        for bwd in launch.variants("layernorm_bwd"):
            dx, dg, db = ops.layernorm_backward(dev.put(dy), dev.put(x), dev.put(gamma), mean, rstd, variant=bwd)
            # dx = rstd (g - mean(g) - xhat mean(g xhat)) cancels (for D = 2 to ~1e-3 of its terms): the
            # error is measured against the size of the terms, ||rstd * g||
            assert rel_err(dev.get(dx), rdx, scale=float(np.linalg.norm(rstd_terms))) <= 1e-4
            assert rel_err(dev.get(dg), rdg) <= FP32_TOL * 10
            assert rel_err(dev.get(db), rdb) <= FP32_TOL * 10


@st.composite
def attn_case(draw, max_t=200):
    B, H = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    T = st.one_of(st.sampled_from([1, 2, 17, 31, 32, 33, 64, 65, 127]), st.integers(1, max_t))
    Tq = draw(T)
    Tk = draw(st.one_of(st.just(Tq), T))
    hs = draw(st.sampled_from([1, 5, 16, 32, 33, 64, 80, 100, 128]))
    return B, H, Tq, Tk, hs, draw(st.booleans()), draw(st.booleans()), draw(st.integers(0, 2**16))


def _attn_inputs(case):
    B, H, Tq, Tk, hs, causal, padded, seed = case
    rng = np.random.default_rng(seed)
    q, k, v = (rng.standard_normal((B, H, T, hs)).astype(np.float32) for T in (Tq, Tk, Tk))
    keep = None
    if padded:
        keep = rng.random((B, Tk)) > 0.3
        keep[0, : Tk // 2] = False
        if B > 1:
            keep[1, :] = False  # a sequence that is all padding: uniform weights, lse = -inf
    return q, k, v, causal, keep, rng


FWD_VARIANTS = launch.variants("attention_fwd")


@on_devices
@pytest.mark.parametrize("variant", FWD_VARIANTS, ids=[v.name_expression for v in FWD_VARIANTS])
@FEW
@given(case=attn_case())
def test_attention_forward(dev, variant, case):
    from minitx.cuda import ops  # noqa: PLC0415

    q, k, v, causal, keep, _ = _attn_inputs(case)
    hs = q.shape[-1]
    assume("D" not in variant.p or hs <= variant.p["D"])  # this instance is for smaller heads
    with dev.session(case[-1]):
        o, lse = ops.attention_forward(dev.put(q), dev.put(k), dev.put(v), causal=causal,
                                       keep=None if keep is None else dev.put(keep), version=variant.version,
                                       variant=variant)
    allowed = np.broadcast_to(R.allowed_mask(q.shape[2], k.shape[2], causal, keep), o.shape[:-1] + (k.shape[2],))
    ref, _, _ = scaled_dot_product_attention_forward(*(t.astype(np.float64) for t in (q, k, v)), mask=allowed)
    _, lse_ref = R.naive_attention(*(t.astype(np.float64) for t in (q, k, v)), causal, keep)
    assert rel_err(dev.get(o), ref) <= FP32_TOL
    lse = dev.get(lse)
    np.testing.assert_array_equal(np.isneginf(lse), np.isneginf(lse_ref))
    finite = np.isfinite(lse_ref)
    np.testing.assert_allclose(lse[finite], lse_ref[finite], rtol=1e-5, atol=1e-5)


BWD_VARIANTS = launch.variants("attention_bwd")


@on_devices
@pytest.mark.parametrize("variant", BWD_VARIANTS, ids=[v.name_expression for v in BWD_VARIANTS])
@FEW
@given(case=attn_case())
def test_attention_backward(dev, variant, case):
    from minitx.cuda import ops  # noqa: PLC0415

    q, k, v, causal, keep, rng = _attn_inputs(case)
    assume(q.shape[-1] <= variant.p["D"])  # this instance is for smaller heads
    dout = rng.standard_normal(q.shape).astype(np.float32)
    with dev.session(case[-1]):
        qd, kd, vd = dev.put(q), dev.put(k), dev.put(v)
        keep_d = None if keep is None else dev.put(keep)
        o, lse = ops.attention_forward(qd, kd, vd, causal=causal, keep=keep_d)
        grads = ops.attention_backward(dev.put(dout), qd, kd, vd, o, lse, causal=causal, keep=keep_d, variant=variant)
    allowed = np.broadcast_to(R.allowed_mask(q.shape[2], k.shape[2], causal, keep), q.shape[:-1] + (k.shape[2],))
    _, _, cache = scaled_dot_product_attention_forward(*(t.astype(np.float64) for t in (q, k, v)), mask=allowed)
    refs = scaled_dot_product_attention_backward(dout.astype(np.float64), cache)
    for name, g, r in zip(("dq", "dk", "dv"), grads, refs):
        # recomputed P and atomics: a little looser than fp32 GEMM; dQ and dK are exactly 0 when every
        # query sees one key, so the error is measured against the size of dout there
        assert rel_err(dev.get(g), r, scale=float(np.linalg.norm(dout))) <= 1e-4, name


@on_devices
def test_attention_many_heads(dev):
    """Large batch x heads (grid.y) with the default variants."""
    from minitx.cuda import ops  # noqa: PLC0415

    rng = np.random.default_rng(0)
    shape = (8, 12, 37, 64) if dev.emulated else (64, 12, 37, 64)  # the emulator runs blocks one at a time
    q, k, v = (rng.standard_normal(shape).astype(np.float32) for _ in range(3))
    with dev.session():
        o, lse = ops.attention_forward(*(dev.put(t) for t in (q, k, v)), causal=True)
    ref, _ = R.naive_attention(*(t.astype(np.float64) for t in (q, k, v)), True)
    assert rel_err(dev.get(o), ref) <= FP32_TOL


@on_devices
def test_head_size_over_128_is_refused(dev):
    from minitx.cuda import ops  # noqa: PLC0415

    with dev.session():
        x = dev.put(np.zeros((1, 1, 4, 129), dtype=np.float32))
        with pytest.raises(ValueError, match="at most 128"):
            ops.attention_forward(x, x, x)


TC_VARIANTS = launch.variants("attention_tc_fwd")  # every rung: v3_tc, v4_tc_pipelined


def bf16_attention_reference(q, k, v, causal, keep):
    """float64 attention of bf16 inputs, and the elementwise error bound of the bf16 weights.

    The tensor-core kernel rounds each softmax weight to bf16 (relative error
    <= 2^-8) before ``P V`` and divides by the fp32 sum of the unrounded
    weights: ``|out - ref| <= 2^-8 * sum_j p_j |v_j| / l`` plus fp32 rounding.
    """
    q, k, v = (t.astype(np.float64) for t in (q, k, v))
    ref, lse = R.naive_attention(q, k, v, causal, keep)
    abs_v, _ = R.naive_attention(q, k, np.abs(v), causal, keep)
    return ref, lse, (2**-8 + 2e-5) * abs_v + 1e-6


@on_devices
@pytest.mark.parametrize("variant", TC_VARIANTS, ids=[v.name_expression for v in TC_VARIANTS])
@FEW
@given(case=attn_case())
def test_attention_tensor_cores_forward(dev, variant, case):
    """bf16 in: within the bf16-weight bound of float64 attention on the same bf16 inputs; lse to 1e-5."""
    from minitx.cuda import ops  # noqa: PLC0415

    q, k, v, causal, keep, _ = _attn_inputs(case)
    assume(q.shape[-1] <= variant.p["D"])  # this instance is for smaller heads
    bits = [ops.to_bf16_bits(t) for t in (q, k, v)]
    qb, kb, vb = (ops.from_bf16_bits(b) for b in bits)  # the values the kernel sees
    with dev.session(case[-1]):
        o, lse = ops.attention_forward_bf16(*(dev.put(b) for b in bits), causal=causal,
                                            keep=None if keep is None else dev.put(keep), variant=variant)
    ref, lse_ref, bound = bf16_attention_reference(qb, kb, vb, causal, keep)
    o = dev.get(o)
    assert np.all(np.isfinite(o)), "NaN/Inf in the kernel output (unwritten element?)"
    assert np.all(np.abs(o - ref) <= bound), f"max excess {np.max(np.abs(o - ref) - bound):.3g}"
    # in norm too, against the size of the weighted sums sum_j p_j |v_j| / l (= 256 * bound): one output
    # element can cancel far below them (Tq = 1, hs = 1, 165 keys did, in a 300-example run)
    assert rel_err(o, ref, scale=256 * float(np.linalg.norm(bound))) <= 1e-2
    twin, _ = R.flash_attention_forward_bf16(qb, kb, vb, causal, keep, block_q=16 * variant.p["WARPS"],
                                             block_k=variant.p["BC"])
    # Same algorithm; the two differ only where a weight's fp32 value sits so close to a bf16
    # rounding boundary that the kernel and NumPy round it different ways: both within the bound.
    assert np.all(np.abs(o - twin) <= 2 * bound)
    lse = dev.get(lse)
    np.testing.assert_array_equal(np.isneginf(lse), np.isneginf(lse_ref))
    finite = np.isfinite(lse_ref)
    np.testing.assert_allclose(lse[finite], lse_ref[finite], rtol=1e-5, atol=1e-5)


# The pipelined rung, case by case in both thread orders: every tail of its 16-byte async copies
# (hs % 8 == 0) and of its synchronous fallback (hs % 8 != 0), Tq != Tk both ways (start < 0: the
# first queries see no key), decoding (Tq = 1), padding with a fully padded sequence (B = 2).
V4_CASES = [  # B, H, Tq, Tk, hs, causal, padded
    (1, 1, 1, 1, 1, False, False), (1, 2, 1, 300, 5, True, False), (2, 1, 300, 1, 16, True, True),
    (2, 2, 77, 130, 40, True, False), (2, 1, 130, 77, 64, False, True), (1, 1, 255, 256, 100, True, False),
    (3, 1, 33, 300, 128, False, True), (2, 1, 200, 199, 40, True, True), (2, 1, 64, 64, 64, True, False),
    (1, 1, 129, 17, 5, False, True),
]
V4_VARIANTS = launch.variants("attention_tc_fwd", "v4_tc_pipelined")


@on_devices
@pytest.mark.parametrize("order", range(8), ids=SCHEDULES)  # the emulator's schedule (seed % 8)
@pytest.mark.parametrize("case", V4_CASES, ids=lambda c: "B{}H{}q{}k{}hs{}{}{}".format(
    *c[:5], "c" if c[5] else "", "p" if c[6] else ""))
def test_attention_tensor_cores_v4_odd_shapes(dev, case, order):
    """Every v4 variant that fits hs: within the bf16-weight bound of float64 attention; lse to 1e-5."""
    if not dev.emulated and order:
        pytest.skip("the eight schedules are the emulator's; the GPU runs each case once (schedule 0)")
    from minitx.cuda import ops  # noqa: PLC0415

    q, k, v, causal, keep, _ = _attn_inputs((*case, 1000 + order))
    bits = [ops.to_bf16_bits(t) for t in (q, k, v)]
    ref, lse_ref, bound = bf16_attention_reference(*(ops.from_bf16_bits(b) for b in bits), causal, keep)
    for variant in [w for w in V4_VARIANTS if w.p["D"] >= case[4]]:
        with dev.session(order):
            o, lse = ops.attention_forward_bf16(*(dev.put(b) for b in bits), causal=causal,
                                                keep=None if keep is None else dev.put(keep), variant=variant)
        o, lse = dev.get(o), dev.get(lse)
        assert np.all(np.isfinite(o)), f"{variant.name_expression}: NaN/Inf in the output"
        excess = np.max(np.abs(o - ref) - bound)
        assert excess <= 0, f"{variant.name_expression}: max excess {excess:.3g}"
        np.testing.assert_array_equal(np.isneginf(lse), np.isneginf(lse_ref), err_msg=variant.name_expression)
        finite = np.isfinite(lse_ref)
        np.testing.assert_allclose(lse[finite], lse_ref[finite], rtol=1e-5, atol=1e-5, err_msg=variant.name_expression)
        # v4 moves the data differently but runs v3's arithmetic in v3's order: with the same tiles
        # the emulator gives the same bits (the GPU's compiler may contract differently: the bound)
        twin = [w for w in launch.variants("attention_tc_fwd", "v3_tc") if w.params == variant.params]
        if twin:
            with dev.session(order):
                o3, lse3 = ops.attention_forward_bf16(*(dev.put(b) for b in bits), causal=causal,
                                                      keep=None if keep is None else dev.put(keep), variant=twin[0])
            o3, lse3 = dev.get(o3), dev.get(lse3)
            if dev.emulated:
                np.testing.assert_array_equal(o, o3, err_msg=variant.name_expression)
                np.testing.assert_array_equal(lse, lse3, err_msg=variant.name_expression)
            else:
                assert np.all(np.abs(o - o3) <= 2 * bound), variant.name_expression


@on_devices
@pytest.mark.parametrize("version", launch.versions("attention_tc_fwd"))
def test_attention_tensor_cores_long_and_many_heads(dev, version):
    """T = 1000 causal with each rung's default variants, and many heads (grid.y)."""
    from minitx.cuda import ops  # noqa: PLC0415

    rng = np.random.default_rng(0)
    shapes = ((1, 2, 300, 64), (8, 12, 37, 128)) if dev.emulated else ((1, 2, 1000, 64), (64, 12, 37, 128))
    for shape in shapes:
        bits = [ops.to_bf16_bits(rng.standard_normal(shape).astype(np.float32)) for _ in range(3)]
        with dev.session():
            o, _ = ops.attention_forward_bf16(*(dev.put(b) for b in bits), causal=True, version=version)
        ref, _, bound = bf16_attention_reference(*(ops.from_bf16_bits(b) for b in bits), True, None)
        assert np.all(np.abs(dev.get(o) - ref) <= bound)


TC_BWD_VARIANTS = launch.variants("attention_tc_bwd", "v3_tc")


@on_devices
@pytest.mark.parametrize("variant", TC_BWD_VARIANTS, ids=[v.name_expression for v in TC_BWD_VARIANTS])
@FEW
@given(case=attn_case())
def test_attention_tensor_cores_backward(dev, variant, case):
    """bf16 P and dS (as FlashAttention): gradients within 2e-2 of float64 in norm (~3e-3 seen on the emulator)."""
    from minitx.cuda import ops  # noqa: PLC0415

    q, k, v, causal, keep, rng = _attn_inputs(case)
    assume(q.shape[-1] <= variant.p["D"])  # this instance is for smaller heads
    dout = rng.standard_normal(q.shape).astype(np.float32)
    bits = [ops.to_bf16_bits(t) for t in (q, k, v, dout)]
    qb, kb, vb, dob = (ops.from_bf16_bits(b) for b in bits)
    with dev.session(case[-1]):
        dbits = [dev.put(b) for b in bits]
        keep_d = None if keep is None else dev.put(keep)
        o, lse = ops.attention_forward_bf16(*dbits[:3], causal=causal, keep=keep_d)
        grads = ops.attention_backward_bf16(dbits[3], *dbits[:3], o, lse, causal=causal, keep=keep_d,
                                            variant=variant)
    allowed = np.broadcast_to(R.allowed_mask(q.shape[2], k.shape[2], causal, keep), q.shape[:-1] + (k.shape[2],))
    _, _, cache = scaled_dot_product_attention_forward(*(t.astype(np.float64) for t in (qb, kb, vb)), mask=allowed)
    refs = scaled_dot_product_attention_backward(dob.astype(np.float64), cache)
    for name, g, r in zip(("dq", "dk", "dv"), grads, refs):
        # dQ and dK are exactly 0 when every query sees one key: there the error is measured against |dout|
        assert rel_err(dev.get(g), r, scale=float(np.linalg.norm(dob))) <= 2e-2, name
