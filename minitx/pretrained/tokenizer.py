"""A model folder's tokenizer, run by minitx's own tokenizers.

A Hugging Face ``tokenizer.json`` has four stages: normaliser, pre-tokeniser,
model (BPE, WordPiece, Unigram) and post-processor. minitx implements

* byte-level BPE (GPT-2, BART, RoBERTa): :class:`minitx.tokenizer.BPETokenizer`;
* WordPiece with BERT's normaliser (BERT, MiniLM): :class:`minitx.tokenizer.wordpiece.WordPieceTokenizer`;
* Unigram with SentencePiece's Metaspace (T5-style): :class:`minitx.tokenizer.unigram.UnigramTokenizer`;

and the post-processor's *template* here: which special tokens go around
the text (BERT: ``[CLS] text [SEP]``, BART: ``<s> text </s>``, T5: ``text </s>``,
GPT-2: nothing). What minitx does not implement (the real T5's
``Precompiled`` normaliser, for one) is refused with a message naming it.

Added tokens (``[CLS]``, ``<|endoftext|>``...) found in the text become
their ids, as Hugging Face does by default.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from ..tokenizer.wordpiece import WordPieceTokenizer
from .folder import PretrainedError, read_json

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "vocab.json",
                   "merges.txt")


def _template(post: dict | None, source: str) -> tuple[list, list]:
    """``(before, after)``: the special ids a single sequence is wrapped in."""
    if post is None:
        return [], []
    kind = post.get("type")
    if kind == "Sequence":
        before, after = [], []
        for step in post.get("processors", []):
            b, a = _template(step, source)
            before, after = before + b, a + after
        return before, after
    if kind == "ByteLevel":
        return [], []
    if kind in ("BertProcessing", "RobertaProcessing"):
        return [int(post["cls"][1])], [int(post["sep"][1])]
    if kind == "TemplateProcessing":
        specials = post.get("special_tokens", {})
        before, after, seen = [], [], False
        for item in post.get("single", []):
            if "Sequence" in item:
                seen = True
                continue
            name = item["SpecialToken"]["id"]
            if name not in specials:
                raise PretrainedError(f"{source}: post_processor template names {name!r}, which it does not define")
            (after if seen else before).extend(int(i) for i in specials[name]["ids"])
        return before, after
    raise PretrainedError(f"{source}: post_processor {kind!r} is not supported "
                          "(expected TemplateProcessing, BertProcessing, RobertaProcessing or ByteLevel)")


class PretrainedTokenizer:
    """``encode(text) -> ids`` with the folder's special tokens; ``decode(ids) -> text`` without them.

    ``inner`` is the minitx tokenizer doing the work (``.kind`` says which).
    ``files`` keeps the folder's tokenizer files verbatim so that
    :func:`minitx.save_pretrained` writes back exactly what was read.
    """

    def __init__(self, inner, kind: str, *, before=(), after=(), special_ids=(), files: dict | None = None,
                 pad_id: int | None = None, max_length: int | None = None):
        self.inner, self.kind = inner, kind
        self.before, self.after = list(before), list(after)
        self.special_ids = set(int(i) for i in special_ids)
        self.files = dict(files or {})
        self.pad_id, self.max_length = pad_id, max_length

    @property
    def vocab_size(self) -> int:
        return self.inner.vocab_size

    def encode(self, text: str, *, add_special_tokens: bool = True) -> list[int]:
        if not isinstance(text, str):
            raise ValueError(f"text: got {type(text).__name__}, expected str")
        ids = self.inner.encode(text, allowed_special="all") if self.kind == "bpe" else self.inner.encode(text)
        return self.before + ids + self.after if add_special_tokens else ids

    def decode(self, ids, *, skip_special_tokens: bool = True) -> str:
        ids = [int(i) for i in ids if not (skip_special_tokens and int(i) in self.special_ids)]
        if self.kind == "wordpiece":
            return self.inner.decode(ids, skip_special_tokens=False)
        if self.kind == "unigram":
            return self.inner.decode(ids)
        return self.inner.decode(ids)

    def save(self, folder: str | os.PathLike) -> None:
        folder = Path(folder)
        for name, text in self.files.items():
            (folder / name).write_text(text, encoding="utf-8")

    def __repr__(self) -> str:
        return f"PretrainedTokenizer({self.kind}, vocab_size={self.vocab_size})"


class UnsupportedTokenizer:
    """Stands in for a tokenizer minitx cannot run, so that the *model* still loads.

    Any use raises the :class:`PretrainedError` that explains why (the file and
    the unsupported part), e.g. in ``minitx generate`` (one line, exit 2).
    """

    kind = "unsupported"

    def __init__(self, error: PretrainedError, files: dict | None = None):
        self.error, self.files = error, dict(files or {})

    def _fail(self, *args, **kwargs):
        raise PretrainedError(str(self.error))

    encode = decode = _fail

    def save(self, folder: str | os.PathLike) -> None:
        """The files are still written back as they were read."""
        for name, text in self.files.items():
            (Path(folder) / name).write_text(text, encoding="utf-8")

    def __repr__(self) -> str:
        return f"UnsupportedTokenizer({self.error})"


def load_tokenizer_or_placeholder(folder: str | os.PathLike):
    """:func:`load_tokenizer`, with an :class:`UnsupportedTokenizer` instead of an error."""
    try:
        return load_tokenizer(folder)
    except PretrainedError as exc:
        folder = Path(folder)
        files = {n: (folder / n).read_text(encoding="utf-8") for n in TOKENIZER_FILES if (folder / n).is_file()}
        return UnsupportedTokenizer(exc, files)


def load_tokenizer(folder: str | os.PathLike) -> PretrainedTokenizer | None:
    """The folder's tokenizer, or None when it has no tokenizer files."""
    folder = Path(folder)
    files = {n: (folder / n).read_text(encoding="utf-8") for n in TOKENIZER_FILES if (folder / n).is_file()}
    config = read_json(folder / "tokenizer_config.json", required=False) or {}
    path = folder / "tokenizer.json"
    if path.is_file():
        try:
            spec = json.loads(files["tokenizer.json"])
        except json.JSONDecodeError as exc:
            raise PretrainedError(f"{path}: not valid JSON ({exc})") from None
        model_type = (spec.get("model") or {}).get("type")
        if model_type == "BPE":
            from ..tokenizer.formats import load_huggingface

            try:
                inner, kind = load_huggingface(path), "bpe"
            except ValueError as exc:
                raise PretrainedError(str(exc)) from None
        elif model_type == "Unigram":
            from ..tokenizer.unigram import UnigramTokenizer

            try:
                inner, kind = UnigramTokenizer.from_spec(spec, path), "unigram"
            except ValueError as exc:
                raise PretrainedError(str(exc)) from None
        elif model_type == "WordPiece":
            try:
                inner, kind = WordPieceTokenizer.from_spec(spec, path), "wordpiece"
            except ValueError as exc:
                raise PretrainedError(str(exc)) from None
        else:
            raise PretrainedError(f"{path}: tokenizer model {model_type!r} is not supported "
                                  "(minitx runs byte-level BPE, WordPiece and Unigram)")
        before, after = _template(spec.get("post_processor"), str(path))
        special_ids = [a["id"] for a in spec.get("added_tokens", []) if a.get("special", True)]
        padding = spec.get("padding") or {}
        pad_id = padding.get("pad_id")
    elif (folder / "vocab.txt").is_file():
        inner = WordPieceTokenizer.from_vocab_file(folder / "vocab.txt",
                                                   lowercase=bool(config.get("do_lower_case", True)),
                                                   strip_accents=config.get("strip_accents"))
        kind = "wordpiece"
        v = inner.vocab
        if "[CLS]" not in v or "[SEP]" not in v:
            raise PretrainedError(f"{folder / 'vocab.txt'}: no [CLS]/[SEP] tokens (expected a BERT vocabulary)")
        before, after = [v["[CLS]"]], [v["[SEP]"]]
        special_ids = list(inner.special_tokens.values())
        pad_id = v.get("[PAD]")
    else:
        return None
    return PretrainedTokenizer(inner, kind, before=before, after=after, special_ids=special_ids, files=files,
                               pad_id=pad_id, max_length=config.get("model_max_length"))


def copy_tokenizer_files(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    for name in TOKENIZER_FILES:
        if (Path(src) / name).is_file():
            shutil.copyfile(Path(src) / name, Path(dst) / name)


__all__ = ["PretrainedTokenizer", "UnsupportedTokenizer", "load_tokenizer", "load_tokenizer_or_placeholder"]
