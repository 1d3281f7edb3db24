"""Reviews whose test set speaks a different sentiment vocabulary: held-out synonyms.

Training reviews praise with *good, great, excellent...* and complain with
*bad, awful, terrible...*; test reviews praise with *superb, splendid,
marvellous...* and complain with *dreadful, abysmal, atrocious...*. No
sentiment word of the test set ever occurs in training::

    train   the acting was great and i found the plot excellent      positive
    train   terrible pacing , the ending was bad                     negative
    test    the soundtrack was splendid                              positive
    test    i found the script abysmal                               negative

Everything else (aspects, sentence frames, filler words) is shared and
balanced between the labels, so it says nothing about the label. A model
can only score on the test set by knowing, from somewhere other than this
training set, that *splendid* means what *great* means. That somewhere is
pretraining: a model that read a lot of English (the real MiniLM) has put
the synonyms near each other; a model trained from scratch, or a bag of
words, has only the training words, and the test words are new to it, so
it falls towards chance (1/2). That is the lesson the bench measures
(:mod:`minitx.bench.finetune`) and tutorial 16 tells.

All words are everyday English that a WordPiece vocabulary holds (some as
two pieces, e.g. ``abys ##mal``), lower case, no negation (negation is
:mod:`minitx.datasets.sentiment`'s lesson, not this one).
"""
from __future__ import annotations

import numpy as np

from .sentiment import ASPECTS, SENTIMENT_LABELS, choice

#: Sentiment words seen in training, per label (index = label id: 0 negative, 1 positive).
TRAIN_WORDS = (
    ("bad", "awful", "terrible", "horrible", "poor", "boring", "weak", "disappointing"),
    ("good", "great", "excellent", "wonderful", "lovely", "fantastic", "enjoyable", "amazing"),
)
#: Sentiment words seen only at test time: synonyms of the training words.
TEST_WORDS = (
    ("dreadful", "abysmal", "atrocious", "appalling", "lousy", "dismal", "horrendous", "mediocre"),
    ("superb", "splendid", "marvellous", "outstanding", "brilliant", "terrific", "delightful", "magnificent"),
)
#: Sentence frames; ``{a}`` is an aspect, ``{w}`` a sentiment word.
FRAMES = ("the {a} was {w}", "{w} {a}", "i found the {a} {w}", "the {a} is {w}", "the {a} felt {w} to me",
          "honestly the {a} was {w}", "what {w} {a}")
#: Label-free filler placed before a review, so length and openings carry no signal.
OPENINGS = ("", "", "well ,", "overall ,", "to be honest ,", "in short ,")



def review(rng, label: int, words) -> str:
    """One review of ``label`` (0 or 1) whose sentiment words come from ``words[label]``.

    One or two clauses, both of the same polarity (no contrast: that would
    make the label depend on syntax, which is not what is measured here).
    """
    clauses = [choice(rng, FRAMES).format(a=choice(rng, ASPECTS), w=choice(rng, words[label]))
               for _ in range(1 + int(rng.integers(2)))]
    text = " and ".join(clauses)
    opening = choice(rng, OPENINGS)
    return f"{opening} {text}" if opening else text


def make_heldout_reviews(n_train: int = 400, n_val: int = 100, n_test: int = 400, seed: int = 0) -> dict:
    """``{"train"|"val"|"test": [(text, label), ...]}``, labels ``"negative"``/``"positive"``, balanced.

    ``train`` and ``val`` use :data:`TRAIN_WORDS` (``val`` is for choosing
    nothing: it reports in-vocabulary accuracy); ``test`` uses
    :data:`TEST_WORDS` only. Deterministic for a seed.

        >>> d = make_heldout_reviews(8, 2, 8, seed=0)
        >>> seen = {w for text, _ in d["train"] for w in text.split()}
        >>> any(w in seen for ws in TEST_WORDS for w in ws)
        False
    """
    rng = np.random.default_rng([seed, 13])
    out = {}
    for split, n, words in (("train", n_train, TRAIN_WORDS), ("val", n_val, TRAIN_WORDS),
                            ("test", n_test, TEST_WORDS)):
        labels = np.arange(n) % 2  # balanced ...
        rng.shuffle(labels)  # ... in random order
        out[split] = [(review(rng, int(y), words), SENTIMENT_LABELS[int(y)]) for y in labels]
    return out


__all__ = ["FRAMES", "TEST_WORDS", "TRAIN_WORDS", "make_heldout_reviews", "review"]
