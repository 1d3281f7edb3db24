"""The same model code on the GPU: one GPT training step on ``kernels`` and on ``cupy`` against ``numpy``.

Marked ``gpu``: skipped (with the reason) without CuPy and a CUDA device.

Tolerances (float32 everywhere; the GPU paths do the same maths in another
order: tiled matmuls, online softmax, flash attention's recomputed weights and
atomics in the attention and LayerNorm backward passes):

* loss:            ``|L_gpu - L_cpu| <= 1e-5 * |L_cpu|``
* logits:          ``||z_gpu - z_cpu|| / ||z_cpu|| <= 1e-5``
* every gradient:  ``||g_gpu - g_cpu|| / ||g_cpu|| <= 2e-4`` (the attention
  backward alone is tested to 1e-4 in ``test_kernels_gpu.py``; a step chains
  several of them)
* three AdamW iterations: losses within ``rtol=1e-4``; fewer than 1% of the
  weights differ by more than 1e-5 (Adam's first steps move each weight by
  about ``lr * sign(g)``, so a gradient within rounding of zero may legitimately
  step the other way: a norm bound on the weights would be flaky);
* greedy tokens:   identical (a flip needs two top logits within float32
  rounding of each other; unlikely at these sizes, and then a real difference
  to look at).

Inputs are token ids, so no subnormals reach the kernels (CuPy compiles with
``-ftz=true``); weights are GPT-2's N(0, 0.02^2) init.
"""
from __future__ import annotations

import numpy as np
import pytest

from minitx import backend
from minitx.cuda import ops as cuda_ops
from minitx.generate import generate
from minitx.models import GPT, GPTConfig

pytestmark = pytest.mark.gpu

LOSS_TOL, LOGITS_TOL, GRAD_TOL = 1e-5, 1e-5, 2e-4
KERNEL_WRAPPERS = ("matmul", "layernorm_forward", "layernorm_backward", "attention_forward", "attention_backward")


def config(**kw):
    # head size 16, T = 40 (not a multiple of any tile), vocab 67 (prime)
    base = dict(vocab_size=67, block_size=40, n_layer=2, n_head=4, n_embd=64, dropout=0.0)
    base.update(kw)
    return GPTConfig(**base)


def batch(cfg, B=3, seed=1):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, cfg.vocab_size, (B, cfg.block_size)),
            rng.integers(0, cfg.vocab_size, (B, cfg.block_size)))


