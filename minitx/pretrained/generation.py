"""Greedy decoding and beam search that follow a Hugging Face folder's generation settings.

``transformers``' ``model.generate`` reads ``generation_config.json`` (or the
generation fields of ``config.json``) and turns some of them into *logits
processors*, rules applied to the next-token scores before choosing:

* ``forced_bos_token_id``: the first generated token must be this one;
* ``forced_eos_token_id``: when the output reaches its maximum length, the
  last token must be EOS (BART's configs set this);
* ``min_length``: EOS is forbidden until the sequence is this long.

The sequence length those rules count is the whole ``input_ids`` of the
decoder: the (padded) prompt for a decoder-only model, the decoder's start
token for an encoder-decoder, plus what was generated.

Then the search itself: greedy takes the argmax; beam search is
:func:`minitx.beam.beam_search`, which ranks finished hypotheses by
``sum_logprob / length ** length_penalty`` with ``length`` counting the
generated tokens including EOS, keeps the best ``2K`` candidates per step,
and with ``early_stopping=True`` closes a source once it has ``K`` finished
hypotheses: Hugging Face's rules, so the tokens agree (the tests check it).

Settings that change the search in ways minitx does not implement
(repetition penalties, banned n-grams...) are refused with a message naming
them, rather than silently ignored.
"""
from __future__ import annotations

import numpy as np

from ..beam import GPTBeamDecoder, Seq2SeqBeamDecoder, beam_search
from ..models.gpt import GPT
from ..models.seq2seq import Seq2Seq
from .common import single_id
from .folder import PretrainedError

#: Generation settings and the value at which they do nothing.
UNSUPPORTED = {"no_repeat_ngram_size": 0, "encoder_no_repeat_ngram_size": 0, "repetition_penalty": 1.0,
               "bad_words_ids": None, "suppress_tokens": None, "begin_suppress_tokens": None,
               "exponential_decay_length_penalty": None, "sequence_bias": None, "diversity_penalty": 0.0,
               "min_new_tokens": None}


def settings(model) -> dict:
    """The generation settings of a loaded (or minitx-built) model, checked."""
    gen = dict(getattr(model, "generation_config", None) or {})
    hf = dict(getattr(model, "hf_config", None) or {})
    for key, neutral in UNSUPPORTED.items():
        value = gen.get(key, neutral)
        if value not in (neutral, None) and not (isinstance(value, list) and not value):
            raise PretrainedError(f"generation_config: {key}={value!r} is not supported by minitx's generation")
    merged = {**hf, **gen}
    src = "generation_config"
    if isinstance(model, Seq2Seq):
        c = model.config
        eos, pad, start = c.eos_id, c.pad_id, c.bos_id
        e = single_id(merged, "eos_token_id", src)
        eos = eos if e is None else e
        p = merged.get("pad_token_id")
        pad = pad if p is None else p
        s = merged.get("decoder_start_token_id")
        start = start if s is None else s
    elif isinstance(model, GPT):
        eos = single_id(merged, "eos_token_id", src)
        pad = merged.get("pad_token_id")
        pad = eos if pad is None else pad  # what transformers does when a GPT-2 has no pad token
        start = None
    else:
        raise PretrainedError(f"generate: got a {type(model).__name__}, expected a GPT or Seq2Seq model")
    return dict(eos_id=eos, pad_id=pad, decoder_start_id=start,
                forced_bos_id=single_id(merged, "forced_bos_token_id", src),
                forced_eos_id=single_id(merged, "forced_eos_token_id", src),
                min_length=int(merged.get("min_length") or 0))


class LogitsProcessor:
    """Hugging Face's forced-BOS, forced-EOS and min-length rules, for step ``t`` (1-based).

    ``prefix``: decoder tokens before the first generated one (the padded
    prompt length, or 1 for the decoder start token); ``max_length`` is
    ``prefix + max_new_tokens``.
    """

    def __init__(self, s: dict, prefix: int, max_new_tokens: int):
        self.s, self.prefix, self.max_length = s, prefix, prefix + max_new_tokens

    def __call__(self, scores, t: int):
        s, cur_len = self.s, self.prefix + t - 1  # tokens in input_ids when this step's scores are made
        scores = np.array(scores, copy=True)
        if s["min_length"] and s["eos_id"] is not None and cur_len < s["min_length"]:
            scores[:, s["eos_id"]] = -np.inf
        if s["forced_bos_id"] is not None and cur_len == 1:
            scores[:] = -np.inf  # every other token impossible; the forced one gets log-probability 0
            scores[:, s["forced_bos_id"]] = 0.0
        if s["forced_eos_id"] is not None and cur_len == self.max_length - 1:
            scores[:] = -np.inf
            scores[:, s["forced_eos_id"]] = 0.0
        return scores


