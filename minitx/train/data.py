"""Language-modelling data: one long array of token ids, cut into random blocks.

A GPT learns to predict the next token. Its training data is therefore just
the text, encoded once into a single long array of token ids; a training
example is any window of ``block_size + 1`` consecutive ids, read twice:

    ids:      t0  t1  t2  t3  t4  t5  ...
    window:  [t2  t3  t4  t5]              (block_size = 3, offset 2)
    x:       [t2  t3  t4]                  the context the model sees
    y:           [t3  t4  t5]              the token that follows each position

so one window gives ``block_size`` predictions at once (position ``i`` of
``y`` is the target for the prefix ``x[:i+1]``; the causal mask makes sure
the model cannot peek). A batch is ``batch_size`` windows at random offsets,
as in nanoGPT. There are no epochs: with millions of possible offsets, random
windows are as good as a shuffled pass and far simpler.

The first 90% of the ids are for training, the last 10% for validation (a
contiguous tail, so validation text is text the model never saw, not
overlapping windows of training text).

Reproducibility: offsets come from a :class:`numpy.random.Generator` passed
in by the caller, so a run is fixed by its seed, and the generator's state
(``rng.bit_generator.state``, a JSON-able dict) goes into a checkpoint so a
resumed run draws exactly the batches the uninterrupted run would have.

Example::

    >>> from minitx.tokenizer.char import CharTokenizer
    >>> text = "hello world, hello minitx! " * 10
    >>> ds = LMDataset(text, CharTokenizer().train(text))
    >>> x, y = ds.get_batch("train", batch_size=4, rng=np.random.default_rng(0),
    ...                     block_size=8)
    >>> x.shape, y.shape, bool((x[:, 1:] == y[:, :-1]).all())
    ((4, 8), (4, 8), True)

Batches are NumPy ``int64`` arrays on the host; move them to the device with
:func:`minitx.backend.to_device` when training on a GPU.
"""
from __future__ import annotations

import numpy as np

__all__ = ["LMDataset", "PaddedRows", "get_batch", "SPLITS"]

SPLITS = ("train", "val")


def _check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not hasattr(value, "__index__") or int(value) < 1:
        raise ValueError(f"{name}={value!r}, expected an integer >= 1")
    return int(value)


def get_batch(data: np.ndarray, batch_size: int, block_size: int,
              rng: np.random.Generator, *, split: str = "data") -> tuple[np.ndarray, np.ndarray]:
    """``batch_size`` random windows of ``data``: inputs ``x`` and next-token targets ``y``.

    ``data``: 1-D array of token ids, at least ``block_size + 1`` long.
    Returns ``x, y`` of shape ``(batch_size, block_size)``, dtype ``int64``,
    with ``y[b, t] == x[b, t + 1]`` and ``y[b, -1]`` the token after the window.
    """
    batch_size = _check_positive_int("batch_size", batch_size)
    block_size = _check_positive_int("block_size", block_size)
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng={rng!r}, expected a numpy.random.Generator "
                         "(e.g. numpy.random.default_rng(seed))")
    n = len(data)
    if n < block_size + 1:
        raise ValueError(
            f"the {split} split has {n} tokens, expected at least block_size + 1 = "
            f"{block_size + 1}; use a longer text, a smaller block_size or a larger "
            "validation fraction"
        )
    ix = rng.integers(0, n - block_size, size=batch_size)  # (B,) window starts
    positions = ix[:, None] + np.arange(block_size)         # (B, T) one gather, no Python loop
    x = data[positions].astype(np.int64)                   # (B, T)
    y = data[positions + 1].astype(np.int64)               # (B, T) shifted by one
    return x, y


