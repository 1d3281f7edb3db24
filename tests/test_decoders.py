"""The LLaMA and BLOOM layers and the one configured decoder (issue 15).

Every new layer three ways: its hand-written backward against finite
differences in float64 (:mod:`minitx.gradcheck`), its forward and backward
against PyTorch autograd in float32 (transformers' own rotary and ALiBi code
where it has one), and a property that says what the layer is for (RoPE
scores depend only on the offset; GQA's cache holds only the KV heads).
Then the decoder: GPT-2 stays what it was, every variant decodes the same
with and without its KV cache, runs past ``block_size`` when it has no
position table, trains and resumes bit for bit through the one Trainer.
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minitx.gradcheck import gradcheck, gradcheck_module
from minitx.models import GPT, GPTConfig
from minitx.nn import (KVCache, LearnedPositionalEmbedding, MultiHeadAttention, RMSNorm, RotaryEmbedding, SwiGLU,
                       alibi_bias, alibi_slopes, rope_angles, rope_backward, rope_forward)

F64 = np.float64
TOL = 1e-6


def assert_ok(result):
    assert result.ok(TOL), str(result)


# --------------------------------------------------------------------------
# RoPE
# --------------------------------------------------------------------------
@given(B=st.integers(1, 3), H=st.integers(1, 3), T=st.integers(1, 6), half=st.integers(1, 4),
       start=st.integers(0, 50), theta=st.sampled_from([10000.0, 500.0, 1e6]), seed=st.integers(0, 2**16))
def test_rope_gradcheck(B, H, T, half, start, theta, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((B, H, T, 2 * half))
    cos, sin = rope_angles(np.arange(start, start + T), 2 * half, theta)
    G = rng.standard_normal(x.shape)
    out, cache = rope_forward(x, cos, sin)
    result = gradcheck(lambda: float((rope_forward(x, cos, sin)[0] * G).sum()), {"x": x},
                       {"x": rope_backward(G, cache)})
    assert_ok(result)
    np.testing.assert_allclose(np.linalg.norm(out, axis=-1), np.linalg.norm(x, axis=-1))  # a rotation keeps lengths


def test_rope_scores_depend_only_on_the_offset():
    """<R(m) q, R(n) k> = <q, R(n - m) k>: shifting both positions changes nothing."""
    rng = np.random.default_rng(0)
    q, k = rng.standard_normal((1, 1, 1, 8)), rng.standard_normal((1, 1, 1, 8))
    rope = RotaryEmbedding(8)
    scores = [float((rope(q, m) * rope(k, m + 3)).sum()) for m in (0, 7, 100, 5000)]
    np.testing.assert_allclose(scores, scores[0], rtol=1e-9)
    assert abs(float((rope(q, 0) * rope(k, 1)).sum()) - scores[0]) > 1e-3  # ...but the offset matters


def test_rope_matches_transformers_llama_and_torch_autograd():
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    rng = np.random.default_rng(1)
    B, H, T, hs, theta = 2, 3, 5, 8, 500.0
    q, k = rng.standard_normal((B, H, T, hs)).astype(np.float32), rng.standard_normal((B, H, T, hs)).astype(np.float32)
    positions = np.array([[4, 5, 6, 7, 8], [0, 1, 2, 30, 31]])  # per-row positions, one row offset like a cache
    rope = RotaryEmbedding(hs, theta)
    ours_q, ours_k = rope(q, positions), rope(k, positions)
    # transformers' layout: cos/sin (B, T, hs) built as cat(freqs, freqs) from inv_freq = theta^(-2i/hs)
    inv = 1.0 / theta ** (torch.arange(0, hs, 2, dtype=torch.float32) / hs)
    freqs = torch.tensor(positions, dtype=torch.float32)[..., None] * inv
    emb = torch.cat([freqs, freqs], dim=-1)
    qt, kt = torch.tensor(q, requires_grad=True), torch.tensor(k, requires_grad=True)
    ref_q, ref_k = apply_rotary_pos_emb(qt, kt, emb.cos(), emb.sin())
    np.testing.assert_allclose(ours_q, ref_q.detach().numpy(), atol=2e-5)
    np.testing.assert_allclose(ours_k, ref_k.detach().numpy(), atol=2e-5)
    G = rng.standard_normal(q.shape).astype(np.float32)
    (ref_q * torch.tensor(G)).sum().backward()
    rope(q, positions)  # the module keeps the cache of its last call: q's
    np.testing.assert_allclose(rope.backward(G), qt.grad.numpy(), atol=2e-5)


def test_rotary_positions_are_checked():
    rope = RotaryEmbedding(4)
    with pytest.raises(ValueError, match="rotary positions"):
        rope(np.zeros((2, 1, 3, 4)), np.zeros((2, 4), dtype=np.int64))
    with pytest.raises(ValueError, match="even"):
        RotaryEmbedding(5)


# --------------------------------------------------------------------------
# ALiBi
# --------------------------------------------------------------------------
def test_alibi_slopes_power_of_two_and_bloom_rule():
    np.testing.assert_allclose(alibi_slopes(8), 2.0 ** -np.arange(1, 9))  # the paper's 1/2 ... 1/256
    np.testing.assert_allclose(alibi_slopes(6), [2**-2, 2**-4, 2**-6, 2**-8, 2**-1, 2**-3])


@pytest.mark.parametrize("n_heads", list(range(1, 18)) + [24, 40, 112])
def test_alibi_slopes_match_transformers_bloom(n_heads):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from transformers.models.bloom.modeling_bloom import _get_alibi_slopes

    np.testing.assert_allclose(alibi_slopes(n_heads), _get_alibi_slopes(n_heads, "cpu").numpy(), rtol=1e-6)


def test_alibi_bias_equals_bloom_after_softmax():
    """BLOOM adds slope * key_position; minitx the relative form. Per query row they differ by a constant."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from transformers.models.bloom.modeling_bloom import build_alibi_tensor

    H, past, T = 5, 3, 4
    Tk = past + T
    hf = build_alibi_tensor(torch.ones(1, Tk), H, torch.float64).numpy().reshape(H, 1, Tk)  # (H, 1, Tk)
    ours = alibi_bias(H, T, Tk, start=past)  # (H, T, Tk), queries at past .. past + T - 1
    shift = ours - hf  # (H, T, Tk): constant along the keys
    np.testing.assert_allclose(shift, shift[..., :1] * np.ones(Tk), atol=1e-12)
    assert ours[:, -1, -1].tolist() == [0.0] * H and (ours[:, -1, :-1] < 0).all()  # the key itself costs nothing


