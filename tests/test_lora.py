"""Freezing and LoRA: the gradient check, PyTorch parity, merging, adapters, and training through the Trainer."""
import json

import numpy as np
import pytest
import torch

from minitx.finetune import (apply_lora, classifier_on, load_adapter, lora_layers, merge_lora, prepare, remove_lora,
                             save_adapter, unmerge_lora)
from minitx.gradcheck import gradcheck_module
from minitx.models import GPT, GPTConfig
from minitx.models.encoder import EncoderClassifier, EncoderConfig, TransformerEncoder
from minitx.models.seq2seq import Seq2Seq, Seq2SeqConfig
from minitx.nn import Embedding, EncoderBlock, Linear, LoRAEmbedding, LoRALinear
from minitx.optim import AdamW, clip_grad_norm
from minitx.tokenizer import CharTokenizer
from minitx.train.config import TrainConfig
from minitx.train.data import LMDataset
from minitx.train.lm import gpt_meta
from minitx.train.parallel import DataParallel
from minitx.train.trainer import Trainer

TEXT = "the quick brown fox jumps over the lazy dog. " * 20


def gpt(seed=0, dtype=np.float32, **kw):
    cfg = GPTConfig(**{**dict(vocab_size=20, block_size=8, n_layer=2, n_head=2, n_embd=16, dropout=0.0), **kw})
    return GPT(cfg, seed=seed, dtype=dtype) if dtype is not np.float32 else GPT(cfg, seed=seed)


def lora_layer(in_f=5, out_f=4, rank=3, alpha=6.0, bias=True, seed=0, dtype=np.float64, random_b=True):
    rng = np.random.default_rng(seed)
    layer = LoRALinear(Linear(in_f, out_f, bias, rng=rng, dtype=dtype), rank, alpha, rng=rng)
    if random_b:  # B starts at zero (then dL/dA = 0): give it values so every gradient is exercised
        layer.B.data[...] = rng.standard_normal(layer.B.shape).astype(dtype)
    return layer


# ---- freezing -------------------------------------------------------------------
def test_freeze_patterns_counts_and_errors():
    model = gpt()
    total = model.num_parameters()
    assert model.num_trainable_parameters() == total
    changed = model.freeze("blocks.*")
    assert changed and all(n.startswith("blocks.") for n in changed)
    assert model.freeze("blocks.*") == []  # nothing left to change
    frozen = sum(p.data.size for n, p in model.named_parameters() if n.startswith("blocks."))
    assert model.num_trainable_parameters() == total - frozen
    assert model.unfreeze(["blocks.0.*", "blocks.1.attn.*"]) == [n for n in changed if not n.startswith(
        ("blocks.1.norm", "blocks.1.ff"))]
    with pytest.raises(ValueError, match="'blokcs.\\*' matches no parameter"):
        model.freeze("blokcs.*")
    with pytest.raises(ValueError, match="pattern"):
        model.freeze(3)


