"""Encoder-only models: gradient checks (float64), padding invariance, PyTorch parity (float32).

The PyTorch reference is built from ``nn.TransformerEncoderLayer`` (dropout 0)
plus plain torch ops for embeddings, pooling and heads, with the *same
weights* copied from minitx (``Linear`` weights transposed: minitx stores
``(in, out)``, torch ``(out, in)``). Loss and the gradient of every minitx
parameter must agree within 1e-5 relative error (of the whole tensor).
"""
from __future__ import annotations

import numpy as np
import pytest

from minitx.gradcheck import gradcheck, gradcheck_module
from minitx.models.encoder import (EncoderClassifier, EncoderConfig, EncoderMLM, EncoderTagger, mask_tokens,
                                   pool_backward, pool_forward)

from torch_reference import load_into_torch, map_encoder_layer, rel_err, torch_grads

IDS = np.array([[1, 5, 6, 7, 3, 0], [1, 7, 3, 0, 0, 0], [1, 4, 4, 9, 8, 2]])  # 0 = padding


def tiny(**kw):
    return EncoderConfig.from_preset("enc-test", vocab_size=10, **kw)


# ---------------------------------------------------------------- gradient checks
@pytest.mark.parametrize("pooling", ["first", "mean"])
@pytest.mark.parametrize("norm_first", [True, False])
def test_classifier_gradcheck(pooling, norm_first):
    model = EncoderClassifier(tiny(norm_first=norm_first), 3, pooling=pooling, seed=1, dtype=np.float64)
    result = gradcheck_module(model, IDS, max_elements=6)
    assert result.ok(1e-6), str(result)


def test_classifier_loss_gradcheck_with_label_smoothing():
    """The whole training objective (forward + cross-entropy + backward_loss), not just the logits."""
    model = EncoderClassifier(tiny(), 3, pooling="mean", seed=2, dtype=np.float64)
    labels = np.array([0, 2, 1])
    model.zero_grad()
    model.loss(IDS, labels, label_smoothing=0.1)
    model.backward_loss()
    params = dict(model.named_parameters())
    result = gradcheck(lambda: model.loss(IDS, labels, label_smoothing=0.1)[0],
                       {n: p.data for n, p in params.items()}, {n: p.grad.copy() for n, p in params.items()},
                       max_elements=5)
    assert result.ok(1e-6), str(result)


def test_tagger_and_mlm_gradcheck():
    tagger = EncoderTagger(tiny(), 5, seed=3, dtype=np.float64)
    assert gradcheck_module(tagger, IDS, max_elements=5).ok(1e-6)
    mlm = EncoderMLM(tiny(), seed=4, dtype=np.float64)
    result = gradcheck_module(mlm, IDS, max_elements=5)
    assert result.ok(1e-6), str(result)


def test_pooling_backward_by_hand():
    """Mean pooling spreads the gradient equally over real tokens, none to padding."""
    h = np.arange(24, dtype=np.float64).reshape(2, 3, 4)
    pad = np.array([[False, False, True], [False, False, False]])
    pooled, cache = pool_forward(h, pad, "mean")
    np.testing.assert_allclose(pooled[0], h[0, :2].mean(axis=0))
    dh = pool_backward(np.ones((2, 4)), cache)
    np.testing.assert_allclose(dh[0, :, 0], [0.5, 0.5, 0.0])
    np.testing.assert_allclose(dh[1, :, 0], [1 / 3] * 3)
    pooled, cache = pool_forward(h, pad, "first")
    np.testing.assert_array_equal(pooled, h[:, 0])
    assert pool_backward(np.ones((2, 4)), cache)[:, 1:].sum() == 0
    with pytest.raises(ValueError, match="pooling"):
        pool_forward(h, pad, "max")


