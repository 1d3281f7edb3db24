"""CPU gate for minitx's CUDA kernels: everything that can be checked without a GPU.

* every kernel source compiles for sm_80 and sm_90 with NVRTC, with the same
  options CuPy uses at run time, and ptxas reports zero register spills;
  the static shared memory ptxas reports equals launch.py's arithmetic, and
  every variant fits the block's register and shared-memory budgets;
* the launch arithmetic (grids cover the problem, block sizes, dynamic shared
  memory, argument dtypes) is right for hypothesis-drawn shapes;
* the loader inlines headers so the compiled text changes with them;
* the NumPy twins of the tiled algorithms (tiled matmul, online softmax,
  flash-attention forward and backward) agree with the naive formulas and
  with ``minitx.nn.attention`` over odd shapes, causal and padding masks.

The compile tests need ``cupy-cuda13x`` and ``cuda-toolkit[nvrtc]==13.0.*``
(no GPU); without them they skip and say so.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minitx.cuda import launch, loader
from minitx.cuda import reference as R
from minitx.nn.attention import scaled_dot_product_attention_backward, scaled_dot_product_attention_forward

ARCHS = (80, 90)
REGISTERS_PER_SM = 65536
MAX_THREADS = 1024


# --------------------------------------------------------------------------
# Compile gate (NVRTC, no GPU)
# --------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("source", launch.SOURCES)
def test_kernel_compiles_without_spills(source, arch, nvrtc):
    result = loader.nvrtc_compile(source, arch)  # cached per process: the occupancy test reuses it
    assert len(result.cubin) > 0
    problems = []
    for v in [v for v in launch.VARIANTS if v.source == source]:
        res = result.for_expression(v.name_expression)
        if res.spill_stores or res.spill_loads:
            problems.append(f"{v.name_expression}: {res.spill_stores} B spill stores, {res.spill_loads} B spill loads")
        if res.smem != v.static_smem:
            problems.append(f"{v.name_expression}: ptxas says {res.smem} B static smem, launch.py says {v.static_smem}")
        if res.registers * v.threads > REGISTERS_PER_SM:
            problems.append(f"{v.name_expression}: {res.registers} registers x {v.threads} threads > {REGISTERS_PER_SM}")
        if v.threads > MAX_THREADS:
            problems.append(f"{v.name_expression}: {v.threads} threads per block")
        if res.smem + launch.max_dynamic_smem(v) > launch.MAX_SMEM_OPTIN[arch]:
            problems.append(f"{v.name_expression}: shared memory over the sm_{arch} limit")
    assert not problems, "\n".join(problems)


def test_runtime_options_are_what_cupy_adds():
    opts = loader.runtime_options(90)
    assert opts[: len(loader.OPTIONS)] == loader.OPTIONS
    assert "-arch=sm_90" in opts and "-ftz=true" in opts and "--device-as-default-execution-space" in opts
    assert not any("fast-math" in o or "fmad=false" in o for o in opts)


def test_ptxas_log_parser():
    log = """ptxas info    : Compiling entry function '_Z3fooILi4EEvPf' for 'sm_90'
