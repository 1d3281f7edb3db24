"""Beam search: exact on a toy model, batched == one by one, greedy at K=1,
for both the encoder-decoder and GPT."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from minitx.beam import beam_search, beam_search_gpt, beam_search_seq2seq
from minitx.models.seq2seq import Seq2Seq, Seq2SeqConfig

EOS = 2


class MarkovDecoder:
    """A toy 'model': next-token logits depend only on the previous token (table ``[V, V]``)."""

    def __init__(self, table, batch):
        self.table, self.batch = table, batch

    def first(self, K):
        self.last = np.zeros(self.batch * K, dtype=np.int64)  # token 0 plays BOS
        return self.table[self.last]

    def step(self, tokens):
        self.last = np.asarray(tokens)
        return self.table[self.last]

    def reorder(self, rows):
        self.last = self.last[rows]


def exhaustive_best(table, max_len, lp):
    """Score every sequence (ending in EOS, or cut at max_len); return the best."""
    logp = table - np.log(np.exp(table).sum(axis=1, keepdims=True))
    best = (-np.inf, None)
    V = table.shape[0]
    for n in range(1, max_len + 1):
        for seq in itertools.product(range(V), repeat=n):
            if EOS in seq[:-1] or (n < max_len and seq[-1] != EOS):
                continue
            prev, s = 0, 0.0
            for tok in seq:
                s += logp[prev, tok]
                prev = tok
            score = s / n ** lp
            if score > best[0] + 1e-12:
                best = (score, [t for t in seq if t != EOS])
    return best


@pytest.mark.parametrize("lp", [0.0, 1.0, 2.0])
def test_wide_beam_is_exact_search(lp):
    rng = np.random.default_rng(int(lp * 10))
    table = rng.standard_normal((4, 4)) * 2
    score, tokens = exhaustive_best(table, 4, lp)
    hyps = beam_search(MarkovDecoder(table, 1), 1, beam_size=64, max_new_tokens=4, eos_id=EOS, length_penalty=lp,
                       early_stopping=False)
    assert hyps[0][0].tokens == tokens
    assert hyps[0][0].score == pytest.approx(score)
    scores = [h.score for h in hyps[0]]
    assert scores == sorted(scores, reverse=True)


def test_beam_of_one_is_greedy_and_wider_beams_find_better():
    rng = np.random.default_rng(5)
    table = rng.standard_normal((6, 6)) * 3
    greedy, prev = [], 0
    for _ in range(5):
        prev = int(table[prev].argmax())
        if prev == EOS:
            break
        greedy.append(prev)
    one = beam_search(MarkovDecoder(table, 1), 1, beam_size=1, max_new_tokens=5, eos_id=EOS)
    assert one[0][0].tokens == greedy
    wide = beam_search(MarkovDecoder(table, 1), 1, beam_size=8, max_new_tokens=5, eos_id=EOS, length_penalty=0.0,
                       early_stopping=False)
    assert wide[0][0].sum_logprob >= one[0][0].sum_logprob - 1e-12


def test_bad_arguments():
    table = np.zeros((4, 4))
    with pytest.raises(ValueError, match="beam_size"):
        beam_search(MarkovDecoder(table, 1), 1, beam_size=0)
    with pytest.raises(ValueError, match="max_new_tokens"):
        beam_search(MarkovDecoder(table, 1), 1, beam_size=2, max_new_tokens=0)


def seq2seq_model():
    cfg = Seq2SeqConfig(src_vocab_size=12, tgt_vocab_size=12, max_len=12, n_enc_layer=1, n_dec_layer=2, n_head=2,
                        d_model=16)
    model = Seq2Seq(cfg, seed=3, dtype=np.float64)
    rng = np.random.default_rng(0)
    for _, p in model.named_parameters():  # sharper distributions than at init: fewer near-ties, longer outputs
        p.data[...] += rng.standard_normal(p.data.shape) * 0.3
    return model


def test_seq2seq_batched_beam_equals_one_by_one():
    model = seq2seq_model()
    src = np.array([[5, 6, 7, 3, 0, 0], [7, 3, 0, 0, 0, 0], [4, 4, 9, 8, 6, 11], [9, 0, 0, 0, 0, 0]])
    for lp, early in ((1.0, True), (0.6, False)):
        batched = beam_search_seq2seq(model, src, beam_size=3, max_new_tokens=10, length_penalty=lp,
                                      early_stopping=early)
        for b in range(len(src)):
            n = int((src[b] != 0).sum())
            alone = beam_search_seq2seq(model, src[b:b + 1, :n], beam_size=3, max_new_tokens=10, length_penalty=lp,
                                        early_stopping=early)[0]
            assert [h.tokens for h in alone] == [h.tokens for h in batched[b]]
            np.testing.assert_allclose([h.score for h in alone], [h.score for h in batched[b]], rtol=1e-9)
    greedy = model.generate(src, 10)
    assert [h[0].tokens for h in beam_search_seq2seq(model, src, beam_size=1, max_new_tokens=10)] == greedy


def test_seq2seq_beam_never_reprojects_the_source(monkeypatch):
    model = seq2seq_model()
    calls = {"kv": 0}
    for block in model.dec_blocks:
        original = block.cross_attn.kv.forward

        def counted(x, original=original):
            calls["kv"] += 1
            return original(x)

        monkeypatch.setattr(block.cross_attn.kv, "forward", counted)
    beam_search_seq2seq(model, np.array([[5, 6, 7], [7, 3, 0]]), beam_size=4, max_new_tokens=8)
    assert calls["kv"] == len(model.dec_blocks), "one K/V projection per layer per batch, none per step"


def test_gpt_batched_beam_equals_one_by_one_and_greedy():
    from minitx.generate import generate
    from minitx.models import GPT, GPTConfig

    model = GPT(GPTConfig.from_preset("gpt-test", vocab_size=11), seed=0, dtype=np.float64)
    rng = np.random.default_rng(1)
    for _, p in model.named_parameters():
        p.data[...] += rng.standard_normal(p.data.shape) * 0.3
    prompts = [[1, 2, 3], [4], [5, 6, 7, 8, 9], [10, 1]]
    batched = beam_search_gpt(model, prompts, beam_size=3, max_new_tokens=6, eos_id=EOS)
    for p, hyps in zip(prompts, batched):
        alone = beam_search_gpt(model, [p], beam_size=3, max_new_tokens=6, eos_id=EOS)[0]
        assert [h.tokens for h in alone] == [h.tokens for h in hyps]
        np.testing.assert_allclose([h.score for h in alone], [h.score for h in hyps], rtol=1e-9)
    one = beam_search_gpt(model, prompts, beam_size=1, max_new_tokens=6)
    for p, hyps in zip(prompts, one):
        assert hyps[0].tokens == generate(model, np.array([p]), 6, temperature=0)[0, len(p):].tolist()
    with pytest.raises(ValueError, match="block_size"):
        beam_search_gpt(model, [[1] * 15], max_new_tokens=5)