# ---------------------------------------------------------------- behaviour
@pytest.mark.parametrize("pooling", ["first", "mean"])
def test_padding_does_not_change_the_prediction(pooling):
    """A sentence's logits are the same alone and padded inside a longer batch."""
    model = EncoderClassifier(tiny(), 3, pooling=pooling, seed=5)
    alone = model.forward(np.array([[1, 7, 3]]))
    batched = model.forward(IDS)[1:2]
    np.testing.assert_allclose(alone, batched, rtol=1e-5, atol=1e-6)
    tagger = EncoderTagger(tiny(), 4, seed=6)
    np.testing.assert_allclose(tagger.forward(np.array([[1, 7, 3]]))[0], tagger.forward(IDS)[1, :3],
                               rtol=1e-5, atol=1e-6)


def test_mask_tokens_recipe():
    rng = np.random.default_rng(0)
    ids = rng.integers(5, 50, size=(200, 50))
    ids[:, 0] = 1  # a special [CLS] never masked
    inputs, targets = mask_tokens(ids, rng, mask_id=3, vocab_size=50, special_ids=(0, 1))
    chosen = targets != -100
    assert 0.13 < chosen.mean() < 0.17
    assert not chosen[:, 0].any()
    np.testing.assert_array_equal(targets[chosen], ids[chosen])
    assert 0.75 < (inputs[chosen] == 3).mean() < 0.85
    np.testing.assert_array_equal(inputs[~chosen], ids[~chosen])


def test_bad_config_and_input_errors():
    with pytest.raises(ValueError, match="d_model=10 with n_head=4"):
        EncoderConfig(vocab_size=10, d_model=10, n_head=4)
    with pytest.raises(ValueError, match="positions"):
        EncoderConfig(vocab_size=10, positions="rotary")
    model = EncoderClassifier(tiny(), 2)
    with pytest.raises(ValueError, match="max_len=16"):
        model.forward(np.ones((1, 17), dtype=np.int64))
    with pytest.raises(ValueError, match="empty sequence"):
        model.forward(np.ones((1, 0), dtype=np.int64))
    with pytest.raises(ValueError, match="integer"):
        model.forward(np.ones((1, 3)))


def test_float32_stays_float32():
    model = EncoderClassifier(tiny(), 3)
    logits = model.forward(IDS)
    assert logits.dtype == np.float32
    model.backward(np.ones_like(logits))
    assert all(p.grad.dtype == np.float32 for p in model.parameters())


# ---------------------------------------------------------------- PyTorch parity
def unit_scale_embeddings(model, seed: int = 0):
    """Redraw embedding and position tables N(0, 1) (PyTorch's ``nn.Embedding`` default).

    minitx initialises them N(0, 0.02^2), GPT-2 style. With inputs that small,
    attention is almost uniform and some gradients (cross-attention queries,
    LayerNorm gains) are sums of nearly cancelling terms, so float32 rounding
    in *either* library shows up at ~2e-5 relative; in float64 the same
    comparison agrees to 1e-14. Unit-scale inputs test the same maths on a
    well-conditioned problem, which is what a 1e-5 float32 tolerance needs.
    """
    rng = np.random.default_rng(seed)
    for name, p in model.named_parameters():
        if name.endswith(("emb.weight", "pos.weight")):
            p.data[...] = rng.standard_normal(p.data.shape).astype(p.data.dtype)
    return model


def torch_encoder_layer(torch, block, d_model, n_head, d_ff, norm_first):
    """An ``nn.TransformerEncoderLayer`` holding the weights of a minitx ``EncoderBlock``, and its weight map."""
    F = torch.nn.functional
    layer = torch.nn.TransformerEncoderLayer(d_model, n_head, d_ff, dropout=0.0, batch_first=True,
                                             norm_first=norm_first, activation=lambda x: F.gelu(x, approximate="tanh"))
    wmap = map_encoder_layer(layer, d_model)
    load_into_torch(block, wmap)
    return layer, wmap


