"""WordPiece: BERT's tokenizer (Schuster & Nakajima 2012; Devlin et al. 2019).

Byte-level BPE (:mod:`minitx.tokenizer.bpe`) builds tokens *up* from bytes by
merging. WordPiece cuts words *down*: every word is split into the longest
vocabulary entries that cover it, left to right. Three stages:

1. **Normalise** (BERT's ``BertNormalizer``), one character at a time:

   * *clean*: drop NUL, U+FFFD and control/format/private-use characters
     (Unicode categories Cc, Cf, Co, except tab, newline and carriage
     return), turn every remaining whitespace character into a plain space;
   * *CJK*: put spaces around every CJK ideograph, so each one is a word
     (Chinese has no spaces between words; BERT treats each character as one);
   * *strip accents*: decompose (NFD) and drop the combining marks, so
     ``"café"`` becomes ``"cafe"`` (on by default when lower-casing);
   * *lower-case*.

2. **Pre-tokenise** (``BertPreTokenizer``): split on whitespace, and make
   every punctuation character a word of its own (``"don't"`` ->
   ``don`` ``'`` ``t``). Punctuation means ASCII punctuation, symbols such
   as ``$`` and ``+`` included, plus Unicode's ``P*`` categories.

3. **WordPiece** per word: greedy longest match first. Take the longest
   prefix of the word that is in the vocabulary; continue with the rest,
   whose pieces carry the ``##`` prefix (``"playing"`` -> ``play ##ing``).
   If at some point no piece matches, the *whole* word becomes ``[UNK]``;
   so does a word longer than ``max_input_chars_per_word`` (100) characters.

Worked example with a vocabulary holding ``un ##aff ##able [UNK]``::

    "Unaffable!"  -> normalise "unaffable!" -> words ["unaffable", "!"]
                  -> ["un", "##aff", "##able"] + ["[UNK]"]   ("!" is not in the vocabulary)

The special tokens (``[CLS]``, ``[SEP]``, ``[PAD]``, ``[MASK]``) are matched
in the raw text *before* normalising, as Hugging Face does, and
:meth:`WordPieceTokenizer.encode` does not add ``[CLS]``/``[SEP]``
(:func:`minitx.pretrained.load_tokenizer` applies the folder's template).

The conformance tests check ids against Hugging Face ``tokenizers`` on random
text and on a fixed list with accents, CJK, emoji and control characters.
"""
from __future__ import annotations

import json
import os
import unicodedata
from pathlib import Path

from .unicode_classes import in_control, in_marks, in_punctuation, in_whitespace, lower


