"""Loading and saving whole tokenizers (the formats themselves are in :mod:`.tables`).

These functions return or take a :class:`~minitx.tokenizer.bpe.BPETokenizer`,
for callers that store a tokenizer inside something else (the trainer keeps
one in ``checkpoint.json``). They sit above :mod:`.bpe`, which sits above
:mod:`.tables`, so no module imports one that imports it back.

* minitx's own text format (``minitx-bpe 1``): :func:`dumps_bpe`,
  :func:`loads_bpe`, :func:`save_bpe`, :func:`load_bpe`;
* tiktoken rank files: :func:`load_tiktoken`, :func:`tokenizer_from_ranks`;
* Hugging Face ``tokenizer.json``: :func:`load_huggingface`.
"""
from __future__ import annotations

import os
from typing import Mapping

from .bpe import BPETokenizer
from .patterns import GPT4_SPLIT_PATTERN
from .tables import (  # noqa: F401 - the table-level names, importable from here as before
    MAGIC,
    VERSION,
    BPETables,
    bytes_to_unicode,
    dumps_tables,
    loads_tables,
    read_huggingface,
    read_tiktoken_ranks,
    tables_from_ranks,
)
from .tables import vocab_listing as _vocab_listing


def dumps_bpe(tok: BPETokenizer) -> str:
    """The ``minitx-bpe 1`` text of ``tok``."""
    return dumps_tables(tok.tables)


def loads_bpe(text: str, cls=BPETokenizer, source: str = "<string>") -> BPETokenizer:
    """Parse the ``minitx-bpe 1`` format into a tokenizer; every problem names the line (or ``source``)."""
    tables = loads_tables(text, source)
    try:
        return cls.from_tables(tables)
    except ValueError as exc:
        raise ValueError(f"{source}: {exc}") from None


def vocab_listing(tok: BPETokenizer) -> str:
    """One line per id: ``id [token]`` for bytes, ``id [left][right] -> [token]`` for merges."""
    return _vocab_listing(tok.tables)


def save_bpe(tok: BPETokenizer, path: str | os.PathLike, vocab_listing: bool = True) -> None:
    """Same as ``tok.save(path, vocab_listing)``."""
    tok.save(path, vocab_listing=vocab_listing)


def load_bpe(path: str | os.PathLike, cls=BPETokenizer) -> BPETokenizer:
    """Same as ``cls.load(path)``."""
    return cls.load(path)


def tokenizer_from_ranks(
    ranks: Mapping[bytes, int], pattern: str, special_tokens: Mapping[str, int] | None = None, cls=BPETokenizer
) -> BPETokenizer:
    """A tokenizer from tiktoken's token -> rank table (see :func:`.tables.tables_from_ranks`)."""
    return cls.from_tables(tables_from_ranks(ranks, pattern, special_tokens))


def load_tiktoken(path, pattern=GPT4_SPLIT_PATTERN, special_tokens=None, cls=BPETokenizer) -> BPETokenizer:
    """Same as ``cls.from_tiktoken(path, pattern, special_tokens)``."""
    return cls.from_tiktoken(path, pattern, special_tokens)


def load_huggingface(path: str | os.PathLike, cls=BPETokenizer) -> BPETokenizer:
    """Same as ``cls.from_huggingface(path)``."""
    return cls.from_huggingface(path)
