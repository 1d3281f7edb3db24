"""The GPT model: shapes, presets, config errors, the gradient checker and PyTorch parity."""
import numpy as np
import pytest

from minitx.gradcheck import gradcheck, gradcheck_module
from minitx.models import GPT, PRESETS, GPTConfig


def tiny(vocab=11, **kw):
    fields = dict(vocab_size=vocab, block_size=8, n_layer=2, n_head=2, n_embd=8)
    fields.update(kw)
    return GPTConfig(**fields)


def test_forward_shape_and_dtype():
    model = GPT(tiny(), seed=0)
    idx = np.random.default_rng(0).integers(0, 11, (3, 5))
    logits = model.forward(idx)
    assert logits.shape == (3, 5, 11) and logits.dtype == np.float32


def test_initial_loss_is_near_log_vocab():
    model = GPT(GPTConfig.from_preset("gpt-test", vocab_size=64), seed=0)
    idx = np.random.default_rng(0).integers(0, 64, (4, 16))
    loss, _ = model.loss(idx, np.roll(idx, -1, axis=1))
    assert abs(loss - np.log(64)) < 0.1  # small init: nearly uniform predictions


def test_weight_tying_and_scaled_init():
    cfg = GPTConfig.from_preset("gpt-micro", vocab_size=65)
    model = GPT(cfg, seed=0)
    names = [n for n, _ in model.named_parameters()]
    assert "lm_head.weight" not in names and names.count("wte.weight") == 1
    proj = model.blocks[0].attn.proj.weight.data
    fc = model.blocks[0].ff.fc.weight.data
    assert abs(proj.std() - 0.02 / np.sqrt(2 * cfg.n_layer)) < 0.002
    assert abs(fc.std() - 0.02) < 0.002
    assert not model.blocks[0].ff.fc.bias.data.any()
    # 4 layers x 12 D^2 + V*D + block*D + LayerNorms and biases
    D = 128
    expected = 4 * (12 * D * D + 13 * D) + 65 * D + 64 * D + 2 * D
    assert model.num_parameters() == expected


