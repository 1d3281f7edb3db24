"""Word-level tokenizer: one id per word, punctuation mark or newline, from a fixed word list.

The generated tasks (the in-context-learning family of :mod:`minitx.datasets.icl`)
are made of a few hundred known words, so the clearest tokenizer is "one
word, one token": a prompt's token count is then its word count, and an
attention plot is labelled by words. Text is cut by the regular expression
``\\n|=>|\\w+|[^\\w\\s]`` (newlines are tokens, other whitespace only separates);
:meth:`decode` joins tokens with single spaces, except before punctuation and
around newlines, so text written in that canonical form round-trips::

    >>> tok = WordTokenizer(["\\n", ".", ":", "Review", "great", "plot"])
    >>> ids = tok.encode("Review: great plot.\\n")
    >>> ids, tok.decode(ids)
    ([3, 2, 4, 5, 1, 0], 'Review: great plot.\\n')

A word outside the list raises ``ValueError`` naming it (there is no
``<unk>``: a task's vocabulary is closed, and a typo should be loud).
"""
from __future__ import annotations

import re
from typing import Iterable

WORD_PATTERN = re.compile(r"\n|=>|\w+|[^\w\s]")
_NO_SPACE_BEFORE = frozenset(".,:;!?)\n")


class WordTokenizer:
    """``word <-> id`` over a fixed, ordered word list (the order is the ids)."""

    def __init__(self, words: Iterable[str]):
        words = list(words)
        seen = set()
        for w in words:
            if not isinstance(w, str) or WORD_PATTERN.fullmatch(w) is None:
                raise ValueError(f"words: got {w!r}, expected one token of the pattern {WORD_PATTERN.pattern!r}")
            if w in seen:
                raise ValueError(f"words: {w!r} appears twice, expected each word once")
            seen.add(w)
        self.words = words
        self.stoi = {w: i for i, w in enumerate(words)}
        self.special_tokens: dict[str, int] = {}

    @property
    def vocab_size(self) -> int:
        return len(self.words)

    def tokenize(self, text: str) -> list[str]:
        """``"Review: great" -> ["Review", ":", "great"]``."""
        return WORD_PATTERN.findall(text)

    def encode(self, text: str, allowed_special="none_raise") -> list[int]:
        """Ids of the words of ``text`` (``allowed_special`` accepted for interface parity)."""
        if not isinstance(text, str):
            raise ValueError(f"text: got {type(text).__name__}, expected str")
        try:
            return [self.stoi[w] for w in self.tokenize(text)]
        except KeyError as exc:
            raise ValueError(f"text: word {exc.args[0]!r} is not in this tokenizer's {len(self.words)}-word "
                             "vocabulary; expected words of the task") from None

    def decode(self, ids: Iterable[int], errors: str = "replace") -> str:
        out = []
        for i in ids:
            i = int(i)
            if not 0 <= i < len(self.words):
                raise ValueError(f"token id: got {i}, expected 0..{len(self.words) - 1}")
            w = self.words[i]
            if out and w not in _NO_SPACE_BEFORE and out[-1] != "\n":
                out.append(" ")
            out.append(w)
        return "".join(out)

    def __repr__(self) -> str:
        return f"WordTokenizer(vocab_size={self.vocab_size})"


__all__ = ["WORD_PATTERN", "WordTokenizer"]