def test_optimizer_and_clipping_skip_frozen_parameters():
    model = gpt()
    model.freeze("*")
    with pytest.raises(ValueError, match="frozen"):
        AdamW(model.named_parameters())
    model.unfreeze("blocks.0.attn.qkv.weight")
    opt = AdamW(model.named_parameters(), weight_decay=0.5)
    assert list(opt.state) == ["blocks.0.attn.qkv.weight"]  # no moments for frozen weights
    before = {n: p.data.copy() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad[...] = 1.0  # even a stale grad on a frozen weight must not move it, nor count in the norm
    norm = clip_grad_norm(model.parameters(), 1e9)
    assert norm == pytest.approx(np.sqrt(model.blocks[0].attn.qkv.weight.data.size))
    opt.step()
    for n, p in model.named_parameters():
        assert np.array_equal(p.data, before[n]) == (n != "blocks.0.attn.qkv.weight"), n


def test_frozen_linear_skips_its_weight_gradient_but_passes_dx():
    rng = np.random.default_rng(3)
    layer = Linear(4, 3, rng=rng, dtype=np.float64)
    x = rng.standard_normal((2, 4))
    layer(x)
    dx_trainable = layer.backward(np.ones((2, 3)))
    layer.zero_grad()
    layer.freeze("weight")
    layer(x)
    dx = layer.backward(np.ones((2, 3)))
    assert np.array_equal(dx, dx_trainable) and not layer.weight.grad.any() and layer.bias.grad.any()
    assert gradcheck_module(layer, x).ok()  # the check covers what trains (bias, input)


# ---- the layer ------------------------------------------------------------------------
@pytest.mark.parametrize("shape,rank,bias", [((2, 3, 5), 3, True), ((7, 5), 1, False), ((2, 2, 2, 5), 5, True)])
def test_lora_linear_gradcheck(shape, rank, bias):
    layer = lora_layer(rank=rank, bias=bias, seed=rank)
    x = np.random.default_rng(9).standard_normal(shape)
    report = gradcheck_module(layer, x)
    assert report.ok(), report
    assert set(report.per_array) == {"input0", "A", "B"}  # W and b are frozen: nothing to check there


def test_lora_linear_gradcheck_with_the_base_unfrozen():
    layer = lora_layer(seed=4)
    layer.unfreeze("*")
    report = gradcheck_module(layer, np.random.default_rng(1).standard_normal((3, 5)))
    assert report.ok(), report
    assert set(report.per_array) == {"input0", "weight", "bias", "A", "B"}


@pytest.mark.parametrize("targets,norm_first", [("*", True), (["attn.proj", "ff.*"], False)])
def test_a_block_with_lora_passes_the_gradient_check(targets, norm_first):
    rng = np.random.default_rng(11)
    block = EncoderBlock(8, 2, 12, norm_first=norm_first, rng=rng, dtype=np.float64)
    block.unfreeze("*")
    apply_lora(block, targets, rank=2, alpha=3.0, seed=5)
    block.unfreeze("norm_*")  # a frozen body with some trainable pieces: LayerNorms train beside the adapters
    for _, layer in lora_layers(block):
        layer.B.data[...] = rng.standard_normal(layer.B.shape)
    report = gradcheck_module(block, rng.standard_normal((2, 3, 8)))
    assert report.ok(), report
    assert all(name.endswith((".A", ".B")) or name.startswith("norm_") or name == "input0"
               for name in report.per_array)


def test_lora_starts_as_the_base_layer_exactly():
    rng = np.random.default_rng(0)
    base = Linear(6, 4, rng=rng)
    x = rng.standard_normal((3, 6)).astype(np.float32)
    y = base(x)
    layer = LoRALinear(base, 2, 8.0, rng=rng)
    assert np.array_equal(layer(x), y)
    assert layer.weight is base.weight and not layer.weight.requires_grad and layer.A.requires_grad
    assert [n for n, _ in layer.named_parameters()] == ["weight", "bias", "A", "B"]
    assert layer.num_trainable_parameters() == 2 * (6 + 4)


def test_lora_linear_matches_torch():
    layer = lora_layer(in_f=6, out_f=5, rank=2, alpha=3.0, dtype=np.float32, seed=2)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 4, 6)).astype(np.float32)
    G = rng.standard_normal((2, 4, 5)).astype(np.float32)
    out = layer(x)
    layer.zero_grad()
    dx = layer.backward(G)

    tx = torch.tensor(x, requires_grad=True)
    W, b = torch.tensor(layer.weight.data), torch.tensor(layer.bias.data)
    A = torch.tensor(layer.A.data, requires_grad=True)
    B = torch.tensor(layer.B.data, requires_grad=True)
    tout = tx @ W + b + (3.0 / 2) * ((tx @ A) @ B)  # the same formula, differentiated by autograd
    tout.backward(torch.tensor(G))

    def rel(a, ref):
        return np.abs(a - ref).max() / max(np.abs(ref).max(), np.finfo(np.float32).tiny)

    assert out.dtype == np.float32 and dx.dtype == np.float32
    assert rel(out, tout.detach().numpy()) < 1e-5
    assert rel(dx, tx.grad.numpy()) < 1e-5
    assert rel(layer.A.grad, A.grad.numpy()) < 1e-5
    assert rel(layer.B.grad, B.grad.numpy()) < 1e-5


