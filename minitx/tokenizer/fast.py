"""The fast path of BPE: same results as :mod:`.bpe`, for text that does not repeat.

Read :mod:`minitx.tokenizer.bpe` first: it holds the definitions (the
textbook trainer, the chunk-by-chunk encoder). Everything here is tested to
give exactly the same merges and ids (hypothesis over arbitrary text, and
token for token against tiktoken and Hugging Face). What changes, and why:

1. **The split, with the standard library's regex engine.** Cutting text into
   chunks with the :mod:`regex` package is the largest single cost of both
   training and encoding (on 10 MiB of documentation: about 0.9 s, more than
   tiktoken needs for the whole encoding). The GPT-2 and GPT-4 patterns only
   need ``\\p{L}``, ``\\p{N}`` and ``\\s``, so :class:`Splitter` spells them as
   explicit character classes, built from :mod:`regex`'s own tables, and
   compiles them with :mod:`re`, which matches them 2-3x faster. :mod:`re`
   checks a class quickly only when all of its characters are in the Basic
   Multilingual Plane (a bitmap), so the classes stop at U+FFFF: a stretch of
   text around a character beyond U+FFFF (emoji, rare CJK) is split with
   :mod:`regex` instead, cut at spaces where a cut cannot change the chunks
   (:func:`safe_cut_before`).
2. **Each distinct chunk once.** Training counts the chunks first
   (``Counter``) and trains on distinct chunks with their counts
   (:func:`train_incremental`: pair counts updated by difference, a heap with
   lazy invalidation for the best pair). Encoding looks every chunk up in a
   cache at C speed (``map``); the chunks it has not seen leave a holder and
   are encoded together afterwards. The text is split and looked up in blocks
   of about 64 Ki characters, cut before a space that follows a
   non-whitespace character (an exact cut, :func:`safe_cut_before`), so that
   each block's chunk strings are still in the CPU cache when they are looked
   up and freed.
3. **New chunks in one batch, with NumPy.** On text that does not repeat,
   running BPE on the new chunks is the other large cost (about 10 us per
   chunk in Python, 40k chunks in 10 MiB). :func:`batch_bpe` runs the merge
   loop for all of them at once: one array holds every chunk's ids, each
   round finds every chunk's best pair with ``np.minimum.reduceat``, merges it
   and looks up only the two new neighbouring pairs in a NumPy hash table
   (:class:`PairTable`: chained buckets stored as sorted arrays, so a lookup
   takes as many vectorised rounds as the longest bucket holds keys: 6 for
   cl100k). Chunks that are a whole token skip BPE (tiktoken's rule); long chunks,
   and the last few of a batch, finish in Python (:func:`merge_loop`, a heap
   of pairs by rank and position), where NumPy's per-call overhead would
   dominate.

Measured figures and the profile are in ``benchmarks/tokenizer.md``.
"""
from __future__ import annotations

import gc
import heapq
import re
import sys
from collections import Counter, defaultdict
from contextlib import contextmanager
from functools import lru_cache, reduce
from operator import iconcat
from typing import Iterable, Iterator, Mapping, Sequence

import numpy as np
import regex

from .patterns import GPT2_SPLIT_PATTERN, GPT4_SPLIT_PATTERN, compile_pattern

# ---------------------------------------------------------------------------
# 1. The split
# ---------------------------------------------------------------------------
#: A character outside the Basic Multilingual Plane: the :mod:`re` classes stop at U+FFFF.
_BEYOND_BMP = re.compile("[^\x00-\uffff]")


