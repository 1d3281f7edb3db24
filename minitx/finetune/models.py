"""Bases in, fine-tuned models out: what ``minitx finetune`` reads and writes, and how it is read back.

A **base** is any trained model minitx can open:

=================  ============================================  =================================
``kind``           a folder written by                           opened with
=================  ============================================  =================================
``minitx-gpt``     ``minitx train``                              :func:`minitx.train.lm.load_model`
``minitx-classify`` ``minitx train-classifier``                  :meth:`TextClassifier.load`
``hf``             Hugging Face ``save_pretrained`` (GPT-2,      :func:`minitx.from_pretrained`
                   BERT/MiniLM, ...)
=================  ============================================  =================================

A **fine-tuned** run folder holds the one Trainer's checkpoints (``ckpt/``,
and ``best/`` for classification), of kind ``minitx-finetune``: every
weight (the adapters too), plus JSON naming the base, the task, the method,
the label set and the LoRA settings. Reading it back opens the base for its
architecture and tokenizer, rebuilds the same structure (a new head,
the same LoRA layers) and loads the weights: so the base must still be
where it was. A LoRA run also writes ``adapter/`` (:mod:`.adapter`), the
adapter alone, which loads onto the base with :func:`load_adapter`.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..datasets.vocab import LabelSet
from ..tasks.classify import TextClassifier
from ..train.checkpoint import (BEST_DIR, CKPT_DIR, META_FILE, check_kind, holds_checkpoint, load_checkpoint,
                                resolve_checkpoint)
from .adapter import is_adapter, load_adapter, read_adapter
from .lora import reapply_lora
from .recipes import classifier_on

FINETUNE_KIND = "minitx-finetune"
FINETUNE_FORMAT = 1
#: What each task fine-tunes, and the kinds of base it takes.
TASKS = {"lm": "next-token prediction on a text file (a GPT base)",
         "classify": "sentence classification from a label<TAB>text file (an encoder base)"}


@dataclass
class Loaded:
    """A model ready to use: the model, its tokenizer (or vocabulary), and where it came from.

    ``kind`` is the base's (``minitx-gpt``, ``minitx-classify``, ``hf``);
    ``classifier`` is a :class:`~minitx.tasks.classify.TextClassifier` (its
    ``predict``) for classification models, else None.
    """

    model: object
    tokenizer: object
    kind: str
    path: str
    classifier: object = None
    meta: dict = field(default_factory=dict)


class PretrainedTextClassifier(TextClassifier):
    """A :class:`TextClassifier` whose texts go through a pretrained tokenizer (WordPiece) instead of a Vocab.

    Everything but the encoding (predicting, evaluating, probabilities) is
    TextClassifier's.
    """

    def __init__(self, model, tokenizer, labels: LabelSet, max_length: int):
        super().__init__(model, None, labels)
        self.tokenizer, self.max_length = tokenizer, max_length

    def encode_texts(self, texts):
        """``[str] -> [B, T]`` ids: the tokenizer's ``[CLS] ... [SEP]``, cut to ``max_length``, right-padded."""
        from ..pretrained.embeddings import encode_batch  # noqa: PLC0415

        for i, text in enumerate(texts):
            if not text.strip():
                raise ValueError(f"text {i + 1}: empty, expected at least one word")
        pad_id = self.tokenizer.pad_id if self.tokenizer.pad_id is not None else self.model.config.pad_id
        return encode_batch(self.tokenizer, list(texts), self.max_length, pad_id)[0]  # (B, T)

    def checkpoint_meta(self) -> dict:
        raise ValueError("PretrainedTextClassifier: its tokenizer lives in the base folder, not in a task "
                         "checkpoint; expected minitx finetune's checkpoints (finetune_meta) to save it")