def test_bad_lora_settings():
    base = Linear(3, 3, rng=np.random.default_rng(0))
    for kwargs, fragment in ((dict(rank=0, alpha=1.0), "rank"), (dict(rank=2, alpha=0.0), "alpha"),
                             (dict(rank=2.5, alpha=1.0), "rank")):
        with pytest.raises(ValueError, match=fragment):
            LoRALinear(base, rng=np.random.default_rng(0), **kwargs)


# ---- the embedding adapter (and the head tied to it) -----------------------------------------
def lora_embedding(V=7, D=4, rank=2, alpha=6.0, seed=0, dtype=np.float64, random_a=True):
    rng = np.random.default_rng(seed)
    layer = LoRAEmbedding(Embedding(V, D, rng=rng, dtype=dtype), rank, alpha, rng=rng)
    if random_a:  # A starts at zero (then dL/dB = 0): give it values so every gradient is exercised
        layer.A.data[...] = rng.standard_normal(layer.A.shape).astype(dtype)
    return layer


def test_lora_embedding_starts_as_the_table_and_names_its_factors():
    rng = np.random.default_rng(0)
    base = Embedding(9, 5, rng=rng)
    ids = np.array([[0, 3, 3, 8]])
    x = base(ids)
    layer = LoRAEmbedding(base, 3, 6.0, rng=rng)
    assert np.array_equal(layer(ids), x) and np.array_equal(layer.effective_weight(), base.weight.data)
    assert layer.weight is base.weight and not layer.weight.requires_grad
    assert [n for n, _ in layer.named_parameters()] == ["weight", "A", "B"]
    assert layer.A.shape == (9, 3) and not layer.A.data.any() and layer.B.shape == (3, 5) and layer.B.data.any()
    assert layer.num_trainable_parameters() == 3 * (9 + 5)
    with pytest.raises(ValueError, match="LoRAEmbedding ids: got id 9"):
        layer(np.array([[9]]))
    with pytest.raises(ValueError, match="LoRAEmbedding base: got Linear, expected a Embedding"):
        LoRAEmbedding(Linear(3, 3, rng=rng), 2, 1.0, rng=rng)


@pytest.mark.parametrize("unfreeze", [False, True])
def test_lora_embedding_lookup_gradcheck(unfreeze):
    layer = lora_embedding(seed=3)
    if unfreeze:
        layer.unfreeze("*")
    ids = np.array([[1, 4, 4, 0], [6, 1, 1, 1]])  # repeated ids: the scatter-adds must sum them
    report = gradcheck_module(layer, ids)
    assert report.ok(), report
    assert set(report.per_array) == ({"weight", "A", "B"} if unfreeze else {"A", "B"})


@pytest.mark.parametrize("tied", [True, False])
def test_a_gpt_with_an_embedding_adapter_passes_the_gradient_check(tied):
    """Both uses of the tied table (lookup and head) reach A and B: a head that ignored the adapter would fail."""
    model = gpt(dtype=np.float64, tie_embeddings=tied)
    apply_lora(model, ["wte", "blocks.0.attn.qkv"], rank=2, alpha=3.0, seed=1, train_norms=True)
    rng = np.random.default_rng(2)
    for _, layer in lora_layers(model):
        layer.A.data[...] = rng.standard_normal(layer.A.shape) * 0.3
        layer.B.data[...] = rng.standard_normal(layer.B.shape) * 0.3
    report = gradcheck_module(model, np.array([[1, 5, 5, 2], [7, 0, 3, 3]]))
    assert report.ok(), report
    assert {"wte.A", "wte.B", "ln_f.weight", "blocks.1.norm_ff.bias"} <= set(report.per_array)