@lru_cache(maxsize=None)
def _bmp_classes() -> dict[str, str]:
    """``\\p{L}``, ``\\p{N}``, ``\\s`` and the case-insensitive contraction letters, as :mod:`re` class bodies.

    Taken from the :mod:`regex` package itself (so both engines agree on every
    character of the BMP, whatever Unicode version regex ships): run each
    property over all BMP code points and write the runs as ranges.
    """
    parts = ("".join(map(chr, range(0xD800))), "".join(map(chr, range(0xE000, 0x10000))))  # no surrogates

    def ranges(prop: str) -> str:
        runs = (run for part in parts for run in regex.findall(f"{prop}+", part))
        return "".join(f"\\u{ord(r[0]):04x}-\\u{ord(r[-1]):04x}" for r in runs)

    classes = {"L": ranges(r"\p{L}"), "N": ranges(r"\p{N}"), "S": ranges(r"\s")}
    for letter in "sdmtlver":  # GPT-4 writes its contractions case-insensitively: (?i:[sdmt]|ll|ve|re)
        same = "".join(c for part in parts for c in regex.findall(f"(?i){letter}", part))
        classes[letter] = "".join(f"\\u{ord(c):04x}" for c in same)
    return classes


@lru_cache(maxsize=None)
def bmp_pattern(pattern: str) -> re.Pattern | None:
    """A :mod:`re` pattern that cuts BMP-only text exactly like ``pattern`` does, or None.

    Only the GPT-2 and GPT-4 patterns are translated. :mod:`re` knows
    possessive quantifiers (``++``, ``?+``) from Python 3.11 on, and they save
    it about 9% of the time; on Python 3.10 they become greedy ones, which
    give the same chunks here: nothing after them could match what
    backtracking would give back (a letter run is followed by nothing or by
    the end of the alternative, a whitespace run by ``$``).
    """
    c = _bmp_classes()
    L, N, S = c["L"], c["N"], c["S"]
    p = "+" if sys.version_info >= (3, 11) else ""  # possessive where re supports it
    if pattern == GPT4_SPLIT_PATTERN:
        k = {x: f"[{c[x]}]" for x in "sdmtlver"}
        contraction = f"'(?:{k['s']}|{k['d']}|{k['m']}|{k['t']}|{k['l']}{k['l']}|{k['v']}{k['e']}|{k['r']}{k['e']})"
        body = (
            rf"|[^\r\n{L}{N}]?{p}[{L}]+{p}|[{N}]{{1,3}}{p}| ?[^{S}{L}{N}]+{p}[\r\n]*{p}|[{S}]+{p}$|[{S}]*[\r\n]"
            rf"|[{S}]+(?![^{S}])|[{S}]"
        )
        return re.compile(contraction + body)
    if pattern == GPT2_SPLIT_PATTERN:
        return re.compile(
            rf"'(?:[sdmt]|ll|ve|re)| ?[{L}]+{p}| ?[{N}]+{p}| ?[^{S}{L}{N}]+{p}|[{S}]+{p}$|[{S}]+(?![^{S}])|[{S}]"
        )
    return None


def safe_cut_before(text: str, i: int, lo: int) -> int:
    """The last position ``p`` in ``(lo, i)`` where cutting ``text`` cannot change its chunks, else ``lo``.

    Such a position holds a space that follows a non-whitespace character.
    Why the cut is exact for the GPT-2 and GPT-4 patterns: no alternative
    continues from a letter, digit or symbol into a space, so the chunk before
    the space ends there; no alternative looks behind, so matching from the
    space on gives the same chunks as matching the whole text; and the piece
    before ends in non-whitespace, so the ``$`` and ``(?!\\S)`` tests of the
    whitespace alternatives cannot see the cut. ``str.isspace`` accepts every
    character the patterns' ``\\s`` does (and ``\\x1c``-``\\x1f`` besides:
    erring towards not cutting is safe).
    """
    p = text.rfind(" ", lo + 1, i)
    while p != -1 and text[p - 1].isspace():
        p = text.rfind(" ", lo + 1, p)
    return lo if p == -1 else p


def safe_cut_after(text: str, i: int) -> int:
    """The first position after ``i`` where a cut is exact (see :func:`safe_cut_before`), else ``len(text)``."""
    p = text.find(" ", i + 1)
    while p != -1 and text[p - 1].isspace():
        p = text.find(" ", p + 1)
    return len(text) if p == -1 else p