# --------------------------------------------------------------------------
# Grouped-query attention (with RoPE and ALiBi inside it)
# --------------------------------------------------------------------------
GQA_CASES = [  # H, Hkv, rope, alibi, padding
    (4, 2, False, False, False), (4, 1, True, False, True), (4, 4, True, False, False), (6, 3, False, True, True),
    (6, 2, True, True, False), (3, 1, False, True, False),
]


@pytest.mark.parametrize("H,Hkv,rope,alibi,padding", GQA_CASES)
def test_gqa_attention_gradcheck(H, Hkv, rope, alibi, padding):
    rng = np.random.default_rng(H * 10 + Hkv)
    B, T, hs = 2, 5, 2
    mha = MultiHeadAttention(H * hs, H, causal=True, n_kv_heads=Hkv, rope_theta=100.0 if rope else None, rng=rng,
                             dtype=F64)
    assert mha.qkv.weight.shape == (H * hs, (H + 2 * Hkv) * hs)
    kw = {}
    if alibi:
        kw["score_bias"] = alibi_bias(H, T, T)
    if padding:
        kw["key_padding_mask"] = np.array([[False] * T, [False] * (T - 2) + [True] * 2])
    if rope:
        kw["positions"] = np.array([np.arange(T), np.arange(3, 3 + T)])
    assert_ok(gradcheck_module(mha, rng.standard_normal((B, T, H * hs)), forward_kwargs=kw))


