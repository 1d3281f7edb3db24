"""Movie-review sentiment from a grammar where counting words is not enough.

A review is one or two *clauses*; each clause says something about one
aspect of a film with an adjective, possibly intensified or negated::

    the acting was really good                     +
    the plot was not bad at all                    +   (negation flips "bad")
    i would not call the music charming            -
    great acting , but the plot was dull           -   (after "but" wins)
    although the ending was weak , the cast was superb      +   (the main clause wins)
    the pacing was tedious , even though the music was lovely  -   (the concession loses)
    the script was clever and the cast was fun     +

The label is the polarity of the *main* clause: the only clause in a simple
review, the one after "but", the one that is not introduced by "although"
or "even though". Two-clause contrasts always pair opposite polarities, and
negation appears in 40% of clauses, so a bag of words, which sees the
words but not their order or scope, is left guessing on most of them
(:func:`bag_of_words_baseline` measures it: well below the transformer).
Intensifiers ("very", "truly") change nothing: a distractor.

Labels are balanced; test reviews never occur verbatim in training.
"""
from __future__ import annotations

import numpy as np

SENTIMENT_LABELS = ("negative", "positive")

ASPECTS = ("acting", "plot", "script", "music", "ending", "cast", "dialogue", "pacing", "cinematography",
           "story", "soundtrack", "direction", "humour", "editing")
POSITIVE = ("good", "great", "excellent", "wonderful", "brilliant", "superb", "fun", "charming", "moving",
            "clever", "lovely", "gripping")
NEGATIVE = ("bad", "awful", "terrible", "dull", "boring", "weak", "clumsy", "bland", "tedious", "poor",
            "messy", "lifeless")
INTENSIFIERS = ("very", "really", "truly", "extremely", "incredibly", "quite")


def choice(rng, seq):
    """One item of ``seq``, drawn by ``rng`` (a NumPy Generator): the datasets' one way to pick."""
    return seq[int(rng.integers(len(seq)))]


def _clause(rng, polarity: int) -> str:
    """One clause whose meaning has ``polarity`` (+1 or -1)."""
    aspect = choice(rng, ASPECTS)
    negated = rng.random() < 0.4
    word_polarity = -polarity if negated else polarity  # a negated clause uses the opposite word
    adj = choice(rng, POSITIVE if word_polarity > 0 else NEGATIVE)
    if rng.random() < 0.3:
        adj = f"{choice(rng, INTENSIFIERS)} {adj}"
    verb = choice(rng, ("was", "is"))
    if not negated:
        form = int(rng.integers(4))
        if form == 0:
            return f"the {aspect} {verb} {adj}"
        if form == 1:
            return f"{adj} {aspect}"
        if form == 2:
            return f"i found the {aspect} {adj}"
        return f"the {aspect} {verb} {adj} throughout"
    form = int(rng.integers(4))
    if form == 0:
        return f"the {aspect} {verb} not {adj}"
    if form == 1:
        return f"the {aspect} {verb} not {adj} at all"
    if form == 2:
        return f"i would not call the {aspect} {adj}"
    return f"the {aspect} {verb} never {adj}"


def _review(rng, label: int) -> str:
    polarity = 1 if label == 1 else -1
    kind = int(rng.integers(5))
    main = _clause(rng, polarity)
    if kind == 0:
        return main
    if kind == 1:
        return f"{_clause(rng, polarity)} and {main}"
    other = _clause(rng, -polarity)  # a contrast pairs opposite polarities
    if kind == 2:
        return f"{other} , but {main}"
    if kind == 3:
        return f"although {other} , {main}"
    return f"{main} , even though {other}"


def make_sentiment(n_train: int = 8000, n_val: int = 1000, n_test: int = 2000, seed: int = 0) -> dict:
    """``{"train"|"val"|"test": [(text, label), ...]}`` with labels ``"negative"``/``"positive"``.

    Deterministic for a seed; val and test contain no review that occurs in train.
    """
    rng = np.random.default_rng(seed)
    out, seen = {}, set()
    for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        rows = []
        while len(rows) < n:
            label = len(rows) % 2  # balanced, alternating
            text = _review(rng, label)
            if split != "train" and text in seen:
                continue
            if split == "train":
                seen.add(text)
            rows.append((text, SENTIMENT_LABELS[label]))
        out[split] = rows
    return out


def bag_of_words_baseline(train, test, *, epochs: int = 200, lr: float = 0.5, l2: float = 1e-4) -> float:
    """Test accuracy of logistic regression on word counts (the classic baseline).

    ``train``/``test``: ``[(text, label), ...]``. Full-batch gradient descent
    on the mean cross-entropy, in NumPy; word order is thrown away, which is
    exactly what the grammar above punishes.
    """
    words = sorted({w for text, _ in train for w in text.split()})
    index = {w: i for i, w in enumerate(words)}
    labels = sorted({y for _, y in train})

    def featurise(rows):
        X = np.zeros((len(rows), len(words) + 1))
        X[:, -1] = 1.0  # bias feature
        for r, (text, _) in enumerate(rows):
            for w in text.split():
                if w in index:
                    X[r, index[w]] += 1.0
        y = np.array([labels.index(lab) if lab in labels else -1 for _, lab in rows])
        return X, y

    X, y = featurise(train)
    W = np.zeros((X.shape[1], len(labels)))
    onehot = np.eye(len(labels))[y]
    for _ in range(epochs):
        z = X @ W
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        W -= lr * (X.T @ (p - onehot) / len(X) + l2 * W)  # dL/dW of the mean cross-entropy (+ L2)
    Xt, yt = featurise(test)
    return float(((Xt @ W).argmax(axis=1) == yt).mean())
