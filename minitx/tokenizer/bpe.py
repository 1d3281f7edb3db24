"""Byte-level byte-pair encoding (BPE): training, encoding, decoding.

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
smallest second id. At merge 1 above, ``(256, 97)`` and ``(97, 98)`` both
occur twice; ``(97, 98)`` has the smaller first id and wins.
:func:`train_reference` and the fast trainer follow the same rule and are
tested to produce identical merges.

Two implementations, side by side
---------------------------------
* :func:`train_reference` is the textbook algorithm (minbpe's): recount every
  pair in the whole text after every merge. Easy to read, and O(merges x text).
* :func:`train_incremental` gives the same merges hundreds of times faster:
  each *distinct* chunk is kept once with its frequency, an index maps each
  pair to the chunks that contain it, a merge only revisits those chunks and
  adjusts the pair counts by the difference, and a heap with lazy
  invalidation finds the next best pair without scanning all pairs.

Encoding likewise has :meth:`BPETokenizer.encode_reference` (split, then BPE on
every chunk) and the fast :meth:`BPETokenizer.encode`, which adds a cache of
chunk -> ids (natural text repeats its words constantly), a direct lookup
for chunks that are already a whole token, and a cheap first cut at spaces
with a cache per space-separated piece, so that the regex runs only on
pieces not seen before.
"""
from __future__ import annotations

import heapq
import json
import os
from collections import Counter, defaultdict
from itertools import chain, islice
from typing import Iterable, Mapping, Sequence

import regex

from .patterns import GPT2_SPLIT_PATTERN, GPT4_SPLIT_PATTERN, compile_pattern, resolve_pattern

#: Choices for ``allowed_special`` besides an explicit set of names.
ALLOWED_SPECIAL_CHOICES = ("none_raise", "all", "none")


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


def _best_pair(counts: Mapping[tuple[int, int], int]) -> tuple[int, int]:
    """The tie-breaking rule: highest count, then smallest first id, then second id."""
    return min(counts, key=lambda p: (-counts[p], p[0], p[1]))


def train_reference(chunks: Iterable[bytes], num_merges: int, first_id: int = 256) -> list[tuple[int, int]]:
    """Textbook BPE training: recount all pairs of all chunks after every merge.

    ``chunks`` are the pre-split pieces of the training text as UTF-8 bytes
    (every occurrence, not de-duplicated). Returns the merged pairs in order;
    merge ``k`` creates id ``first_id + k``. Slow on purpose: this is the
    definition that :func:`train_incremental` is tested against.
    """
    words = [list(chunk) for chunk in chunks]
    merges = []
    for k in range(num_merges):
        counts: dict = {}
        for w in words:
            get_pair_counts(w, counts)
        if not counts:
            break  # every chunk is a single token: nothing left to merge
        pair = _best_pair(counts)
        words = [merge_pair(w, pair, first_id + k) for w in words]
        merges.append(pair)
    return merges


