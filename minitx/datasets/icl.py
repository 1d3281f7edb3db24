"""A task family for in-context learning: every sequence hides its own rule.

Each sequence is a few-shot prompt of the ``sentiment`` template
(:data:`minitx.prompt.TEMPLATES`), written out with its answers::

    Classify each review.
    Review: plot superb tiger
    Review: cast dull lemon
    Review: music warm tiger
    ...

The sentiment of a review is easy and fixed (its adjective comes from a
positive or a negative word list), but the **label words are drawn fresh for
every sequence** from :data:`LABEL_WORDS`: here positive is written
``tiger`` and negative ``lemon``, in the next sequence perhaps ``violin`` and
``river``. No weight can store the mapping, so the only way to answer
the query is to read it off the examples in the prompt: in-context learning.
A model that ignores them is at chance.

Every line has the same length (:data:`LINE_TOKENS` words), so a batch is one
NumPy array assembled without Python loops over rows, and the label of line
``i`` always sits at the same position. Training rows are sequences of
:data:`TRAIN_LINES` lines cut to ``block_size + 1`` tokens; the loss at
line ``i``'s label trains the ``i``-shot case, so one row trains every k at
once. Evaluation prompts are built from parts with :func:`minitx.prompt.build_prompt`
(see :func:`episodes`), and a test checks that the training rows decode to
exactly that text.
"""
from __future__ import annotations

import numpy as np

from ..nn.loss import IGNORE_INDEX
from ..prompt import TEMPLATES, build_prompt
from ..tokenizer.word import WordTokenizer

POSITIVE = ("great", "superb", "lovely", "brilliant", "fun", "charming", "moving", "clever", "delightful",
            "wonderful", "gripping", "fresh", "beautiful", "warm", "funny", "stunning", "smart", "joyful", "sharp",
            "rich", "vivid", "tender", "bold", "elegant")
NEGATIVE = ("awful", "dull", "boring", "bland", "clumsy", "tedious", "weak", "messy", "silly", "flat", "shallow",
            "painful", "lazy", "stale", "noisy", "cheap", "grim", "hollow", "slow", "sloppy", "tired", "dreary",
            "muddled", "clunky")
NOUNS = ("film", "plot", "cast", "story", "acting", "ending", "script", "music", "scenes", "movie", "pace",
         "dialogue", "camera", "characters", "score", "effects")
#: The words a sequence's two labels are drawn from; none of them means anything about sentiment.
LABEL_WORDS = ("apple", "tiger", "river", "lemon", "violin", "cloud", "pepper", "candle", "falcon", "marble",
               "copper", "garden", "rocket", "island", "pencil", "saddle", "tulip", "walnut", "zebra", "anchor",
               "basket", "cactus", "dragon", "ember", "feather", "glacier", "hammer", "igloo", "jasmine", "kettle",
               "lantern", "meadow", "needle", "orchid", "parrot", "quartz", "ribbon", "spider", "thistle", "umbrella")
TEMPLATE = TEMPLATES["review-label"]
STRUCTURE = ("\n", ".", ":", "=>", "Classify", "each", "review", "Review", "Sentiment", "positive", "negative", "as",
             "or", "this", "that")
#: The template's instruction lists the two candidate label words (the prompt API fills ``{labels}``) ...
LISTED_INSTRUCTION = TEMPLATE.instruction
#: ... and the plain one, of the same length (so every token sits where it sits in a listing prompt), does not.
PLAIN_INSTRUCTION = "Classify each review as this or that."
#: Every word of the task, in id order.
VOCAB = STRUCTURE + POSITIVE + NEGATIVE + NOUNS + LABEL_WORDS
#: Words per line: ``Review : noun adjective label \n``.
LINE_TOKENS = 6
#: Offset of the label inside a line, and the instruction's length (``Classify each review as tiger or lemon . \n``).
LABEL_OFFSET, HEADER_TOKENS = 4, 9
#: Lines written per training sequence: the last one is cut by the window, the ones before train k = 0..8.
TRAIN_LINES = 10
#: The most examples a prompt holds (in all).
MAX_SHOTS = 8
#: The models' context window: the instruction and 9 full lines (8 examples, the query and its label).
BLOCK_SIZE = HEADER_TOKENS + (MAX_SHOTS + 1) * LINE_TOKENS
#: The target id the cross-entropy skips (:func:`minitx.nn.loss.cross_entropy_forward`'s ``ignore_index``).
IGNORE = IGNORE_INDEX