def base_kind(path) -> str:
    """What a folder holds: ``"hf"``, ``"minitx-gpt"``, ``"minitx-classify"``, ``"finetune"`` or ``"adapter"``.

    Anything else (nothing there, another kind of checkpoint) is a one-line ValueError.
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f"--checkpoint {str(path)!r} does not exist; expected a minitx run folder or a Hugging Face "
                         "model folder")
    if (path / "config.json").is_file():
        return "hf"
    if is_adapter(path):
        return "adapter"
    directory = resolve_checkpoint(path, prefer=(BEST_DIR, CKPT_DIR))
    if not holds_checkpoint(directory):
        raise ValueError(f"--checkpoint {str(path)!r} holds no model; expected a minitx run folder (ckpt/), a "
                         "Hugging Face folder (config.json) or an adapter (adapter.json)")
    try:  # the JSON alone says what the folder holds; the weights are read once, by the loader
        meta = json.loads((directory / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        meta = load_checkpoint(directory)[2]  # raises the checkpoint reader's one-line error
    kind = meta.get("kind") if isinstance(meta, dict) else None
    if kind == FINETUNE_KIND:
        return "finetune"
    if kind == "minitx-gpt":
        return "minitx-gpt"
    if kind == "minitx-task" and meta.get("task") == "classify":
        return "minitx-classify"
    check_kind(directory, meta, "minitx-gpt")  # raises, naming what the folder holds
    raise AssertionError("unreachable")  # pragma: no cover


def load_base(path) -> Loaded:
    """Open a base model (see the module docs) in eval mode."""
    kind = base_kind(path)
    path = str(path)
    if kind == "hf":
        from ..pretrained import from_pretrained  # noqa: PLC0415

        model, tokenizer = from_pretrained(path)
        return Loaded(model, tokenizer, kind, path)
    if kind == "minitx-gpt":
        from ..train.lm import load_model  # noqa: PLC0415

        model, tokenizer, meta = load_model(path)
        return Loaded(model, tokenizer, kind, path, meta=meta)
    if kind == "minitx-classify":
        clf = TextClassifier.load(path)
        return Loaded(clf.model.eval(), clf.vocab, kind, path, classifier=clf)
    raise ValueError(f"--checkpoint {path!r} holds a {'fine-tuned model' if kind == 'finetune' else 'LoRA adapter'}; "
                     "expected a base model to fine-tune (a minitx run folder or a Hugging Face folder)")


def classifier_task(base: Loaded, labels: LabelSet, *, pooling: str = "mean", seed: int = 0):
    """The :class:`TextClassifier` to fine-tune on ``labels`` from ``base``: a new head unless it has these labels.

    A minitx classifier whose label set is ``labels`` keeps its head; any
    other encoder gets :func:`classifier_on` (a head drawn from ``seed``).
    Returns ``(classifier, new_head)``.
    """
    from ..models.encoder import EncoderClassifier, TransformerEncoder  # noqa: PLC0415
    from ..pretrained.embeddings import max_sequence_length  # noqa: PLC0415

    model = base.model
    if not isinstance(model, (TransformerEncoder, EncoderClassifier)):
        raise ValueError(f"--checkpoint {base.path!r} holds a {type(model).__name__}; --task classify expected an "
                         "encoder base (a minitx classifier, or a BERT-style Hugging Face folder such as MiniLM)")
    if base.kind == "minitx-classify":
        old = base.classifier
        if old.labels.to_dict() == labels.to_dict():
            return old, False
        model = classifier_on(model, len(labels), pooling=model.pooling, freeze_body=False, seed=seed)
        return TextClassifier(model, old.vocab, labels), True
    if base.tokenizer is None:
        raise ValueError(f"--checkpoint {base.path!r} has no tokenizer (tokenizer.json or vocab.txt), expected one "
                         "beside the model")
    model = classifier_on(model, len(labels), pooling=pooling, freeze_body=False, seed=seed)
    return PretrainedTextClassifier(model, base.tokenizer, labels, max_sequence_length(base.model, base.path)), True


def finetune_meta(*, task: str, method: str, base: Loaded, model, labels: LabelSet | None = None,
                  new_head: bool = False) -> dict:
    """The JSON a fine-tuned checkpoint carries (see :func:`load_finetuned`)."""
    meta = {"kind": FINETUNE_KIND, "finetune_format": FINETUNE_FORMAT, "task": task, "method": method,
            "base": os.path.abspath(base.path), "base_kind": base.kind,
            "lora": getattr(model, "lora_settings", None),
            "trainable": [n for n, p in model.named_parameters() if p.requires_grad]}
    if labels is not None:
        meta.update(labels=labels.to_dict(), new_head=new_head, pooling=model.pooling)
    return meta


def load_finetuned(path) -> Loaded:
    """A fine-tuned run folder (its ``best``, else ``ckpt``) or checkpoint folder, ready to use, in eval mode."""
    directory = resolve_checkpoint(path, prefer=(BEST_DIR, CKPT_DIR))
    state, _, meta = load_checkpoint(directory)
    check_kind(directory, meta, FINETUNE_KIND)
    if meta.get("finetune_format") != FINETUNE_FORMAT:
        raise ValueError(f"checkpoint {str(directory)!r}: finetune_format {meta.get('finetune_format')!r}, expected "
                         f"{FINETUNE_FORMAT}")
    base = _open_base(meta["base"], f"checkpoint {str(directory)!r}")
    clf = None
    if meta["task"] == "classify":
        clf, _ = classifier_task(base, LabelSet.from_dict(meta["labels"]), pooling=meta.get("pooling", "mean"))
        model = clf.model
    else:
        model = base.model
    lora = meta.get("lora")
    if lora:
        reapply_lora(model, lora)
    model.load_state_dict(state)
    trainable = set(meta.get("trainable", []))
    for name, p in model.named_parameters():  # frozen as it was trained, should it train on
        p.requires_grad = name in trainable
    return Loaded(model.eval(), base.tokenizer, base.kind, str(path), classifier=clf, meta=meta)


def load_with_adapter(base_path, adapter) -> Loaded:
    """``base_path`` opened as a base, with the adapter folder ``adapter`` loaded onto it (its base is checked)."""
    meta, _ = read_adapter(adapter)
    base = _open_base(base_path, f"adapter {str(adapter)!r}")
    clf = None
    if meta.get("task") == "classify":
        clf, _ = classifier_task(base, LabelSet.from_dict(meta["labels"]), pooling=meta.get("pooling", "mean"))
        model = clf.model
    else:
        model = base.model
    load_adapter(model, adapter)
    return Loaded(model.eval(), base.tokenizer, base.kind, str(base_path), classifier=clf, meta=meta)


def load_for_use(path, adapter=None) -> Loaded | None:
    """What ``generate`` / ``classify`` / ``embed`` run when fine-tuning is involved, else None.

    * ``--checkpoint BASE --adapter DIR``: the base with the adapter on it;
    * ``--checkpoint RUN`` of a ``minitx finetune`` run: its model;
    * ``--checkpoint DIR`` of an adapter alone: the base it names, with it.

    Anything else is None: the command opens ``path`` as it always did.
    """
    if adapter is not None:
        return load_with_adapter(path, adapter)
    if is_adapter(path):
        return load_with_adapter(read_adapter(path)[0]["base"], path)
    if is_finetuned(path):
        return load_finetuned(path)
    return None


def is_finetuned(path) -> bool:
    """Whether ``path`` is a ``minitx finetune`` run or checkpoint folder (reads its JSON only; never raises)."""
    directory = resolve_checkpoint(path, prefer=(BEST_DIR, CKPT_DIR))
    try:
        return json.loads((Path(directory) / META_FILE).read_text(encoding="utf-8")).get("kind") == FINETUNE_KIND
    except (OSError, ValueError, AttributeError):
        return False


def _open_base(path, who: str) -> Loaded:
    try:
        return load_base(path)
    except ValueError as exc:
        raise ValueError(f"{who} was fine-tuned from {str(path)!r}, which cannot be opened: {exc}") from None


__all__ = ["FINETUNE_KIND", "Loaded", "PretrainedTextClassifier", "TASKS", "base_kind", "classifier_task",
           "finetune_meta", "is_finetuned", "load_base", "load_finetuned", "load_for_use", "load_with_adapter"]
