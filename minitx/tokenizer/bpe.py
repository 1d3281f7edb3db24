"""Byte-level byte-pair encoding (BPE): the reference. Read this file first.

The idea in four lines
----------------------
1. Text is UTF-8 bytes, so 256 tokens (one per byte value) can spell anything.
2. Training: cut the text into chunks (see :mod:`minitx.tokenizer.patterns`),
   find the most frequent adjacent pair of tokens inside chunks, give that pair
   a new id, replace it everywhere; repeat until the vocabulary is big enough.
3. Encoding: replay the merges on new text, lowest *rank* (earliest merge)
   first, leftmost first on ties.
4. Decoding: concatenate the bytes of each id and decode UTF-8.

A worked example (no split pattern needed here)::

    text "aaabdaaabac" as bytes        a=97 b=98 c=99 d=100
    pair counts: (97, 97) "aa" x4, (97, 98) "ab" x2, ...
    merge 0: (97, 97)   -> 256 "aa"     [256, 97, 98, 100, 256, 97, 98, 97, 99]
    merge 1: (97, 98)   -> 257 "ab"     [256, 257, 100, 256, 257, 97, 99]
    merge 2: (256, 257) -> 258 "aaab"   [258, 100, 258, 97, 99]

Ties are common, so the rule for them is part of the definition: minitx picks
the pair with the highest count, then the smallest first id, then the
smallest second id (:func:`best_pair`). At merge 1 above, ``(256, 97)`` and
``(97, 98)`` both occur twice; ``(97, 98)`` has the smaller first id and wins.

What is here, and what is not
-----------------------------
This module is the *definition*: :func:`train_reference` recounts every pair
of the whole text after every merge, and :func:`bpe_chunk` looks at every
pair of a chunk after every merge. Both are short and slow (the textbook
trainer needs minutes for a megabyte).

:class:`BPETokenizer` is the tokenizer people use. Its ``train`` and
``encode`` give exactly what these definitions give, but run the fast path of
:mod:`minitx.tokenizer.fast` (each distinct chunk counted once, a heap of
pair counts, a faster split, new chunks encoded in one NumPy batch); pass
``algorithm="reference"`` or call :meth:`BPETokenizer.encode_reference` to run
the definitions instead. The tests prove the two equal.
"""
from __future__ import annotations

import os
from typing import Iterable, Mapping, Sequence

import regex

from ..fileio import atomic_write_text
from . import fast, tables
from .patterns import GPT4_SPLIT_PATTERN, compile_pattern, resolve_pattern
from .tables import BPETables, json_dumps, render_token  # noqa: F401 - render_token, json_dumps: public here too

#: Choices for ``allowed_special`` besides an explicit set of names.
ALLOWED_SPECIAL_CHOICES = ("none_raise", "all", "none")

#: The fast trainer's name (``"incremental"``) and the textbook's.
ALGORITHMS = ("incremental", "reference")


# ---------------------------------------------------------------------------
# The textbook building blocks
# ---------------------------------------------------------------------------
def get_pair_counts(ids: Sequence[int], counts: dict | None = None, weight: int = 1) -> dict:
    """Count adjacent pairs: ``[1, 2, 3, 1, 2] -> {(1, 2): 2, (2, 3): 1, (3, 1): 1}``."""
    counts = {} if counts is None else counts
    for pair in zip(ids, ids[1:]):
        counts[pair] = counts.get(pair, 0) + weight
    return counts