@pytest.mark.parametrize("H,Hkv,rope,alibi,padding", GQA_CASES)
def test_gqa_attention_matches_torch(H, Hkv, rope, alibi, padding):
    """Against ``F.scaled_dot_product_attention(enable_gqa=True)``: outputs, input and weight gradients."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(7 + H + Hkv)
    B, T, hs = 2, 6, 4
    D = H * hs
    mha = MultiHeadAttention(D, H, causal=True, n_kv_heads=Hkv, rope_theta=10000.0 if rope else None, rng=rng)
    x = rng.standard_normal((B, T, D)).astype(np.float32)
    G = rng.standard_normal((B, T, D)).astype(np.float32)
    pad = np.zeros((B, T), dtype=bool)
    if padding:
        pad[1, -2:] = True
    bias = alibi_bias(H, T, T, dtype=np.float32) if alibi else None
    out = mha(x, key_padding_mask=pad if padding else None, score_bias=bias)
    dx = mha.backward(G)

    W = {n: torch.tensor(p.data, requires_grad=True) for n, p in mha.named_parameters()}
    xt = torch.tensor(x, requires_grad=True)
    qkv = xt @ W["qkv.weight"] + W["qkv.bias"]
    q = qkv[..., : D].reshape(B, T, H, hs).transpose(1, 2)
    k = qkv[..., D : D + Hkv * hs].reshape(B, T, Hkv, hs).transpose(1, 2)
    v = qkv[..., D + Hkv * hs :].reshape(B, T, Hkv, hs).transpose(1, 2)
    if rope:  # rotate-half, written out in torch
        cos, sin = (torch.tensor(a, dtype=torch.float32) for a in rope_angles(np.arange(T), hs, 10000.0))
        cos, sin = torch.cat([cos, cos], -1), torch.cat([sin, sin], -1)

        def rot(t):
            return t * cos + torch.cat([-t[..., hs // 2 :], t[..., : hs // 2]], -1) * sin
        q, k = rot(q), rot(k)
    allowed = torch.tensor(np.tril(np.ones((T, T), dtype=bool)))[None, None] & torch.tensor(~pad)[:, None, None, :]
    mask = torch.zeros(B, 1, T, T).masked_fill(~allowed, float("-inf"))
    if alibi:
        mask = mask + torch.tensor(bias)[None]
    y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
    ref = y.transpose(1, 2).reshape(B, T, D) @ W["proj.weight"] + W["proj.bias"]
    ref.backward(torch.tensor(G))
    np.testing.assert_allclose(out, ref.detach().numpy(), atol=2e-5)
    np.testing.assert_allclose(dx, xt.grad.numpy(), atol=2e-5)
    for name, p in mha.named_parameters():
        np.testing.assert_allclose(p.grad, W[name].grad.numpy(), atol=5e-5, err_msg=name)
    assert mha.attn_weights.shape == (B, H, T, T)


def test_gqa_cache_holds_only_the_kv_heads_and_decodes_like_the_full_pass():
    rng = np.random.default_rng(3)
    B, T, H, Hkv, hs = 2, 7, 4, 2, 4
    mha = MultiHeadAttention(H * hs, H, causal=True, n_kv_heads=Hkv, rope_theta=10000.0, rng=rng)
    x = rng.standard_normal((B, T, H * hs)).astype(np.float32)
    full = mha(x)
    cache = KVCache(16)
    steps = [mha(x[:, :4], kv_cache=cache)] + [mha(x[:, t : t + 1], kv_cache=cache) for t in range(4, T)]
    np.testing.assert_allclose(np.concatenate(steps, axis=1), full, atol=1e-5)
    assert cache.k.shape == (B, Hkv, 16, hs)
    assert cache.nbytes == 2 * B * Hkv * T * hs * 4 and cache.allocated_nbytes == 2 * B * Hkv * 16 * hs * 4
    assert KVCache(4).nbytes == 0


def test_head_mask_still_removes_a_head_under_gqa():
    rng = np.random.default_rng(4)
    mha = MultiHeadAttention(16, 4, causal=True, n_kv_heads=2, bias=False, rng=rng)
    x = rng.standard_normal((1, 5, 16))
    mha.head_mask = np.zeros(4)
    np.testing.assert_array_equal(mha(x), 0.0)
    mha.head_mask = np.array([1.0, 0.0, 1.0, 1.0])
    masked = mha(x)
    assert mha.attn_weights.shape == (1, 4, 5, 5)
    # Removing head 1 takes away exactly its slice of the merged heads times its rows of the output
    # projection: the difference lies in the span of W_proj[hs:2hs] (and is not zero).
    mha.head_mask = None
    diff = (mha(x) - masked).reshape(-1, 16)  # (T, D)
    hs = 16 // 4
    rows = mha.proj.weight.data[hs : 2 * hs]  # (hs, D): what head 1 writes through
    coef, *_ = np.linalg.lstsq(rows.T, diff.T, rcond=None)  # diff^T = rows^T @ coef
    assert np.abs(diff).max() > 1e-6
    np.testing.assert_allclose(rows.T @ coef, diff.T, atol=1e-8)
    other = mha.proj.weight.data[2 * hs : 3 * hs]  # a wrongly removed head 2 would fail the same check
    coef2, *_ = np.linalg.lstsq(other.T, diff.T, rcond=None)
    assert np.abs(other.T @ coef2 - diff.T).max() > 1e-4


def test_bad_kv_head_counts():
    with pytest.raises(ValueError, match="n_kv_heads=3 with n_heads=4"):
        MultiHeadAttention(16, 4, n_kv_heads=3)
    with pytest.raises(ValueError, match="n_kv_head=3 with n_head=4"):
        GPTConfig(vocab_size=5, n_head=4, n_embd=16, n_kv_head=3)


# --------------------------------------------------------------------------
# SwiGLU and RMSNorm
# --------------------------------------------------------------------------
@pytest.mark.parametrize("bias", [False, True])
def test_swiglu_gradcheck_and_torch(bias):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    ff = SwiGLU(6, 10, bias=bias, rng=rng, dtype=F64)
    x = rng.standard_normal((2, 3, 6))
    assert_ok(gradcheck_module(ff, x))
    ff32 = SwiGLU(6, 10, bias=bias, rng=np.random.default_rng(6))
    x32, G = x.astype(np.float32), rng.standard_normal((2, 3, 6)).astype(np.float32)
    out, dx = ff32(x32), None
    dx = ff32.backward(G)
    W = {n: torch.tensor(p.data, requires_grad=True) for n, p in ff32.named_parameters()}
    xt = torch.tensor(x32, requires_grad=True)

    def lin(name, t):
        return t @ W[f"{name}.weight"] + (W[f"{name}.bias"] if bias else 0)
    ref = lin("proj", torch.nn.functional.silu(lin("fc", xt)) * lin("fc_gate", xt))
    ref.backward(torch.tensor(G))
    np.testing.assert_allclose(out, ref.detach().numpy(), atol=1e-5)
    np.testing.assert_allclose(dx, xt.grad.numpy(), atol=1e-5)
    for name, p in ff32.named_parameters():
        np.testing.assert_allclose(p.grad, W[name].grad.numpy(), atol=1e-5, err_msg=name)


def test_rmsnorm_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(8)
    norm = RMSNorm(7, 1e-5)
    norm.weight.data[...] = rng.standard_normal(7).astype(np.float32)
    x, G = rng.standard_normal((3, 4, 7)).astype(np.float32), rng.standard_normal((3, 4, 7)).astype(np.float32)
    ref_norm = torch.nn.RMSNorm(7, eps=1e-5)
    with torch.no_grad():
        ref_norm.weight.copy_(torch.tensor(norm.weight.data))
    xt = torch.tensor(x, requires_grad=True)
    ref = ref_norm(xt)
    ref.backward(torch.tensor(G))
    np.testing.assert_allclose(norm(x), ref.detach().numpy(), atol=1e-5)
    np.testing.assert_allclose(norm.backward(G), xt.grad.numpy(), atol=1e-5)
    np.testing.assert_allclose(norm.weight.grad, ref_norm.weight.grad.numpy(), atol=1e-4)


def test_learned_positions_per_row_gradcheck():
    rng = np.random.default_rng(9)
    wpe = LearnedPositionalEmbedding(6, 3, rng=rng, dtype=F64)
    positions = np.array([[0, 1, 2, 3], [0, 0, 0, 1]])  # a left-padded row repeats position 0
    assert_ok(gradcheck_module(wpe, rng.standard_normal((2, 4, 3)), forward_kwargs={"start": positions}))
    with pytest.raises(ValueError, match="positions"):
        wpe(np.zeros((2, 4, 3)), np.array([[0, 1, 2, 6], [0, 0, 0, 1]]))


# --------------------------------------------------------------------------
# The one decoder, configured
# --------------------------------------------------------------------------
VARIANTS = {
    "gpt": dict(),
    "llama": GPTConfig.PRESETS["llama-test"],
    "llama-mqa": dict(GPTConfig.PRESETS["llama-test"], n_kv_head=1, bias=True, ffn_bias=False, rope_theta=50.0),
    "bloom": GPTConfig.PRESETS["bloom-test"],
    "mix": dict(norm="rmsnorm", positions="alibi", ffn="swiglu", n_head=4, n_kv_head=2, embed_norm=True),
}


def small(name, **kw):
    base = dict(n_layer=2, n_head=2, n_embd=16, block_size=16)
    return GPTConfig(**{**base, **VARIANTS[name], "vocab_size": 13, **kw})


def test_gpt2_is_still_the_default():
    cfg = GPTConfig(vocab_size=5)
    assert (cfg.norm, cfg.positions, cfg.ffn, cfg.n_kv_head, cfg.embed_norm) == ("layernorm", "learned", "mlp",
                                                                                    None, False)
    names = [n for n, _ in GPT(GPTConfig.from_preset("gpt-test", vocab_size=5)).named_parameters()]
    assert names[:2] == ["wte.weight", "wpe.weight"] and names[-2:] == ["ln_f.weight", "ln_f.bias"]
    assert len(names) == 2 + 2 * 12 + 2 and "blocks.0.attn.qkv.weight" in names
    old = {k: v for k, v in cfg.to_dict().items()  # a checkpoint written before these fields existed
           if k not in ("norm", "positions", "rope_theta", "ffn", "n_kv_head", "embed_norm", "ffn_bias")}
    assert GPTConfig.from_dict(old) == cfg


@pytest.mark.parametrize("name", ["llama", "llama-mqa", "bloom", "mix"])
def test_variant_gradcheck_float64(name):
    model = GPT(small(name), seed=2, dtype=F64)
    ids = np.random.default_rng(0).integers(0, 13, (2, 5))
    result = gradcheck_module(model, ids, max_elements=3)
    assert result.ok(TOL), result


@pytest.mark.parametrize("name", list(VARIANTS))
def test_kv_cache_and_left_padding_decode_like_the_full_pass(name):
    model = GPT(small(name), seed=1)
    model.eval()
    ids = np.random.default_rng(1).integers(0, 13, (2, 9))
    full = model.forward(ids)
    caches = model.new_kv_caches()
    parts = [model.forward(ids[:, :5], kv_caches=caches)] + [model.forward(ids[:, t : t + 1], kv_caches=caches)
                                                             for t in range(5, 9)]
    np.testing.assert_allclose(np.concatenate(parts, axis=1), full, atol=2e-5)
    n_kv = model.config.n_kv_head or model.config.n_head
    hs = model.config.n_embd // model.config.n_head
    assert caches[0].k.shape[1] == n_kv and caches[0].nbytes == 2 * 2 * n_kv * 9 * hs * 4
    # a left-padded row, its positions counted from its first real token, computes what it computes alone
    padded = np.concatenate([np.zeros((1, 3), dtype=np.int64), ids[:1, :6]], axis=1)  # (1, 9)
    pad = np.arange(9)[None] < 3
    pos = np.maximum(np.arange(9) - 3, 0)[None]
    got = model.forward(padded, positions=pos, key_padding_mask=pad)[:, 3:]
    np.testing.assert_allclose(got, full[:1, :6], atol=2e-5)


@pytest.mark.parametrize("name", ["llama", "bloom"])
def test_no_position_table_runs_past_block_size(name):
    model = GPT(small(name, block_size=8), seed=0)
    assert not hasattr(model, "wpe")
    ids = np.random.default_rng(2).integers(0, 13, (1, 32))
    logits = model.forward(ids)  # 4x the training context
    assert logits.shape == (1, 32, 13) and np.isfinite(logits).all()
    np.testing.assert_allclose(logits[:, :8], model.forward(ids[:, :8]), atol=1e-5)  # causal: the prefix is unchanged
    with pytest.raises(ValueError, match="block_size=8"):
        GPT(small("gpt", block_size=8)).forward(ids)


def test_presets():
    for name in ("llama-test", "bloom-test", "llama-micro", "bloom-micro", "llama-mini", "bloom-mini"):
        GPT(GPTConfig.from_preset(name, vocab_size=65))
    for name in ("tinyllama-1.1b", "llama2-7b", "llama3-8b", "bloom-560m", "bloom-1b1"):
        GPTConfig.from_preset(name)  # the real sizes build as configs (their weights are gigabytes)

    def count(name):
        return sum(p.data.size for p in GPT(GPTConfig.from_preset(name, vocab_size=65)).parameters())
    gpt = count("gpt-micro")
    for name in ("llama-micro", "bloom-micro"):
        assert abs(count(name) - gpt) / gpt < 0.03, name  # comparable models: within 3% of gpt-micro
    assert GPTConfig(vocab_size=5, n_embd=48, n_head=4, ffn="swiglu").hidden_width == 128  # ceil(8 48 / 3) = 128


@pytest.mark.parametrize("kwargs, fragment", [
    (dict(norm="batchnorm"), "norm: got 'batchnorm'"), (dict(positions="sinusoidal"), "positions: got"),
    (dict(ffn="moe"), "ffn: got 'moe'"), (dict(positions="rope", n_embd=12, n_head=4), "even head size"),
    (dict(positions="rope", rope_theta=1.0), "rope_theta"),
])
def test_bad_variant_config(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        GPTConfig(vocab_size=5, **kwargs)


def test_generate_and_beam_for_every_variant():
    from minitx.beam import beam_search_gpt
    from minitx.generate import generate

    for name in VARIANTS:
        model = GPT(small(name), seed=3)
        prompt = np.array([[1, 2, 3]])
        cached = generate(model, prompt, 20, temperature=0)  # past block_size=16: the window slides
        np.testing.assert_array_equal(cached, generate(model, prompt, 20, temperature=0, use_kv_cache=False))
        hyps = beam_search_gpt(model, [[1, 2, 3], [4]], beam_size=3, max_new_tokens=5)
        alone = beam_search_gpt(model, [[4]], beam_size=3, max_new_tokens=5)
        assert [h.tokens for h in hyps[1]] == [h.tokens for h in alone[0]], name  # batching changes nothing


def test_save_pretrained_of_minitx_built_variants(tmp_path):
    """A minitx-built LLaMA or BLOOM is saved by its family's page, and transformers computes the same logits."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    import minitx

    ids = np.random.default_rng(5).integers(0, 13, (2, 7))
    for name, cls in (("llama", transformers.LlamaForCausalLM), ("llama-mqa", transformers.LlamaForCausalLM),
                      ("bloom", transformers.BloomForCausalLM)):
        model = GPT(small(name), seed=4)
        for p in model.parameters():  # move norms and biases away from 1 and 0, so a mix-up shows
            p.data[...] += np.random.default_rng(1).standard_normal(p.data.shape).astype(np.float32) * 0.1
        minitx.save_pretrained(model, None, tmp_path / name)
        hf = cls.from_pretrained(tmp_path / name).eval()
        with torch.no_grad():
            ref = hf(torch.tensor(ids)).logits.numpy()
        np.testing.assert_allclose(model.forward(ids), ref, atol=1e-4, err_msg=name)
    with pytest.raises(ValueError, match="a BLOOM folder needs"):
        minitx.save_pretrained(GPT(small("mix")), None, tmp_path / "mix")
    with pytest.raises(ValueError, match="a GPT-2 folder needs"):
        minitx.save_pretrained(GPT(small("gpt", norm="rmsnorm")), None, tmp_path / "rms")
