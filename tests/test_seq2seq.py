"""Encoder-decoder model: gradient checks (float64), PyTorch parity (float32),
and incremental decoding that equals the teacher-forced pass.

The PyTorch reference (weight maps in ``tests/torch_reference.py``): the encoder from
:mod:`tests.test_encoder`'s builder
(``nn.TransformerEncoderLayer``) and ``nn.TransformerDecoderLayer`` for each
decoder block (cross-attention ``in_proj_weight = cat(q.weight.T, kv.weight.T)``),
with a causal ``tgt_mask``, ``tgt_key_padding_mask`` and
``memory_key_padding_mask``; same weights, float32, 1e-5 relative error.
"""
from __future__ import annotations

import numpy as np
import pytest

from minitx.gradcheck import gradcheck, gradcheck_module
from minitx.models.seq2seq import Seq2Seq, Seq2SeqConfig, shift_right

from test_encoder import assert_parity, torch_encoder, unit_scale_embeddings
from torch_reference import load_into_torch, map_decoder_layer, torch_grads

SRC = np.array([[5, 6, 7, 3, 0], [7, 3, 0, 0, 0], [4, 4, 9, 8, 6]])  # 0 = padding
TGT = np.array([[4, 5, 6, 2, 0, 0], [8, 2, 0, 0, 0, 0], [9, 9, 4, 3, 7, 2]])  # ends in EOS (2), then padding


def tiny(share=False, **kw):
    return Seq2SeqConfig.from_preset("s2s-test", src_vocab_size=10, tgt_vocab_size=10 if share else 11,
                                     share_embeddings=share, **kw)


def test_shift_right():
    np.testing.assert_array_equal(shift_right(TGT[:2], 1, 0), [[1, 4, 5, 6, 2, 0], [1, 8, 2, 0, 0, 0]])


@pytest.mark.parametrize("share", [False, True])
@pytest.mark.parametrize("norm_first", [True, False])
def test_seq2seq_gradcheck(share, norm_first):
    model = Seq2Seq(tiny(share, norm_first=norm_first, n_dec_layer=2), seed=1, dtype=np.float64)
    result = gradcheck_module(model, SRC, shift_right(TGT, 1, 0), max_elements=5)
    assert result.ok(1e-6), str(result)


def test_seq2seq_loss_gradcheck_label_smoothing():
    model = Seq2Seq(tiny(), seed=2, dtype=np.float64)
    model.zero_grad()
    model.loss(SRC, TGT, label_smoothing=0.1)
    model.backward_loss()
    params = dict(model.named_parameters())
    result = gradcheck(lambda: model.loss(SRC, TGT, label_smoothing=0.1)[0], {n: p.data for n, p in params.items()},
                       {n: p.grad.copy() for n, p in params.items()}, max_elements=4)
    assert result.ok(1e-6), str(result)


def test_shared_embeddings_are_one_parameter():
    model = Seq2Seq(tiny(share=True))
    assert model.tgt_emb.weight is model.encoder.tok_emb.weight
    names = [n for n, _ in model.named_parameters()]
    assert "encoder.tok_emb.weight" in names and "tgt_emb.weight" not in names
    with pytest.raises(ValueError, match="joint vocabulary"):
        Seq2SeqConfig(src_vocab_size=10, tgt_vocab_size=11, share_embeddings=True)


def test_step_decoding_equals_teacher_forcing_and_reuses_cross_kv(monkeypatch):
    model = Seq2Seq(tiny(n_dec_layer=2), seed=3).eval()
    tgt_in = shift_right(TGT, 1, 0)[:, :3]  # no padding in the first 3 columns
    full = model.forward(SRC, tgt_in)
    state = model.start_decoding(SRC)
    for block in model.dec_blocks:  # from now on, projecting the source again is a bug
        monkeypatch.setattr(block.cross_attn.kv, "forward", lambda *a: pytest.fail("cross K/V recomputed"))
        monkeypatch.setattr(model.encoder, "forward", lambda *a: pytest.fail("encoder rerun"))
    steps = np.concatenate([model.decode_step(tgt_in[:, t:t + 1], state) for t in range(3)], axis=1)
    np.testing.assert_allclose(steps, full, rtol=1e-5, atol=1e-5)