def tokenizer() -> WordTokenizer:
    """The task's word-level tokenizer (one id per word of :data:`VOCAB`)."""
    return WordTokenizer(VOCAB)


def review_text(adjective: str, noun: str) -> str:
    return f"{noun} {adjective}"


def label_position(line: int) -> int:
    """Token index of line ``line``'s label in a sequence (the instruction is line -1)."""
    return HEADER_TOKENS + line * LINE_TOKENS + LABEL_OFFSET


class _Draw:
    """The random choices behind ``n`` sequences of ``lines`` lines, as arrays (the same for rows and prompts)."""

    def __init__(self, rng: np.random.Generator, n: int, lines: int):
        self.sentiment = rng.integers(0, 2, size=(n, lines))  # (n, L) 0 positive, 1 negative
        self.adjective = rng.integers(0, len(POSITIVE), size=(n, lines))  # (n, L) index in its word list
        self.noun = rng.integers(0, len(NOUNS), size=(n, lines))
        # two distinct label words per sequence, without a loop: the first, then an offset of 1..n_labels-1
        n_lab = len(LABEL_WORDS)
        a = rng.integers(0, n_lab, size=n)  # (n,)
        b = (a + rng.integers(1, n_lab, size=n)) % n_lab  # (n,) never equal to a
        self.labels = np.stack([a, b], axis=1)  # (n, 2): label word of positive, of negative
        # the order a listing instruction names them in: random, so the order says nothing about sentiment
        self.negative_first = rng.random(n) < 0.5  # (n,)


