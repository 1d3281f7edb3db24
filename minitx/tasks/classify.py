"""Sentence classification with an encoder (sentiment analysis).

    text  "not bad at all"  -> words -> [<cls>, not, bad, at, all] -> ids
    EncoderClassifier(ids)  -> logits over labels  -> "positive"

The ``<cls>`` token at position 0 is what ``pooling="first"`` reads.

Example (a tiny run; the real one is in ``benchmarks/tasks.md``)::

    >>> from minitx.datasets import make_sentiment
    >>> from minitx.train.config import TrainConfig
    >>> data = make_sentiment(200, 50, 50)
    >>> clf = TextClassifier.fit(data["train"], data["val"], TrainConfig(max_iters=5, eval_interval=5),
    ...                          preset="enc-test", progress=False, log=lambda s: None)
    >>> clf.predict(["the plot was not bad at all"])[0] in ("negative", "positive")
    True
"""
from __future__ import annotations

import numpy as np

from ..datasets.metrics import accuracy
from ..datasets.vocab import CLS, PAD, LabelSet, Vocab
from ..models.encoder import EncoderClassifier, EncoderConfig
from ..train.data import PaddedRows
from .common import pad_batch, read_task, save_task, task_meta, train_task


class TextClassifier:
    """An :class:`~minitx.models.encoder.EncoderClassifier` with its vocabulary and labels."""

    task = "classify"

    def __init__(self, model: EncoderClassifier, vocab: Vocab, labels: LabelSet):
        self.model, self.vocab, self.labels = model, vocab, labels

    # ---- data -----------------------------------------------------------
    def encode_texts(self, texts) -> np.ndarray:
        """``[str] -> [B, T]`` ids: ``<cls>`` + words, truncated to ``max_len``, right-padded."""
        max_len = self.model.config.max_len
        seqs = []
        for i, text in enumerate(texts):
            words = text.split()
            if not words:
                raise ValueError(f"text {i + 1}: empty, expected at least one word")
            seqs.append([CLS] + self.vocab.encode(words)[: max_len - 1])
        return pad_batch(seqs, PAD)

    # ---- use ------------------------------------------------------------
    def predict_proba(self, texts, batch_size: int = 256) -> np.ndarray:
        """``[str] -> [B, n_labels]`` probabilities."""
        texts = list(texts)
        was = self.model.training
        self.model.eval()
        out = []
        for i in range(0, len(texts), batch_size):
            z = np.asarray(self.model.forward(self.encode_texts(texts[i : i + batch_size])), dtype=np.float64)
            z = np.exp(z - z.max(axis=1, keepdims=True))
            out.append(z / z.sum(axis=1, keepdims=True))
        self.model.train(was)
        return np.concatenate(out)

    def predict(self, texts) -> list[str]:
        return [self.labels.decode(i) for i in self.predict_proba(texts).argmax(axis=1)]

    def evaluate(self, rows) -> dict:
        """``rows = [(text, label), ...] -> {"accuracy": ...}``."""
        texts, gold = zip(*rows)
        return {"accuracy": accuracy(self.predict(texts), gold)}

    # ---- training -------------------------------------------------------
    @classmethod
    def fit(cls, train_rows, val_rows, train_config, *, preset: str = "enc-small", pooling: str = "first",
            labels=None, min_freq: int = 1, out_dir=None, resume: bool = False, threads: int = 1, comm=None,
            progress: bool = True, log=print, **model_overrides) -> "TextClassifier":
        """Build the vocabulary and label set from ``train_rows = [(text, label), ...]`` and train.

        ``labels`` fixes the label set (then an unknown label in the data is
        an error); by default it is the sorted set of training labels. The
        model that ends up in ``self.model`` is the one with the best
        validation accuracy (also kept in ``<out_dir>/best``).
        """
        label_set = LabelSet(labels if labels is not None else sorted({y for _, y in train_rows}), "label")
        for split, rows in (("train", train_rows), ("val", val_rows)):
            for i, (_, y) in enumerate(rows):
                label_set.encode(y, where=f"{split} example {i + 1}: ")
        vocab = Vocab.build([t.split() for t, _ in train_rows], min_freq=min_freq)
        overrides = {k: v for k, v in model_overrides.items() if v is not None}
        config = EncoderConfig.from_preset(preset, vocab_size=len(vocab), pad_id=PAD, **overrides)
        model = EncoderClassifier(config, len(label_set), pooling=pooling, seed=train_config.seed)
        self = cls(model, vocab, label_set)
        x_all = self.encode_texts([t for t, _ in train_rows])  # (N, T) padded once
        y_all = np.array([label_set.encode(y) for _, y in train_rows])  # (N,)
        data = PaddedRows((x_all, (x_all != PAD).sum(axis=1)), (y_all, None))
        train_task(self, data, train_config, evaluate=lambda: self.evaluate(val_rows), metric="accuracy",
                   out_dir=out_dir, resume=resume, threads=threads, comm=comm, progress=progress, log=log)
        return self

    # ---- checkpoints ----------------------------------------------------
    def checkpoint_meta(self) -> dict:
        return task_meta(self.task, self.model, n_classes=self.model.n_classes, pooling=self.model.pooling,
                         vocab=self.vocab.to_dict(), labels=self.labels.to_dict())

    def save(self, directory) -> None:
        save_task(directory, self.model, self.checkpoint_meta())

    @classmethod
    def load(cls, path) -> "TextClassifier":
        """From a run folder (its best model) or a checkpoint folder."""
        state, meta, _ = read_task(path, cls.task)
        model = EncoderClassifier(EncoderConfig.from_dict(meta["config"]), meta["n_classes"],
                                  pooling=meta["pooling"])
        model.load_state_dict(state)
        return cls(model, Vocab.from_dict(meta["vocab"]), LabelSet.from_dict(meta["labels"]))
