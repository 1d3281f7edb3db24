"""Unigram: SentencePiece's tokenizer (Kudo 2018), the one T5 and many multilingual models use.

BPE merges, WordPiece takes the longest match; a Unigram model gives every
vocabulary piece a score, ``log p(piece)``, and cuts each word into the
pieces whose scores add up to the most (the most probable segmentation when
pieces are independent). Finding it is dynamic programming (Viterbi)::

    best[0] = 0
    best[j] = max over pieces word[i:j] in the vocabulary of best[i] + score(word[i:j])

then following the winning pieces back from the end. A character no piece
covers becomes the unknown token with a score below every real piece
(``min score - 10``), and runs of unknown characters become one unknown token.

Around the model, as Hugging Face's ``tokenizer.json`` describes it:

* normalisers: ``NFC``/``NFD``/``NFKC``/``NFKD``, ``Lowercase``, ``Strip``,
  ``Replace``, ``Prepend``, ``Nmt`` (SentencePiece's clean-up: drop some
  control characters, turn odd spaces into a space), and ``Sequence`` of those;
* pre-tokenisers: ``Metaspace`` (spaces become ``▁``, one is put in front, and
  every word keeps its ``▁``: ``"hi there"`` -> ``▁hi`` ``▁there``),
  ``WhitespaceSplit``, and ``Sequence`` of those;
* special tokens are cut out of the raw text first.

The real T5's ``tokenizer.json`` normalises with a ``Precompiled`` table (a
serialised SentencePiece character map), which is refused with a message.
"""
from __future__ import annotations

import os
import re
import unicodedata

UNK_PENALTY = 10.0  # how far below the worst piece an unknown character scores
# Unicode's White_Space characters, what Rust's split on whitespace uses (Python's
# str.split() also splits on U+001C..U+001F, which are not White_Space).
_WHITE_SPACE = re.compile("[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+")

_NMT_DROP = {*range(0x01, 0x09), 0x0B, *range(0x0E, 0x20), 0x7F, 0x8F, 0x9F}
_NMT_SPACE = {0x09, 0x0A, 0x0C, 0x0D, 0x1680, *range(0x200B, 0x2010), 0x2028, 0x2029, 0x2581, 0xFEFF, 0xFFFD}


def _normaliser(spec: dict | None, path):
    """A function ``str -> str`` for a tokenizer.json ``normalizer`` entry."""
    if spec is None:
        return lambda s: s
    kind = spec.get("type")
    if kind == "Sequence":
        steps = [_normaliser(s, path) for s in spec.get("normalizers", [])]

        def run(s):
            for step in steps:
                s = step(s)
            return s

        return run
    if kind in ("NFC", "NFD", "NFKC", "NFKD"):
        return lambda s: unicodedata.normalize(kind, s)
    if kind == "Lowercase":
        return lambda s: "".join(ch.lower() for ch in s)
    if kind == "Strip":
        left, right = spec.get("strip_left", True), spec.get("strip_right", True)
        return lambda s: (s.lstrip() if left else s).rstrip() if right else (s.lstrip() if left else s)
    if kind == "Prepend":
        prefix = spec["prepend"]
        return lambda s: prefix + s if s else s
    if kind == "Replace":
        pattern, content = spec["pattern"], spec["content"]
        if "Regex" in pattern:
            regex = re.compile(pattern["Regex"])
            return lambda s: regex.sub(lambda _: content, s)
        return lambda s: s.replace(pattern["String"], content)
    if kind == "Nmt":
        return lambda s: "".join(" " if ord(ch) in _NMT_SPACE else ch for ch in s if ord(ch) not in _NMT_DROP)
    raise ValueError(f"{path}: normalizer {kind!r} is not supported by minitx's Unigram tokenizer")


def _pre_tokeniser(spec: dict | None, path):
    """A function ``(text, at_start) -> [words]`` for a tokenizer.json ``pre_tokenizer`` entry."""
    if spec is None:
        return lambda s, at_start: [s] if s else []
    kind = spec.get("type")
    if kind == "Sequence":
        steps = [_pre_tokeniser(s, path) for s in spec.get("pretokenizers", [])]

        def run(s, at_start):
            words = [s]
            for step in steps:
                words = [w for i, word in enumerate(words) for w in step(word, at_start and i == 0)]
            return words

        return run
    if kind == "WhitespaceSplit":
        return lambda s, at_start: [w for w in _WHITE_SPACE.split(s) if w]
    if kind == "Metaspace":
        mark = spec.get("replacement", "\u2581")
        scheme = spec.get("prepend_scheme") or ("always" if spec.get("add_prefix_space", True) else "never")
        split = spec.get("split", True)

        def metaspace(s, at_start):
            if not s:
                return []  # nothing left after normalising: no word, not even a lone mark
            s = s.replace(" ", mark)
            if (scheme == "always" or (scheme == "first" and at_start)) and not s.startswith(mark):
                s = mark + s
            if not split:
                return [s] if s else []
            words, start = [], 0
            for i in range(1, len(s)):
                if s[i] == mark:  # the mark begins the next word
                    words.append(s[start:i])
                    start = i
            if s:
                words.append(s[start:])
            return words

        return metaspace
    raise ValueError(f"{path}: pre_tokenizer {kind!r} is not supported by minitx's Unigram tokenizer")