class ICLData:
    """Batch source for the Trainer: fresh sequences every batch, so there is no overfitting to measure.

    ``get_batch(split, batch_size, rng) -> (x, y)``, both ``(batch_size, block_size)`` int64.
    ``"train"`` draws from ``rng`` (the Trainer's data stream); ``"val"``
    from a generator seeded by ``val_seed`` and the generator's own draw,
    which keeps validation sequences independent of training ones.

    ``named_share`` of the rows (half by default) use the label words
    ``positive`` and ``negative`` instead of fresh ones: from those the model
    learns in its weights what sentiment *is* (as a pretrained model knows
    it), and the fresh-label rows teach it to read off the prompt which word
    stands for which sentiment. Without them the model never learns the
    sentiment of 48 adjectives (the only signal would go through a matching
    circuit that cannot form before it does) and stays at chance.

    ``listed_share`` of the rows (none by default) open with the instruction
    that lists the two label words, in random order: ``Classify each review
    as tiger or lemon.`` (:data:`LISTED_INSTRUCTION`); the others say ``as
    this or that`` (:data:`PLAIN_INSTRUCTION`, the same length, so every
    token sits at the same position in both). The list does not say which
    word is which, but it says what the *other* word is: after one example
    of the other sentiment, the answer is the listed word not yet used.

    ``answers_only`` (the default) sets every target but the labels to
    ``IGNORE`` (the loss's ignore index), as instruction tuning masks the
    prompt: the adjectives and nouns are random by construction, so
    predicting them teaches nothing, and the labels would otherwise be one
    target in six. The loss, and the validation loss, are then the answers'.
    """

    def __init__(self, block_size: int = BLOCK_SIZE, *, val_seed: int = 12345, answers_only: bool = True,
                 named_share: float = 0.5, listed_share: float = 0.0):
        longest = HEADER_TOKENS + TRAIN_LINES * LINE_TOKENS - 1  # a row holds block_size + 1 tokens
        if not isinstance(block_size, int) or not 2 <= block_size <= longest:
            raise ValueError(f"block_size: got {block_size!r}, expected an integer in [2, {longest}]")
        for name, share in (("named_share", named_share), ("listed_share", listed_share)):
            if not isinstance(share, (int, float)) or not 0.0 <= share <= 1.0:
                raise ValueError(f"{name}: got {share!r}, expected a share in [0, 1]")
        self.block_size, self.val_seed, self.answers_only = block_size, val_seed, answers_only
        self.named_share, self.listed_share = named_share, listed_share
        self.tokenizer = tokenizer()
        ids = self.tokenizer.stoi
        self.vocab_size = self.tokenizer.vocab_size
        self._adjectives = np.array([[ids[w] for w in POSITIVE], [ids[w] for w in NEGATIVE]])  # (2, 24)
        self._nouns = np.array([ids[w] for w in NOUNS])
        self._labels = np.array([ids[w] for w in LABEL_WORDS] + [ids["positive"], ids["negative"]])
        # the plain instruction's ids; a listing row puts its two label words over "this" and "that"
        self._header = np.array(self.tokenizer.encode(PLAIN_INSTRUCTION + "\n"))  # (HEADER_TOKENS,)
        # one line, with 0 where the adjective, the noun and the label go
        self._line = np.array([ids["Review"], ids[":"], 0, 0, 0, ids["\n"]])

    def rows(self, rng: np.random.Generator, n: int, lines: int = TRAIN_LINES) -> tuple[np.ndarray, np.ndarray]:
        """``n`` whole sequences and which of them list the labels: ``(ids, listed)``.

        ``ids`` is ``(n, HEADER_TOKENS + lines * LINE_TOKENS)`` int64, ``listed`` is ``(n,)`` bool.
        """
        d = _Draw(rng, n, lines)
        named = rng.random(n) < self.named_share  # (n,) these rows say "positive" / "negative"
        listed = rng.random(n) < self.listed_share  # (n,) these rows list the two label words
        d.labels[named] = [len(LABEL_WORDS), len(LABEL_WORDS) + 1]  # the two extra entries of self._labels
        body = np.broadcast_to(self._line, (n, lines, LINE_TOKENS)).copy()  # (n, L, 6)
        body[:, :, 2] = self._nouns[d.noun]
        body[:, :, 3] = self._adjectives[d.sentiment, d.adjective]  # (n, L) gathered by (sentiment, index)
        body[:, :, LABEL_OFFSET] = self._labels[np.take_along_axis(d.labels, d.sentiment, axis=1)]  # (n, L)
        header = np.broadcast_to(self._header, (n, HEADER_TOKENS)).copy()  # (n, H)
        named_order = np.where(d.negative_first[:, None], d.labels[:, ::-1], d.labels)  # (n, 2) in the drawn order
        header[listed, 4], header[listed, 6] = self._labels[named_order[listed].T]  # over "this" and "that"
        ids = np.concatenate([header, body.reshape(n, lines * LINE_TOKENS)], axis=1).astype(np.int64)
        return ids, listed

    def sequences(self, rng: np.random.Generator, n: int, lines: int = TRAIN_LINES) -> np.ndarray:
        """``n`` whole sequences' token ids (:meth:`rows` without which of them list the labels)."""
        return self.rows(rng, n, lines)[0]

    def get_batch(self, split: str, batch_size: int, rng: np.random.Generator):
        if split == "val":
            rng = np.random.default_rng([self.val_seed, int(rng.integers(2**31))])
        elif split != "train":
            raise ValueError(f"split: got {split!r}, expected 'train' or 'val'")
        rows = self.sequences(rng, batch_size)[:, : self.block_size + 1]  # (B, T + 1)
        x, y = rows[:, :-1], rows[:, 1:].copy()  # (B, T) each
        if self.answers_only:
            y[:, ~self.answer_mask()] = IGNORE  # only the labels count (see the class docs)
        return x, y

    def answer_mask(self) -> np.ndarray:
        """``[block_size]`` bool: the target positions that are a label."""
        t = np.arange(1, self.block_size + 1)  # target t is token t of the sequence
        return (t >= HEADER_TOKENS) & ((t - HEADER_TOKENS) % LINE_TOKENS == LABEL_OFFSET)


