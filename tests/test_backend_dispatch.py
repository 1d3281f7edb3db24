"""The hot-path dispatch, device moves and ``--device`` on a machine without a GPU (runs in CI).

* On NumPy arrays the layers never reach :mod:`minitx.cuda.ops`, whatever the
  backend says: a GPT training step, an evaluation and a KV-cache generation
  run with every kernel wrapper replaced by a tripwire, and give bit-identical
  results with the backend set to ``numpy`` or ``kernels``.
* The ``kernels`` branch of every layer is wired correctly: with the kernel
  wrappers replaced by their NumPy twins (:mod:`minitx.cuda.reference`, the same
  algorithms: online softmax, flash attention with logsumexp, LayerNorm with
  saved mean/rstd) and the dispatch forced on, a GPT step equals the NumPy step
  to float32 rounding, every hot op is reached, the documented fallbacks happen,
  and KV-cache decoding (causal offset ``Tk - Tq``) gives the same tokens.
  This proves the glue on a CPU.
* The same GPT step with the wrappers running the real CUDA kernels on the
  CPU emulator (:mod:`minitx.cuda.emulator`) equals the NumPy step, and greedy
  KV-cache decoding gives the same tokens; ``tests/test_gpu_training.py``
  repeats this on a GPU.
* ``Module.to`` moves every parameter, gradient and buffer exactly once.
* ``minitx train/generate --device cuda`` without a GPU: one line, exit 2.
"""
from __future__ import annotations

import types

import numpy as np
import pytest

from minitx import backend
from minitx import ops as kernel_ops
from minitx.cli import main
from minitx.cuda import ops as cuda_ops
from minitx.cuda import reference as R
from minitx.generate import generate
from minitx.models import GPT, GPTConfig
from minitx.nn import SinusoidalPositionalEncoding

KERNEL_WRAPPERS = ("matmul", "softmax", "layernorm_forward", "layernorm_backward", "attention_forward",
                   "attention_backward")
DISPATCHING_MODULES = ("minitx.nn.linear", "minitx.nn.softmax", "minitx.nn.norm", "minitx.nn.attention",
                       "minitx.models.gpt")
GPU = backend.check_cuda() is None


def small_config(**kw):
    base = dict(vocab_size=29, block_size=24, n_layer=2, n_head=4, n_embd=32, dropout=0.0)
    base.update(kw)
    return GPTConfig(**base)


def batch(config, B=3, seed=1):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, config.vocab_size, (B, config.block_size)),
            rng.integers(0, config.vocab_size, (B, config.block_size)))


def gpt_step(model, x, y):
    """Loss, logits and every gradient of one forward + backward."""
    model.zero_grad()
    loss, logits = model.loss(x, y)
    model.backward_loss()
    return loss, logits, {n: p.grad.copy() for n, p in model.named_parameters()}