def merge_pair(ids: Sequence[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace every occurrence of ``pair`` (scanning left to right) by ``new_id``.

    ``merge_pair([1, 2, 3, 1, 2], (1, 2), 4) -> [4, 3, 4]``; overlapping
    occurrences go to the leftmost: ``merge_pair([7, 7, 7], (7, 7), 8) -> [8, 7]``.
    """
    out, i, n = [], 0, len(ids)
    first, second = pair
    while i < n:
        if i + 1 < n and ids[i] == first and ids[i + 1] == second:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def best_pair(counts: Mapping[tuple[int, int], int]) -> tuple[int, int]:
    """The tie-breaking rule: highest count, then smallest first id, then second id."""
    return min(counts, key=lambda p: (-counts[p], p[0], p[1]))


def train_reference(chunks: Iterable[bytes], num_merges: int, first_id: int = 256) -> list[tuple[int, int]]:
    """Textbook BPE training: recount all pairs of all chunks after every merge.

    ``chunks`` are the pre-split pieces of the training text as UTF-8 bytes
    (every occurrence, not de-duplicated). Returns the merged pairs in order;
    merge ``k`` creates id ``first_id + k``. Slow on purpose: this is the
    definition that :func:`minitx.tokenizer.fast.train_incremental` is tested against.
    """
    words = [list(chunk) for chunk in chunks]
    merges = []
    for k in range(num_merges):
        counts: dict = {}
        for w in words:
            get_pair_counts(w, counts)
        if not counts:
            break  # every chunk is a single token: nothing left to merge
        pair = best_pair(counts)
        words = [merge_pair(w, pair, first_id + k) for w in words]
        merges.append(pair)
    return merges


def bpe_chunk(piece: bytes, byte_ids: Sequence[int], ranks: Mapping[tuple[int, int], tuple[int, int]]) -> list[int]:
    """Encode one chunk: merge the lowest-rank adjacent pair, leftmost first, until none applies.

    ``ranks[(a, b)]`` is ``(rank, new id)``. This is exactly tiktoken's
    ``byte_pair_merge`` rule and Hugging Face's merge order. The readable
    version: look at every pair after every merge.
    """
    ids = [byte_ids[b] for b in piece]
    while len(ids) > 1:
        best = None
        best_i = -1
        for i in range(len(ids) - 1):
            found = ranks.get((ids[i], ids[i + 1]))
            if found is not None and (best is None or found[0] < best[0]):
                best, best_i = found, i
        if best is None:
            break
        ids[best_i : best_i + 2] = (best[1],)
    return ids


# ---------------------------------------------------------------------------
# The tokenizer
# ---------------------------------------------------------------------------
class BPETokenizer:
    """A byte-level BPE tokenizer (GPT-2 / GPT-4 / tiktoken style).

    Build one by :meth:`train`, :meth:`load`, :meth:`from_tiktoken`,
    :meth:`from_huggingface` or :meth:`from_tables`::

        >>> tok = BPETokenizer().train("low lower lowest " * 50, vocab_size=262)
        >>> tok.encode(" lowest")
        [259, 260]
        >>> tok.show(" lowest lower")
        '[ lowe][st][ lower]'
        >>> tok.decode(tok.encode("any text, even 🤖"))
        'any text, even 🤖'

    Internally a tokenizer is a table of *merges*, ``(left id, right id) ->
    (rank, new id)``: encoding repeatedly applies the adjacent pair with the
    lowest rank (leftmost on ties). For a tokenizer trained here the rank is
    the merge's position in the training order. Two foreign formats need the
    general table:

    * tiktoken rank files list tokens, not merges: tiktoken merges *any*
      adjacent pair whose concatenation is a token, ranked by that token's
      rank. :meth:`from_tiktoken` therefore lists every such pair.
    * Hugging Face keeps ids and merge ranks separate, and its byte tokens are
      not numbered by byte value; hence ``byte_ids`` below.

    Attributes:
        pattern: the split regex (see :mod:`minitx.tokenizer.patterns`).
        byte_ids: ``byte_ids[b]`` is the id of the single byte ``b``.
        ranked_merges: ``(rank, left id, right id, new id)`` in rank order.
        ranks: ``(a, b) -> (rank, new id)``, what encoding looks up (the lowest
            rank where several merges build the same pair).
        merges: ``(a, b) -> new id`` in rank order (minbpe's view).
        special_tokens: special token text -> id.
        vocab: id -> bytes, for every id including the special tokens.
    """

    def __init__(self, pattern: str | None = None):
        self._install(BPETables.make(pattern, range(256), []))

    # -- construction --------------------------------------------------------
    @classmethod
    def from_tables(cls, tables: BPETables) -> "BPETokenizer":
        """A tokenizer for ``tables`` (see :class:`~minitx.tokenizer.tables.BPETables`)."""
        tok = cls.__new__(cls)
        tok._install(tables)
        return tok

    @property
    def tables(self) -> BPETables:
        """The plain data of this tokenizer (what :meth:`save` writes)."""
        return self._tables

    def _install(self, t: BPETables) -> None:
        """Derive the lookup tables from ``t``; inconsistent tables raise ``ValueError``."""
        self.vocab = tables.build_vocab(t)
        self._tables = t
        self.pattern = t.pattern
        self.byte_ids = list(t.byte_ids)
        self.ranked_merges = list(t.merges)
        self.merges = {(a, b): new for _, a, b, new in t.merges}
        # Several pairs may build the same token (tiktoken); the lowest rank counts.
        self.ranks: dict[tuple[int, int], tuple[int, int]] = {}
        for rank, a, b, new in t.merges:
            self.ranks.setdefault((a, b), (rank, new))
        self.special_tokens = dict(t.special_tokens)
        self.inverse_special_tokens = {i: s for s, i in self.special_tokens.items()}
        self.whole_token_shortcut = t.whole_token_shortcut
        self.prefix_space = t.prefix_space
        specials = set(self.special_tokens.values())
        self._token_to_id = {bts: i for i, bts in self.vocab.items() if i not in specials}
        self._special_split = None
        if self.special_tokens:
            alternatives = "|".join(regex.escape(s) for s in sorted(self.special_tokens, key=len, reverse=True))
            self._special_split = regex.compile(f"({alternatives})")
        self._fast = fast.FastEncoder(
            t.pattern, t.byte_ids, self.ranks, self._token_to_id if t.whole_token_shortcut else None
        )

    def train(
        self,
        text: str,
        vocab_size: int,
        *,
        pattern: str | None = None,
        special_tokens: Iterable[str] | Mapping[str, int] | None = None,
        progress: bool = False,
        algorithm: str = "incremental",
    ) -> "BPETokenizer":
        """Learn merges from ``text`` until the vocabulary has ``vocab_size`` ids.

        ``vocab_size`` counts the 256 byte tokens, the merges and the special
        tokens. ``special_tokens`` is a list of strings (given the ids after the
        merges, in order) or a mapping string -> id; occurrences in ``text``
        are boundaries, never merged with their neighbours. ``algorithm`` is
        ``"incremental"`` (the fast path) or ``"reference"`` (the textbook;
        same result). Returns ``self``, so ``BPETokenizer().train(...)`` reads
        naturally. If the text runs out of pairs first, the vocabulary is smaller.
        """
        pattern = self.pattern if pattern is None else resolve_pattern(pattern)
        specials = special_tokens or {}
        n_special = len(specials)
        if not isinstance(vocab_size, int) or vocab_size < 256 + n_special:
            raise ValueError(
                f"vocab_size: got {vocab_size!r}, expected an integer >= {256 + n_special} "
                f"(256 byte tokens + {n_special} special tokens)"
            )
        if not isinstance(text, str):
            raise ValueError(f"text: expected str, got {type(text).__name__}")
        if algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm: got {algorithm!r}, expected one of {ALGORITHMS}")
        num_merges = vocab_size - 256 - n_special
        pieces = [text]
        if specials:
            alternatives = "|".join(regex.escape(s) for s in sorted(specials, key=len, reverse=True))
            pieces = regex.split(f"(?:{alternatives})", text)
        try:
            if algorithm == "reference":
                split = compile_pattern(pattern).findall
                chunks = [c.encode("utf-8") for piece in pieces for c in split(piece)]
                merge_pairs = train_reference(chunks, num_merges)
            else:
                counts = fast.count_chunks(pieces, pattern)
                byte_counts = {chunk.encode("utf-8"): n for chunk, n in counts.items()}
                merge_pairs = fast.train_incremental(byte_counts, num_merges, progress=progress)
        except UnicodeEncodeError as exc:
            raise ValueError(f"text: {exc.reason} ({exc.object[exc.start:exc.end]!r} cannot be encoded as UTF-8)") from None
        ranked = [(k, a, b, 256 + k) for k, (a, b) in enumerate(merge_pairs)]
        if isinstance(specials, Mapping):
            special_map = dict(specials)
        else:
            special_map = {s: 256 + len(merge_pairs) + j for j, s in enumerate(specials)}
        self._install(BPETables.make(pattern, range(256), ranked, special_map))
        return self

    # -- lookups ---------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        """One more than the largest id (the rows an embedding table needs)."""
        return max(self.vocab) + 1

    def id_to_bytes(self, token_id: int) -> bytes:
        """The bytes that ``token_id`` stands for (special tokens: their UTF-8 text)."""
        try:
            return self.vocab[token_id]
        except (KeyError, TypeError):
            raise ValueError(f"token id: got {token_id!r}, which is not in this vocabulary") from None

    def bytes_to_id(self, token: bytes | str) -> int:
        """The id of a whole token given as bytes (or str, UTF-8 encoded, or a special token's text)."""
        if isinstance(token, str):
            if token in self.special_tokens:
                return self.special_tokens[token]
            token = token.encode("utf-8")
        try:
            return self._token_to_id[token]
        except KeyError:
            raise ValueError(f"token: {token!r} is not a single token of this vocabulary") from None

    # -- encoding --------------------------------------------------------------
    def encode_reference(self, text: str, allowed_special="none_raise") -> list[int]:
        """The definition: split with the pattern, then :func:`bpe_chunk` every chunk; no cache, no shortcut.

        :meth:`encode` must return exactly this; the tests check it. With
        ``whole_token_shortcut`` (tiktoken's rule, Hugging Face's
        ``ignore_merges``) a chunk that is a whole token is that token.
        """
        out: list[int] = []
        for part, is_special in self._special_parts(text, allowed_special):
            if is_special:
                out.append(self.special_tokens[part])
                continue
            if self.prefix_space and part and not part.startswith(" "):
                part = " " + part
            for chunk in compile_pattern(self.pattern).findall(part):
                try:
                    piece = chunk.encode("utf-8")
                except UnicodeEncodeError as exc:
                    raise _surrogate_error(exc, text) from None
                if self.whole_token_shortcut and piece in self._token_to_id:
                    out.append(self._token_to_id[piece])
                else:
                    out.extend(bpe_chunk(piece, self.byte_ids, self.ranks))
        return out

    def encode_ordinary(self, text: str) -> list[int]:
        """Encode ``text`` ignoring special tokens (their text is encoded like any other); the fast path."""
        if self.prefix_space and text and not text.startswith(" "):
            text = " " + text
        try:
            return self._fast.encode_ordinary(text)
        except UnicodeEncodeError as exc:
            raise _surrogate_error(exc, text) from None

    def encode(self, text: str, allowed_special="none_raise") -> list[int]:
        """Encode ``text`` to token ids.

        ``allowed_special`` says what to do with special-token text such as
        ``"<|endoftext|>"`` inside ``text``:

        * ``"none_raise"`` (default): raise ``ValueError`` if any appears. Text
          from users can then never smuggle in a control token.
        * ``"all"``: every special token's text becomes its id.
        * ``"none"``: no special handling; the text is encoded as ordinary text.
        * a set of names: those become ids; any other special token raises.

        Lone surrogates (``"\\ud800"``) cannot be UTF-8 encoded and raise
        ``ValueError``.
        """
        if not isinstance(text, str):
            raise ValueError(f"text: expected str, got {type(text).__name__}")
        if self._special_split is None or allowed_special == "none":
            self._check_allowed(allowed_special)
            return self.encode_ordinary(text)
        out: list[int] = []
        for part, is_special in self._special_parts(text, allowed_special):
            if is_special:
                out.append(self.special_tokens[part])
            elif part:
                out.extend(self.encode_ordinary(part))
        return out

    def encode_batch(self, texts: Iterable[str], allowed_special="none_raise") -> list[list[int]]:
        """Encode each text independently; ``encode_batch(a + b) == encode_batch(a) + encode_batch(b)``."""
        return [self.encode(t, allowed_special) for t in texts]

    def clear_cache(self) -> None:
        """Forget the chunk -> ids cache of the fast encoder (benchmarks start from here: "cold")."""
        self._fast.reset()

    @property
    def cache_size(self) -> int:
        """How many distinct chunks the fast encoder has computed and kept."""
        return self._fast.cached_chunks

    def _check_allowed(self, allowed_special) -> set:
        if isinstance(allowed_special, str):
            if allowed_special not in ALLOWED_SPECIAL_CHOICES:
                raise ValueError(
                    f"allowed_special: got {allowed_special!r}, expected one of {ALLOWED_SPECIAL_CHOICES} or a set of names"
                )
            return set(self.special_tokens) if allowed_special == "all" else set()
        allowed = set(allowed_special)
        unknown = allowed - set(self.special_tokens)
        if unknown:
            raise ValueError(f"allowed_special: {sorted(unknown)} are not special tokens of this tokenizer")
        return allowed

    def _special_parts(self, text: str, allowed_special):
        """Yield ``(text, is_special)`` pieces, enforcing ``allowed_special``."""
        allowed = self._check_allowed(allowed_special)
        if self._special_split is None or allowed_special == "none":
            yield text, False
            return
        parts = self._special_split.split(text)
        for j, part in enumerate(parts):
            if j % 2 == 0:
                yield part, False  # ordinary pieces between specials keep their own chunk boundaries
            elif part in allowed:
                yield part, True
            else:
                position = sum(len(p) for p in parts[:j])
                raise ValueError(
                    f"text contains the special token {part!r} at position {position}, which allowed_special="
                    f"{allowed_special!r} does not allow; pass allowed_special='all' (or a set naming it) to encode "
                    f"it as a special token, or allowed_special='none' to encode it as ordinary text"
                )

    # -- decoding --------------------------------------------------------------
    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """Concatenate the bytes of ``ids``; unknown ids raise ``ValueError``."""
        ids = list(ids)
        try:
            return b"".join(map(self.vocab.__getitem__, ids))
        except (KeyError, TypeError):
            for pos, i in enumerate(ids):
                if i not in self.vocab:
                    raise ValueError(
                        f"ids: unknown token id {i!r} at position {pos} (valid ids are 0..{self.vocab_size - 1})"
                    ) from None
            raise

    def decode(self, ids: Iterable[int], errors: str = "replace") -> str:
        """Decode ``ids`` to text.

        A sequence of ids need not form valid UTF-8 (a token may hold half of
        a multi-byte character). ``errors`` is passed to ``bytes.decode``:
        ``"replace"`` (default) turns each bad byte sequence into U+FFFD, like
        tiktoken and minbpe; ``"strict"`` raises; ``"backslashreplace"`` shows
        the bytes.
        """
        return self.decode_bytes(ids).decode("utf-8", errors=errors)

    # -- inspection --------------------------------------------------------------
    def tokenize(self, text: str, allowed_special="none_raise") -> list[bytes]:
        """The bytes of each token that ``text`` encodes to (how the text is cut)."""
        return [self.vocab[i] for i in self.encode(text, allowed_special)]

    def show(self, text: str, allowed_special="none_raise") -> str:
        """Draw how ``text`` splits into tokens: ``show("Hello world") -> '[Hello][ world]'``.

        Bytes that are not valid UTF-8 on their own are shown as ``\\xNN``.
        """
        return "".join(f"[{render_token(b)}]" for b in self.tokenize(text, allowed_special))

    def merge_history(self) -> list[tuple[bytes, bytes, bytes]]:
        """``(left, right, merged)`` bytes of each merge, in rank order."""
        v = self.vocab
        return [(v[a], v[b], v[new]) for _, a, b, new in self.ranked_merges]

    # -- persistence (the formats themselves are in .tables) ---------------------
    def save(self, path: str | os.PathLike, vocab_listing: bool = True) -> None:
        """Write the model as versioned text (see :mod:`.tables`), atomically.

        With ``vocab_listing`` a human-readable ``<path>.vocab`` is written too
        (one token per line, with the two tokens it was merged from).
        """
        atomic_write_text(path, tables.dumps_tables(self._tables))
        if vocab_listing:
            atomic_write_text(str(path) + ".vocab", tables.vocab_listing(self._tables))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "BPETokenizer":
        """Read a model written by :meth:`save`; a damaged file raises ``ValueError``."""
        t = tables.read_tables(path)
        try:
            return cls.from_tables(t)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None

    @classmethod
    def from_tiktoken(
        cls, path: str | os.PathLike, pattern: str = GPT4_SPLIT_PATTERN, special_tokens: Mapping[str, int] | None = None
    ) -> "BPETokenizer":
        """Load a tiktoken rank file (``<base64 token> <rank>`` per line), e.g. ``cl100k_base.tiktoken``."""
        return cls.from_tables(tables.tables_from_ranks(tables.read_tiktoken_ranks(path), pattern, special_tokens))

    @classmethod
    def from_huggingface(cls, path: str | os.PathLike) -> "BPETokenizer":
        """Load a Hugging Face byte-level BPE ``tokenizer.json`` (GPT-2 style vocab + merges)."""
        return cls.from_tables(tables.read_huggingface(path))

    def __repr__(self) -> str:
        return (
            f"BPETokenizer(vocab_size={self.vocab_size}, merges={len(self.ranked_merges)}, "
            f"special_tokens={len(self.special_tokens)})"
        )


def _surrogate_error(exc: UnicodeEncodeError, text: str) -> ValueError:
    bad = exc.object[exc.start : exc.end]
    where = text.find(bad)
    return ValueError(
        f"text: contains a lone surrogate {bad!r} at position {where}, which cannot be encoded as UTF-8; "
        f"fix the text, e.g. text.encode('utf-16', 'surrogatepass').decode('utf-16', 'replace')"
    )