def test_same_seed_same_weights():
    a, b = GPT(tiny(), seed=3), GPT(tiny(), seed=3)
    for (n, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        assert np.array_equal(p.data, q.data), n


def test_presets_include_gpt2_sizes():
    assert {"gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl"} <= set(PRESETS)
    cfg = GPTConfig.from_preset("gpt2")
    assert (cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.vocab_size, cfg.block_size) == (12, 12, 768, 50257, 1024)


@pytest.mark.parametrize("kwargs, fragment", [
    (dict(n_embd=10, n_head=3), "divisible"),
    (dict(n_layer=0), "n_layer"),
    (dict(dropout=1.5), "dropout"),
    (dict(vocab_size=0), "vocab_size"),
])
def test_bad_config(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        tiny(**kwargs)


def test_unknown_preset():
    with pytest.raises(ValueError, match="preset: got 'gpt-huge'"):
        GPTConfig.from_preset("gpt-huge", vocab_size=10)


def test_too_long_input_is_an_error():
    model = GPT(tiny(), seed=0)
    with pytest.raises(ValueError, match="block_size=8"):
        model.forward(np.zeros((1, 9), dtype=np.int64))


def test_config_round_trip():
    cfg = tiny(dropout=0.1)
    assert GPTConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown fields"):
        GPTConfig.from_dict({**cfg.to_dict(), "n_experts": 8})


# --------------------------------------------------------------------------
# gradients
# --------------------------------------------------------------------------
def test_full_model_gradcheck_float64():
    """Every parameter of the whole model (tied head included), through the logits.

    h = 1e-4 rather than the checker's default 1e-3: GPT's weights are small
    (std 0.02), so the LayerNorms divide by a small standard deviation and the
    loss curves on a scale not much larger than 1e-3.
    """
    model = GPT(tiny(vocab=7, n_embd=8), seed=1, dtype=np.float64)
    idx = np.random.default_rng(0).integers(0, 7, (2, 5))
    result = gradcheck_module(model, idx, max_elements=12, h=1e-4)
    assert result.ok(1e-6), str(result)
    assert set(result.per_array) == {n for n, _ in model.named_parameters()}


def test_full_model_gradcheck_through_the_loss():
    model = GPT(tiny(vocab=7, n_embd=8, n_layer=1), seed=2, dtype=np.float64)
    rng = np.random.default_rng(1)
    idx, targets = rng.integers(0, 7, (2, 6)), rng.integers(0, 7, (2, 6))
    model.zero_grad()
    model.loss(idx, targets)
    model.backward_loss()
    params = dict(model.named_parameters())
    result = gradcheck(lambda: model.loss(idx, targets)[0],
                       {n: p.data for n, p in params.items()}, {n: p.grad.copy() for n, p in params.items()},
                       max_elements=10, h=1e-4)
    assert result.ok(1e-6), str(result)


# --------------------------------------------------------------------------
# PyTorch parity: same weights, same loss, same gradients
# --------------------------------------------------------------------------
def torch_reference_loss(torch, params, idx, targets, cfg):
    """GPT-2 written with torch ops, reading minitx's (in, out) weight layout directly."""
    F = torch.nn.functional
    B, T = idx.shape
    D, H = cfg.n_embd, cfg.n_head
    idx_t, tgt_t = torch.from_numpy(idx), torch.from_numpy(targets)
    x = params["wte.weight"][idx_t] + params["wpe.weight"][:T]
    for layer in range(cfg.n_layer):
        p = lambda name: params[f"blocks.{layer}.{name}"]  # noqa: E731
        h = F.layer_norm(x, (D,), p("norm_attn.weight"), p("norm_attn.bias"), 1e-5)
        q, k, v = (h @ p("attn.qkv.weight") + p("attn.qkv.bias")).split(D, dim=2)
        q, k, v = (t.view(B, T, H, D // H).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, D)
        x = x + y @ p("attn.proj.weight") + p("attn.proj.bias")
        h = F.layer_norm(x, (D,), p("norm_ff.weight"), p("norm_ff.bias"), 1e-5)
        h = F.gelu(h @ p("ff.fc.weight") + p("ff.fc.bias"), approximate="tanh")
        x = x + h @ p("ff.proj.weight") + p("ff.proj.bias")
    h = F.layer_norm(x, (D,), params["ln_f.weight"], params["ln_f.bias"], 1e-5)
    logits = h @ params["wte.weight"].T
    return F.cross_entropy(logits.reshape(-1, cfg.vocab_size), tgt_t.reshape(-1))


def test_full_model_matches_pytorch_float32():
    torch = pytest.importorskip("torch", reason="PyTorch parity needs torch (pip install torch==2.13.0)")
    cfg = GPTConfig(vocab_size=37, block_size=16, n_layer=2, n_head=4, n_embd=32)
    model = GPT(cfg, seed=0)
    # non-trivial LayerNorm and bias values so their gradients are exercised too
    rng = np.random.default_rng(5)
    for name, p in model.named_parameters():
        if p.data.ndim == 1:
            p.data += rng.normal(0, 0.1, p.data.shape).astype(np.float32)
    idx, targets = rng.integers(0, 37, (3, 16)), rng.integers(0, 37, (3, 16))
    model.zero_grad()
    loss, _ = model.loss(idx, targets)
    model.backward_loss()

    params = {n: torch.tensor(p.data, requires_grad=True) for n, p in model.named_parameters()}
    ref = torch_reference_loss(torch, params, idx, targets, cfg)
    ref.backward()
    assert abs(loss - ref.item()) / abs(ref.item()) <= 1e-5
    for name, p in model.named_parameters():
        expected = params[name].grad.numpy()
        rel = np.abs(p.grad - expected).max() / np.abs(expected).max()
        assert rel <= 1e-5, f"{name}: relative error {rel:.2e}"