def test_source_padding_does_not_change_the_translation():
    model = Seq2Seq(tiny(), seed=4).eval()
    alone = model.forward(SRC[1:2, :2], shift_right(TGT[1:2, :2], 1, 0))
    batched = model.forward(SRC, shift_right(TGT, 1, 0))[1:2, :2]
    np.testing.assert_allclose(alone, batched, rtol=1e-5, atol=1e-6)
    assert model.generate(SRC[1:2, :2], 6) == model.generate(SRC, 6)[1:2]


def test_generate_greedy_and_sampling_are_reproducible():
    model = Seq2Seq(tiny(), seed=5)
    greedy = model.generate(SRC, 5)
    assert len(greedy) == 3 and all(len(g) <= 5 for g in greedy)
    assert model.generate(SRC, 5, temperature=1.0, seed=3) == model.generate(SRC, 5, temperature=1.0, seed=3)
    with pytest.raises(ValueError, match="temperature"):
        model.generate(SRC, 5, temperature=-1.0)


# ---------------------------------------------------------------- PyTorch parity
def torch_decoder_layer(torch, block, d_model, n_head, d_ff, norm_first):
    """An ``nn.TransformerDecoderLayer`` holding the weights of a minitx ``DecoderBlock``, and its weight map."""
    F = torch.nn.functional
    layer = torch.nn.TransformerDecoderLayer(d_model, n_head, d_ff, dropout=0.0, batch_first=True,
                                             norm_first=norm_first, activation=lambda x: F.gelu(x, approximate="tanh"))
    wmap = map_decoder_layer(layer, d_model)
    load_into_torch(block, wmap)
    return layer, wmap


@pytest.mark.parametrize("share", [False, True])
@pytest.mark.parametrize("norm_first", [True, False])
def test_seq2seq_matches_pytorch(share, norm_first):
    torch = pytest.importorskip("torch", reason="PyTorch is a test-only reference; pip install torch")
    F = torch.nn.functional
    cfg = Seq2SeqConfig(src_vocab_size=12, tgt_vocab_size=12 if share else 13, max_len=8, n_enc_layer=2,
                        n_dec_layer=2, n_head=2, d_model=16, norm_first=norm_first, share_embeddings=share)
    model = unit_scale_embeddings(Seq2Seq(cfg, seed=6))
    model.zero_grad()
    loss, _ = model.loss(SRC, TGT, label_smoothing=0.1)
    model.backward_loss()

    run_encoder, encoder_grads, src_tok = torch_encoder(torch, model.encoder)
    tgt_tok = src_tok if share else torch.tensor(model.tgt_emb.weight.data.copy(), requires_grad=True)
    tgt_pos = torch.tensor(model.tgt_pos.weight.data.copy(), requires_grad=True)
    layers = [torch_decoder_layer(torch, b, 16, 2, 64, norm_first) for b in model.dec_blocks]
    final = model.ln_dec if norm_first else model.ln_tgt_emb
    ln = torch.nn.LayerNorm(16)
    with torch.no_grad():
        ln.weight.copy_(torch.tensor(final.weight.data))
        ln.bias.copy_(torch.tensor(final.bias.data))

    memory, src_pad = run_encoder(SRC)
    tgt_in = torch.tensor(shift_right(TGT, cfg.bos_id, cfg.pad_id))
    T = tgt_in.shape[1]
    causal = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)  # True = blocked
    x = tgt_tok[tgt_in] + tgt_pos[:T]
    if not norm_first:
        x = ln(x)
    for layer, _ in layers:
        x = layer(x, memory, tgt_mask=causal, tgt_key_padding_mask=tgt_in == 0, memory_key_padding_mask=src_pad)
    if norm_first:
        x = ln(x)
    logits = x @ tgt_tok.T  # the tied output layer
    targets = torch.tensor(np.where(TGT == 0, -100, TGT))
    ref = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100,
                          label_smoothing=0.1)
    ref.backward()

    ref_grads = encoder_grads()
    if not share:
        ref_grads["tgt_emb.weight"] = tgt_tok.grad.numpy()
    ref_grads["tgt_pos.weight"] = tgt_pos.grad.numpy()
    lname = "ln_dec" if norm_first else "ln_tgt_emb"
    ref_grads[f"{lname}.weight"], ref_grads[f"{lname}.bias"] = ln.weight.grad.numpy(), ln.bias.grad.numpy()
    for i, (_, wmap) in enumerate(layers):
        ref_grads.update(torch_grads(wmap, f"dec_blocks.{i}."))
    assert_parity(model, loss, ref, ref_grads)