def test_lora_embedding_with_a_tied_head_matches_torch():
    """x = W_eff[ids] and logits = h W_eff^T with W_eff = W + s A B, both differentiated by autograd."""
    layer = lora_embedding(V=11, D=6, rank=3, alpha=5.0, dtype=np.float32, seed=4)
    rng = np.random.default_rng(5)
    ids = np.array([[1, 2, 2, 10], [0, 1, 9, 9]])
    h = rng.standard_normal((2, 4, 6)).astype(np.float32)  # what the body would hand the head
    Gx = rng.standard_normal((2, 4, 6)).astype(np.float32)
    Glogits = rng.standard_normal((2, 4, 11)).astype(np.float32)
    x = layer(ids)
    W_eff = layer.effective_weight()
    logits = h @ W_eff.T
    layer.zero_grad()
    layer.backward(Gx)
    layer.weight_backward(Glogits.reshape(-1, 11).T @ h.reshape(-1, 6))  # the head's dW_eff, as GPT passes it

    W = torch.tensor(layer.weight.data)
    A = torch.tensor(layer.A.data, requires_grad=True)
    B = torch.tensor(layer.B.data, requires_grad=True)
    tW = W + (5.0 / 3) * (A @ B)
    tx = torch.nn.functional.embedding(torch.tensor(ids), tW)
    tlogits = torch.tensor(h) @ tW.T
    ((tx * torch.tensor(Gx)).sum() + (tlogits * torch.tensor(Glogits)).sum()).backward()

    def rel(a, ref):
        return np.abs(a - ref).max() / max(np.abs(ref).max(), np.finfo(np.float32).tiny)

    assert x.dtype == np.float32 and layer.A.grad.dtype == np.float32
    assert rel(x, tx.detach().numpy()) < 1e-5 and rel(logits, tlogits.detach().numpy()) < 1e-5
    assert rel(layer.A.grad, A.grad.numpy()) < 1e-5
    assert rel(layer.B.grad, B.grad.numpy()) < 1e-5


def test_embedding_adapter_merges_and_is_refused_where_a_model_does_not_route_it():
    model, run = models()["gpt"]
    reference = run(model)
    assert apply_lora(model, ["wte", "blocks.1.ff.*"], rank=2, alpha=4.0, seed=3)[0] == "wte"
    assert isinstance(model.wte, LoRAEmbedding) and np.array_equal(run(model), reference)  # A = 0: the base
    model.wte.A.data[...] = np.random.default_rng(0).standard_normal(model.wte.A.shape) * 0.1
    W = model.wte.weight.data.copy()
    unmerged = run(model)
    assert np.abs(unmerged - reference).max() > 1e-3
    merge_lora(model)
    assert np.abs(run(model) - unmerged).max() < 1e-10  # the merged table serves lookup and head alike
    with pytest.raises(ValueError, match="merged"):
        model.backward(np.ones_like(unmerged))
    unmerge_lora(model)
    np.testing.assert_allclose(model.wte.weight.data, W, rtol=0, atol=1e-14)
    remove_lora(model)
    assert type(model.wte) is Embedding and np.abs(run(model) - unmerged).max() < 1e-10
    assert sorted(model.state_dict()) == sorted(gpt().state_dict())
    encoder, _ = models()["encoder"]  # its tok_emb is not listed: an adapter on one use of it only would be wrong
    with pytest.raises(ValueError, match="pattern 'encoder.tok_emb' matches no Linear"):
        apply_lora(encoder, "encoder.tok_emb")
    with pytest.raises(ValueError, match="train_norms: got 1"):
        apply_lora(gpt(), "wte", train_norms=1)


def test_train_norms_counts_every_norm():
    model = gpt()
    apply_lora(model, "wte", rank=2, train_norms=True)
    D, V = 16, 20
    norms = [n for n, p in model.named_parameters() if p.requires_grad and not n.startswith("wte.")]
    assert norms == ["blocks.0.norm_attn.weight", "blocks.0.norm_attn.bias", "blocks.0.norm_ff.weight",
                     "blocks.0.norm_ff.bias", "blocks.1.norm_attn.weight", "blocks.1.norm_attn.bias",
                     "blocks.1.norm_ff.weight", "blocks.1.norm_ff.bias", "ln_f.weight", "ln_f.bias"]
    assert model.num_trainable_parameters() == 2 * (V + D) + 10 * D
    assert model.lora_settings["train_norms"] is True


