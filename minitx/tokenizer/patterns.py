"""Split patterns: how text is cut into *chunks* before BPE sees it.

Byte-level BPE never merges across a chunk boundary. Without a split pattern
the most frequent pairs of an English corpus would soon glue words to the
punctuation and spaces around them (``"dog."``, ``"dog!"``, ``"dog?"`` would
all become separate tokens), wasting the vocabulary on combinations. GPT-2
therefore cuts text with a regular expression first: contractions, runs of
letters with at most one leading space, runs of digits, runs of other
symbols, and whitespace. BPE then runs inside each chunk.

Both patterns need the third-party :mod:`regex` package: the standard
:mod:`re` module has no ``\\p{L}`` (any Unicode letter) or ``\\p{N}`` (any
Unicode number).

Example (GPT-4 pattern)::

    >>> split_text("Hello world's 12345!!", GPT4_SPLIT_PATTERN)
    ['Hello', ' world', "'s", ' ', '123', '45', '!!']
"""
from __future__ import annotations

from functools import lru_cache

import regex

#: The GPT-2 pattern (as tiktoken writes it for ``gpt2``/``r50k_base``).
#: The original release reads
#: ``'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+``;
#: this form is equivalent but faster: possessive quantifiers (``++``) never
#: backtrack, and ``\s++$`` takes trailing whitespace in one step.
GPT2_SPLIT_PATTERN = (
    r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
)

#: The GPT-4 (``cl100k_base``) pattern, exactly as tiktoken uses it. Changes
#: from GPT-2: case-insensitive contractions, one leading non-letter may join
#: a word (``"_name"``, ``"$x"``), numbers are cut into groups of at most three
#: digits, and newlines stick to the punctuation or whitespace before them.
GPT4_SPLIT_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)

#: Short names accepted wherever a pattern is expected (e.g. on the command line).
PATTERNS = {"gpt2": GPT2_SPLIT_PATTERN, "gpt4": GPT4_SPLIT_PATTERN, "cl100k": GPT4_SPLIT_PATTERN}


def resolve_pattern(pattern: str | None) -> str:
    """Map a short name (``"gpt2"``, ``"gpt4"``) to its regex; pass others through.

    ``None`` means the default, the GPT-4 pattern. An invalid regex raises a
    ``ValueError`` that says which pattern failed.
    """
    if pattern is None:
        return GPT4_SPLIT_PATTERN
    pattern = PATTERNS.get(pattern, pattern)
    compile_pattern(pattern)
    return pattern


@lru_cache(maxsize=32)
def compile_pattern(pattern: str) -> "regex.Pattern":
    """Compile (once, cached) a split pattern with the :mod:`regex` package."""
    try:
        return regex.compile(pattern)
    except regex.error as exc:
        raise ValueError(f"pattern: {pattern!r} is not a valid regular expression ({exc})") from None


def split_text(text: str, pattern: str = GPT4_SPLIT_PATTERN) -> list[str]:
    """Cut ``text`` into the chunks that BPE will encode independently."""
    return compile_pattern(pattern).findall(text)
