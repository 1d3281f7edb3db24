"""Beam search: keep the ``K`` best partial outputs instead of only the best one.

Greedy decoding picks the most likely token at every step, and can walk
into a sentence whose first word looked good but whose total probability is
poor. Beam search keeps ``K`` hypotheses ("beams") alive. At each step

    cand[k, v] = score[k] + log p(v | beam k)        (K, V)   every one-token extension
    keep the 2K best candidates over all (k, v)
      - a candidate ending in EOS becomes a *finished* hypothesis
        (only if it ranks among the top K: a worse finisher was never "best");
      - the best K others become the next beams.

Why 2K: up to K of the best candidates may end in EOS; 2K guarantees K
candidates remain to continue.

**Length penalty.** Log-probabilities are negative, so every extra token
lowers a sum: raw scores prefer short outputs. Finished hypotheses are
ranked by ``sum_logprob / length ** length_penalty`` (Hugging Face's
convention; ``length`` counts generated tokens including EOS): 0 ranks by
the raw sum, 1 by the per-token average, >1 favours longer outputs.

**Stopping.** With ``early_stopping=True`` a source is done as soon as it
has ``K`` finished hypotheses. With ``False`` it continues until no live
beam can still beat the worst finished one: sums only decrease, so a live
beam's best possible normalised score is bounded (see :meth:`_Finished.done`).

**One algorithm, any model.** The search talks to the model through three
calls (the :class:`BeamDecoder` protocol): ``first(K)`` (read the input,
return the first next-token logits for ``B*K`` rows), ``step(tokens)``
(feed one token per row, return next logits) and ``reorder(rows)``
(beams were reshuffled: keep the caches of the surviving rows). Adapters
for :class:`~minitx.models.seq2seq.Seq2Seq` (encodes once; cross-attention
K/V computed once per source and shared by its beams) and for
:class:`~minitx.models.gpt.GPT` (left-padded prompts) are below.

**Batches.** All rows of a batch move together, but every decision is made
per source from that source's rows only, with a stable sort for ties, and
padding is masked out of attention; so a batch gives the same outputs as
decoding each input alone (a test checks it).

Example (an untrained model, so the words are random; the shapes are the point)::

    >>> import numpy as np
    >>> from minitx.models.seq2seq import Seq2Seq, Seq2SeqConfig
    >>> model = Seq2Seq(Seq2SeqConfig.from_preset("s2s-test", src_vocab_size=9, tgt_vocab_size=9))
    >>> hyps = beam_search_seq2seq(model, np.array([[5, 6, 7], [8, 3, 0]]), beam_size=3, max_new_tokens=4)
    >>> len(hyps), len(hyps[0])      # per source, up to beam_size hypotheses, best first
    (2, 3)
    >>> hyps[0][0].score >= hyps[0][1].score
    True
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .backend import to_numpy
from .nn import KVCache


class BeamDecoder(Protocol):
    """What :func:`beam_search` needs from a model (``N = B * K`` rows, beams of a source adjacent)."""

    def first(self, beam_size: int):
        """Read the inputs; return next-token logits ``[B * beam_size, V]``."""

    def step(self, tokens):
        """Feed ``tokens [N]`` (one per row); return next-token logits ``[N, V]``."""

    def reorder(self, rows):
        """Row ``i`` continues from old row ``rows[i]`` (always a row of the same source)."""


@dataclass
class Hypothesis:
    tokens: list[int]  # generated ids, without the final EOS
    score: float  # sum_logprob / length ** length_penalty: what hypotheses are ranked by
    sum_logprob: float
    ended_with_eos: bool = False  # False: it ran out of steps instead


class _Finished:
    """The ``K`` best finished hypotheses of one source."""

    def __init__(self, beam_size: int, length_penalty: float):
        self.beam_size, self.length_penalty = beam_size, length_penalty
        self.hyps: list[Hypothesis] = []

    def add(self, tokens, sum_logprob: float, length: int, eos: bool = False) -> None:
        score = sum_logprob / (length ** self.length_penalty)
        if len(self.hyps) < self.beam_size or score > self.hyps[-1].score:
            self.hyps.append(Hypothesis([int(t) for t in tokens], score, sum_logprob, eos))
            self.hyps.sort(key=lambda h: -h.score)  # stable: earlier finisher wins ties
            del self.hyps[self.beam_size:]

    def done(self, best_live_sum: float, length: int, max_length: int, early_stopping: bool) -> bool:
        """Can no live beam enter the top K any more?

        A live beam's sum can only fall. With ``length_penalty > 0`` its
        normalised score is best if it ends as late as possible with its
        current sum: ``best_live_sum / max_length ** lp``. With ``lp <= 0`` a
        longer output never helps, so the bound uses the next length.
        """
        if len(self.hyps) < self.beam_size:
            return False
        if early_stopping:
            return True
        lp = self.length_penalty
        bound = best_live_sum / ((max_length if lp > 0 else length + 1) ** lp)
        return self.hyps[-1].score >= bound


def _log_softmax(logits):
    z = np.asarray(to_numpy(logits), dtype=np.float64)  # (N, V) search arithmetic in float64
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def beam_search(decoder: BeamDecoder, batch_size: int, *, beam_size: int = 4, max_new_tokens: int = 40,
                eos_id: int | None = None, length_penalty: float = 1.0, early_stopping: bool = True,
                pad_id: int = 0, logits_processor=None) -> list[list[Hypothesis]]:
    """Run beam search; return, per source, up to ``beam_size`` hypotheses, best first.

    ``eos_id=None`` (a language model with no end token) runs every beam for
    ``max_new_tokens`` tokens. ``logits_processor(logp, t) -> logp`` may edit
    the ``(N, V)`` log-probabilities of step ``t`` (1-based) before they are
    added to the beam scores: Hugging Face's forced-BOS/EOS and minimum-length
    rules (:mod:`minitx.pretrained.generation`) are such processors.
    """
    if not isinstance(beam_size, (int, np.integer)) or beam_size < 1:
        raise ValueError(f"beam_size: got {beam_size!r}, expected an integer >= 1")
    if not isinstance(max_new_tokens, (int, np.integer)) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens: got {max_new_tokens!r}, expected an integer >= 1")
    if not math.isfinite(length_penalty):
        raise ValueError(f"length_penalty: got {length_penalty!r}, expected a finite number")
    B, K = batch_size, beam_size
    finished = [_Finished(K, length_penalty) for _ in range(B)]
    done = np.zeros(B, dtype=bool)
    # Every beam starts as the same empty hypothesis; only beam 0 may expand at
    # the first step, or the K beams would be K copies of one candidate.
    scores = np.tile(np.array([0.0] + [-np.inf] * (K - 1)), B)  # (N,)
    seqs = np.zeros((B * K, 0), dtype=np.int64)  # (N, t) tokens so far
    logits = decoder.first(K)  # (N, V)
    for t in range(1, max_new_tokens + 1):
        logp = _log_softmax(logits)  # (N, V)
        if logits_processor is not None:
            logp = logits_processor(logp, t)
        V = logp.shape[1]
        cand = (scores[:, None] + logp).reshape(B, K * V)  # (B, K*V) every extension of every beam
        rows = np.arange(B * K)  # defaults for finished sources: keep rows, feed padding
        tokens = np.full(B * K, pad_id, dtype=np.int64)
        new_scores = np.full(B * K, -np.inf)
        for b in np.flatnonzero(~done):
            order = np.argsort(-cand[b], kind="stable")[: 2 * K]  # best first, ties -> lower index
            k = 0
            for rank, idx in enumerate(order):
                beam, tok = divmod(int(idx), V)
                score = float(cand[b, idx])
                if score == -np.inf:
                    break
                if eos_id is not None and tok == eos_id:
                    if rank < K:
                        finished[b].add(seqs[b * K + beam], score, t, eos=True)
                    continue
                rows[b * K + k], tokens[b * K + k], new_scores[b * K + k] = b * K + beam, tok, score
                k += 1
                if k == K:
                    break
            best_live = new_scores[b * K : b * K + K].max()
            done[b] = k == 0 or finished[b].done(best_live, t, max_new_tokens, early_stopping)
        scores = new_scores
        seqs = np.concatenate([seqs[rows], tokens[:, None]], axis=1)  # (N, t)
        if done.all() or t == max_new_tokens:
            break
        decoder.reorder(rows)
        logits = decoder.step(tokens)
    for b in np.flatnonzero(~done):  # out of steps: live beams compete with the finished ones
        for k in range(K):
            if scores[b * K + k] > -np.inf:
                finished[b].add(seqs[b * K + k], float(scores[b * K + k]), seqs.shape[1])
    return [f.hyps for f in finished]


# --------------------------------------------------------------------------
# Adapters
# --------------------------------------------------------------------------
class Seq2SeqBeamDecoder:
    """:class:`BeamDecoder` for an encoder-decoder: the source is encoded once,
    and each layer's cross-attention keys/values are projected once per
    source and repeated for its ``K`` beams (no recomputation while decoding)."""

    def __init__(self, model, src, src_padding_mask=None, start_id: int | None = None):
        self.model, self.src, self.src_padding_mask = model, np.asarray(src), src_padding_mask
        self.start_id = model.config.bos_id if start_id is None else start_id  # the decoder's first input

    def first(self, beam_size: int):
        self.state = self.model.start_decoding(self.src, repeat=beam_size, src_padding_mask=self.src_padding_mask)
        bos = np.full((self.src.shape[0] * beam_size, 1), self.start_id, dtype=np.int64)
        return self.model.decode_step(bos, self.state)[:, -1]  # (N, V)

    def step(self, tokens):
        return self.model.decode_step(np.asarray(tokens, dtype=np.int64)[:, None], self.state)[:, -1]

    def reorder(self, rows):
        # Beams only move within their own source, whose K rows of cross K/V are identical.
        self.state.reorder(rows, cross=False)


def beam_search_seq2seq(model, src, *, beam_size: int = 4, max_new_tokens: int = 40, length_penalty: float = 1.0,
                        early_stopping: bool = True) -> list[list[Hypothesis]]:
    """Beam search for every row of ``src [B, S]`` (right-padded with ``pad_id``)."""
    from .models.encoder import check_ids

    c = model.config
    check_ids("source ids", np.asarray(src), c.max_len)
    was_training = model.training
    model.eval()
    try:
        return beam_search(Seq2SeqBeamDecoder(model, src), len(src), beam_size=beam_size,
                           max_new_tokens=min(max_new_tokens, c.max_len), eos_id=c.eos_id,
                           length_penalty=length_penalty, early_stopping=early_stopping, pad_id=c.pad_id)
    finally:
        model.train(was_training)


class GPTBeamDecoder:
    """:class:`BeamDecoder` for a decoder-only GPT, with prompts of different lengths.

    Prompts are **left**-padded so every row's next token sits in the last
    column. Padding is masked out of attention (``key_padding_mask``), and
    each row's positions count from its own first real token, so a padded
    prompt is computed exactly as it would be alone. The model runs through
    :meth:`~minitx.models.gpt.GPT.hidden` (whatever its positions, norms and
    heads), and only the last position goes through the LM head.
    """

    def __init__(self, model, prompts, max_new_tokens: int):
        prompts = [list(map(int, p)) for p in prompts]
        if not prompts or any(len(p) == 0 for p in prompts):
            raise ValueError("prompts: got an empty prompt, expected at least one token per prompt")
        self.model, self.prompts, self.max_new_tokens = model, prompts, max_new_tokens
        longest = max(len(p) for p in prompts)
        # Only a learned position table has a last row; rotary and ALiBi models run on past block_size.
        if model.config.positions == "learned" and longest + max_new_tokens > model.config.block_size:
            raise ValueError(f"prompt length {longest} + max_new_tokens {max_new_tokens}: expected at most "
                             f"block_size={model.config.block_size}")

    def _run(self, ids, pos):
        m = self.model
        h = m.hidden(ids, kv_caches=self.caches, positions=pos, key_padding_mask=self.padding)[:, -1]  # (N, D)
        return h @ m.head_weight.T  # (N, D) @ (D, V) -> (N, V): only the last position predicts

    def first(self, beam_size: int):
        L = max(len(p) for p in self.prompts)
        ids = np.zeros((len(self.prompts), L), dtype=np.int64)
        padding = np.ones((len(self.prompts), L), dtype=bool)  # True = padding
        for b, p in enumerate(self.prompts):
            ids[b, L - len(p):] = p
            padding[b, L - len(p):] = False
        ids, padding = np.repeat(ids, beam_size, axis=0), np.repeat(padding, beam_size, axis=0)  # (N, L)
        pos = np.maximum(np.cumsum(~padding, axis=1) - 1, 0)  # (N, L) 0, 1, ... from the first real token
        self.padding, self.next_pos = padding, pos[:, -1] + 1
        self.caches = [KVCache(L + self.max_new_tokens) for _ in self.model.blocks]
        return self._run(ids, pos)

    def step(self, tokens):
        self.padding = np.concatenate([self.padding, np.zeros((len(tokens), 1), dtype=bool)], axis=1)
        logits = self._run(np.asarray(tokens, dtype=np.int64)[:, None], self.next_pos[:, None])
        self.next_pos = self.next_pos + 1
        return logits

    def reorder(self, rows):
        self.padding, self.next_pos = self.padding[rows], self.next_pos[rows]
        for cache in self.caches:
            cache.k, cache.v = cache.k[rows], cache.v[rows]


def beam_search_gpt(model, prompts, *, beam_size: int = 4, max_new_tokens: int = 20, eos_id: int | None = None,
                    length_penalty: float = 1.0, early_stopping: bool = True) -> list[list[Hypothesis]]:
    """Beam search continuations of each prompt (a list of token-id lists)."""
    was_training = model.training
    model.eval()
    try:
        return beam_search(GPTBeamDecoder(model, prompts, max_new_tokens), len(prompts), beam_size=beam_size,
                           max_new_tokens=max_new_tokens, eos_id=eos_id, length_penalty=length_penalty,
                           early_stopping=early_stopping)
    finally:
        model.train(was_training)


__all__ = ["BeamDecoder", "GPTBeamDecoder", "Hypothesis", "Seq2SeqBeamDecoder", "beam_search", "beam_search_gpt",
           "beam_search_seq2seq"]