def torch_encoder(torch, encoder):
    """Build a torch forward for a minitx TransformerEncoder; returns (run(ids) -> h, grads())."""
    c = encoder.config
    d_ff = c.d_ff or 4 * c.d_model
    tok = torch.tensor(encoder.tok_emb.weight.data.copy(), requires_grad=True)
    pos = torch.tensor(encoder.pos.weight.data.copy(), requires_grad=True)
    layers = [torch_encoder_layer(torch, b, c.d_model, c.n_head, d_ff, c.norm_first) for b in encoder.blocks]  # (layer, map)
    final = encoder.ln_f if c.norm_first else encoder.ln_emb
    ln = torch.nn.LayerNorm(c.d_model)
    with torch.no_grad():
        ln.weight.copy_(torch.tensor(final.weight.data))
        ln.bias.copy_(torch.tensor(final.bias.data))

    def run(ids):
        ids_t = torch.tensor(ids)
        pad = ids_t == c.pad_id
        x = tok[ids_t] + pos[: ids.shape[1]]
        if not c.norm_first:
            x = ln(x)
        for layer, _ in layers:
            x = layer(x, src_key_padding_mask=pad)
        return (ln(x) if c.norm_first else x), pad

    def grads(prefix="encoder."):
        out = {f"{prefix}tok_emb.weight": tok.grad.numpy(), f"{prefix}pos.weight": pos.grad.numpy()}
        lname = "ln_f" if c.norm_first else "ln_emb"
        out[f"{prefix}{lname}.weight"], out[f"{prefix}{lname}.bias"] = ln.weight.grad.numpy(), ln.bias.grad.numpy()
        for i, (_, wmap) in enumerate(layers):
            out.update(torch_grads(wmap, f"{prefix}blocks.{i}."))
        return out

    return run, grads, tok


def assert_parity(model, loss_ours, loss_ref, ref_grads):
    assert rel_err(loss_ours, loss_ref.item()) < 1e-5
    names = [n for n, _ in model.named_parameters()]
    assert sorted(names) == sorted(ref_grads), "every minitx parameter needs a torch counterpart"
    for name, p in model.named_parameters():
        assert p.grad.dtype == np.float32
        err = rel_err(p.grad, ref_grads[name])
        assert err < 1e-5, f"{name}: relative error {err:.2e}"


@pytest.mark.parametrize("pooling", ["first", "mean"])
@pytest.mark.parametrize("norm_first", [True, False])
def test_classifier_matches_pytorch(pooling, norm_first):
    torch = pytest.importorskip("torch", reason="PyTorch is a test-only reference; pip install torch")
    cfg = EncoderConfig(vocab_size=12, max_len=8, n_layer=2, n_head=2, d_model=16, norm_first=norm_first)
    model = unit_scale_embeddings(EncoderClassifier(cfg, 3, pooling=pooling, seed=7))
    labels = np.array([2, 0, 1])
    model.zero_grad()
    loss, _ = model.loss(IDS, labels, label_smoothing=0.1)
    model.backward_loss()

    run, grads, _ = torch_encoder(torch, model.encoder)
    W = torch.tensor(model.head.weight.data.T.copy(), requires_grad=True)
    b = torch.tensor(model.head.bias.data.copy(), requires_grad=True)
    h, pad = run(IDS)
    if pooling == "first":
        pooled = h[:, 0]
    else:
        keep = (~pad).float()[:, :, None]
        pooled = (h * keep).sum(1) / keep.sum(1)
    ref = torch.nn.functional.cross_entropy(torch.nn.functional.linear(pooled, W, b), torch.tensor(labels),
                                            label_smoothing=0.1)
    ref.backward()
    ref_grads = grads()
    ref_grads["head.weight"], ref_grads["head.bias"] = W.grad.numpy().T, b.grad.numpy()
    assert_parity(model, loss, ref, ref_grads)