# ---- applying it to models ----------------------------------------------------------------
def models():
    enc = EncoderConfig(vocab_size=20, max_len=8, n_layer=2, n_head=2, d_model=16)
    s2s = Seq2SeqConfig.from_preset("s2s-test", src_vocab_size=20, tgt_vocab_size=20)
    return {
        "gpt": (gpt(dtype=np.float64), lambda m: m.forward(np.arange(12).reshape(2, 6) % 20)),
        "encoder": (EncoderClassifier(enc, 3, seed=1, dtype=np.float64),
                    lambda m: m.forward(np.array([[1, 5, 6, 0], [1, 7, 8, 9]]))),
        "seq2seq": (Seq2Seq(s2s, seed=2, dtype=np.float64),
                    lambda m: m.forward(np.array([[4, 5, 6, 2]]), np.array([[1, 7, 8]]))),
    }


@pytest.mark.parametrize("family", ["gpt", "encoder", "seq2seq"])
def test_merged_and_unmerged_logits_agree_and_unmerge_restores_w(family):
    model, run = models()[family]
    reference = run(model)
    names = apply_lora(model, "*blocks.*", rank=3, alpha=5.0, seed=7)
    assert names and all(isinstance(layer, LoRALinear) for _, layer in lora_layers(model))
    assert np.array_equal(run(model), reference)  # B = 0: the base model exactly
    rng = np.random.default_rng(1)
    for _, layer in lora_layers(model):
        layer.B.data[...] = rng.standard_normal(layer.B.shape) * 0.3
    weights = {n: layer.weight.data.copy() for n, layer in lora_layers(model)}
    unmerged = run(model)
    assert np.abs(unmerged - reference).max() > 1e-3  # the adapters do change the model
    assert merge_lora(model) == names
    merged = run(model)
    assert np.abs(merged - unmerged).max() < 1e-6
    unmerge_lora(model)
    for n, layer in lora_layers(model):
        np.testing.assert_allclose(layer.weight.data, weights[n], rtol=0, atol=1e-14)
    assert np.array_equal(run(model), unmerged) or np.abs(run(model) - unmerged).max() < 1e-12


def test_apply_lora_names_freezes_and_errors():
    model = gpt()
    total = model.num_parameters()
    names = apply_lora(model, ["blocks.1.attn.qkv", "blocks.0.*"], rank=2, alpha=4)
    assert names == ["blocks.0.attn.qkv", "blocks.0.attn.proj", "blocks.0.ff.fc", "blocks.0.ff.proj",
                     "blocks.1.attn.qkv"]  # model order, each once
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable == [f"{n}.{ab}" for n in names for ab in "AB"]
    assert model.num_parameters() == total + sum(2 * (lay.in_features + lay.out_features) for _, lay
                                                 in lora_layers(model))
    with pytest.raises(ValueError, match="'blocks.0.attn.qkv' .* already has LoRA"):
        apply_lora(model, "blocks.0.attn.qkv")
    with pytest.raises(ValueError, match="pattern 'blocks.\\*.atn' matches no Linear"):
        apply_lora(gpt(), "blocks.*.atn")
    with pytest.raises(ValueError, match="rank"):
        apply_lora(gpt(), "*", rank=0)
    wrapped = DataParallel(gpt(), threads=2)
    with pytest.raises(ValueError, match="before wrapping it in a DataParallel"):
        apply_lora(wrapped, "*")
    wrapped.close()
    plain = gpt()
    with pytest.raises(ValueError, match="no LoRA layers"):
        merge_lora(plain)