ptxas info    : Function properties for _Z3fooILi4EEvPf
ptxas         .     16 bytes stack frame, 12 bytes spill stores, 8 bytes spill loads
ptxas info    : Used 255 registers, used 1 barriers, 8192 bytes smem, 400 bytes cmem[0]
ptxas info    : Compiling entry function 'bar' for 'sm_90'
ptxas info    : Function properties for bar
ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 8 registers, used 0 barriers, 360 bytes cmem[0]
"""
    res = loader.parse_ptxas_log(log)
    assert res["_Z3fooILi4EEvPf"] == loader.Resources(255, 16, 12, 8, 8192)
    assert res["bar"] == loader.Resources(8, 0, 0, 0, 0)


# --------------------------------------------------------------------------
# Loader
# --------------------------------------------------------------------------
def test_sources_inline_their_headers():
    for source in launch.SOURCES:
        text = loader.read_source(source)
        assert not loader._INCLUDE.search(text), f"{source}: a local include was not inlined"
        assert "warp_sum" in text  # from common.cuh


def test_header_edit_changes_the_compiled_text(tmp_path):
    (tmp_path / "h.cuh").write_text("#pragma once\n#define X 1\n")
    (tmp_path / "k.cu").write_text('#include "h.cuh"\n#include "h.cuh"\n__global__ void k() {}\n')
    before = loader.read_source("k.cu", tmp_path)
    assert before.count("#define X 1") == 1, "a header is inlined once"
    (tmp_path / "h.cuh").write_text("#pragma once\n#define X 2\n")
    after = loader.read_source("k.cu", tmp_path)
    assert before != after and "#define X 2" in after


def test_missing_source_names_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="MINITX_KERNEL_DIR"):
        loader.read_source("nope.cu", tmp_path)


# --------------------------------------------------------------------------
# Launch arithmetic
# --------------------------------------------------------------------------
def test_variant_registry():
    exprs = [v.name_expression for v in launch.VARIANTS]
    assert len(exprs) == len(set(exprs)), "duplicate template instances"
    for version in launch.MATMUL_VERSIONS:
        assert launch.variants("matmul", version)
    for v in launch.VARIANTS:
        assert v.template in launch.SIGNATURES
        assert 32 <= v.threads <= MAX_THREADS and v.threads % 32 == 0, v.name_expression
        assert v.template in (loader.KERNEL_DIR / v.source).read_text(encoding="utf-8")
    with pytest.raises(ValueError, match="no such variant"):
        launch.variants("matmul", "v99")


dims = st.one_of(st.sampled_from([1, 2, 3, 7, 31, 32, 33, 63, 64, 65, 127, 128, 129, 4096]), st.integers(1, 5000))


@given(M=dims, N=dims, K=dims, batch=st.integers(1, 300))
def test_matmul_grid_covers_the_output(M, N, K, batch):
    for v in launch.variants("matmul") + launch.variants("matmul_bf16"):
        cfg = launch.matmul_launch(v, M, N, K, batch)
        p = v.p
        if v.template == "matmul_v1_naive":
            rows_tile = cols_tile = p["BS"]
            gr, gc = cfg.grid[0], cfg.grid[1]
        else:
            rows_tile, cols_tile = (p["BS"], p["BS"]) if "BS" in p else (p["BM"], p["BN"])
            gr, gc = cfg.grid[1], cfg.grid[0]
        assert gr * rows_tile >= M > (gr - 1) * rows_tile
        assert gc * cols_tile >= N > (gc - 1) * cols_tile
        assert cfg.grid[2] == batch
        assert cfg.block[0] * cfg.block[1] * cfg.block[2] == v.threads
        if v.template == "matmul_bf16_mma_v2":  # two stages of As [BM][BK + 8], Bs [BK][BN + 8] bf16
            assert v.static_smem == 0 and cfg.shared_mem == launch.max_dynamic_smem(v) == \
                2 * (p["BM"] * (p["BK"] + 8) + p["BK"] * (p["BN"] + 8)) * 2
        else:
            assert cfg.shared_mem == 0


def test_matmul_rejects_empty_and_huge():
    v = launch.default_variant("matmul", "v3_smem")
    with pytest.raises(ValueError, match="M: got 0"):
        launch.matmul_launch(v, 0, 4, 4)
    with pytest.raises(ValueError, match="grid"):
        launch.matmul_launch(v, 32 * 70000, 4, 4)


@given(rows=st.integers(1, 10**6))
def test_row_kernels_cover_every_row(rows):
    for op in ("softmax", "layernorm_fwd", "attention_delta"):
        for v in launch.variants(op):
            cfg = launch.rows_launch(v, rows)
            w = v.p["WARPS"]
            assert cfg.grid[0] * w >= rows > (cfg.grid[0] - 1) * w
            assert cfg.block == (w * 32, 1, 1)


@given(rows=st.integers(1, 10**6), D=st.integers(1, 8192), sm=st.sampled_from([108, 132]))
def test_layernorm_backward_partition(rows, D, sm):
    for v in launch.variants("layernorm_bwd"):
        cfg, per_block = launch.layernorm_bwd_launch(v, rows, D, sm)
        assert cfg.grid[0] * per_block >= rows > (cfg.grid[0] - 1) * per_block  # every row, no empty block
        assert cfg.grid[0] <= 4 * sm
        assert cfg.shared_mem == 2 * D * 4


@given(BH=st.integers(1, 2000), Tq=st.integers(1, 9000), Tk=st.integers(1, 9000), hs=st.integers(1, 128))
def test_attention_launches(BH, Tq, Tk, hs):
    D = launch.head_dim_bucket(hs)
    assert hs <= D and (D == 32 or hs > D // 2)
    for v in launch.variants("attention_fwd", "v2_flash"):
        if v.p["D"] < hs:
            with pytest.raises(ValueError, match="head size"):
                launch.attention_fwd_launch(v, BH, Tq, Tk, hs)
            continue
        cfg = launch.attention_fwd_launch(v, BH, Tq, Tk, hs)
        assert cfg.grid[0] * v.p["BR"] >= Tq > (cfg.grid[0] - 1) * v.p["BR"] and cfg.grid[1] == BH
        assert cfg.shared_mem == (v.p["BR"] + 2 * v.p["BC"]) * (v.p["D"] + 1) * 4  # independent of T: O(1) per block
        assert cfg.shared_mem <= launch.max_dynamic_smem(v)
    for v in launch.variants("attention_bwd"):
        if v.p["D"] < hs:
            continue
        cfg = launch.attention_bwd_launch(v, BH, Tq, Tk, hs)
        assert cfg.grid[0] * v.p["BC"] >= Tk > (cfg.grid[0] - 1) * v.p["BC"]
        assert cfg.shared_mem == launch.max_dynamic_smem(v)
    naive = launch.default_variant("attention_fwd", "v1_naive")
    assert launch.attention_fwd_launch(naive, BH, Tq, Tk, hs).shared_mem == (hs + Tk) * 4  # O(T) per row


def test_head_size_limit():
    with pytest.raises(ValueError, match="at most 128"):
        launch.head_dim_bucket(129)
    assert launch.default_variant("attention_fwd", "v2_flash", head_size=65).p["D"] == 128


def test_pack_args_types():
    args = launch.pack_args("softmax_v1_online", np.zeros(3), np.zeros(3), 7, 3)
    assert isinstance(args[2], np.int32) and isinstance(args[3], np.int32)
    args = launch.pack_args("matmul_v3_smem", 1, 2, 3, np.zeros(1), 4, 1, 2**40, np.zeros(1), 4, 1, 0, np.zeros(1), 4, 0, 7)
    assert [type(a).__name__ for a in args if not isinstance(a, np.ndarray)] == \
        ["int32"] * 3 + ["int32", "int32", "int64"] * 2 + ["int32", "int64", "int32"]
    args = launch.pack_args("attention_v2_flash_fwd", *([np.zeros(1)] * 5), 1, 2, 3, 4, 0.125, 1, 0, None)
    assert isinstance(args[9], np.float32) and args[-1] == np.uint64(0)
    with pytest.raises(ValueError, match="fits i32"):
        launch.pack_args("softmax_v1_online", np.zeros(1), np.zeros(1), 2**31, 3)
    with pytest.raises(ValueError, match="expected 4"):
        launch.pack_args("softmax_v1_online", np.zeros(1))
    with pytest.raises(TypeError, match="pointer"):
        launch.pack_args("softmax_v1_online", 3, np.zeros(1), 1, 1)


def test_vec_flags():
    from minitx.cuda.ops import matmul_vec_flags  # noqa: PLC0415 - imports no CuPy at module level

    assert matmul_vec_flags(1, 64, 0, 256, 1, 128, 0, 512, 128, 0, 1024, 1) == 7
    assert matmul_vec_flags(64, 1, 0, 256, 1, 128, 0, 512, 128, 0, 1024, 1) == 6  # A transposed: no float4 along k
    assert matmul_vec_flags(1, 63, 0, 256, 1, 128, 0, 512, 127, 0, 1024, 1) == 2  # odd row strides
    assert matmul_vec_flags(1, 64, 6, 256, 1, 128, 0, 512, 128, 0, 1024, 2) == 6  # misaligned batch stride


def test_bf16_rounding():
    from minitx.cuda.ops import from_bf16_bits, to_bf16_bits  # noqa: PLC0415

    x = np.array([1.0, -2.5, 3.140625, 1 + 2**-8, 1 + 3 * 2**-8, 1e30], dtype=np.float32)
    back = from_bf16_bits(to_bf16_bits(x))
    assert back[0] == 1.0 and back[1] == -2.5 and back[2] == 3.140625
    assert back[3] == 1.0  # a tie rounds to even (down)
    assert back[4] == 1 + 4 * 2**-8  # a tie rounds to even (up)
    rng = np.random.default_rng(0)
    y = rng.standard_normal(1000).astype(np.float32)
    assert np.max(np.abs(from_bf16_bits(to_bf16_bits(y)) - y) / np.abs(y)) <= 2**-8


# --------------------------------------------------------------------------
# NumPy twins
# --------------------------------------------------------------------------
odd = st.one_of(st.sampled_from([1, 2, 3, 5, 7, 13, 31, 33, 37]), st.integers(1, 70))


@given(M=odd, N=odd, K=odd, tiles=st.sampled_from([(16, 16, 8), (64, 32, 8), (8, 64, 16), (128, 128, 8)]),
       seed=st.integers(0, 2**16))
def test_tiled_matmul_twin(M, N, K, tiles, seed):
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal((M, K)), rng.standard_normal((K, N))
    np.testing.assert_allclose(R.tiled_matmul(a, b, *tiles), a @ b, rtol=1e-12, atol=1e-12)


@given(rows=st.integers(1, 5), C=st.integers(1, 300), big=st.booleans(), seed=st.integers(0, 2**16))
def test_online_softmax_twin(rows, C, big, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, C)) * (100.0 if big else 1.0)
    x[0, : C // 2] = R.MASKED  # masked scores, as attention passes them
    e = np.exp(x - x.max(-1, keepdims=True))
    np.testing.assert_allclose(R.online_softmax(x), e / e.sum(-1, keepdims=True), rtol=1e-12, atol=1e-300)
    allmasked = np.full((1, C), R.MASKED)
    np.testing.assert_allclose(R.online_softmax(allmasked), np.full((1, C), 1.0 / C))


@st.composite
def attention_case(draw):
    B, H = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    Tq = draw(odd)
    Tk = draw(st.one_of(st.just(Tq), odd))
    hs = draw(st.sampled_from([1, 3, 8, 17, 32]))
    causal, padded = draw(st.booleans()), draw(st.booleans())
    blocks = draw(st.sampled_from([(8, 8), (16, 32), (32, 16), (4, 64)]))
    return B, H, Tq, Tk, hs, causal, padded, blocks, draw(st.integers(0, 2**16))


@given(case=attention_case())
def test_flash_twins_match_minitx_attention(case):
    B, H, Tq, Tk, hs, causal, padded, (bq, bk), seed = case
    rng = np.random.default_rng(seed)
    q, k, v = (rng.standard_normal((B, H, T, hs)) for T in (Tq, Tk, Tk))
    keep = None
    if padded:
        keep = rng.random((B, Tk)) > 0.3
        keep[0, :] = False  # one sequence entirely padding: uniform weights, lse = -inf
    allowed = np.broadcast_to(R.allowed_mask(Tq, Tk, causal, keep), (B, H, Tq, Tk))
    out_ref, _, cache = scaled_dot_product_attention_forward(q, k, v, mask=allowed)
    out_naive, lse_naive = R.naive_attention(q, k, v, causal, keep)
    out, lse = R.flash_attention_forward(q, k, v, causal, keep, block_q=bq, block_k=bk)
    np.testing.assert_allclose(out, out_ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(out_naive, out_ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(np.isneginf(lse), ~allowed.any(-1))
    np.testing.assert_allclose(np.where(np.isinf(lse), 0, lse), np.where(np.isinf(lse_naive), 0, lse_naive), rtol=1e-12)
    dout = rng.standard_normal(out.shape)
    grads_ref = scaled_dot_product_attention_backward(dout, cache)
    grads = R.flash_attention_backward(dout, q, k, v, out, lse, causal, keep, block_q=bq, block_k=bk)
    for name, g, g_ref in zip(("dq", "dk", "dv"), grads, grads_ref):
        np.testing.assert_allclose(g, g_ref, rtol=1e-9, atol=1e-11, err_msg=name)


def test_flash_twin_memory_is_per_tile():
    """The forward never builds a Tq x Tk array: peak temporary is one (block_q x block_k) score tile."""
    rng = np.random.default_rng(1)
    q, k, v = (rng.standard_normal((1, 1, 300, 8)) for _ in range(3))
    out, lse = R.flash_attention_forward(q, k, v, causal=True, block_q=16, block_k=16)
    np.testing.assert_allclose(out, R.naive_attention(q, k, v, causal=True)[0], rtol=1e-10, atol=1e-12)


# --------------------------------------------------------------------------
# Tensor-core (bf16) flash forward: launch, wrapper, NumPy twin
# --------------------------------------------------------------------------
TC_VARIANTS = launch.variants("attention_tc_fwd")  # v3_tc and v4_tc_pipelined


@given(BH=st.integers(1, 2000), Tq=st.integers(1, 9000), Tk=st.integers(1, 9000), hs=st.integers(1, 128))
def test_attention_tc_launches(BH, Tq, Tk, hs):
    for v in TC_VARIANTS:
        if v.p["D"] < hs:
            with pytest.raises(ValueError, match="head size"):
                launch.attention_tc_fwd_launch(v, BH, Tq, Tk, hs)
            continue
        cfg = launch.attention_tc_fwd_launch(v, BH, Tq, Tk, hs)
        rows = 16 * v.p["WARPS"]  # one warp per 16 query rows
        assert cfg.grid[0] * rows >= Tq > (cfg.grid[0] - 1) * rows and cfg.grid[1] == BH
        assert cfg.block == (v.threads, 1, 1)
        if v.version == "v3_tc":  # static shared memory only
            assert cfg.shared_mem == 0 and v.static_smem <= launch.DEFAULT_SMEM_LIMIT
        else:  # v4: two stages of K and V tiles [BC][D + 8] bf16, dynamic, independent of the shape
            assert v.static_smem == 0 and cfg.shared_mem == 2 * 2 * v.p["BC"] * (v.p["D"] + 8) * 2
            assert cfg.shared_mem == launch.max_dynamic_smem(v)
    for version in launch.versions("attention_tc_fwd"):
        assert launch.default_variant("attention_tc_fwd", version, head_size=hs).p["D"] == launch.head_dim_bucket(hs)


def test_attention_tc_registry():
    assert launch.versions("attention_tc_fwd") == ["v3_tc", "v4_tc_pipelined"]
    for version in launch.versions("attention_tc_fwd"):
        assert {v.p["D"] for v in launch.variants("attention_tc_fwd", version)} == set(launch.HEAD_SIZES)
    for v in TC_VARIANTS:
        assert v.p["BC"] % 16 == 0 and v.p["D"] % 16 == 0, v.name_expression  # whole m16n8k16 steps
        assert v.threads == 32 * v.p["WARPS"]
        if v.version == "v4_tc_pipelined":  # sQ [16 WARPS][D + 8] overlays stage 1 (2 BC rows)
            assert 16 * v.p["WARPS"] <= 2 * v.p["BC"], v.name_expression
    with pytest.raises(ValueError, match="Tk: got 0"):
        launch.attention_tc_fwd_launch(TC_VARIANTS[0], 1, 5, 0, 8)


class _RecordingRuntime:
    """A runtime on NumPy arrays that records launches instead of running them."""

    name, array_kind = "recording", "NumPy"
    xp = np

    def __init__(self):
        self.launches = []

    def ptr(self, x):
        return x.ctypes.data

    def sm_count(self):
        return 132

    def launch(self, v, cfg, args):
        self.launches.append((v, cfg, args))


def test_attention_forward_bf16_wrapper_packs_its_arguments():
    from minitx.cuda import ops  # noqa: PLC0415 - imports no CuPy at module level

    rng = np.random.default_rng(0)
    q = ops.to_bf16_bits(rng.standard_normal((2, 3, 5, 40)).astype(np.float32))
    k = ops.to_bf16_bits(rng.standard_normal((2, 3, 7, 40)).astype(np.float32))
    keep = np.ones((2, 7), dtype=bool)
    rt = _RecordingRuntime()
    with ops.use_runtime(rt):
        out, lse = ops.attention_forward_bf16(q, k, k, causal=True, keep=keep)
    assert out.shape == (2, 3, 5, 40) and out.dtype == np.float32 and lse.shape == (2, 3, 5)
    (v, cfg, args), = rt.launches
    assert v.template == "attention_v3_tc_fwd" and v.p["D"] == 64
    assert cfg.grid == (1, 6, 1)
    assert [a.dtype for a in args[:5]] == [np.uint16] * 3 + [np.float32] * 2
    assert tuple(int(a) for a in args[5:9]) == (3, 5, 7, 40)  # H, Tq, Tk, hs
    assert args[9] == np.float32(1 / np.sqrt(40)) and int(args[10]) == 1 and int(args[11]) == 2  # start = Tk - Tq
    assert args[12].dtype == np.uint8 and args[12].shape == (2, 7)


def test_attention_forward_bf16_picks_the_v4_rung():
    from minitx.cuda import ops  # noqa: PLC0415

    q = np.zeros((2, 3, 5, 40), dtype=np.uint16)
    k = np.zeros((2, 3, 70, 40), dtype=np.uint16)
    rt = _RecordingRuntime()
    with ops.use_runtime(rt):
        ops.attention_forward_bf16(q, k, k, causal=True, version="v4_tc_pipelined")
        v128 = launch.variants("attention_tc_fwd", "v4_tc_pipelined")[2]
        ops.attention_forward_bf16(q, k, k, variant=v128)  # a variant wins over the default version
    (v, cfg, args), (w, cfg_w, _) = rt.launches
    assert v.template == "attention_v4_tc_fwd" and v.p["D"] == 64 and cfg.grid == (1, 6, 1)
    assert cfg.shared_mem == 4 * v.p["BC"] * 72 * 2  # two stages of K and V, [BC][D + 8] bf16
    assert tuple(int(a) for a in args[5:9]) == (3, 5, 70, 40) and int(args[11]) == 65
    assert w is v128 and w.p["D"] == 128 and cfg_w.shared_mem == launch.max_dynamic_smem(v128)


def test_attention_forward_bf16_rejects_bad_inputs():
    from minitx.cuda import ops  # noqa: PLC0415

    bits = np.zeros((1, 2, 4, 8), dtype=np.uint16)
    with ops.use_runtime(_RecordingRuntime()):
        with pytest.raises(ValueError, match="attention q: got float32 .* expected a NumPy uint16"):
            ops.attention_forward_bf16(bits.astype(np.float32), bits, bits)
        with pytest.raises(ValueError, match="k_bits: got shape \\(1, 2, 0, 8\\)"):
            ops.attention_forward_bf16(bits, bits[:, :, :0], bits[:, :, :0])
        with pytest.raises(ValueError, match="at most 128"):
            wide = np.zeros((1, 1, 4, 129), dtype=np.uint16)
            ops.attention_forward_bf16(wide, wide, wide)
        with pytest.raises(ValueError, match="is for op 'attention_fwd'"):
            ops.attention_forward_bf16(bits, bits, bits, variant=launch.default_variant("attention_fwd"))
        with pytest.raises(ValueError, match="keep mask"):
            ops.attention_forward_bf16(bits, bits, bits, keep=np.ones((1, 5), dtype=bool))
        with pytest.raises(ValueError, match="version: got 'v9_tc', expected one of \\['v3_tc', 'v4_tc_pipelined'\\]"):
            ops.attention_forward_bf16(bits, bits, bits, version="v9_tc")


def test_bf16_round_matches_the_bit_conversion():
    from minitx.cuda import ops  # noqa: PLC0415

    rng = np.random.default_rng(3)
    x = np.concatenate([rng.standard_normal(1000).astype(np.float32), np.float32([0.0, -0.0, 1 + 2**-8, 2**-126])])
    np.testing.assert_array_equal(R.bf16_round(x), ops.from_bf16_bits(ops.to_bf16_bits(x)))


def bf16_attention_bound(q, k, v, causal, keep):
    """``(ref, bound)``: float64 attention of bf16 inputs and the largest error bf16 weights can cause.

    The kernel rounds each weight p_j to bf16 before ``P V`` (relative error
    at most 2^-8: bf16 has 8 significant bits) and normalises by the fp32 sum
    of the unrounded weights, so ``|out - ref| <= 2^-8 * sum_j p_j |v_j| / l``
    per element, plus fp32 rounding (about 1e-6 of the same sum; 2e-5 leaves
    room for long rows).
    """
    q, k, v = (t.astype(np.float64) for t in (q, k, v))
    ref, _ = R.naive_attention(q, k, v, causal, keep)
    weights_abs_v, _ = R.naive_attention(q, k, np.abs(v), causal, keep)  # sum_j p_j |v_j| / l
    return ref, (2**-8 + 2e-5) * weights_abs_v + 1e-6


@st.composite
def bf16_attention_case(draw):
    B, H = draw(st.integers(1, 3)), draw(st.integers(1, 2))
    T = st.one_of(st.sampled_from([1, 2, 15, 16, 17, 33, 63, 64, 65, 100]), st.integers(1, 150))
    Tq = draw(T)
    Tk = draw(st.one_of(st.just(Tq), T))
    hs = draw(st.sampled_from([1, 3, 8, 12, 16, 17, 40, 64, 100, 128]))
    blocks = draw(st.sampled_from([(64, 64), (64, 32), (128, 32), (16, 16)]))
    return B, H, Tq, Tk, hs, draw(st.booleans()), draw(st.booleans()), blocks, draw(st.integers(0, 2**16))


@given(case=bf16_attention_case())
def test_bf16_flash_twin_within_the_bf16_weight_bound(case):
    B, H, Tq, Tk, hs, causal, padded, (bq, bk), seed = case
    rng = np.random.default_rng(seed)
    q, k, v = (R.bf16_round(rng.standard_normal((B, H, T, hs)).astype(np.float32) * 2) for T in (Tq, Tk, Tk))
    keep = None
    if padded:
        keep = rng.random((B, Tk)) > 0.3
        keep[0, :] = False  # one sequence entirely padding: uniform weights, lse = -inf
    out, lse = R.flash_attention_forward_bf16(q, k, v, causal, keep, block_q=bq, block_k=bk)
    assert out.dtype == np.float32 and lse.dtype == np.float32
    ref, bound = bf16_attention_bound(q, k, v, causal, keep)
    assert np.all(np.abs(out - ref) <= bound)
    _, lse_ref = R.naive_attention(*(t.astype(np.float64) for t in (q, k, v)), causal, keep)
    np.testing.assert_array_equal(np.isneginf(lse), np.isneginf(lse_ref))
    finite = np.isfinite(lse_ref)
    np.testing.assert_allclose(lse[finite], lse_ref[finite], rtol=1e-5, atol=1e-5)
    if padded:  # the all-padding sequence: exactly the mean of V (bf16(1) == 1)
        np.testing.assert_allclose(out[0], np.broadcast_to(v[0].mean(axis=-2, keepdims=True), out[0].shape),
                                   rtol=1e-5, atol=1e-6)


def test_bf16_flash_twin_refuses_unrounded_inputs():
    x = np.full((1, 2, 4), 1 + 2**-10, dtype=np.float32)
    with pytest.raises(ValueError, match="not bf16"):
        R.flash_attention_forward_bf16(x, x, x)


TC_BWD_VARIANTS = launch.variants("attention_tc_bwd", "v3_tc")


@given(BH=st.integers(1, 2000), Tq=st.integers(1, 9000), Tk=st.integers(1, 9000), hs=st.integers(1, 128))
def test_attention_tc_backward_launches(BH, Tq, Tk, hs):
    for v in TC_BWD_VARIANTS:
        if v.p["D"] < hs:
            with pytest.raises(ValueError, match="head size"):
                launch.attention_tc_bwd_launch(v, BH, Tq, Tk, hs)
            continue
        cfg = launch.attention_tc_bwd_launch(v, BH, Tq, Tk, hs)
        keys = 16 * v.p["WARPS"]  # one warp per 16 keys
        assert cfg.grid[0] * keys >= Tk > (cfg.grid[0] - 1) * keys and cfg.grid[1] == BH
        assert cfg.shared_mem == launch.max_dynamic_smem(v)  # tiles only: independent of T


def _bf16_case(case):
    B, H, Tq, Tk, hs, causal, padded, _, seed = case
    rng = np.random.default_rng(seed)
    q, k, v, dout = (R.bf16_round(rng.standard_normal((B, H, T, hs)).astype(np.float32)) for T in (Tq, Tk, Tk, Tq))
    keep = None
    if padded:
        keep = rng.random((B, Tk)) > 0.3
        keep[0, :] = False
    return q, k, v, dout, causal, keep


def grad_rel_err(g, ref) -> float:
    """``||g - ref|| / ||ref||``, the denominator floored at 1e-3 per element (a gradient that is 0 in float64,
    e.g. dK with a single key, is ~1e-7 in float32)."""
    return float(np.linalg.norm(g - ref) / max(np.linalg.norm(ref), 1e-3 * np.sqrt(ref.size)))


@given(case=bf16_attention_case())
def test_bf16_flash_backward_twin_matches_float64(case):
    """bf16 P and dS (relative error <= 2^-8 each, random in sign) move the gradients by about 2^-8 / sqrt(3)
    in norm; measured up to ~3e-3 over random cases. Checked at 2e-2 against float64 minitx.nn.attention."""
    q, k, v, dout, causal, keep = _bf16_case(case)
    bq, bk = case[7]
    B, H, Tq, hs = q.shape
    Tk = k.shape[2]
    out, lse = R.flash_attention_forward_bf16(q, k, v, causal, keep, block_q=bq, block_k=bk)
    grads = R.flash_attention_backward_bf16(dout, q, k, v, out, lse, causal, keep, block_q=bq, block_k=bk)
    allowed = np.broadcast_to(R.allowed_mask(Tq, Tk, causal, keep), (B, H, Tq, Tk))
    _, _, cache = scaled_dot_product_attention_forward(*(t.astype(np.float64) for t in (q, k, v)), mask=allowed)
    refs = scaled_dot_product_attention_backward(dout.astype(np.float64), cache)
    for name, g, r in zip(("dq", "dk", "dv"), grads, refs):
        assert g.dtype == np.float32
        assert grad_rel_err(g, r) <= 2e-2, name


def test_attention_backward_bf16_wrapper_packs_its_arguments():
    from minitx.cuda import ops  # noqa: PLC0415

    rng = np.random.default_rng(0)
    q, k, do = (ops.to_bf16_bits(rng.standard_normal(s).astype(np.float32)) for s in ((2, 3, 5, 40), (2, 3, 70, 40),
                                                                                      (2, 3, 5, 40)))
    out, lse = np.zeros((2, 3, 5, 40), np.float32), np.zeros((2, 3, 5), np.float32)
    rt = _RecordingRuntime()
    with ops.use_runtime(rt):
        dq, dk, dv = ops.attention_backward_bf16(do, q, k, k, out, lse, causal=True)
        with pytest.raises(ValueError, match="attention_backward_bf16 lse: got float32 \\(2, 3\\)"):
            ops.attention_backward_bf16(do, q, k, k, out, lse[..., 0], causal=True)
    assert dq.shape == (2, 3, 5, 40) and dk.shape == dv.shape == (2, 3, 70, 40)
    (dv_, _, dargs), (v, cfg, args) = rt.launches
    assert dv_.template == "attention_bwd_delta" and dargs[0].dtype == np.float32  # dO as float32 for delta
    assert v.template == "attention_v3_tc_bwd" and v.p["D"] == 64 and cfg.grid == (2, 6, 1)
    assert [a.dtype for a in args[:9]] == [np.uint16] * 4 + [np.float32] * 5
    assert tuple(int(a) for a in args[9:13]) == (3, 5, 70, 40) and int(args[15]) == 65


def test_matmul_bf16_wrapper_picks_the_pipelined_rung():
    from minitx.cuda import ops  # noqa: PLC0415

    a, b = np.zeros((2, 37, 40), dtype=np.uint16), np.zeros((40, 24), dtype=np.uint16)
    rt = _RecordingRuntime()
    with ops.use_runtime(rt):
        c = ops.matmul_bf16(a, b, version="mma_bf16_v2_pipelined")
        with pytest.raises(ValueError, match="matmul_bf16 version: got 'v9', expected one of \\['mma_bf16', "):
            ops.matmul_bf16(a, b, version="v9")
    (v, cfg, args), = rt.launches
    assert c.shape == (2, 37, 24) and v.template == "matmul_bf16_mma_v2"
    assert cfg.shared_mem == launch.max_dynamic_smem(v) > 0 and cfg.grid[2] == 2
    assert tuple(int(x) for x in args[:3]) == (37, 24, 40) and int(args[10]) == 0  # B shared: batch stride 0