def rel_err(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


# --------------------------------------------------------------------------
# NumPy arrays never reach the kernels
# --------------------------------------------------------------------------
@pytest.fixture
def tripwires(monkeypatch):
    """Every kernel wrapper raises if called."""
    def trip(name):
        def fn(*args, **kwargs):
            raise AssertionError(f"minitx.cuda.ops.{name} called on the NumPy path")
        return fn

    for name in KERNEL_WRAPPERS:
        monkeypatch.setattr(cuda_ops, name, trip(name))


@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_numpy_arrays_take_the_numpy_path_under_every_backend_name(monkeypatch, tripwires, dropout):
    config = small_config(dropout=dropout)
    x, y = batch(config)
    ref_model, model = GPT(config, seed=4), GPT(config, seed=4)
    ref = gpt_step(ref_model, x, y)
    ref_tokens = generate(ref_model, x[:1, :5], 8, temperature=0)
    # "kernels" selected (without importing CuPy, so this runs where CuPy is absent) but the arrays are NumPy
    monkeypatch.setattr(backend, "_current", "kernels")
    assert backend.kernels_enabled(x.astype(np.float32)) is False
    got = gpt_step(model, x, y)
    assert got[0] == ref[0]
    np.testing.assert_array_equal(got[1], ref[1])
    for name, g in ref[2].items():
        np.testing.assert_array_equal(got[2][name], g, err_msg=name)
    np.testing.assert_array_equal(generate(model, x[:1, :5], 8, temperature=0), ref_tokens)


def test_kernels_enabled_needs_both_the_backend_and_a_gpu_array(monkeypatch):
    a = np.ones(3, dtype=np.float32)
    assert not backend.kernels_enabled(a)
    fake_gpu_array = type("ndarray", (), {"__module__": "cupy._core.core"})()
    assert not backend.kernels_enabled(fake_gpu_array)  # backend numpy
    monkeypatch.setattr(backend, "_current", "cupy")
    assert not backend.kernels_enabled(fake_gpu_array)
    monkeypatch.setattr(backend, "_current", "kernels")
    assert backend.kernels_enabled(fake_gpu_array) and not backend.kernels_enabled(a)


# --------------------------------------------------------------------------
# The kernels branch, wired to the NumPy twins of the kernels
# --------------------------------------------------------------------------
def _twin_kernels(calls: dict):
    """A stand-in for :mod:`minitx.cuda.ops` computing each kernel's contract in NumPy."""
    def counted(name, fn):
        def wrapper(*args, **kwargs):
            calls[name] = calls.get(name, 0) + 1
            return fn(*args, **kwargs)
        return wrapper

    def matmul(a, b, *, version="v7_warptile", variant=None, trans_a=False, trans_b=False, out=None):
        a = np.swapaxes(a, -1, -2) if trans_a else a
        b = np.swapaxes(b, -1, -2) if trans_b else b
        assert a.dtype == b.dtype == np.float32 and a.ndim in (2, 3) and b.ndim in (2, 3)
        return (a @ b).astype(np.float32)

    def softmax(x, *, variant=None):
        return R.online_softmax(x).astype(np.float32)

    def layernorm_forward(x, gamma, beta, eps=1e-5, *, variant=None):
        mean = x.mean(axis=-1)
        rstd = 1.0 / np.sqrt(((x - mean[..., None]) ** 2).mean(axis=-1) + eps)
        return ((x - mean[..., None]) * rstd[..., None]) * gamma + beta, (mean, rstd)

    def layernorm_backward(dy, x, gamma, mean, rstd, *, variant=None):
        xhat = (x - mean[..., None]) * rstd[..., None]
        g = dy * gamma
        dx = rstd[..., None] * (g - g.mean(-1, keepdims=True) - xhat * (g * xhat).mean(-1, keepdims=True))
        D = x.shape[-1]
        return dx, (dy * xhat).reshape(-1, D).sum(0), dy.reshape(-1, D).sum(0)

    def attention_forward(q, k, v, *, causal=False, keep=None, version="v2_flash", variant=None):
        assert q.ndim == 4 and (keep is None or keep.shape == (q.shape[0], k.shape[2]))
        out, lse = R.flash_attention_forward(q, k, v, causal, keep)
        return out.astype(np.float32), lse.astype(np.float32)

    def attention_backward(dout, q, k, v, out, lse, *, causal=False, keep=None, variant=None):
        return tuple(g.astype(np.float32) for g in R.flash_attention_backward(dout, q, k, v, out, lse, causal, keep))

    fns = dict(matmul=matmul, softmax=softmax, layernorm_forward=layernorm_forward,
               layernorm_backward=layernorm_backward, attention_forward=attention_forward,
               attention_backward=attention_backward)
    return types.SimpleNamespace(**{n: counted(n, f) for n, f in fns.items()})


def _dispatch_as_configured():
    """Undo the forcing below for the rest of a test (monkeypatch still restores at teardown)."""
    import importlib

    for mod in DISPATCHING_MODULES:
        importlib.import_module(mod).kernels_enabled = backend.kernels_enabled


@pytest.fixture
def twin_kernels(monkeypatch):
    """Force the dispatch on for NumPy arrays and route it to the twins; yields the call counts."""
    import importlib

    calls: dict = {}
    monkeypatch.setattr(kernel_ops, "kernels", _twin_kernels(calls))
    for mod in DISPATCHING_MODULES:
        monkeypatch.setattr(importlib.import_module(mod), "kernels_enabled", lambda x: True)
    return calls


def test_every_hot_op_is_reached_and_a_gpt_step_matches_numpy(twin_kernels):
    config = small_config()
    x, y = batch(config)
    calls = twin_kernels
    got = gpt_step(GPT(config, seed=4), x, y)
    assert set(calls) == set(KERNEL_WRAPPERS) - {"softmax"}  # flash attention has its own softmax
    # 2 blocks x (qkv, proj, fc, ff.proj) + head, forward and backward (2 matmuls each)
    assert calls["matmul"] == (2 * 4 + 1) * 3
    assert calls["attention_forward"] == calls["attention_backward"] == 2
    assert calls["layernorm_forward"] == calls["layernorm_backward"] == 2 * 2 + 1
    _dispatch_as_configured()
    ref = gpt_step(GPT(config, seed=4), x, y)
    assert abs(got[0] - ref[0]) <= 1e-5 * abs(ref[0])
    assert rel_err(got[1], ref[1]) <= 1e-5
    for name, g in ref[2].items():
        assert rel_err(got[2][name], g) <= 1e-4, name


def test_documented_fallbacks(twin_kernels):
    calls = twin_kernels
    config = small_config(dropout=0.1)
    x, y = batch(config)
    model = GPT(config, seed=4)
    gpt_step(model, x, y)  # training with dropout on the attention weights: no flash attention
    assert "attention_forward" not in calls and calls["softmax"] == 2 and calls["matmul"] > 0
    calls.clear()
    model.eval()
    model.loss(x, y)  # dropout is off in eval: flash attention again
    assert calls["attention_forward"] == 2
    calls.clear()
    gpt_step(GPT(small_config(), seed=4, dtype=np.float64), x, y)  # float64 (gradient checks): no kernel at all
    assert calls == {}
    wide = np.ones((2, 7000), dtype=np.float32)  # LayerNorm backward's shared memory would exceed 48 KiB
    assert not kernel_ops.layernorm_supported(wide, wide[0], wide[0])
    q = np.ones((1, 1, 4, 129), dtype=np.float32)  # head size over 128
    assert not kernel_ops.attention_supported(q, q, q, dropout_active=False, attn_mask=None, return_weights=False)
    q = q[..., :64]
    assert kernel_ops.attention_supported(q, q, q, dropout_active=False, attn_mask=None, return_weights=False)
    assert not kernel_ops.attention_supported(q, q, q, dropout_active=False, attn_mask=None, return_weights=True)
    assert not kernel_ops.attention_supported(q, q, q, dropout_active=False, attn_mask=np.ones((4, 4), bool),
                                              return_weights=False)
    assert not kernel_ops.matmul_supported(np.ones((0, 3), np.float32), np.ones((3, 2), np.float32))


def test_kv_cache_decoding_on_the_kernels_branch(twin_kernels):
    config = small_config()
    model = GPT(config, seed=4)
    prompt = batch(config)[0][:2, :5]
    with_kernels = generate(model, prompt, 12, temperature=0)
    assert twin_kernels["attention_forward"] > 0
    _dispatch_as_configured()
    np.testing.assert_array_equal(with_kernels, generate(model, prompt, 12, temperature=0))


def test_cross_attention_with_padding_on_the_kernels_branch(twin_kernels):
    from minitx.nn import MultiHeadAttention

    rng = np.random.default_rng(0)
    mha = MultiHeadAttention(16, 2, cross=True, rng=np.random.default_rng(1))
    x = rng.standard_normal((2, 3, 16)).astype(np.float32)
    memory = rng.standard_normal((2, 5, 16)).astype(np.float32)
    pad = np.zeros((2, 5), dtype=bool)
    pad[1, 3:] = True
    dout = rng.standard_normal((2, 3, 16)).astype(np.float32)
    out = mha(x, memory, key_padding_mask=pad)
    grads = mha.backward(dout)
    assert twin_kernels["attention_forward"] == 1 and mha.attn_weights is None
    _dispatch_as_configured()
    ref = mha(x, memory, key_padding_mask=pad)
    ref_grads = mha.backward(dout)
    assert rel_err(out, ref) <= 1e-5
    for g, r in zip(grads, ref_grads):
        assert rel_err(g, r) <= 1e-5


# --------------------------------------------------------------------------
# The kernels branch, running the real CUDA kernels on the CPU emulator
# --------------------------------------------------------------------------
@pytest.fixture
def emulated_kernels(monkeypatch):
    """Force the dispatch on for NumPy arrays and route it to :mod:`minitx.cuda.ops` on the emulator."""
    import importlib

    from minitx.cuda import emulator

    if emulator.available() is not None:
        pytest.skip(emulator.available())
    calls: dict = {}

    def counted(name):
        fn = getattr(cuda_ops, name)

        def wrapper(*args, **kwargs):
            calls[name] = calls.get(name, 0) + 1
            return fn(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(kernel_ops, "kernels", types.SimpleNamespace(**{n: counted(n) for n in KERNEL_WRAPPERS}))
    for mod in DISPATCHING_MODULES:
        monkeypatch.setattr(importlib.import_module(mod), "kernels_enabled", lambda x: True)
    with emulator.activate() as runtime:
        yield calls, runtime


def _peaked_gpt(config):
    """A GPT whose attention is far from uniform (at init it nearly is, and dQ nearly vanishes)."""
    model = GPT(config, seed=4)
    for name, p in model.named_parameters():
        if name.endswith("attn.qkv.weight"):
            p.data *= 25.0
    return model


def test_gpt_step_on_emulated_kernels_matches_numpy(emulated_kernels):
    """The GPU training step, kernel for kernel, with the CUDA code executed on the CPU."""
    calls, runtime = emulated_kernels
    config = small_config()
    D = config.n_embd
    x, y = batch(config)
    got = gpt_step(_peaked_gpt(config), x, y)
    assert set(calls) == set(KERNEL_WRAPPERS) - {"softmax"}
    assert runtime.launches >= sum(calls.values())  # attention backward is two launches
    prompt = x[:2, :5]
    tokens = generate(_peaked_gpt(config), prompt, 6, temperature=0)  # KV cache: causal offset Tk - Tq
    _dispatch_as_configured()
    ref = gpt_step(_peaked_gpt(config), x, y)
    assert abs(got[0] - ref[0]) <= 1e-5 * abs(ref[0])
    assert rel_err(got[1], ref[1]) <= 1e-5
    for name, g in ref[2].items():
        # the q, k and v thirds of the fused projection separately: each has its own kernel path
        parts = [slice(0, D), slice(D, 2 * D), slice(2 * D, 3 * D)] if "attn.qkv" in name else [slice(None)]
        for part in parts:  # (the k bias's gradient is exactly 0: softmax ignores a per-row constant)
            err = np.linalg.norm(got[2][name][..., part] - g[..., part])
            assert err <= 1e-4 * max(np.linalg.norm(g[..., part]), 1e-2 * np.linalg.norm(g)), (name, part)
    np.testing.assert_array_equal(tokens, generate(_peaked_gpt(config), prompt, 6, temperature=0))


# --------------------------------------------------------------------------
# Device moves
# --------------------------------------------------------------------------
def test_module_to_cpu_round_trip_keeps_values_and_tying():
    model = GPT(small_config(), seed=2)
    before = {n: p.data.copy() for n, p in model.named_parameters()}
    assert model.to("cpu") is model
    for n, p in model.named_parameters():
        np.testing.assert_array_equal(p.data, before[n])
        assert isinstance(p.grad, np.ndarray) and p.grad.shape == p.data.shape
    with pytest.raises(ValueError, match=r"Module.to: got device 'tpu', expected one of \('cpu', 'cuda'\)"):
        model.to("tpu")


def test_module_to_moves_every_parameter_grad_and_buffer_once(monkeypatch):
    """With a fake device copy, every array goes through ``to_device`` exactly once."""
    import minitx.nn.module as module_mod

    class Moved(np.ndarray):
        """Marks an array that went through the (fake) device copy."""

    seen: list[int] = []

    def fake_to_device(a, device):
        assert device == "cuda"
        seen.append(id(a))
        return np.array(a).view(Moved)

    monkeypatch.setattr(module_mod, "to_device", fake_to_device)
    monkeypatch.setattr(module_mod, "check_cuda", lambda: None)
    model = GPT(small_config(), seed=2)
    pe = SinusoidalPositionalEncoding(8, max_len=10)
    model.extra = pe  # a module holding a buffer
    params = model.parameters()
    table = pe.table
    model.to("cuda")
    assert len(seen) == len(set(seen)) == 2 * len(params) + 1
    assert all(type(p.data) is Moved and type(p.grad) is Moved for p in params)
    assert type(pe.table) is Moved
    np.testing.assert_array_equal(pe.table, table)
    assert model.wte.weight is model.parameters()[0]  # still one tied matrix


@pytest.mark.skipif(GPU, reason="a GPU is visible here; the error path needs a machine without one")
def test_module_to_cuda_without_a_gpu_says_why():
    with pytest.raises(ValueError, match=r"Module.to\('cuda'\): no CUDA device visible \(.+\); expected an NVIDIA "
                                         r"GPU with CuPy installed: pip install minitx\[cuda\]"):
        GPT(small_config(), seed=0).to("cuda")


def test_check_cuda_without_cupy(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy -> ImportError
    assert backend.check_cuda() == "CuPy is not installed"


def test_to_device_names():
    a = np.arange(3.0)
    assert backend.to_device(a, "cpu") is a and backend.to_device(a, "numpy") is a
    with pytest.raises(ValueError, match="device: got 'gpu'"):
        backend.to_device(a, "gpu")
    assert backend.device_of(a) == "cpu"


def test_resume_across_thread_counts_without_dropout(tmp_path):
    """A checkpoint written with 2 CPU threads resumes with 1 (as on a GPU) when there is no dropout."""
    from minitx.train.config import TrainConfig
    from minitx.train.data import LMDataset
    from minitx.train.parallel import DataParallel
    from minitx.train.trainer import Trainer

    data = LMDataset.from_ids(np.random.default_rng(0).integers(0, 29, 3000), vocab_size=29, block_size=8)

    def trainer(threads, dropout):
        cfg = TrainConfig(batch_size=4, max_iters=4, eval_interval=2, eval_iters=1, warmup_iters=1)
        model = GPT(small_config(dropout=dropout), seed=1)
        model = DataParallel(model, threads=threads) if threads > 1 else model
        return Trainer(model, data, cfg, tmp_path / f"{dropout}", progress=False, log=None)

    for dropout in (0.0, 0.1):
        two = trainer(2, dropout)
        two.train(stop_at=2)
        two.model.close()
        one = trainer(1, dropout)
        if dropout:
            with pytest.raises(ValueError, match="trained by 2 replicas, expected 1"):
                one.resume(tmp_path / f"{dropout}" / "ckpt")
        else:
            one.resume(tmp_path / f"{dropout}" / "ckpt")
            assert one.iter == 2


# --------------------------------------------------------------------------
# --device on the command line
# --------------------------------------------------------------------------
@pytest.mark.skipif(GPU, reason="a GPU is visible here; the error path needs a machine without one")
@pytest.mark.parametrize("command", [["train", "--max-iters", "1"], ["generate", "--checkpoint", "nowhere"]])
def test_device_cuda_without_a_gpu_is_one_line_exit_2(tmp_path, capsys, command):
    argv = command + ["--device", "cuda"] + (["--out", str(tmp_path / "out")] if command[0] == "train" else [])
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    assert err.startswith(f"minitx {command[0]}: error: --device cuda: no CUDA device visible (")
    assert err.endswith("); expected an NVIDIA GPU with CuPy installed: pip install minitx[cuda]")
    assert not (tmp_path / "out").exists()  # refused before anything was read or written
    assert backend.get_backend() == "numpy"


def test_device_cuda_without_cupy_names_it(monkeypatch, tmp_path, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "cupy", None)
    assert main(["train", "--device", "cuda", "--out", str(tmp_path / "out")]) == 2
    assert "no CUDA device visible (CuPy is not installed)" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--backend", "kernels"], "--backend kernels: runs on the GPU, expected --device cuda with it"),
    (["--device", "cuda", "--backend", "numpy"], "--backend numpy: runs on the CPU, expected cupy or kernels"),
])
def test_backend_flag_must_match_the_device(tmp_path, capsys, argv, message):
    assert main(["train", "--out", str(tmp_path / "out"), *argv]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------
# The GPU code paths on a strict host stand-in for CuPy
# --------------------------------------------------------------------------
class _StandInArray(np.ndarray):
    """A NumPy array whose type claims to be CuPy's, and that (like CuPy) refuses plain host arrays.

    Lets the CPU run the ``cupy`` and ``kernels`` code paths: a token id, target
    or dropout mask that is not moved to the "device" raises TypeError, as it
    would on a GPU.
    """

    def get(self):
        return np.array(self.view(np.ndarray))

    def __float__(self):
        return float(self.view(np.ndarray))

    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
        if any(type(i) is np.ndarray and i.ndim > 0 for i in inputs):
            raise TypeError(f"stand-in cupy: a host array reached {ufunc.__name__}.{method}")
        inputs = [_host(i) for i in inputs]
        if out is not None:
            kwargs["out"] = tuple(_host(o) for o in out)
        result = getattr(ufunc, method)(*inputs, **kwargs)
        return (out[0] if len(out) == 1 else out) if out is not None else _device(result)


_StandInArray.__module__ = "cupy._core.core"  # what backend.array_module / kernels_enabled look at


def _host(a):
    return a.view(np.ndarray) if isinstance(a, _StandInArray) else a


def _device(r):
    if isinstance(r, tuple):
        return tuple(_device(x) for x in r)
    return r.view(_StandInArray) if type(r) is np.ndarray else r


def _stand_in_cupy():
    def function(name):
        f = getattr(np, name)
        if isinstance(f, (type, np.ufunc)) or not callable(f):
            return f

        def call(*args, **kwargs):
            for a in [*args, *kwargs.values()]:
                if type(a) is np.ndarray and a.ndim > 0:
                    raise TypeError(f"stand-in cupy: a host array passed to cupy.{name}")
            return _device(f(*[_host(a) for a in args], **{k: _host(v) for k, v in kwargs.items()}))
        return call

    def asarray(a, dtype=None):
        if isinstance(a, _StandInArray):
            return a if dtype is None or a.dtype == dtype else a.astype(dtype)
        return np.array(a, dtype=dtype).view(_StandInArray)  # the "host-to-device copy"

    mod = types.ModuleType("cupy")
    mod.ndarray, mod.asarray, mod.__getattr__ = _StandInArray, asarray, function
    mod.linalg = types.SimpleNamespace(norm=lambda a, *x, **k: _device(np.asarray(np.linalg.norm(_host(a), *x, **k))))
    return mod


@pytest.fixture
def stand_in_gpu(monkeypatch):
    """CuPy replaced by the stand-in; CUDA reported present; the backend restored afterwards."""
    import sys

    import minitx.nn.module as module_mod

    monkeypatch.setitem(sys.modules, "cupy", _stand_in_cupy())
    monkeypatch.setattr(backend, "check_cuda", lambda: None)
    monkeypatch.setattr(module_mod, "check_cuda", lambda: None)
    yield
    backend.set_backend("numpy")


@pytest.mark.parametrize("name", ["cupy", "kernels"])
@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_gpu_code_paths_on_the_stand_in(stand_in_gpu, monkeypatch, name, dropout):
    """Everything the GPU run needs moved is moved; the step and the greedy tokens follow the CPU."""
    calls: dict = {}
    twins = _twin_kernels(calls)

    def on_device(fn):  # the twins compute on the host; their results come back as "device" arrays
        return lambda *a, **k: _device(fn(*[_host(x) for x in a], **{n: _host(v) for n, v in k.items()}))

    monkeypatch.setattr(kernel_ops, "kernels", types.SimpleNamespace(**{n: on_device(f) for n, f in
                                                                        vars(twins).items()}))
    config = small_config(dropout=dropout)
    x, y = batch(config)
    ref_model = GPT(config, seed=4)
    ref = gpt_step(ref_model, x, y)
    ref_tokens = generate(ref_model, x[:2, :5], 30, temperature=0)
    backend.set_backend(name)
    model = GPT(config, seed=4).to("cuda")
    assert all(backend.device_of(p.data) == backend.device_of(p.grad) == "cuda" for p in model.parameters())
    got = gpt_step(model, x, y)
    assert abs(got[0] - ref[0]) <= 1e-5 * abs(ref[0])
    for n, g in ref[2].items():
        assert rel_err(backend.to_numpy(got[2][n]), g) <= 1e-4, n
    np.testing.assert_array_equal(generate(model, x[:2, :5], 30, temperature=0), ref_tokens)
    assert (calls != {}) == (name == "kernels")


def test_cli_on_the_stand_in_gpu(stand_in_gpu, tmp_path, capsys):
    data = tmp_path / "data.txt"
    data.write_text("the quick brown fox jumps over the lazy dog. " * 200, encoding="utf-8")
    out = tmp_path / "out"
    common = ["--data", str(data), "--out", str(out), "--eval-iters", "1", "--eval-interval", "2", "--no-progress"]
    assert main(["train", "--device", "cuda", "--n-layer", "1", "--n-head", "2", "--d-model", "16", "--block-size",
                 "16", "--batch-size", "4", "--max-iters", "2", "--dropout", "0.1", "--sample-tokens", "5",
                 *common]) == 0
    assert "on cuda (cupy backend)" in capsys.readouterr().out and backend.get_backend() == "numpy"
    texts = []
    for device in ("cuda", "cpu"):
        assert main(["generate", "--checkpoint", str(out / "ckpt"), "--prompt", "the ", "--max-new-tokens", "12",
                     "--temperature", "0", "--device", device]) == 0
        texts.append(capsys.readouterr().out)
    assert texts[0] == texts[1]
    assert main(["train", "--device", "cuda", "--resume", "--max-iters", "4", "--sample-tokens", "0", *common]) == 0
    assert "resuming at iteration 2" in capsys.readouterr().out
    assert main(["train", "--device", "cuda", "--threads", "2", *common]) == 2
    assert "--threads 2: data-parallel threads are a CPU feature" in capsys.readouterr().err