def rel_err(a, b) -> float:
    a = np.asarray(backend.to_numpy(a), dtype=np.float64)
    b = np.asarray(backend.to_numpy(b), dtype=np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def step(model, x, y):
    model.zero_grad()
    loss, logits = model.loss(x, y)
    model.backward_loss()
    return loss, backend.to_numpy(logits), {n: backend.to_numpy(p.grad) for n, p in model.named_parameters()}


@pytest.fixture
def gpu_backend():
    """Select a GPU backend for one test, then put ``numpy`` back."""
    chosen = []

    def use(name):
        backend.set_backend(name)
        chosen.append(name)

    yield use
    backend.set_backend("numpy")


@pytest.fixture
def kernel_calls(monkeypatch):
    """Count calls of minitx's kernel wrappers (to prove the kernels path ran)."""
    calls = {}
    for name in KERNEL_WRAPPERS + ("softmax",):
        real = getattr(cuda_ops, name)

        def counted(*args, _real=real, _name=name, **kwargs):
            calls[_name] = calls.get(_name, 0) + 1
            return _real(*args, **kwargs)

        monkeypatch.setattr(cuda_ops, name, counted)
    return calls


def assert_step_matches(got, ref):
    assert abs(got[0] - ref[0]) <= LOSS_TOL * abs(ref[0]), (got[0], ref[0])
    assert rel_err(got[1], ref[1]) <= LOGITS_TOL
    for name, g in ref[2].items():
        err = rel_err(got[2][name], g)
        assert err <= GRAD_TOL, f"{name}: relative error {err:.2e}"


@pytest.mark.parametrize("name", ["kernels", "cupy"])
@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_gpt_training_step_matches_numpy(gpu_backend, kernel_calls, name, dropout):
    """Loss, logits and every gradient of one step; with dropout the host-drawn masks are the same on both."""
    cfg = config(dropout=dropout)
    x, y = batch(cfg)
    ref = step(GPT(cfg, seed=7), x, y)
    gpu_backend(name)
    model = GPT(config(dropout=dropout), seed=7).to("cuda")
    assert backend.device_of(model.wte.weight.data) == "cuda"
    got = step(model, x, y)
    assert_step_matches(got, ref)
    if name == "cupy":
        assert kernel_calls == {}
    elif dropout == 0:
        assert set(kernel_calls) == set(KERNEL_WRAPPERS)  # flash attention: no separate softmax
    else:
        assert "attention_forward" not in kernel_calls and kernel_calls["softmax"] == cfg.n_layer  # the fallback


@pytest.mark.parametrize("name", ["kernels", "cupy"])
def test_trainer_iterations_match_numpy(tmp_path, gpu_backend, name):
    """Three AdamW iterations (clipping, weight decay) on the GPU follow the CPU run."""
    from minitx.train.data import LMDataset
    from minitx.train.trainer import TrainConfig, Trainer

    data = LMDataset.from_ids(np.random.default_rng(0).integers(0, 67, 5000), vocab_size=67, block_size=config().block_size)
    tc = TrainConfig(batch_size=4, max_iters=3, warmup_iters=1, eval_interval=100, eval_iters=1, seed=3)
    cpu = Trainer(GPT(config(), seed=3), data, tc, tmp_path / "cpu", progress=False, log=None)
    cpu_losses = [cpu.train_step()[0] for _ in range(3)]
    gpu_backend(name)
    gpu = Trainer(GPT(config(), seed=3).to("cuda"), data, tc, tmp_path / "gpu", progress=False, log=None)
    gpu_losses = [gpu.train_step()[0] for _ in range(3)]
    np.testing.assert_allclose(gpu_losses, cpu_losses, rtol=1e-4)
    for (n, p), (_, q) in zip(cpu.model.named_parameters(), gpu.model.named_parameters()):
        moved = np.abs(p.data - backend.to_numpy(q.data)) > 1e-5
        assert moved.mean() < 0.01, f"{n}: {moved.mean():.1%} of the weights differ by more than 1e-5"


@pytest.mark.parametrize("name", ["kernels", "cupy"])
def test_kv_cache_generation_on_gpu_gives_the_cpu_tokens(gpu_backend, name):
    cfg = config(block_size=24)
    prompt = batch(cfg, B=2)[0][:, :6]
    cpu_model = GPT(cfg, seed=11)
    want = generate(cpu_model, prompt, 30, temperature=0)  # runs past block_size: the cache is rebuilt too
    gpu_backend(name)
    gpu_model = GPT(cfg, seed=11).to("cuda")
    np.testing.assert_array_equal(generate(gpu_model, prompt, 30, temperature=0), want)
    np.testing.assert_array_equal(generate(gpu_model, prompt, 30, temperature=0, use_kv_cache=False), want)


def test_checkpoints_move_between_cpu_and_gpu(tmp_path, gpu_backend):
    from minitx.train.data import LMDataset
    from minitx.train.lm import load_model, read_checkpoint
    from minitx.train.trainer import TrainConfig, Trainer

    data = LMDataset.from_ids(np.random.default_rng(0).integers(0, 67, 5000), vocab_size=67, block_size=config().block_size)
    tc = TrainConfig(batch_size=4, max_iters=2, warmup_iters=1, eval_interval=1, eval_iters=1, seed=3)
    gpu_backend("kernels")
    gpu = Trainer(GPT(config(), seed=3).to("cuda"), data, tc, tmp_path / "gpu", progress=False, log=None)
    gpu.train()
    # saved on the GPU -> NumPy arrays in the files -> loads on the CPU, bit for bit
    model_state, optim_arrays, _ = read_checkpoint(tmp_path / "gpu" / "ckpt")
    assert all(isinstance(a, np.ndarray) for a in [*model_state.values(), *optim_arrays.values()])
    cpu_model, _, _ = load_model(tmp_path / "gpu" / "ckpt", device="cpu")
    for (n, p), (_, q) in zip(gpu.model.named_parameters(), cpu_model.named_parameters()):
        np.testing.assert_array_equal(backend.to_numpy(p.data), q.data, err_msg=n)
    # saved on the CPU -> loads onto the GPU (generation and resumed training)
    backend.set_backend("numpy")
    cpu = Trainer(GPT(config(), seed=5), data, tc, tmp_path / "cpu", progress=False, log=None)
    cpu.train()
    gpu_backend("kernels")
    on_gpu, _, _ = load_model(tmp_path / "cpu" / "ckpt", device="cuda")
    for (n, p), (_, q) in zip(cpu.model.named_parameters(), on_gpu.named_parameters()):
        assert backend.device_of(q.data) == "cuda"
        np.testing.assert_array_equal(p.data, backend.to_numpy(q.data), err_msg=n)
    resumed = Trainer(GPT(config(), seed=0).to("cuda"), data, TrainConfig(**{**tc.__dict__, "max_iters": 3}),
                      tmp_path / "cpu", progress=False, log=None)
    resumed.resume(tmp_path / "cpu" / "ckpt")
    assert resumed.iter == 2 and np.isfinite(resumed.train_step()[0])


@pytest.mark.parametrize("name", ["kernels", "cupy"])
def test_cli_train_and_generate_on_cuda(tmp_path, capsys, name):
    from minitx.cli import main

    data = tmp_path / "data.txt"
    data.write_text("the quick brown fox jumps over the lazy dog. " * 200, encoding="utf-8")
    out = tmp_path / "out"
    assert main(["train", "--device", "cuda", "--backend", name, "--data", str(data), "--out", str(out),
                 "--n-layer", "2", "--n-head", "2", "--d-model", "32", "--block-size", "32", "--batch-size", "4",
                 "--max-iters", "4", "--eval-interval", "2", "--eval-iters", "1", "--sample-tokens", "20",
                 "--no-progress"]) == 0
    assert f"on cuda ({name} backend)" in capsys.readouterr().out
    assert backend.get_backend() == "numpy"  # restored after the command
    texts = []
    for device in ("cuda", "cpu"):
        argv = ["generate", "--checkpoint", str(out / "ckpt"), "--prompt", "the ", "--max-new-tokens", "20",
                "--temperature", "0", "--device", device]
        assert main(argv + (["--backend", name] if device == "cuda" else [])) == 0
        texts.append(capsys.readouterr().out)
    assert texts[0] == texts[1]  # greedy: the same text on both devices


#: The LLaMA and BLOOM configurations of the same decoder (issue 15): grouped-query attention (which the
#: flash kernels do not cover: CuPy path), rotary with full heads (rotated q and k go to the flash kernels),
#: ALiBi (a score bias: CuPy path).
DECODER_VARIANTS = {"llama": dict(norm="rmsnorm", positions="rope", ffn="swiglu", bias=False, n_kv_head=2),
                    "llama-mha": dict(norm="rmsnorm", positions="rope", ffn="swiglu", bias=False),
                    "bloom": dict(positions="alibi", embed_norm=True)}


@pytest.mark.parametrize("name", ["kernels", "cupy"])
@pytest.mark.parametrize("variant", list(DECODER_VARIANTS))
def test_llama_and_bloom_step_and_greedy_tokens_match_numpy(gpu_backend, kernel_calls, name, variant):
    cfg = config(**DECODER_VARIANTS[variant])
    x, y = batch(cfg)
    ref = step(GPT(cfg, seed=7), x, y)
    want = generate(GPT(cfg, seed=7), x[:2, :6], 50, temperature=0)  # past block_size=40: the window slides
    gpu_backend(name)
    model = GPT(cfg, seed=7).to("cuda")
    assert_step_matches(step(model, x, y), ref)
    np.testing.assert_array_equal(generate(model, x[:2, :6], 50, temperature=0), want)
    if name == "kernels" and variant == "llama-mha":
        assert "attention_forward" in kernel_calls and "attention_backward" in kernel_calls
