"""Token classification with an encoder (named-entity recognition).

    words  maria lopez visited port alder
    ids    -> EncoderTagger -> one tag distribution per word
    tags   B-PER I-PER O       B-LOC I-LOC

Padding positions get target ``-100`` (ignored by the loss). Scored by
entity-level F1 (:func:`minitx.datasets.metrics.entity_f1`).
"""
from __future__ import annotations

import numpy as np

from ..datasets.metrics import entity_f1
from ..datasets.vocab import PAD, UNK, LabelSet, Vocab
from ..models.encoder import EncoderConfig, EncoderTagger
from ..nn.loss import IGNORE_INDEX
from ..train.data import PaddedRows
from .common import pad_batch, read_task, save_task, task_meta, train_task


def check_tagged(rows, tags: LabelSet, split: str) -> None:
    """Every example: as many tags as words, every tag known."""
    for i, (tokens, tag_seq) in enumerate(rows):
        if not tokens:
            raise ValueError(f"{split} example {i + 1}: no words, expected at least one")
        if len(tokens) != len(tag_seq):
            raise ValueError(f"{split} example {i + 1}: {len(tokens)} words but {len(tag_seq)} tags, "
                             "expected one tag per word")
        for t in tag_seq:
            tags.encode(t, where=f"{split} example {i + 1}: ")


class Tagger:
    """An :class:`~minitx.models.encoder.EncoderTagger` with its vocabulary and tag set."""

    task = "tag"

    def __init__(self, model: EncoderTagger, vocab: Vocab, tags: LabelSet):
        self.model, self.vocab, self.tags = model, vocab, tags

    def encode_tokens(self, sentences) -> np.ndarray:
        max_len = self.model.config.max_len
        seqs = []
        for i, words in enumerate(sentences):
            if not words:
                raise ValueError(f"sentence {i + 1}: empty, expected at least one word")
            if len(words) > max_len:
                raise ValueError(f"sentence {i + 1}: {len(words)} words, expected at most max_len={max_len}")
            seqs.append(self.vocab.encode(words))
        return pad_batch(seqs, PAD)

    def predict(self, sentences, batch_size: int = 256) -> list[list[str]]:
        """``[[word, ...], ...] -> [[tag, ...], ...]`` (one tag per word)."""
        sentences = [list(s) for s in sentences]
        was = self.model.training
        self.model.eval()
        out = []
        for i in range(0, len(sentences), batch_size):
            chunk = sentences[i : i + batch_size]
            best = np.asarray(self.model.forward(self.encode_tokens(chunk))).argmax(axis=-1)  # (B, T)
            out += [[self.tags.decode(t) for t in best[b, : len(s)]] for b, s in enumerate(chunk)]
        self.model.train(was)
        return out

    def evaluate(self, rows) -> dict:
        """``rows = [(words, tags), ...] -> {"f1", "precision", "recall"}`` (entity level)."""
        sentences, gold = zip(*rows)
        scores = entity_f1(self.predict(sentences), gold)
        return {"f1": scores["f1"], "precision": scores["precision"], "recall": scores["recall"]}

    @classmethod
    def fit(cls, train_rows, val_rows, train_config, *, preset: str = "enc-small", tags=None, min_freq: int = 2,
            word_dropout: float = 0.1, out_dir=None, resume: bool = False, threads: int = 1, comm=None,
            progress: bool = True, log=print, **model_overrides) -> "Tagger":
        """Train on ``[(words, tags), ...]``; ``self.model`` ends with the best validation F1.

        Names the model has never seen arrive as ``<unk>``, and must be
        tagged from their context ("police in <unk> are searching for").
        Two things teach that: ``min_freq=2`` (words seen once become
        ``<unk>``) and **word dropout**: in every training batch each word
        is replaced by ``<unk>`` with probability ``word_dropout``, so the
        model cannot rely on memorising the names alone.
        """
        if not 0.0 <= word_dropout < 1.0:
            raise ValueError(f"word_dropout: got {word_dropout!r}, expected a number in [0, 1)")
        tag_set = LabelSet(tags if tags is not None else sorted({t for _, ts in train_rows for t in ts}), "tag")
        check_tagged(train_rows, tag_set, "train")
        check_tagged(val_rows, tag_set, "val")
        vocab = Vocab.build([w for w, _ in train_rows], min_freq=min_freq)
        overrides = {k: v for k, v in model_overrides.items() if v is not None}
        config = EncoderConfig.from_preset(preset, vocab_size=len(vocab), pad_id=PAD, **overrides)
        self = cls(EncoderTagger(config, len(tag_set), seed=train_config.seed), vocab, tag_set)
        x_all = self.encode_tokens([w for w, _ in train_rows])  # (N, T)
        y_all = pad_batch([[tag_set.encode(t) for t in ts] for _, ts in train_rows], fill=IGNORE_INDEX)  # (N, T)
        lengths = (y_all != IGNORE_INDEX).sum(axis=1)

        def hide_words(batch, rng):  # word dropout: (B, T) ids, some words replaced by <unk>
            x, y = batch
            hide = (rng.random(x.shape) < word_dropout) & (x != PAD)
            return np.where(hide, UNK, x), y

        data = PaddedRows((x_all, lengths), (y_all, lengths), transform=hide_words if word_dropout else None)
        train_task(self, data, train_config, evaluate=lambda: self.evaluate(val_rows), metric="f1",
                   out_dir=out_dir, resume=resume, threads=threads, comm=comm, progress=progress, log=log)
        return self

    def checkpoint_meta(self) -> dict:
        return task_meta(self.task, self.model, n_tags=self.model.n_tags, vocab=self.vocab.to_dict(),
                         tags=self.tags.to_dict())

    def save(self, directory) -> None:
        save_task(directory, self.model, self.checkpoint_meta())

    @classmethod
    def load(cls, path) -> "Tagger":
        """From a run folder (its best model) or a checkpoint folder."""
        state, meta, _ = read_task(path, cls.task)
        model = EncoderTagger(EncoderConfig.from_dict(meta["config"]), meta["n_tags"])
        model.load_state_dict(state)
        return cls(model, Vocab.from_dict(meta["vocab"]), LabelSet.from_dict(meta["tags"]))
