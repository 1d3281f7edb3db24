"""Translation with an encoder-decoder.

    source  "the red cat sleeps"   -> words -> ids (source vocabulary)
    target  "la mira roja dorme"   -> words + <eos> -> ids (target vocabulary)

Training is teacher-forced (:meth:`minitx.models.seq2seq.Seq2Seq.loss`);
translating is greedy, sampled (temperature / top-k / top-p) or beam search
(:mod:`minitx.beam`). Scored by corpus BLEU on held-out sentences.
With ``share_embeddings=True`` one joint vocabulary serves both sides.
"""
from __future__ import annotations

import numpy as np

from ..beam import beam_search_seq2seq
from ..datasets.metrics import corpus_bleu
from ..datasets.vocab import BOS, EOS, PAD, Vocab
from ..models.seq2seq import Seq2Seq, Seq2SeqConfig
from ..train.data import PaddedRows
from .common import pad_batch, read_task, save_task, task_meta, train_task


def check_pairs(rows, split: str) -> None:
    for i, (src, tgt) in enumerate(rows):
        if not src.split():
            raise ValueError(f"{split} example {i + 1}: empty source, expected at least one word")
        if not tgt.split():
            raise ValueError(f"{split} example {i + 1}: empty target, expected at least one word")


class Translator:
    """A :class:`~minitx.models.seq2seq.Seq2Seq` with its source and target vocabularies."""

    task = "translate"

    def __init__(self, model: Seq2Seq, src_vocab: Vocab, tgt_vocab: Vocab):
        self.model, self.src_vocab, self.tgt_vocab = model, src_vocab, tgt_vocab

    def encode_sources(self, sources) -> np.ndarray:
        max_len = self.model.config.max_len
        seqs = []
        for i, s in enumerate(sources):
            words = s.split()
            if not words:
                raise ValueError(f"source {i + 1}: empty source, expected at least one word")
            if len(words) > max_len:
                raise ValueError(f"source {i + 1}: {len(words)} words, expected at most max_len={max_len}")
            seqs.append(self.src_vocab.encode(words))
        return pad_batch(seqs, PAD)

    def encode_targets(self, targets) -> np.ndarray:
        """Target words + ``<eos>``, truncated to ``max_len``, right-padded."""
        max_len = self.model.config.max_len
        return pad_batch([(self.tgt_vocab.encode(t.split()) + [EOS])[:max_len] for t in targets], PAD)

    def translate(self, sources, *, beam: int = 0, max_new_tokens: int | None = None, temperature: float = 0.0,
                  top_k: int | None = None, top_p: float | None = None, seed: int | None = None,
                  length_penalty: float = 1.0, batch_size: int = 128) -> list[str]:
        """Translate a list of sentences. ``beam >= 1`` uses beam search; otherwise greedy
        (``temperature=0``) or sampling."""
        sources = list(sources)
        max_new = max_new_tokens or self.model.config.max_len
        out = []
        for i in range(0, len(sources), batch_size):
            src = self.encode_sources(sources[i : i + batch_size])
            if beam and beam >= 1:
                hyps = beam_search_seq2seq(self.model, src, beam_size=beam, max_new_tokens=max_new,
                                           length_penalty=length_penalty)
                ids = [h[0].tokens if h else [] for h in hyps]
            else:
                ids = self.model.generate(src, max_new, temperature=temperature, top_k=top_k, top_p=top_p,
                                          seed=seed)
            out += [" ".join(self.tgt_vocab.decode(s)) for s in ids]
        return out

    def evaluate(self, rows, **translate_kwargs) -> dict:
        """``rows = [(source, reference), ...] -> {"bleu", "exact"}`` (exact: whole-sentence match rate)."""
        sources, refs = zip(*rows)
        hyps = self.translate(sources, **translate_kwargs)
        return {"bleu": corpus_bleu(hyps, refs), "exact": float(np.mean([h == r for h, r in zip(hyps, refs)]))}

    @classmethod
    def fit(cls, train_rows, val_rows, train_config, *, preset: str = "s2s-small", share_embeddings: bool = False,
            min_freq: int = 1, out_dir=None, resume: bool = False, eval_sentences: int = 200, threads: int = 1,
            comm=None, progress: bool = True, log=print, **model_overrides) -> "Translator":
        """Train on ``[(source, target), ...]``; validation BLEU (greedy) on ``eval_sentences`` sentences.

        ``self.model`` ends with the weights of the best validation BLEU.
        """
        check_pairs(train_rows, "train")
        check_pairs(val_rows, "val")
        if share_embeddings:
            src_vocab = tgt_vocab = Vocab.build([s.split() + t.split() for s, t in train_rows], min_freq=min_freq)
        else:
            src_vocab = Vocab.build([s.split() for s, _ in train_rows], min_freq=min_freq)
            tgt_vocab = Vocab.build([t.split() for _, t in train_rows], min_freq=min_freq)
        overrides = {k: v for k, v in model_overrides.items() if v is not None}
        config = Seq2SeqConfig.from_preset(preset, src_vocab_size=len(src_vocab), tgt_vocab_size=len(tgt_vocab),
                                           share_embeddings=share_embeddings, pad_id=PAD, bos_id=BOS, eos_id=EOS,
                                           **overrides)
        self = cls(Seq2Seq(config, seed=train_config.seed), src_vocab, tgt_vocab)
        src_all = self.encode_sources([s for s, _ in train_rows])  # (N, S)
        tgt_all = self.encode_targets([t for _, t in train_rows])  # (N, T)
        data = PaddedRows((src_all, (src_all != PAD).sum(axis=1)), (tgt_all, (tgt_all != PAD).sum(axis=1)))
        val_subset = list(val_rows)[:eval_sentences]
        train_task(self, data, train_config, evaluate=lambda: self.evaluate(val_subset), metric="bleu",
                   out_dir=out_dir, resume=resume, threads=threads, comm=comm, progress=progress, log=log)
        return self

    def checkpoint_meta(self) -> dict:
        return task_meta(self.task, self.model, src_vocab=self.src_vocab.to_dict(),
                         tgt_vocab=self.tgt_vocab.to_dict())

    def save(self, directory) -> None:
        save_task(directory, self.model, self.checkpoint_meta())

    @classmethod
    def load(cls, path) -> "Translator":
        """From a run folder (its best model) or a checkpoint folder."""
        state, meta, _ = read_task(path, cls.task)
        model = Seq2Seq(Seq2SeqConfig.from_dict(meta["config"]))
        model.load_state_dict(state)
        return cls(model, Vocab.from_dict(meta["src_vocab"]), Vocab.from_dict(meta["tgt_vocab"]))