def test_tagger_and_mlm_match_pytorch():
    torch = pytest.importorskip("torch", reason="PyTorch is a test-only reference; pip install torch")
    F = torch.nn.functional
    cfg = EncoderConfig(vocab_size=12, max_len=8, n_layer=2, n_head=2, d_model=16)
    tags = np.array([[0, 1, 2, 3, 1, -100], [2, 2, 1, -100, -100, -100], [0, 0, 3, 3, 1, 2]])
    tagger = unit_scale_embeddings(EncoderTagger(cfg, 4, seed=8))
    tagger.zero_grad()
    loss, _ = tagger.loss(IDS, tags)
    tagger.backward_loss()
    run, grads, _ = torch_encoder(torch, tagger.encoder)
    W = torch.tensor(tagger.head.weight.data.T.copy(), requires_grad=True)
    b = torch.tensor(tagger.head.bias.data.copy(), requires_grad=True)
    h, _ = run(IDS)
    ref = F.cross_entropy(F.linear(h, W, b).reshape(-1, 4), torch.tensor(tags).reshape(-1), ignore_index=-100)
    ref.backward()
    ref_grads = grads()
    ref_grads["head.weight"], ref_grads["head.bias"] = W.grad.numpy().T, b.grad.numpy()
    assert_parity(tagger, loss, ref, ref_grads)

    mlm = unit_scale_embeddings(EncoderMLM(cfg, seed=9))
    inputs, targets = mask_tokens(IDS, np.random.default_rng(1), mask_id=11, vocab_size=12, special_ids=(0, 1), p=0.5)
    mlm.zero_grad()
    loss, _ = mlm.loss(inputs, targets)
    mlm.backward_loss()
    run, grads, tok = torch_encoder(torch, mlm.encoder)
    Wd = torch.tensor(mlm.dense.weight.data.T.copy(), requires_grad=True)
    bd = torch.tensor(mlm.dense.bias.data.copy(), requires_grad=True)
    g = torch.tensor(mlm.ln_head.weight.data.copy(), requires_grad=True)
    beta = torch.tensor(mlm.ln_head.bias.data.copy(), requires_grad=True)
    ob = torch.tensor(mlm.out_bias.data.copy(), requires_grad=True)
    h, _ = run(inputs)
    h = F.layer_norm(F.gelu(F.linear(h, Wd, bd), approximate="tanh"), (16,), g, beta)
    logits = h @ tok.T + ob  # tied output layer
    ref = F.cross_entropy(logits.reshape(-1, 12), torch.tensor(targets).reshape(-1), ignore_index=-100)
    ref.backward()
    ref_grads = grads()
    ref_grads.update({"dense.weight": Wd.grad.numpy().T, "dense.bias": bd.grad.numpy(), "ln_head.weight": g.grad.numpy(),
                      "ln_head.bias": beta.grad.numpy(), "out_bias": ob.grad.numpy()})
    assert_parity(mlm, loss, ref, ref_grads)


def test_mlm_pretraining_steps_lower_the_loss():
    """BERT's objective trains: a few AdamW steps on masked reviews lower the masked-token loss."""
    from minitx.datasets import Vocab, make_sentiment
    from minitx.datasets.vocab import CLS, MASK, PAD
    from minitx.optim import AdamW
    from minitx.tasks.common import pad_batch

    texts = [t.split() for t, _ in make_sentiment(64, 1, 1, seed=0)["train"]]
    vocab = Vocab.build(texts)
    ids = pad_batch([[CLS] + vocab.encode(t) for t in texts], PAD)[:, :24]
    model = EncoderMLM(EncoderConfig(vocab_size=len(vocab), max_len=24, n_layer=1, n_head=2, d_model=32), seed=0)
    opt = AdamW(model.named_parameters(), lr=3e-3, weight_decay=0.0)
    rng = np.random.default_rng(0)
    losses = []
    for _ in range(30):
        inputs, targets = mask_tokens(ids, rng, mask_id=MASK, vocab_size=len(vocab), special_ids=(PAD, CLS))
        model.zero_grad()
        losses.append(model.loss(inputs, targets)[0])
        model.backward_loss()
        opt.step()
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.5, losses