# ---------------------------------------------------------------------------
# The fast trainer
# ---------------------------------------------------------------------------
def train_incremental(
    chunk_counts: Mapping[bytes, int],
    num_merges: int,
    first_id: int = 256,
    progress: bool = False,
    merge_counts: list | None = None,
) -> list[tuple[int, int]]:
    """Same result as :func:`train_reference`, without recounting.

    ``chunk_counts`` maps each *distinct* chunk (bytes) to how often it occurs.
    If ``merge_counts`` is a list, the count of each merged pair is appended
    to it (the benchmark uses this to know how long the text is after each merge).

    Data structures:

    * ``words[w]``: the current token ids of distinct chunk ``w``; ``freqs[w]``
      its number of occurrences.
    * ``counts[pair]``: occurrences of ``pair`` in the whole text, i.e. the sum
      of ``freqs[w]`` over every position of ``pair`` in every chunk ``w``.
    * ``where[pair]``: the chunks that contain (or once contained) ``pair``.
    * ``heap``: entries ``(-count, first, second)``; the smallest entry is the
      best pair under the tie-breaking rule. Entries go stale when a count
      changes; instead of searching the heap we check each popped entry
      against ``counts`` and push a corrected one if needed ("lazy
      invalidation"). Counts only *grow* for pairs that contain the new id, so
      only those are pushed after a merge.
    """
    words = [list(chunk) for chunk in chunk_counts]
    freqs = list(chunk_counts.values())
    counts: defaultdict = defaultdict(int)
    where: defaultdict = defaultdict(set)
    for w, (ids, freq) in enumerate(zip(words, freqs)):
        for pair in zip(ids, ids[1:]):
            counts[pair] += freq
            where[pair].add(w)
    heap = [(-c, a, b) for (a, b), c in counts.items()]
    heapq.heapify(heap)

    bar = None
    if progress:
        from tqdm.auto import tqdm  # noqa: PLC0415 - only when asked for

        bar = tqdm(total=num_merges, desc="bpe merges", unit="merge")

    merges: list[tuple[int, int]] = []
    heappop, heappush = heapq.heappop, heapq.heappush
    for k in range(num_merges):
        # 1. The best pair: pop until the entry agrees with the true count.
        while heap:
            neg, a, b = heappop(heap)
            count = counts.get((a, b), 0)
            if count == -neg:
                break
            if 0 < count < -neg:  # count dropped since this entry was pushed
                heappush(heap, (-count, a, b))
        else:
            break  # no pairs left
        if count <= 0:
            break
        new_id = first_id + k
        merges.append((a, b))
        if merge_counts is not None:
            merge_counts.append(count)

        # 2. Merge it in the chunks that contain it, updating counts by difference.
        grown = set()
        for w in where.pop((a, b)):
            ids = words[w]
            n = len(ids)
            i = 0
            out = []
            while i < n:
                if ids[i] == a and i + 1 < n and ids[i + 1] == b:
                    out.append(new_id)
                    i += 2
                else:
                    out.append(ids[i])
                    i += 1
            if len(out) == n:
                continue  # stale entry in `where`: already merged away
            freq = freqs[w]
            for pair in zip(ids, ids[1:]):
                counts[pair] -= freq
            for pair in zip(out, out[1:]):
                counts[pair] += freq
                if new_id in pair:
                    grown.add(pair)
                    where[pair].add(w)
            words[w] = out
        counts.pop((a, b), None)
        for pair in grown:
            heappush(heap, (-counts[pair], pair[0], pair[1]))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return merges


# ---------------------------------------------------------------------------
# The tokenizer
# ---------------------------------------------------------------------------
class _Cache(dict):
    """text -> tuple of ids; a miss computes the ids and remembers them.

    ``dict.__missing__`` lets ``map(cache.__getitem__, pieces)`` run at C speed
    for hits (about 97% of chunks in English text) and call Python only on a
    miss. Keys longer than ``max_key_len`` are computed but not stored, and
    the cache is emptied when it reaches ``max_size`` entries, so memory stays
    bounded on unusual input.
    """

    __slots__ = ("compute", "max_size", "max_key_len")

    def __init__(self, compute, max_size: int = 1 << 18, max_key_len: int = 128):
        super().__init__()
        self.compute = compute
        self.max_size = max_size
        self.max_key_len = max_key_len

    def __missing__(self, key: str) -> tuple[int, ...]:
        ids = self.compute(key)
        if len(key) <= self.max_key_len:
            if len(self) >= self.max_size:
                self.clear()
            self[key] = ids
        return ids


_INF = float("inf")
_NO_MERGE = (_INF, -1)

#: Patterns for which a space that follows a non-whitespace character is
#: always a chunk boundary (proof in :meth:`BPETokenizer.encode_ordinary`).
_SPACE_SPLIT_SAFE = {GPT2_SPLIT_PATTERN, GPT4_SPLIT_PATTERN}
#: Marks, in the piece cache, a piece after which the space is *not* a chunk
#: boundary (see :meth:`BPETokenizer.encode_ordinary`). A real entry is never
#: empty: it holds the ids of at least the leading space.
_GLUE = ()
#: The first cut done by the regex engine, at spaces after non-whitespace only.
#: Slower than ``str.split(" ")`` on prose, but used when the text has more
#: than one double space per ``_REGEX_CUT_EVERY`` characters (indented code):
#: gluing that many pieces back in Python would cost more.
_cut_after_non_space = regex.compile(r"(?<=\S) ").split
_REGEX_CUT_EVERY = 32