class LMDataset:
    """A text encoded once into token ids, split into ``train`` and ``val``.

    ``tokenizer`` is anything with ``encode(text) -> list[int]`` and
    ``vocab_size`` (a :class:`~minitx.tokenizer.char.CharTokenizer` or a BPE
    tokenizer). Ids are stored as ``uint16`` when the vocabulary fits (up to
    65,536 tokens, GPT-2's 50,257 included; half the memory of ``int32``),
    else as ``int32``.

    ``val_fraction``: the share of ids, taken from the end, held out for
    validation (default 0.1: nanoGPT's first 90% / last 10%).
    """

    def __init__(self, text: str, tokenizer, *, block_size: int | None = None, val_fraction: float = 0.1):
        if not isinstance(text, str):
            raise ValueError(f"text: got {type(text).__name__}, expected str")
        if not hasattr(tokenizer, "encode"):
            raise ValueError(f"tokenizer: got {type(tokenizer).__name__} without an encode() "
                             "method, expected a tokenizer with encode(text) -> list[int]")
        self.tokenizer = tokenizer
        self._setup(tokenizer.encode(text), getattr(tokenizer, "vocab_size", None), val_fraction, block_size)

    @classmethod
    def from_ids(cls, ids, *, vocab_size: int, block_size: int | None = None,
                 val_fraction: float = 0.1) -> "LMDataset":
        """Build from ids already encoded (e.g. a cached encoding of a big corpus)."""
        self = cls.__new__(cls)
        self.tokenizer = None
        self._setup(ids, vocab_size, val_fraction, block_size)
        return self

    def _setup(self, ids, vocab_size, val_fraction, block_size) -> None:
        vocab_size = _check_positive_int("vocab_size", vocab_size)
        try:
            val_fraction = float(val_fraction)
        except (TypeError, ValueError):
            val_fraction = float("nan")
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction={val_fraction!r}, expected a number in [0, 1)")
        ids = np.asarray(ids, dtype=np.int64)
        if ids.ndim != 1 or ids.size == 0:
            raise ValueError(f"token ids: got shape {ids.shape}, expected a non-empty 1-D "
                             "sequence (is the text empty?)")
        lo, hi = int(ids.min()), int(ids.max())
        if lo < 0 or hi >= vocab_size:
            raise ValueError(f"token ids: range [{lo}, {hi}], expected ids in "
                             f"[0, vocab_size={vocab_size})")
        dtype = np.uint16 if vocab_size <= 2**16 else np.int32
        data = ids.astype(dtype)
        n_train = int(len(data) * (1.0 - val_fraction))  # nanoGPT: int(n * 0.9)
        self.vocab_size = vocab_size
        self.val_fraction = val_fraction
        self.train = data[:n_train]
        self.val = data[n_train:]
        self.block_size = None
        if block_size is not None:
            self.check_block_size(block_size)
            self.block_size = block_size

    def __len__(self) -> int:
        """Total number of tokens (both splits)."""
        return len(self.train) + len(self.val)

    def split(self, name: str) -> np.ndarray:
        """The ids of split ``name`` (``"train"`` or ``"val"``)."""
        if name not in SPLITS:
            raise ValueError(f"split={name!r}, expected one of {SPLITS}")
        return self.train if name == "train" else self.val

    def check_block_size(self, block_size: int) -> None:
        """Raise ValueError now if either split is too short for ``block_size``.

        A trainer calls this before the first step, so a too-short text fails
        at once with a clear message rather than at the first evaluation.
        """
        block_size = _check_positive_int("block_size", block_size)
        for name in SPLITS:
            n = len(self.split(name))
            if n < block_size + 1:
                raise ValueError(
                    f"the {name} split has {n} tokens ({len(self)} in all, val_fraction="
                    f"{self.val_fraction}), expected at least block_size + 1 = {block_size + 1}; "
                    "use a longer text or a smaller block_size"
                )

    def get_batch(self, split: str, batch_size: int, rng: np.random.Generator,
                  block_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Random ``(x, y)`` blocks from ``split``, see :func:`get_batch`.

        ``block_size`` defaults to the one the dataset was built with: that
        is how a :class:`~minitx.train.trainer.Trainer` asks for batches,
        ``get_batch(split, batch_size, rng)``, knowing nothing of blocks.
        """
        if block_size is None:
            block_size = self.block_size
            if block_size is None:
                raise ValueError("block_size: got None, expected a positive integer (pass it here or to "
                                 "LMDataset(..., block_size=T))")
        return get_batch(self.split(split), batch_size, block_size, rng, split=split)

    def __repr__(self):
        return (f"LMDataset(train={len(self.train)} tokens, val={len(self.val)} tokens, "
                f"vocab_size={self.vocab_size}, dtype={self.train.dtype})")


class PaddedRows:
    """Examples stored as right-padded arrays; a batch is random rows trimmed to their longest.

    The batch source of the encoder and encoder-decoder tasks: each column
    is ``(array [N, ...], lengths [N] or None)``; a batch takes
    ``batch_size`` rows at random and cuts every padded column to the
    longest length among those rows, so a batch of short sentences is a
    short array. ``transform(batch, rng) -> batch`` may change a batch
    (the tagger's word dropout), drawing from the same generator.

    Only the ``"train"`` split exists: tasks score the validation set with
    their own metric (accuracy, F1, BLEU) rather than a loss on batches.

        >>> x = np.array([[5, 6, 0], [7, 0, 0]]); y = np.array([1, 0])
        >>> rows = PaddedRows((x, np.array([2, 1])), (y, None))
        >>> bx, by = rows.get_batch("train", 2, np.random.default_rng(0))
        >>> bx.shape[1] <= 2 and by.shape == (2,)
        True
    """

    def __init__(self, *columns, transform=None):
        if not columns:
            raise ValueError("PaddedRows: got no columns, expected (array, lengths or None) pairs")
        n = len(columns[0][0])
        for i, (array, lengths) in enumerate(columns):
            if len(array) != n or (lengths is not None and len(lengths) != n):
                raise ValueError(f"PaddedRows column {i}: got {len(array)} rows, expected {n} like column 0")
        if n == 0:
            raise ValueError("PaddedRows: got 0 rows, expected at least one example")
        self.columns, self.transform, self.n = columns, transform, n

    def __len__(self) -> int:
        return self.n

    def get_batch(self, split: str, batch_size: int, rng: np.random.Generator) -> tuple:
        if split != "train":
            raise ValueError(f"split={split!r}: task data has only 'train' batches, expected 'train' "
                             "(validation is scored by the task's evaluate)")
        idx = rng.integers(0, self.n, batch_size)
        batch = tuple(array[idx] if lengths is None else array[idx, : lengths[idx].max()]
                      for array, lengths in self.columns)
        return self.transform(batch, rng) if self.transform is not None else batch
