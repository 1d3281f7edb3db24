"""Word-level vocabularies and label sets.

The generated languages are made of whole words, so the natural tokenizer
is "split on spaces" and the vocabulary is the set of words seen in
training. Words seen fewer than ``min_freq`` times map to ``<unk>``, so the
model also learns what to do with a word it has never seen (a test-time
name in the NER data, for example).

Special tokens come first, always in this order, so that their ids are the
same in every vocabulary (``Seq2SeqConfig`` relies on pad=0, bos=1, eos=2)::

    0 <pad>   fills batches to a rectangle; masked everywhere
    1 <bos>   beginning of a target sentence (decoder input, teacher forcing)
    2 <eos>   end of a sentence: the decoder stops when it writes it
    3 <unk>   any word not in the vocabulary
    4 <cls>   prepended to classifier inputs; "first" pooling reads it
    5 <mask>  the masked-language-model's hidden token
"""
from __future__ import annotations

from collections import Counter

SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>", "<cls>", "<mask>")
PAD, BOS, EOS, UNK, CLS, MASK = range(len(SPECIALS))


class Vocab:
    """``word <-> id``. Build with :meth:`build`; save with :meth:`to_dict` (JSON-able).

    Example::

        >>> v = Vocab.build([["the", "cat"], ["the", "dog"]])
        >>> v.encode(["the", "bird"])
        [6, 3]
        >>> v.decode([6, 7])
        ['the', 'cat']
    """

    def __init__(self, words):
        words = list(words)
        if tuple(words[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"Vocab: got first words {words[:len(SPECIALS)]}, expected the specials {list(SPECIALS)}")
        self.itos = words
        self.stoi = {w: i for i, w in enumerate(words)}
        if len(self.stoi) != len(words):
            raise ValueError("Vocab: duplicate words, expected each word once")

    @classmethod
    def build(cls, sentences, min_freq: int = 1) -> "Vocab":
        """From token lists; words sorted by frequency then alphabetically (deterministic)."""
        counts = Counter(w for s in sentences for w in s)
        words = sorted((w for w, c in counts.items() if c >= min_freq and w not in SPECIALS),
                       key=lambda w: (-counts[w], w))
        return cls(list(SPECIALS) + words)

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, tokens) -> list[int]:
        return [self.stoi.get(t, UNK) for t in tokens]

    def decode(self, ids, *, strip_special: bool = True) -> list[str]:
        out = []
        for i in ids:
            i = int(i)
            if strip_special and i < len(SPECIALS):
                continue
            out.append(self.itos[i] if 0 <= i < len(self.itos) else "<unk>")
        return out

    def to_dict(self) -> dict:
        return {"words": self.itos}

    @classmethod
    def from_dict(cls, d: dict) -> "Vocab":
        return cls(d["words"])


class LabelSet:
    """A fixed, ordered set of class names (sentiment labels, BIO tags).

    Unknown labels are an error, never a silent new class: a typo in a TSV
    file ("postive") must not become a third sentiment.
    """

    def __init__(self, labels, what: str = "label"):
        self.labels = list(labels)
        self.what = what
        if not self.labels or len(set(self.labels)) != len(self.labels):
            raise ValueError(f"{what} set: got {self.labels!r}, expected a non-empty list of distinct names")
        self.index = {lab: i for i, lab in enumerate(self.labels)}

    def __len__(self) -> int:
        return len(self.labels)

    def encode(self, label: str, where: str = "") -> int:
        if label not in self.index:
            raise ValueError(f"{where}unknown {self.what} {label!r}, expected one of {', '.join(self.labels)}")
        return self.index[label]

    def decode(self, i: int) -> str:
        return self.labels[int(i)]

    def to_dict(self) -> dict:
        return {"labels": self.labels, "what": self.what}

    @classmethod
    def from_dict(cls, d: dict) -> "LabelSet":
        return cls(d["labels"], d.get("what", "label"))