def read_tokenizer_json(path) -> dict:
    """A Hugging Face ``tokenizer.json`` as a dict; a file that is not one is a one-line ValueError."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not a tokenizer.json ({exc}); expected the JSON that tokenizers saves") from None


# Which characters are control, whitespace or punctuation is read from fixed
# tables (see unicode_classes.py), not from the running Python's unicodedata:
# Hugging Face's Rust tables are older than any current Python's, and ids must
# not change with the Python version.
_CJK_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F), (0x2B740, 0x2B81F),
               (0x2B920, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))


def is_whitespace(ch: str) -> bool:
    """Space, tab, newline, carriage return and the other Unicode White_Space characters."""
    return ch == " " or in_whitespace(ch)


def is_control(ch: str) -> bool:
    """Control, format, private-use characters (Cc, Cf, Co), but not tab, newline or carriage return."""
    return in_control(ch)


def is_cjk(ch: str) -> bool:
    """A CJK Unified Ideograph (the blocks BERT's reference code lists; not kana or hangul)."""
    cp = ord(ch)
    return any(lo <= cp <= hi for lo, hi in _CJK_RANGES)


def is_punctuation(ch: str) -> bool:
    """ASCII punctuation (``!"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~``) or a Unicode ``P*`` character."""
    return in_punctuation(ch)


def bert_normalize(text: str, *, clean_text: bool = True, handle_chinese_chars: bool = True,
                   strip_accents: bool | None = None, lowercase: bool = True) -> str:
    """Stage 1 above. ``strip_accents=None`` means "strip when lower-casing" (BERT's default)."""
    if clean_text:
        text = "".join(" " if is_whitespace(ch) else ch for ch in text
                       if not (ch == "\x00" or ch == "\ufffd" or is_control(ch)))
    if handle_chinese_chars:
        text = "".join(f" {ch} " if is_cjk(ch) else ch for ch in text)
    if strip_accents or (strip_accents is None and lowercase):
        text = "".join(ch for ch in unicodedata.normalize("NFD", text) if not in_marks(ch))
    if lowercase:
        text = "".join(lower(ch) for ch in text)  # per character, as the Rust normaliser does
    return text


def bert_pre_tokenize(text: str) -> list[str]:
    """Stage 2 above: whitespace-separated words, each punctuation character a word of its own."""
    words: list[str] = []
    current: list[str] = []
    for ch in text:
        if is_whitespace(ch):
            if current:
                words.append("".join(current))
                current = []
        elif is_punctuation(ch):
            if current:
                words.append("".join(current))
                current = []
            words.append(ch)
        else:
            current.append(ch)
    if current:
        words.append("".join(current))
    return words


class WordPieceTokenizer:
    """BERT's WordPiece tokenizer: ``encode(text) -> ids``, ``decode(ids) -> text``.

    Build one from a Hugging Face ``tokenizer.json`` (:meth:`from_huggingface`)
    or a ``vocab.txt`` with one token per line (:meth:`from_vocab_file`).
    """

    def __init__(self, vocab: dict[str, int], *, unk_token: str = "[UNK]", continuing_subword_prefix: str = "##",
                 max_input_chars_per_word: int = 100, lowercase: bool = True, strip_accents: bool | None = None,
                 clean_text: bool = True, handle_chinese_chars: bool = True,
                 special_tokens: dict[str, int] | None = None):
        if unk_token not in vocab:
            raise ValueError(f"WordPieceTokenizer unk_token: got {unk_token!r}, expected a token of the vocabulary")
        self.vocab = dict(vocab)
        self.id_to_token = {i: t for t, i in self.vocab.items()}
        self.unk_token, self.unk_id = unk_token, self.vocab[unk_token]
        self.prefix = continuing_subword_prefix
        self.max_input_chars_per_word = int(max_input_chars_per_word)
        self.normalizer = dict(lowercase=lowercase, strip_accents=strip_accents, clean_text=clean_text,
                               handle_chinese_chars=handle_chinese_chars)
        self.special_tokens = dict(special_tokens or {})
        for tok, i in self.special_tokens.items():
            self.id_to_token.setdefault(i, tok)

    @property
    def vocab_size(self) -> int:
        return max(self.id_to_token) + 1

    # -- construction ------------------------------------------------------
    @classmethod
    def from_vocab_file(cls, path: str | os.PathLike, **options) -> "WordPieceTokenizer":
        """``vocab.txt``: line i is the token with id i (BERT's original format)."""
        tokens = Path(path).read_text(encoding="utf-8").split("\n")
        if tokens and tokens[-1] == "":
            tokens.pop()
        vocab = {t: i for i, t in enumerate(tokens)}
        specials = {t: vocab[t] for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]") if t in vocab}
        return cls(vocab, special_tokens=specials, **options)

    @classmethod
    def from_huggingface(cls, path: str | os.PathLike) -> "WordPieceTokenizer":
        """A ``tokenizer.json`` whose model is WordPiece with BERT's normaliser and pre-tokeniser."""
        return cls.from_spec(read_tokenizer_json(path), path)

    @classmethod
    def from_spec(cls, spec: dict, path="tokenizer.json") -> "WordPieceTokenizer":
        model = spec.get("model") or {}
        if model.get("type") != "WordPiece":
            raise ValueError(f"{path}: model type {model.get('type')!r}, expected 'WordPiece'")
        norm = spec.get("normalizer")
        if norm is None:
            options = dict(lowercase=False, strip_accents=False, clean_text=False, handle_chinese_chars=False)
        elif norm.get("type") == "BertNormalizer":
            options = dict(lowercase=bool(norm.get("lowercase", True)), strip_accents=norm.get("strip_accents"),
                           clean_text=bool(norm.get("clean_text", True)),
                           handle_chinese_chars=bool(norm.get("handle_chinese_chars", True)))
        else:
            raise ValueError(f"{path}: normalizer {norm.get('type')!r} is not supported (expected BertNormalizer)")
        pre = spec.get("pre_tokenizer")
        if pre is None or pre.get("type") != "BertPreTokenizer":
            kind = None if pre is None else pre.get("type")
            raise ValueError(f"{path}: pre_tokenizer {kind!r} is not supported (expected BertPreTokenizer)")
        specials = {a["content"]: int(a["id"]) for a in spec.get("added_tokens", [])}
        return cls(model["vocab"], unk_token=model.get("unk_token", "[UNK]"),
                   continuing_subword_prefix=model.get("continuing_subword_prefix", "##"),
                   max_input_chars_per_word=model.get("max_input_chars_per_word", 100),
                   special_tokens=specials, **options)

    # -- encoding ----------------------------------------------------------
    def normalize(self, text: str) -> str:
        return bert_normalize(text, **self.normalizer)

    def wordpiece(self, word: str) -> list[str]:
        """Stage 3 above, for one word: greedy longest match first, or ``[unk_token]``."""
        if len(word) > self.max_input_chars_per_word:
            return [self.unk_token]
        pieces, start = [], 0
        while start < len(word):
            end = len(word)
            while end > start:  # shrink from the right until a vocabulary entry matches
                piece = word[start:end] if start == 0 else self.prefix + word[start:end]
                if piece in self.vocab:
                    break
                end -= 1
            if end == start:  # nothing matched: the whole word is unknown
                return [self.unk_token]
            pieces.append(piece)
            start = end
        return pieces

    def tokenize(self, text: str) -> list[str]:
        """Text (no special tokens in it) -> WordPiece token strings."""
        return [p for word in bert_pre_tokenize(self.normalize(text)) for p in self.wordpiece(word)]

    def _split_specials(self, text: str):
        """Yield ``(piece, is_special)``: special tokens are cut out of the raw text first."""
        if not self.special_tokens:
            yield text, False
            return
        names = sorted(self.special_tokens, key=len, reverse=True)
        i = last = 0
        while i < len(text):
            hit = next((n for n in names if text.startswith(n, i)), None)
            if hit is None:
                i += 1
                continue
            if i > last:
                yield text[last:i], False
            yield hit, True
            i = last = i + len(hit)
        if last < len(text):
            yield text[last:], False

    def encode(self, text: str) -> list[int]:
        """``text -> ids`` (without ``[CLS]``/``[SEP]``; see the module docstring)."""
        ids: list[int] = []
        for piece, special in self._split_specials(text):
            if special:
                ids.append(self.special_tokens[piece])
            else:
                ids.extend(self.vocab[t] for t in self.tokenize(piece))
        return ids

    # -- decoding ----------------------------------------------------------
    def decode(self, ids, *, skip_special_tokens: bool = True) -> str:
        """Join the tokens with spaces and glue each ``##`` piece to the one before it."""
        special_ids = set(self.special_tokens.values())
        tokens = [self.id_to_token.get(int(i), self.unk_token) for i in ids
                  if not (skip_special_tokens and int(i) in special_ids)]
        text = " ".join(tokens).replace(" " + self.prefix, "")
        for punct in (" .", " ?", " !", " ,", " ' ", " n't", " 'm", " 's", " 've", " 're"):
            text = text.replace(punct, punct.lstrip(" ") if punct != " ' " else "'")  # HF's cleanup
        return text

    def __repr__(self) -> str:
        return f"WordPieceTokenizer(vocab_size={self.vocab_size}, lowercase={self.normalizer['lowercase']})"


__all__ = ["WordPieceTokenizer", "bert_normalize", "bert_pre_tokenize", "is_cjk", "is_control", "is_punctuation",
           "is_whitespace"]