def _glues(piece: str) -> bool:
    """True if the space after ``piece`` may not be a chunk boundary: ``piece`` is empty or ends in whitespace.

    ``str.isspace`` accepts every character that the patterns' ``\\s``
    accepts (and ``\\x1c``-``\\x1f`` besides): erring towards gluing is safe.
    """
    return not piece or piece[-1].isspace()


class BPETokenizer:
    """A byte-level BPE tokenizer (GPT-2 / GPT-4 / tiktoken style).

    Build one by :meth:`train`, :meth:`load`, :meth:`from_tiktoken` or
    :meth:`from_huggingface`::

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
        merges: ``(a, b) -> new id`` in rank order (minbpe's view).
        special_tokens: special token text -> id.
        vocab: id -> bytes, for every id including the special tokens.
    """

    format_name = "minitx-bpe"
    format_version = 1

    def __init__(self, pattern: str | None = None):
        self.pattern = resolve_pattern(pattern)
        self._init_tables(list(range(256)), [], {})

    # -- construction --------------------------------------------------------
    def _init_tables(
        self,
        byte_ids: Sequence[int],
        ranked_merges: Sequence[tuple[int, int, int, int]],
        special_tokens: Mapping[str, int],
        *,
        whole_token_shortcut: bool = True,
        prefix_space: bool = False,
    ) -> None:
        """Install the tables; ``ranked_merges`` holds ``(rank, a, b, new_id)``."""
        if len(byte_ids) != 256 or len(set(byte_ids)) != 256:
            raise ValueError(f"byte_ids: expected 256 distinct ids, got {len(set(byte_ids))} distinct of {len(byte_ids)}")
        self.byte_ids = list(byte_ids)
        vocab: dict[int, bytes] = {i: bytes([b]) for b, i in enumerate(self.byte_ids)}
        self._ranks: dict[tuple[int, int], tuple[int, int]] = {}
        self._merge_list = sorted(ranked_merges)
        # The bytes of each new id. Usually a merge only uses ids defined
        # before it, but a tiktoken vocabulary may cut a token into two
        # *later* tokens, so resolve in passes until nothing is pending.
        pending = self._merge_list
        while pending:
            waiting = []
            for merge in pending:
                _, a, b, new = merge
                if a not in vocab or b not in vocab:
                    waiting.append(merge)
                    continue
                merged = vocab[a] + vocab[b]
                if vocab.setdefault(new, merged) != merged:
                    raise ValueError(f"merge ({a}, {b}) -> {new}: id {new} already stands for {vocab[new]!r}")
            if len(waiting) == len(pending):
                _, a, b, new = waiting[0]
                raise ValueError(f"merge ({a}, {b}) -> {new}: uses an id that no merge or byte defines")
            pending = waiting
        for rank, a, b, new in self._merge_list:
            self._ranks.setdefault((a, b), (rank, new))
        self.merges = {(a, b): new for _, a, b, new in self._merge_list}
        self._token_to_id = {bts: i for i, bts in vocab.items()}
        for name, i in special_tokens.items():
            if i in vocab:
                raise ValueError(f"special token {name!r}: id {i} is already the token {vocab[i]!r}")
            vocab[i] = name.encode("utf-8")
        self.vocab = vocab
        self.special_tokens = dict(special_tokens)
        self.inverse_special_tokens = {i: s for s, i in self.special_tokens.items()}
        self.whole_token_shortcut = whole_token_shortcut
        self.prefix_space = prefix_space
        self._split = compile_pattern(self.pattern).findall
        self._special_split = None
        if self.special_tokens:
            import regex  # noqa: PLC0415

            alternatives = "|".join(regex.escape(s) for s in sorted(self.special_tokens, key=len, reverse=True))
            self._special_split = regex.compile(f"({alternatives})")
        self._chunk_cache = _Cache(self._encode_chunk)
        self._space_cache = _Cache(self._encode_after_space)
        self._space_split_safe = self.pattern in _SPACE_SPLIT_SAFE

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
        ``"incremental"`` (fast) or ``"reference"`` (textbook; same result).
        Returns ``self``, so ``BPETokenizer().train(...)`` reads naturally. If
        the text runs out of pairs first, the vocabulary is smaller.
        """
        if pattern is not None:
            self.pattern = resolve_pattern(pattern)
        specials = special_tokens or {}
        n_special = len(specials)
        if not isinstance(vocab_size, int) or vocab_size < 256 + n_special:
            raise ValueError(
                f"vocab_size: got {vocab_size!r}, expected an integer >= {256 + n_special} "
                f"(256 byte tokens + {n_special} special tokens)"
            )
        if not isinstance(text, str):
            raise ValueError(f"text: expected str, got {type(text).__name__}")
        num_merges = vocab_size - 256 - n_special
        pieces = [text]
        if specials:
            import regex  # noqa: PLC0415

            alternatives = "|".join(regex.escape(s) for s in sorted(specials, key=len, reverse=True))
            pieces = regex.split(f"(?:{alternatives})", text)
        split = compile_pattern(self.pattern).findall
        chunk_counts: Counter = Counter()
        for piece in pieces:
            chunk_counts.update(split(piece))
        try:
            byte_counts = {chunk.encode("utf-8"): n for chunk, n in chunk_counts.items()}
        except UnicodeEncodeError as exc:
            raise ValueError(f"text: {exc.reason} ({exc.object[exc.start:exc.end]!r} cannot be encoded as UTF-8)") from None
        if algorithm == "incremental":
            merge_pairs = train_incremental(byte_counts, num_merges, progress=progress)
        elif algorithm == "reference":
            occurrences = [c for c, n in byte_counts.items() for _ in range(n)]
            merge_pairs = train_reference(occurrences, num_merges)
        else:
            raise ValueError(f"algorithm: got {algorithm!r}, expected 'incremental' or 'reference'")
        ranked = [(k, a, b, 256 + k) for k, (a, b) in enumerate(merge_pairs)]
        if isinstance(specials, Mapping):
            special_map = dict(specials)
        else:
            special_map = {s: 256 + len(merge_pairs) + j for j, s in enumerate(specials)}
        self._init_tables(list(range(256)), ranked, special_map)
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
    def _bpe_reference(self, piece: bytes) -> list[int]:
        """BPE on one chunk: merge the lowest-rank adjacent pair, leftmost first, until none applies.

        This is exactly tiktoken's ``byte_pair_merge`` rule and Hugging Face's
        merge order. The readable version: look at every pair after every merge.
        """
        ranks = self._ranks
        ids = [self.byte_ids[b] for b in piece]
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

    def _bpe(self, piece: bytes) -> list[int]:
        """Same result as :meth:`_bpe_reference`, with fewer dictionary lookups.

        ``rank[i]`` holds the rank of the pair ``(ids[i], ids[i + 1])``; after
        a merge only the two pairs around it change. ``min`` and
        ``list.index`` (leftmost) then find the best pair at C speed.
        """
        get = self._ranks.get
        ids = [self.byte_ids[b] for b in piece]
        found = [get(pair, _NO_MERGE) for pair in zip(ids, ids[1:])]
        rank = [f[0] for f in found]
        while rank:
            best = min(rank)
            if best == _INF:
                break
            i = rank.index(best)
            ids[i : i + 2] = (found[i][1],)
            del rank[i], found[i]
            if i > 0:
                found[i - 1] = f = get((ids[i - 1], ids[i]), _NO_MERGE)
                rank[i - 1] = f[0]
            if i < len(rank):
                found[i] = f = get((ids[i], ids[i + 1]), _NO_MERGE)
                rank[i] = f[0]
        return ids

    def _encode_chunk(self, chunk: str) -> tuple[int, ...]:
        piece = chunk.encode("utf-8")
        if self.whole_token_shortcut:
            whole = self._token_to_id.get(piece)
            if whole is not None:
                return (whole,)
        return tuple(self._bpe(piece))

    def _encode_chunks(self, text: str) -> list[int]:
        """Split ``text`` with the pattern and look every chunk up in the chunk cache."""
        return list(chain.from_iterable(map(self._chunk_cache.__getitem__, self._split(text))))

    def _encode_after_space(self, piece: str) -> tuple[int, ...]:
        """The ids of ``" " + piece``, or ``_GLUE`` if the space after ``piece`` is not a chunk boundary."""
        if _glues(piece):
            return _GLUE
        if piece.isascii() and piece.isalpha():
            return self._chunk_cache[" " + piece]  # " word" is one chunk in both patterns
        return tuple(chain.from_iterable(map(self._chunk_cache.__getitem__, self._split(" " + piece))))

    def encode_ordinary(self, text: str) -> list[int]:
        """Encode ``text`` ignoring special tokens (their text is encoded like any other).

        The fast path. The split regex is the largest cost of encoding, so for
        the GPT-2 and GPT-4 patterns the text is first cut, much more cheaply
        (``str.split(" ")``), at every space, and each piece (``"word,"``,
        ``"end.\\nThe"``) is looked up whole in a cache of
        ``" " + piece -> ids``; the regex runs only on cache misses.

        Why that is exact: at a space that follows a non-whitespace character
        the chunk before it has ended (no alternative of either pattern
        continues from a letter, digit or symbol into a space), and no
        alternative looks behind, so matching the rest of the text from that
        space gives the same chunks as matching the whole text. The piece
        before it ends in non-whitespace, so the ``$`` and ``(?!\\S)`` tests of
        the whitespace alternatives cannot see the cut either.

        A space after whitespace (runs of spaces, indentation) or at the start
        is not such a boundary. The cache answers ``_GLUE`` for a piece that
        is empty or ends in whitespace; :meth:`_glue_pieces` then joins it
        with the pieces after it, up to one that ends in non-whitespace, and
        looks the joined text up instead. (So any cut at spaces is exact; where
        runs of spaces abound, the regex ``(?<=\\S) `` makes fewer bad cuts.)
        The tests check all this against :meth:`encode_reference`, the plain
        regex path and tiktoken on adversarial whitespace.
        """
        if self.prefix_space and text and not text.startswith(" "):
            text = " " + text
        try:
            if not self._space_split_safe:
                return self._encode_chunks(text)
            if text.count("  ") * _REGEX_CUT_EVERY > len(text):
                pieces = _cut_after_non_space(text)
            else:
                pieces = text.split(" ")
            # The first piece has no space before it: split it with the
            # pattern, together with the pieces that must be glued to it.
            first = 1
            while first < len(pieces) and _glues(pieces[first - 1]):
                first += 1
            out = self._encode_chunks(" ".join(pieces[:first]))
            found = list(map(self._space_cache.__getitem__, islice(pieces, first, None)))
            if _GLUE in found:
                self._glue_pieces(found, pieces[first:])
            out.extend(chain.from_iterable(found))
            return out
        except UnicodeEncodeError as exc:
            raise _surrogate_error(exc, text) from None

    def _glue_pieces(self, found: list, pieces: list[str]) -> None:
        """Fix up ``found`` in place where a space cut is not a chunk boundary.

        ``found[i]`` is the piece cache's answer for ``pieces[i]``. A run of
        pieces ``j..k`` where ``j..k-1`` answer ``_GLUE`` and ``k`` does not
        (or is the last piece) is one stretch of text,
        ``" " + " ".join(pieces[j : k + 1])``, that starts just after a chunk
        boundary and ends at one; its ids go to ``found[k]``. ``_GLUE`` is the
        empty tuple, so the markers left at ``j..k-1`` add nothing to the output.
        """
        n = len(found)
        j = found.index(_GLUE)
        while True:
            k = j
            while found[k] is _GLUE and k + 1 < n:
                k += 1
            joined = " ".join(pieces[j : k + 1])
            if found[k] is _GLUE:  # the run reaches the end of the text: encode what is left
                found[k] = self._encode_chunks(" " + joined)
            else:
                found[k] = self._space_cache[joined]
            try:
                j = found.index(_GLUE, k + 1)
            except ValueError:
                return

    def encode_reference(self, text: str, allowed_special="none_raise") -> list[int]:
        """The readable path: split, then BPE every chunk; no cache, no shortcut.

        :meth:`encode` must return exactly this; the tests check it.
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
                    out.extend(self._bpe_reference(chunk.encode("utf-8")))
                except UnicodeEncodeError as exc:
                    raise _surrogate_error(exc, text) from None
        return out

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
                yield part, False
            elif part in allowed:
                yield part, True
            else:
                position = sum(len(p) for p in parts[:j])
                raise ValueError(
                    f"text contains the special token {part!r} at position {position}, which allowed_special="
                    f"{allowed_special!r} does not allow; pass allowed_special='all' (or a set naming it) to encode "
                    f"it as a special token, or allowed_special='none' to encode it as ordinary text"
                )
            # ordinary pieces between specials keep their own chunk boundaries

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
        return [(v[a], v[b], v[new]) for _, a, b, new in self._merge_list]

    # -- persistence -------------------------------------------------------------
    def save(self, path: str | os.PathLike, vocab_listing: bool = True) -> None:
        """Write the model as versioned text (see :mod:`.formats`), atomically.

        With ``vocab_listing`` a human-readable ``<path>.vocab`` is written too
        (one token per line, with the two tokens it was merged from).
        """
        from .formats import save_bpe  # noqa: PLC0415

        save_bpe(self, path, vocab_listing=vocab_listing)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "BPETokenizer":
        """Read a model written by :meth:`save`; a damaged file raises ``ValueError``."""
        from .formats import load_bpe  # noqa: PLC0415

        return load_bpe(path, cls)

    @classmethod
    def from_tiktoken(
        cls, path: str | os.PathLike, pattern: str = GPT4_SPLIT_PATTERN, special_tokens: Mapping[str, int] | None = None
    ) -> "BPETokenizer":
        """Load a tiktoken rank file (``<base64 token> <rank>`` per line), e.g. ``cl100k_base.tiktoken``."""
        from .formats import load_tiktoken  # noqa: PLC0415

        return load_tiktoken(path, pattern, special_tokens, cls)

    @classmethod
    def from_huggingface(cls, path: str | os.PathLike) -> "BPETokenizer":
        """Load a Hugging Face byte-level BPE ``tokenizer.json`` (GPT-2 style vocab + merges)."""
        from .formats import load_huggingface  # noqa: PLC0415

        return load_huggingface(path, cls)

    def __repr__(self) -> str:
        return (
            f"BPETokenizer(vocab_size={self.vocab_size}, merges={len(self._merge_list)}, "
            f"special_tokens={len(self.special_tokens)})"
        )


def render_token(token: bytes) -> str:
    """Printable form of a token's bytes: text where it is valid UTF-8, ``\\xNN`` elsewhere."""
    text = token.decode("utf-8", errors="backslashreplace")
    return "".join(c if c.isprintable() or c == " " else c.encode("unicode_escape").decode("ascii") for c in text)


def _surrogate_error(exc: UnicodeEncodeError, text: str) -> ValueError:
    bad = exc.object[exc.start : exc.end]
    where = text.find(bad)
    return ValueError(
        f"text: contains a lone surrogate {bad!r} at position {where}, which cannot be encoded as UTF-8; "
        f"fix the text, e.g. text.encode('utf-16', 'surrogatepass').decode('utf-16', 'replace')"
    )


def json_dumps(obj) -> str:
    """JSON on one line, non-ASCII kept readable."""
    return json.dumps(obj, ensure_ascii=False)