def test_remove_lora_leaves_a_plain_model_with_the_merged_weights():
    model, run = models()["gpt"]
    apply_lora(model, "*attn.qkv", rank=2, alpha=2.0, seed=3)
    for _, layer in lora_layers(model):
        layer.B.data[...] = 0.1
    expected = run(model)
    remove_lora(model)
    assert not lora_layers(model) and not any(n.endswith((".A", ".B")) for n, _ in model.named_parameters())
    assert np.abs(run(model) - expected).max() < 1e-10
    assert sorted(model.state_dict()) == sorted(gpt().state_dict())


def test_same_seed_same_adapters():
    a, b = gpt(), gpt()
    apply_lora(a, "*blocks.*", seed=4)
    apply_lora(b, "*blocks.*", seed=4)
    assert all(np.array_equal(x.A.data, y.A.data) for (_, x), (_, y) in zip(lora_layers(a), lora_layers(b)))
    c = gpt()
    apply_lora(c, "*blocks.*", seed=5)
    assert not any(np.array_equal(x.A.data, y.A.data) for (_, x), (_, y) in zip(lora_layers(a), lora_layers(c)))


def test_rank_pattern_gives_modules_their_own_rank_and_keeps_every_multiplier():
    model = gpt()
    apply_lora(model, ["wte", "*blocks.*"], rank=4, alpha=16, rank_pattern={"*.attn.qkv": 8, "*.ff.*": 2})
    got = {name: (layer.rank, layer.scale) for name, layer in lora_layers(model)}
    assert got["wte"] == (4, 4.0) and got["blocks.1.attn.proj"] == (4, 4.0)
    assert got["blocks.0.attn.qkv"] == (8, 4.0) and got["blocks.1.ff.fc"] == (2, 4.0) and got["blocks.0.ff.proj"] == (2, 4.0)
    assert model.blocks[0].attn.qkv.A.shape == (16, 8) and model.blocks[0].ff.fc.B.shape == (2, 64)
    first = gpt()  # the first matching pattern decides
    apply_lora(first, "*blocks.*", rank=4, rank_pattern={"*.attn.*": 3, "*.qkv": 7})
    assert first.blocks[0].attn.qkv.rank == 3
    with pytest.raises(ValueError, match=r"rank_pattern: '\*.nothing' matches none of the modules"):
        apply_lora(gpt(), "*blocks.*", rank_pattern={"*.nothing": 3})
    with pytest.raises(ValueError, match="matches none"):  # a module the targets did not choose
        apply_lora(gpt(), "*attn.*", rank_pattern={"*.ff.fc": 3})
    with pytest.raises(ValueError, match=r"rank_pattern '\*.qkv': got rank 0, expected an integer >= 1"):
        apply_lora(gpt(), "*blocks.*", rank_pattern={"*.qkv": 0})
    with pytest.raises(ValueError, match="expected a dict of fnmatch pattern -> rank"):
        apply_lora(gpt(), "*blocks.*", rank_pattern=[("*.qkv", 2)])


def test_a_gpt_with_ranks_by_pattern_passes_the_gradient_check():
    model = gpt(dtype=np.float64)
    apply_lora(model, ["wte", "*blocks.*"], rank=2, rank_pattern={"*.qkv": 3, "*.ff.proj": 1}, train_norms=True)
    rng = np.random.default_rng(3)
    for _, layer in lora_layers(model):  # the zero factor random too, so that every gradient is exercised
        layer.A.data[...] = rng.standard_normal(layer.A.shape) * 0.3
        layer.B.data[...] = rng.standard_normal(layer.B.shape) * 0.3
    report = gradcheck_module(model, np.array([[1, 5, 5, 2], [7, 0, 3, 3]]))
    assert report.ok(), report
    assert {"blocks.0.attn.qkv.A", "blocks.1.ff.proj.B", "wte.A"} <= set(report.per_array)