def episodes(rng: np.random.Generator, n: int, shots: int, *, per_label: bool = False,
             counterbalance: bool = True, listed: bool = False) -> list[dict]:
    """``n`` evaluation prompts of ``shots`` examples, built with :func:`minitx.prompt.build_prompt`.

    By default ``shots`` counts the examples in all (Brown et al.), each of a
    random sentiment. Then with one example, half the queries have the other
    sentiment, and the right answer is a word the prompt never showed: the
    model must reason by exclusion ("the one label I saw is taken"), not
    read the mapping off the examples. With ``per_label`` it counts examples
    *per label* instead, the few-shot classification convention ("2-way
    k-shot", as in Gao et al., 2021): a 1-shot prompt shows each label once,
    in random order, and a k-shot prompt holds ``2 k`` examples (at most
    ``MAX_SHOTS // 2`` per label then).

    Each is ``{"prompt": Prompt, "answer": label word, "candidates": (positive label, negative label)}``.
    With ``counterbalance`` every drawn sequence is used twice, with its two
    label words swapped (so ``2 n`` prompts come back): a model that ignores
    the examples then gives the same answer to both and scores exactly
    chance, 0.5, instead of 0.5 plus sampling noise.

    With ``listed`` the instruction lists the two label words
    (:data:`LISTED_INSTRUCTION`), in an order drawn per sequence and kept for
    both assignments, so the list itself says nothing about which is which.
    The same ``rng`` state gives the same reviews with and without the list.
    """
    most = MAX_SHOTS // 2 if per_label else MAX_SHOTS
    if not isinstance(shots, int) or isinstance(shots, bool) or not 0 <= shots <= most:
        raise ValueError(f"shots: got {shots!r}, expected an integer in [0, {most}]")
    n_examples = 2 * shots if per_label else shots
    d = _Draw(rng, n, n_examples + 1)
    if per_label:  # shots of each sentiment, shuffled: the sorted pattern 0..0 1..1 permuted per prompt
        pattern = np.repeat([0, 1], shots)  # (2k,)
        order = np.argsort(rng.random((n, n_examples)), axis=1)  # (n, 2k) a random permutation per prompt
        d.sentiment[:, :n_examples] = pattern[order]
    out = []
    for i in range(n):  # building text is per prompt by nature: a loop over prompts, not over tokens
        orders = (d.labels[i], d.labels[i][::-1]) if counterbalance else (d.labels[i],)
        lines = [(review_text((POSITIVE, NEGATIVE)[d.sentiment[i, j]][d.adjective[i, j]], NOUNS[d.noun[i, j]]),
                  int(d.sentiment[i, j])) for j in range(n_examples + 1)]
        # the listing instruction names the pair in one drawn order, the same for both label assignments
        named = [LABEL_WORDS[j] for j in (d.labels[i][::-1] if d.negative_first[i] else d.labels[i])]
        for labels in orders:
            words = (LABEL_WORDS[labels[0]], LABEL_WORDS[labels[1]])
            examples = [(text, words[s]) for text, s in lines[:-1]]
            query, s = lines[-1]
            prompt = (build_prompt(TEMPLATE, query, examples, labels=named) if listed
                      else build_prompt(TEMPLATE, query, examples, instruction=PLAIN_INSTRUCTION))
            out.append({"prompt": prompt, "answer": words[s], "candidates": words})
    return out


def matching_label_positions(eps: list[dict], length: int) -> np.ndarray:
    """``[N, length]`` bool: the label positions of each prompt's examples that share the query's sentiment.

    Where an induction head should look from the query's last word (the
    token *after* an earlier matching word: the label that followed a
    review of the same sentiment).
    """
    out = np.zeros((len(eps), length), dtype=bool)
    for i, e in enumerate(eps):  # a loop over prompts; the positions are fixed by the layout
        same = [j for j, (_, label) in enumerate(e["prompt"].examples) if label == e["answer"]]
        out[i, [label_position(j) for j in same]] = True
    return out


__all__ = ["BLOCK_SIZE", "HEADER_TOKENS", "ICLData", "LABEL_WORDS", "LINE_TOKENS", "LISTED_INSTRUCTION",
           "MAX_SHOTS", "NEGATIVE", "NOUNS", "PLAIN_INSTRUCTION", "POSITIVE", "TEMPLATE", "VOCAB", "episodes",
           "label_position", "matching_label_positions", "tokenizer"]