class UnigramTokenizer:
    """A SentencePiece-style Unigram tokenizer: ``encode(text) -> ids``, ``decode(ids) -> text``."""

    def __init__(self, pieces: list[tuple[str, float]], unk_id: int, *, normalizer=None, pre_tokenizer=None,
                 special_tokens: dict[str, int] | None = None, replacement: str = "\u2581",
                 strip_first_space: bool = True, path="tokenizer.json"):
        self.pieces = [p for p, _ in pieces]
        self.scores = [float(s) for _, s in pieces]
        self.piece_to_id = {p: i for i, p in enumerate(self.pieces)}
        self.max_piece_len = max(len(p) for p in self.pieces)
        self.unk_id = int(unk_id)
        self.unk_score = min(self.scores) - UNK_PENALTY
        self.normalize = _normaliser(normalizer, path)
        self.pre_tokenize = _pre_tokeniser(pre_tokenizer, path)
        self.special_tokens = dict(special_tokens or {})
        self.replacement, self.strip_first_space = replacement, strip_first_space

    @property
    def vocab_size(self) -> int:
        return len(self.pieces)

    @classmethod
    def from_huggingface(cls, path: str | os.PathLike) -> "UnigramTokenizer":
        from .wordpiece import read_tokenizer_json  # noqa: PLC0415

        return cls.from_spec(read_tokenizer_json(path), path)

    @classmethod
    def from_spec(cls, spec: dict, path="tokenizer.json") -> "UnigramTokenizer":
        model = spec.get("model") or {}
        if model.get("type") != "Unigram":
            raise ValueError(f"{path}: model type {model.get('type')!r}, expected 'Unigram'")
        if model.get("byte_fallback"):
            raise ValueError(f"{path}: Unigram with byte_fallback is not supported")
        if model.get("unk_id") is None:
            raise ValueError(f"{path}: Unigram without unk_id is not supported")
        decoder = spec.get("decoder") or {}
        scheme = decoder.get("prepend_scheme") or ("always" if decoder.get("add_prefix_space", True) else "never")
        return cls([tuple(p) for p in model["vocab"]], model["unk_id"], normalizer=spec.get("normalizer"),
                   pre_tokenizer=spec.get("pre_tokenizer"),
                   special_tokens={a["content"]: int(a["id"]) for a in spec.get("added_tokens", [])},
                   replacement=decoder.get("replacement", "\u2581"), strip_first_space=scheme != "never", path=path)

    # -- encoding ----------------------------------------------------------
    def segment(self, word: str) -> list[int]:
        """Viterbi: the ids of the highest-scoring segmentation of ``word`` (see the module docstring)."""
        n = len(word)
        best = [float("-inf")] * (n + 1)  # best[j]: score of the best segmentation of word[:j]
        back: list[tuple[int, int]] = [(-1, -1)] * (n + 1)  # (start, id) of the last piece on that path
        best[0] = 0.0
        for i in range(n):
            if best[i] == float("-inf"):
                continue
            single = False
            for j in range(i + 1, min(n, i + self.max_piece_len) + 1):
                piece_id = self.piece_to_id.get(word[i:j])
                if piece_id is None:
                    continue
                single |= j == i + 1
                score = best[i] + self.scores[piece_id]
                if score > best[j]:  # strictly: on a tie the path found first stays
                    best[j], back[j] = score, (i, piece_id)
            if not single:  # no piece covers this character: the unknown token does
                score = best[i] + self.unk_score
                if score > best[i + 1]:
                    best[i + 1], back[i + 1] = score, (i, self.unk_id)
        ids, j = [], n
        while j > 0:
            i, piece_id = back[j]
            ids.append(piece_id)
            j = i
        ids.reverse()
        fused = []  # a run of unknown characters is one unknown token
        for piece_id in ids:
            if not (piece_id == self.unk_id and fused and fused[-1] == self.unk_id):
                fused.append(piece_id)
        return fused

    def _split_specials(self, text: str):
        names = sorted(self.special_tokens, key=len, reverse=True)
        i = last = 0
        while i < len(text):
            hit = next((s for s in names if text.startswith(s, i)), None)
            if hit is None:
                i += 1
                continue
            if i > last:
                yield text[last:i], False, last == 0
            yield hit, True, False
            i = last = i + len(hit)
        if last < len(text):
            yield text[last:], False, last == 0

    def encode(self, text: str) -> list[int]:
        ids: list[int] = []
        for piece, special, at_start in self._split_specials(text):
            if special:
                ids.append(self.special_tokens[piece])
                continue
            for word in self.pre_tokenize(self.normalize(piece), at_start):
                ids.extend(self.segment(word))
        return ids

    # -- decoding ----------------------------------------------------------
    def decode(self, ids) -> str:
        text = "".join(self.pieces[int(i)] if 0 <= int(i) < len(self.pieces) else "" for i in ids)
        text = text.replace(self.replacement, " ")
        return text[1:] if self.strip_first_space and text.startswith(" ") else text

    def __repr__(self) -> str:
        return f"UnigramTokenizer(vocab_size={self.vocab_size})"


__all__ = ["UnigramTokenizer"]