def _decoder(model, inputs, max_new_tokens: int, s: dict):
    """``(BeamDecoder, batch size, prefix length)`` for a GPT (list of prompts) or a Seq2Seq (list of sources)."""
    rows = [list(map(int, r)) for r in inputs]
    if not rows or any(len(r) == 0 for r in rows):
        raise ValueError("inputs: got an empty sequence, expected at least one token per input")
    if isinstance(model, GPT):
        return GPTBeamDecoder(model, rows, max_new_tokens), len(rows), max(len(r) for r in rows)
    S = max(len(r) for r in rows)
    pad = model.config.pad_id
    src = np.full((len(rows), S), pad, dtype=np.int64)  # (B, S) right-padded
    padding = np.ones((len(rows), S), dtype=bool)
    for b, r in enumerate(rows):
        src[b, : len(r)], padding[b, : len(r)] = r, False
    # transformers masks the pad id in the encoder input when it differs from EOS.
    if s["pad_id"] is not None and s["pad_id"] != s["eos_id"]:
        padding |= src == s["pad_id"]
    decoder = Seq2SeqBeamDecoder(model, src, padding, start_id=s["decoder_start_id"])
    return decoder, len(rows), 1


def generate(model, inputs, max_new_tokens: int = 20, *, num_beams: int = 1, length_penalty: float = 1.0,
             early_stopping: bool = True, temperature: float = 0.0, top_k: int | None = None,
             top_p: float | None = None, seed: int | None = None) -> list[list[int]]:
    """Generated ids per input (a list of token-id lists), as ``model.generate`` makes them.

    For a GPT, ``inputs`` are prompts and the result is the continuation;
    for a Seq2Seq, ``inputs`` are the encoder's inputs and the result is the
    decoder's output without its start token. EOS, when produced, ends the
    list (and is included, as in Hugging Face's output).

    ``temperature=0`` (the default) is greedy, as ``do_sample=False``;
    above 0 the tokens are drawn with minitx's sampler
    (:func:`minitx.generate.next_token_probs`, after the folder's processors).
    """
    if not isinstance(max_new_tokens, (int, np.integer)) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens: got {max_new_tokens!r}, expected an integer >= 1")
    s = settings(model)
    was_training = model.training
    model.eval()
    try:
        decoder, B, prefix = _decoder(model, inputs, max_new_tokens, s)
        processor = LogitsProcessor(s, prefix, max_new_tokens)
        if num_beams == 1:
            return _step_by_step(decoder, B, max_new_tokens, s, processor, temperature, top_k, top_p, seed)
        hyps = beam_search(decoder, B, beam_size=num_beams, max_new_tokens=max_new_tokens, eos_id=s["eos_id"],
                           length_penalty=length_penalty, early_stopping=early_stopping,
                           pad_id=s["pad_id"] if s["pad_id"] is not None else 0, logits_processor=processor)
        return [h[0].tokens + ([s["eos_id"]] if h[0].ended_with_eos else []) for h in hyps]
    finally:
        model.train(was_training)


def _step_by_step(decoder, B: int, max_new_tokens: int, s: dict, processor, temperature=0.0, top_k=None, top_p=None,
                  seed=None) -> list[list[int]]:
    """The argmax (or a draw) at every step; a row that produced EOS stops growing (it is fed padding)."""
    from ..generate import check_sampling_args, next_token_probs, sample_from

    check_sampling_args(temperature, top_k, top_p, max_new_tokens)
    rng = np.random.default_rng(seed)
    eos, pad = s["eos_id"], s["pad_id"] if s["pad_id"] is not None else 0
    logits = decoder.first(1)  # (B, V)
    out = np.zeros((B, 0), dtype=np.int64)
    done = np.zeros(B, dtype=bool)
    for t in range(1, max_new_tokens + 1):
        scores = processor(np.asarray(logits, dtype=np.float32), t)  # (B, V)
        if temperature == 0:
            chosen = scores.argmax(axis=-1)  # (B,)
        else:
            chosen = sample_from(next_token_probs(scores, temperature=temperature, top_k=top_k, top_p=top_p), rng)
        nxt = np.where(done, pad, chosen)  # (B,)
        out = np.concatenate([out, nxt[:, None]], axis=1)  # (B, t)
        if eos is not None:
            done |= nxt == eos
        if done.all() or t == max_new_tokens:
            break
        logits = decoder.step(nxt)
    result = []
    for b in range(B):
        row = out[b].tolist()
        if eos is not None and eos in row:
            row = row[: row.index(eos) + 1]
        result.append(row)
    return result


__all__ = ["LogitsProcessor", "generate", "settings"]