class Splitter:
    """``split(text)`` gives the same chunks as ``regex.findall(pattern, text)``, faster for GPT-2/GPT-4."""

    def __init__(self, pattern: str):
        self.pattern = pattern
        self._regex = compile_pattern(pattern).findall
        bmp = bmp_pattern(pattern)
        self._bmp = None if bmp is None else bmp.findall

    def split(self, text: str) -> list[str]:
        if self._bmp is None:
            return self._regex(text)
        if _BEYOND_BMP.search(text) is None:
            return self._bmp(text)
        # Stretches around characters beyond U+FFFF go to regex, the rest to re. ``findall(text,
        # pos, end)`` matches as if the text were cut there (``$`` too), without copying it; the
        # patterns have no ``^`` and do not look behind, so that equals matching the slice.
        # ``list +=`` copies each part's references once, in C (``chain`` went item by item: +5%).
        chunks: list[str] = []
        pos = 0
        for m in _BEYOND_BMP.finditer(text):
            i = m.start()
            if i < pos:
                continue  # inside the stretch just handled
            start = safe_cut_before(text, i, pos)
            end = safe_cut_after(text, i)
            chunks += self._bmp(text, pos, start)
            chunks += self._regex(text, start, end)
            pos = end
        chunks += self._bmp(text, pos)
        return chunks


def count_chunks(texts: Iterable[str], pattern: str) -> Counter:
    """How often each chunk occurs in ``texts`` (each text split on its own)."""
    split = Splitter(pattern).split
    counts: Counter = Counter()
    for text in texts:
        counts.update(split(text))
    return counts


