"""Character-level tokenizer: one id per distinct character.

The classic first demo (char-rnn, nanoGPT's Shakespeare): the vocabulary is
the sorted set of characters seen in training, so ``vocab_size`` is small
(65 for tiny Shakespeare) and every id is readable. It has the same interface
as :class:`~minitx.tokenizer.bpe.BPETokenizer` so a tutorial can swap one for
the other::

    >>> tok = CharTokenizer().train("hello")
    >>> tok.encode("hell"), tok.decode([3, 2])
    ([1, 0, 2, 2], 'ol')

Characters never seen in training cannot be encoded and raise ``ValueError``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable

MAGIC = "minitx-char"
VERSION = 1


class CharTokenizer:
    """Map each character to its index in the sorted vocabulary."""

    def __init__(self, chars: Iterable[str] = ()):
        self._set_chars(chars)

    def _set_chars(self, chars: Iterable[str]) -> None:
        chars = sorted(set(chars))
        for c in chars:
            if not isinstance(c, str) or len(c) != 1:
                raise ValueError(f"chars: expected single characters, got {c!r}")
        self.chars = chars
        self.stoi = {c: i for i, c in enumerate(chars)}
        self.special_tokens: dict[str, int] = {}

    def train(self, text: str, vocab_size: int | None = None, **_ignored) -> "CharTokenizer":
        """Use the distinct characters of ``text``; ``vocab_size``, if given, must fit them."""
        self._set_chars(text)
        if vocab_size is not None and vocab_size < len(self.chars):
            raise ValueError(f"vocab_size: got {vocab_size}, but the text has {len(self.chars)} distinct characters, "
                             f"expected at least {len(self.chars)}")
        return self

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def id_to_bytes(self, token_id: int) -> bytes:
        if not isinstance(token_id, int) or not 0 <= token_id < len(self.chars):
            raise ValueError(f"token id: got {token_id!r}, expected 0..{len(self.chars) - 1}")
        return self.chars[token_id].encode("utf-8", errors="surrogatepass")

    def encode(self, text: str, allowed_special="none_raise") -> list[int]:
        """Ids of the characters of ``text`` (``allowed_special`` accepted for interface parity)."""
        try:
            return [self.stoi[c] for c in text]
        except KeyError:
            bad = next(c for c in text if c not in self.stoi)
            raise ValueError(
                f"text: character {bad!r} at position {text.index(bad)} is not in the vocabulary "
                f"({len(self.chars)} characters seen in training)"
            ) from None

    encode_ordinary = encode

    def encode_batch(self, texts: Iterable[str], allowed_special="none_raise") -> list[list[int]]:
        return [self.encode(t) for t in texts]

    def decode(self, ids: Iterable[int], errors: str = "replace") -> str:
        out = []
        for pos, i in enumerate(ids):
            if not isinstance(i, int) or not 0 <= i < len(self.chars):
                raise ValueError(f"ids: unknown token id {i!r} at position {pos} (valid ids are 0..{len(self.chars) - 1})")
            out.append(self.chars[i])
        return "".join(out)

    def tokenize(self, text: str, allowed_special="none_raise") -> list[bytes]:
        return [self.id_to_bytes(i) for i in self.encode(text)]

    def show(self, text: str, allowed_special="none_raise") -> str:
        return "".join(f"[{self.chars[i]}]" for i in self.encode(text))

    def save(self, path: str | os.PathLike) -> None:
        """Versioned text: a header line, then the characters as one JSON list."""
        from ..fileio import atomic_write_text  # noqa: PLC0415

        atomic_write_text(path, f"{MAGIC} {VERSION}\n{json.dumps(self.chars)}\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "CharTokenizer":
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError:
            raise ValueError(f"{path}: not a minitx character tokenizer file (not UTF-8), "
                             "expected a file written by CharTokenizer.save") from None
        if len(lines) != 2 or lines[0] != f"{MAGIC} {VERSION}":
            raise ValueError(f"{path}: not a minitx character tokenizer file (expected '{MAGIC} {VERSION}' + one JSON line)")
        try:
            chars = json.loads(lines[1])
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} line 2: {exc}") from None
        if not isinstance(chars, list):
            raise ValueError(f"{path} line 2: expected a JSON list of characters")
        return cls(chars)

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"