# ---- adapters on disk ---------------------------------------------------------------------
def test_adapter_round_trip_and_refusals(tmp_path):
    model, run = models()["gpt"]
    apply_lora(model, "*attn.*", rank=2, alpha=4.0, seed=1)
    for _, layer in lora_layers(model):
        layer.B.data[...] = np.random.default_rng(2).standard_normal(layer.B.shape)
    expected = run(model)
    folder = save_adapter(model, tmp_path / "adapter", base="runs/base")
    meta = json.loads((folder / "adapter.json").read_text())
    assert meta["base"] == "runs/base" and meta["rank"] == 2 and meta["alpha"] == 4.0
    assert meta["modules"] == [n for n, _ in lora_layers(model)]
    with pytest.raises(ValueError, match="already holds an adapter"):
        save_adapter(model, folder, base="runs/base")
    save_adapter(model, folder, base="runs/base", overwrite=True)

    fresh, _ = models()["gpt"]
    assert load_adapter(fresh, folder) == meta["modules"]
    assert np.array_equal(run(fresh), expected)
    assert [n for n, p in fresh.named_parameters() if p.requires_grad] == \
        [n for n, p in model.named_parameters() if p.requires_grad]

    embedded, _ = models()["gpt"]  # the embedding adapter and trained norms travel in the same two files
    apply_lora(embedded, ["wte", "*ff.fc"], rank=3, alpha=2.0, seed=2, train_norms=True)
    embedded.wte.A.data[...] = 0.2
    embedded.ln_f.weight.data[...] = 1.5
    expected_embedded = run(embedded)
    save_adapter(embedded, tmp_path / "embedded", base="runs/base")
    meta_e = json.loads((tmp_path / "embedded" / "adapter.json").read_text())
    assert meta_e["modules"][0] == "wte" and meta_e["train_norms"] is True and "ln_f.weight" in meta_e[
        "extra_parameters"]
    again, _ = models()["gpt"]
    load_adapter(again, tmp_path / "embedded")
    assert isinstance(again.wte, LoRAEmbedding) and np.array_equal(run(again), expected_embedded)
    assert again.num_trainable_parameters() == embedded.num_trainable_parameters()

    ranked, _ = models()["gpt"]  # ranks by pattern: each module's own rank travels in adapter.json
    apply_lora(ranked, "*blocks.*", rank=2, alpha=4.0, seed=3, rank_pattern={"*.qkv": 5})
    for _, layer in lora_layers(ranked):
        layer.B.data[...] = np.random.default_rng(4).standard_normal(layer.B.shape)
    expected_ranked = run(ranked)
    save_adapter(ranked, tmp_path / "ranked", base="runs/base")
    meta_r = json.loads((tmp_path / "ranked" / "adapter.json").read_text())
    assert meta_r["ranks"]["blocks.0.attn.qkv"] == 5 and meta_r["ranks"]["blocks.0.attn.proj"] == 2
    back, _ = models()["gpt"]
    load_adapter(back, tmp_path / "ranked")
    assert back.blocks[0].attn.qkv.rank == 5 and back.blocks[0].attn.qkv.scale == ranked.blocks[0].attn.qkv.scale
    assert np.array_equal(run(back), expected_ranked)

    other = gpt(seed=9, dtype=np.float64)  # same shapes, other weights: not this adapter's base
    with pytest.raises(ValueError, match="trained on another base"):
        load_adapter(other, folder)
    assert not lora_layers(other)  # refused before anything changed
    with pytest.raises(ValueError, match="trained on a GPT"):
        load_adapter(models()["encoder"][0], folder)
    raw = (folder / "adapter.safetensors").read_bytes()
    (folder / "adapter.safetensors").write_bytes(raw[:-4])
    with pytest.raises(ValueError, match="SHA-256"):
        load_adapter(models()["gpt"][0], folder)