# ---------------------------------------------------------------------------
# 2. The trainer
# ---------------------------------------------------------------------------
def train_incremental(
    chunk_counts: Mapping[bytes, int],
    num_merges: int,
    first_id: int = 256,
    progress: bool = False,
    merge_counts: list | None = None,
) -> list[tuple[int, int]]:
    """Same result as :func:`~minitx.tokenizer.bpe.train_reference`, without recounting.

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
# 3. Encoding: BPE on many chunks at once
# ---------------------------------------------------------------------------
#: Rank of "no merge" in the arrays (ranks are below 2**31).
NO_RANK = 2**31 - 1


def merge_loop(ids: list[int], ranks: Mapping[tuple[int, int], tuple[int, int]]) -> list[int]:
    """BPE on one chunk's ids: the reference rule, with a heap instead of a scan per merge.

    The reference looks at every pair after every merge, which is quadratic in
    the chunk's length (long chunks: Chinese text without spaces, runs of
    ``=`` or ``*``). Here every pair waits in a heap as ``(rank, position,
    pair, new id)``, so the smallest entry is the lowest rank, leftmost (the
    reference's tie rule). The ids stay where they are; ``right[i]`` and
    ``left[i]`` link each position still present to its neighbours (``n``,
    ``-1``: none). An entry is used only if its pair is still at its
    position: a merge next to it makes it stale, and stale entries are
    skipped when they come up, not searched for. Each merge pushes the two
    new pairs around the new id. Measured against the scan it replaces
    (``min`` over a list of ranks per merge), on byte slices of the benchmark
    text: as fast at 8 bytes, 2.5x faster at 256, 9x at 1,500 (2 ms, not 18).
    """
    get = ranks.get
    n = len(ids)
    ids = list(ids)
    right = list(range(1, n + 1))
    left = list(range(-1, n - 1))
    heap = []
    for i, pair in enumerate(zip(ids, ids[1:])):
        found = get(pair)
        if found is not None:
            heap.append((found[0], i, pair, found[1]))
    heapq.heapify(heap)
    heappop, heappush = heapq.heappop, heapq.heappush
    while heap:
        _, i, pair, new = heappop(heap)
        j = right[i]
        if j == n or ids[i] != pair[0] or ids[j] != pair[1]:
            continue  # stale: this pair is no longer at position i
        ids[i] = new
        ids[j] = None  # position j is gone
        k = right[i] = right[j]
        if k < n:
            left[k] = i
            found = get((new, ids[k]))
            if found is not None:
                heappush(heap, (found[0], i, (new, ids[k]), found[1]))
        h = left[i]
        if h >= 0:
            found = get((ids[h], new))
            if found is not None:
                heappush(heap, (found[0], h, (ids[h], new), found[1]))
    return [x for x in ids if x is not None]


class PairTable:
    """``(left id, right id) -> (rank, new id)`` for whole arrays of pairs at once.

    A hash table with chaining, stored as sorted arrays. A key is
    ``left << 32 | right``; its bucket is the top ``bits`` bits of
    ``key * 0x9E3779B97F4A7C15`` (Fibonacci hashing), with two buckets or more
    per key. The keys are sorted by bucket, so bucket ``h`` holds
    ``keys[start[h]:start[h + 1]]``, with their ranks and new ids beside them
    in ``rank`` and ``new``. A lookup of ``n`` pairs walks all their buckets in
    step, one vectorised round per key that the longest bucket holds (at most
    6 for cl100k's 233k pairs; most pairs are settled in the first round).
    Open addressing with linear probing, used before, needed 20-29 rounds per
    lookup at half load: one long probe chain kept the whole array going round.

    Every chunk starts as byte tokens, so :meth:`lookup_bytes` answers the
    pairs of two byte tokens from a direct 256 x 256 table instead.
    """

    _MULT = np.uint64(0x9E3779B97F4A7C15)

    def __init__(self, ranks: Mapping[tuple[int, int], tuple[int, int]]):
        m = len(ranks)
        self.bits = max(4, int(m).bit_length() + 1)  # 2**bits >= 2m buckets
        pairs = np.array(list(ranks.keys()), dtype=np.int64).reshape(-1, 2)  # (m, 2)
        values = np.array(list(ranks.values()), dtype=np.int64).reshape(-1, 2)  # (m, 2): rank, new id
        keys = pairs[:, 0] << 32 | pairs[:, 1]  # (m,)
        bucket = self._bucket(keys)
        order = np.argsort(bucket, kind="stable")
        self.keys = keys[order]
        self.rank = values[order, 0]
        self.new = values[order, 1]
        self.start = np.searchsorted(bucket[order], np.arange((1 << self.bits) + 1))  # (buckets + 1,)
        self._byte_pairs: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}

    def _bucket(self, keys: np.ndarray) -> np.ndarray:
        return ((keys.view(np.uint64) * self._MULT) >> np.uint64(64 - self.bits)).astype(np.intp)

    def lookup(self, left: np.ndarray, right: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Ranks (``NO_RANK`` where the pair is no merge) and new ids of the pairs ``(left[i], right[i])``."""
        keys = left << 32 | right  # (n,)
        rank = np.full(keys.size, NO_RANK, dtype=np.int64)
        new = np.zeros(keys.size, dtype=np.int64)
        bucket = self._bucket(keys)
        pos, end = self.start[bucket], self.start[bucket + 1]  # (n,) each pair's bucket
        todo = np.flatnonzero(pos < end)  # pairs whose bucket is empty are no merge
        pos, end, keys = pos[todo], end[todo], keys[todo]
        while todo.size:
            hit = self.keys[pos] == keys
            rank[todo[hit]] = self.rank[pos[hit]]
            new[todo[hit]] = self.new[pos[hit]]
            pos += 1
            go_on = ~hit & (pos < end)  # not found yet, and the bucket has more keys
            todo, pos, end, keys = todo[go_on], pos[go_on], end[go_on], keys[go_on]
        return rank, new

    def lookup_bytes(self, data: np.ndarray, byte_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`lookup` of the pairs ``(byte_ids[data[i]], byte_ids[data[i + 1]])`` of a byte array."""
        known = self._byte_pairs.get(byte_ids.tobytes())
        if known is None:  # once per byte order: all 65,536 pairs of byte tokens
            known = self._byte_pairs[byte_ids.tobytes()] = self.lookup(np.repeat(byte_ids, 256), np.tile(byte_ids, 256))
        rank, new = known
        pair = data[:-1].astype(np.intp) << 8 | data[1:]  # (n - 1,) first byte * 256 + second
        return rank[pair], new[pair]


#: Chunks longer than this go straight to :func:`merge_loop`: each round of
#: :func:`batch_bpe` makes one merge per chunk, so one long chunk would keep
#: the whole batch going round.
BATCH_MAX_LEN = 64
#: When fewer chunks than this are left, :func:`batch_bpe` finishes them in
#: Python: a NumPy round costs tens of microseconds whatever its size.
BATCH_MIN_CHUNKS = 32


def batch_bpe(
    pieces: Sequence[bytes],
    byte_ids: np.ndarray,
    table: PairTable,
    ranks: Mapping[tuple[int, int], tuple[int, int]],
    max_len: int = BATCH_MAX_LEN,
    min_chunks: int = BATCH_MIN_CHUNKS,
) -> list[list[int]]:
    """BPE of every piece (bytes of one chunk), all at once; equal to :func:`merge_loop` on each.

    The state is three arrays over every position of every unfinished chunk,
    chunks stored one after the other: ``ids``, and for the pair that starts
    at each position its ``rank`` and ``new`` id (``NO_RANK`` at a chunk's last
    position). One round:

    1. the best pair of every chunk: ``np.minimum.reduceat`` over
       ``rank * n + position`` per chunk (lowest rank, then leftmost);
    2. chunks whose best is ``NO_RANK`` are done: their ids are set aside;
    3. every other chunk merges its best pair (the left id becomes the new
       id, the right one is deleted), and only the pairs to the left and right
       of the new id are looked up again, all in one :meth:`PairTable.lookup`.

    The finished chunks become lists once, at the end. Pieces longer than
    ``max_len`` bytes, and the last chunks once fewer than ``min_chunks``
    remain, go through :func:`merge_loop` instead.
    """
    out: list[list[int] | None] = [None] * len(pieces)
    batch = [j for j, p in enumerate(pieces) if 0 < len(p) <= max_len]
    for j, p in enumerate(pieces):
        if not p or len(p) > max_len:
            out[j] = merge_loop([int(byte_ids[b]) for b in p], ranks)
    if not batch:
        return out  # type: ignore[return-value]
    chunk = np.array(batch)  # (m,) index into pieces of each unfinished chunk
    lens = np.fromiter((len(pieces[j]) for j in batch), dtype=np.int64, count=len(batch))  # (m,)
    data = np.frombuffer(b"".join(pieces[j] for j in batch), dtype=np.uint8)  # (n,)
    ids = byte_ids[data]  # (n,)
    starts = np.cumsum(lens) - lens  # (m,) where each chunk begins
    rank = np.full(ids.size, NO_RANK, dtype=np.int64)  # (n,)
    new = np.zeros(ids.size, dtype=np.int64)  # (n,)
    rank[:-1], new[:-1] = table.lookup_bytes(data, byte_ids)
    rank[starts + lens - 1] = NO_RANK  # a pair across two chunks is no pair
    done_ids, done_chunk, done_lens = [], [], []  # what each round sets aside
    while lens.size >= max(min_chunks, 1):
        n = ids.size
        best = np.minimum.reduceat(rank * n + np.arange(n), starts)  # (m,)
        best_rank = best // n
        go = best_rank != NO_RANK  # (m,) chunks that merge this round
        keep = np.repeat(go, lens)  # (n,) drop finished chunks ...
        if not go.all():
            done_ids.append(ids[~keep])
            done_chunk.append(chunk[~go])
            done_lens.append(lens[~go])
        where = (best - best_rank * n)[go]  # (k,) position of each merging chunk's best pair
        offset = where - starts[go]  # (k,) its place inside the chunk
        ids[where] = new[where]
        keep[where + 1] = False  # ... and the right half of each merged pair
        ids, rank, new = ids[keep], rank[keep], new[keep]
        chunk, lens = chunk[go], lens[go] - 1
        starts = np.cumsum(lens) - lens
        at = starts + offset  # (k,) the new id's position now
        last = offset == lens - 1  # the new id ends its chunk: no pair starts there
        rank[at[last]] = NO_RANK
        sites = np.concatenate([at[offset > 0] - 1, at[~last]])  # pairs (left, new id) and (new id, right)
        if sites.size:
            rank[sites], new[sites] = table.lookup(ids[sites], ids[sites + 1])
    if done_ids:
        finished = np.concatenate(done_ids).tolist()
        lengths = np.concatenate(done_lens)
        ends = np.cumsum(lengths)
        for j, start, end in zip(np.concatenate(done_chunk).tolist(), (ends - lengths).tolist(), ends.tolist()):
            out[j] = finished[start:end]
    if lens.size:  # the last few: continue from their current ids in Python
        rest = ids.tolist()
        for j, start, length in zip(chunk.tolist(), starts.tolist(), lens.tolist()):
            out[j] = merge_loop(rest[start : start + length], ranks)
    return out  # type: ignore[return-value]


#: Fewer new chunks than this are encoded one by one in :func:`merge_loop`:
#: building the NumPy arrays of :func:`batch_bpe` costs more than it saves.
BATCH_FROM = 64


@contextmanager
def _collector_paused():
    """Pause Python's cyclic garbage collector for a block (if it was running), then resume it.

    Encoding a long text allocates tens of thousands of small lists at once
    (the chunks' ids), none of which can be part of a reference cycle. Each allocation burst
    makes the collector walk every container the process holds, the
    tokenizer's own large tables included (cl100k's merge table alone has
    233k entries): measured on 10 MiB of new text, 0.30-0.40 s of CPU with
    the collector against 0.16 s without. Plain reference counting still
    frees everything; a collection simply happens after the block instead.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class ChunkCache(dict):
    """chunk -> its ids, where a miss is noted rather than computed on the spot.

    ``__missing__`` stores a *holder* for the chunk, a one-element list
    ``[chunk]``, and notes it in ``pending``; later occurrences of the same
    chunk in the same pass find that holder. :meth:`FastEncoder.encode_ordinary`
    then encodes all pending chunks at once and overwrites each holder's
    content with the chunk's ids, in place: the list of values it has already
    collected (holders included) then flattens to the right ids. So the whole
    text is looked up in one pass at C speed (``map(cache.__getitem__, chunks)``)
    and Python runs only once per *distinct* new chunk.
    """

    __slots__ = ("pending",)

    def __init__(self, seed: Mapping[str, tuple[int, ...]] = ()):
        super().__init__(seed)
        self.pending: list[list] = []

    def __missing__(self, chunk: str) -> list:
        holder = [chunk]
        self[chunk] = holder
        self.pending.append(holder)
        return holder


#: About how many characters :meth:`FastEncoder.blocks` splits at a time (16-64 Ki measured alike).
BLOCK_CHARS = 1 << 16
#: A space after a character that is not whitespace (``str.isspace``, a superset of the patterns'
#: ``\s``): cutting the text before that space is exact (:func:`safe_cut_before`).
_EXACT_CUT = re.compile(r"\S ")


class FastEncoder:
    """Text -> ids for one tokenizer's tables, with a cache of chunk -> ids.

    ``encode_ordinary(text)``: block by block (:meth:`blocks`), split
    (:class:`Splitter`) and look every chunk up in a :class:`ChunkCache` (one
    pass at C speed); then encode the chunks it had not seen together
    (:func:`batch_bpe`, or :func:`merge_loop` for a handful), and flatten.

    With ``whole_tokens`` (tiktoken's rule: a chunk that is a whole token is
    that token) the cache starts out holding every token whose bytes are
    UTF-8 text, as ``text -> (id,)``: the same lookup tiktoken makes in its
    vocabulary, done by the cache pass itself. A chunk is text, so a token
    that is not valid UTF-8 can never equal one. The rest of the cache holds
    at most ``max_entries`` chunks across calls (it is reset when full), so
    memory stays bounded on endless new text. ``batch_from``: see
    :data:`BATCH_FROM`; ``block_chars``: :meth:`blocks`.
    """

    def __init__(
        self,
        pattern: str,
        byte_ids: Sequence[int],
        ranks: Mapping[tuple[int, int], tuple[int, int]],
        whole_tokens: Mapping[bytes, int] | None,
        max_entries: int = 1 << 18,
        batch_from: int = BATCH_FROM,
        block_chars: int = BLOCK_CHARS,
    ):
        self.split = Splitter(pattern).split
        self.byte_ids = list(byte_ids)
        self.ranks = ranks
        self.max_entries = max_entries
        self.batch_from = batch_from
        self.block_chars = block_chars
        self._seed: dict[str, tuple[int, ...]] = {}
        for token, i in (whole_tokens or {}).items():
            try:
                self._seed[token.decode("utf-8")] = (i,)
            except UnicodeDecodeError:
                continue  # part of a character: no chunk is ever this token
        self.cache = ChunkCache(self._seed)
        self._byte_ids_array = np.array(self.byte_ids, dtype=np.int64)
        self._table: PairTable | None = None  # built on the first batch (a tokenizer that is only trained needs none)

    def reset(self) -> None:
        """Forget every computed chunk (the vocabulary's whole tokens stay)."""
        self.cache = ChunkCache(self._seed)

    @property
    def cached_chunks(self) -> int:
        """How many chunks were computed and kept (the whole tokens not counted)."""
        return len(self.cache) - len(self._seed)

    def encode_ordinary(self, text: str) -> list[int]:
        """The ids of ``text``; raises ``UnicodeEncodeError`` on a lone surrogate."""
        if self.cached_chunks > self.max_entries:
            self.reset()
        cache = self.cache
        get = cache.__getitem__
        with _collector_paused():
            found: list = []  # ids per chunk; holders for new chunks
            for block in self.blocks(text):
                found += map(get, self.split(block))  # the block's chunk strings are freed right after
            pending, cache.pending = cache.pending, []
            if pending:
                keys = [holder[0] for holder in pending]
                try:
                    results = self.encode_chunks(keys)
                except BaseException:
                    for key in keys:  # leave no holder behind
                        del cache[key]
                    raise
                for holder, ids in zip(pending, results):
                    holder[:] = ids
            out = reduce(iconcat, found, [])  # out += ids, chunk by chunk, at C speed
            # Drop the big list while the collector still sleeps: the collection that follows
            # then need not walk its (number of chunks) references.
            del found
        return out

    def blocks(self, text: str) -> Iterator[str]:
        """``text`` in pieces of about ``block_chars`` characters, each cut where a cut is exact.

        A cut goes at the first space after ``block_chars`` characters that
        follows a non-whitespace character (:data:`_EXACT_CUT`; why such a cut
        cannot change the chunks: :func:`safe_cut_before`). Splitting and
        looking up one block at a time keeps its chunk strings in the CPU's
        cache between the two (all of 10 MiB's 2.3M chunk strings take about
        120 MB): measured 5% faster on 10 MiB.
        """
        lo, n = 0, len(text)
        while lo < n:
            cut = _EXACT_CUT.search(text, lo + self.block_chars) if lo + self.block_chars < n else None
            hi = n if cut is None else cut.end() - 1  # the space starts the next block
            yield text[lo:hi]
            lo = hi

    def encode_chunks(self, chunks: Sequence[str]) -> list[list[int]]:
        """The BPE ids of each of ``chunks`` (no cache, no whole-token lookup)."""
        pieces = [c.encode("utf-8") for c in chunks]
        if len(pieces) < self.batch_from:
            byte_ids = self.byte_ids
            return [merge_loop([byte_ids[b] for b in piece], self.ranks) for piece in pieces]
        if self._table is None:
            self._table = PairTable(self.ranks)
        return batch_bpe(pieces, self._byte_ids_array, self._table, self.ranks)