def test_adapter_carries_a_new_head(tmp_path):
    enc = EncoderConfig(vocab_size=20, max_len=8, n_layer=1, n_head=2, d_model=16, mask_padding=False)
    body = TransformerEncoder(enc, rng=np.random.default_rng(0))
    model = prepare(body, "lora", n_classes=3, targets="*attn.qkv", rank=2, seed=5)
    assert isinstance(model, EncoderClassifier) and model.encoder is body and body.config.mask_padding
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {
        "encoder.blocks.0.attn.qkv.A", "encoder.blocks.0.attn.qkv.B", "head.weight", "head.bias"}
    model.head.weight.data[...] = 0.5
    save_adapter(model, tmp_path / "a", base="minilm")
    again = classifier_on(TransformerEncoder(enc, rng=np.random.default_rng(0)), 3, seed=99)
    load_adapter(again, tmp_path / "a")
    assert np.array_equal(again.head.weight.data, model.head.weight.data)


# ---- the recipes, through the one Trainer -------------------------------------------------------
def lm_run(out, method, *, threads=1, stop_at=None, resume=False, **opts):
    tok = CharTokenizer().train(TEXT)
    model = gpt(vocab_size=tok.vocab_size)
    model = prepare(model, method, **opts)
    wrapped = DataParallel(model, threads=threads, seed=0) if threads > 1 else model
    tc = TrainConfig(batch_size=4, max_iters=6, eval_interval=3, eval_iters=1, warmup_iters=1, lr=1e-2, seed=3)
    trainer = Trainer(wrapped, LMDataset(TEXT, tok, block_size=8), tc, out, meta=gpt_meta(model, tok),
                      progress=False, log=None)
    if resume:
        trainer.resume(out / "ckpt")
    trainer.train(stop_at=stop_at)
    if threads > 1:
        wrapped.close()
    return model, trainer


@pytest.mark.parametrize("threads", [1, 2])
def test_lora_trains_only_the_adapters_and_resumes_bit_identically(tmp_path, threads):
    base = {n: p.data.copy() for n, p in gpt(vocab_size=CharTokenizer().train(TEXT).vocab_size).named_parameters()}
    model, trainer = lm_run(tmp_path / "a", "lora", threads=threads, targets="*attn.*", rank=2)
    for name, p in model.named_parameters():
        if name in base:
            assert np.array_equal(p.data, base[name]), f"frozen {name} moved"
    assert any(layer.B.data.any() for _, layer in lora_layers(model))
    assert set(trainer.optimizer.state) == {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainer.history[-1]["val_loss"] < trainer.history[0]["val_loss"]
    lm_run(tmp_path / "b", "lora", threads=threads, targets="*attn.*", rank=2, stop_at=3)
    resumed, _ = lm_run(tmp_path / "b", "lora", threads=threads, targets="*attn.*", rank=2, resume=True)
    for (n, p), (_, q) in zip(model.named_parameters(), resumed.named_parameters()):
        assert np.array_equal(p.data, q.data), n


def test_two_threads_give_the_one_thread_lora_step():
    one, _ = lm_run(None, "lora", threads=1, targets="*blocks.*", rank=2)
    two, _ = lm_run(None, "lora", threads=2, targets="*blocks.*", rank=2)
    for (n, p), (_, q) in zip(one.named_parameters(), two.named_parameters()):
        np.testing.assert_allclose(p.data, q.data, rtol=0, atol=2e-5, err_msg=n)


def test_full_and_head_recipes():
    full, trainer = lm_run(None, "full")
    assert full.num_trainable_parameters() == full.num_parameters()
    assert len(trainer.optimizer.state) == len(list(full.named_parameters()))
    with pytest.raises(ValueError, match="has no head"):
        prepare(gpt(), "head")
    with pytest.raises(ValueError, match="expected an encoder"):
        prepare(gpt(), "head", n_classes=2)
    with pytest.raises(ValueError, match="method"):
        prepare(gpt(), "qlora")
    enc = EncoderClassifier(EncoderConfig(vocab_size=20, max_len=8, n_layer=1, n_head=2, d_model=16), 2, seed=0)
    head = prepare(enc, "head")
    assert head is enc and {n for n, p in enc.named_parameters() if p.requires_grad} == {"head.weight", "head.bias"}
    unfrozen = prepare(enc.encoder, "head", n_classes=4, freeze_body=False)
    assert unfrozen.num_trainable_parameters() == unfrozen.num_parameters()
