"""Looking inside a trained GPT: which heads copy, and what happens without them.

Olsson et al. (2022) found that in-context learning in transformers is
carried largely by **induction heads**: attention heads that, at a token
``A``, look back to the token that *followed* an earlier ``A`` and copy it
(``[A][B] ... [A] -> [B]``). It takes two layers: a *previous-token* head
first writes "the token before me was A" into each position, and the
induction head in a later layer matches its query ("I am A") against those
keys. A one-layer model cannot compose the two.

Two tools find and test them:

* :func:`prefix_matching_scores` runs the model on random token sequences
  repeated twice and measures, for every head, the attention from each token
  of the second copy to the token just after its first occurrence. A perfect
  induction head scores near 1; a head looking anywhere else scores about
  ``1 / T``.
* :func:`attention_to_targets` is the same measurement on any sequences:
  on a few-shot prompt, the attention from the query to the labels of the
  examples that match it (a *fuzzy* prefix match: same sentiment, another
  word), which is how the induction heads of a model trained on
  :mod:`minitx.datasets.icl` show themselves (on random tokens, whose
  sentiment means nothing, they hardly do).
* :func:`ablate_heads` zeroes chosen heads' outputs (through the
  ``head_mask`` of :class:`~minitx.nn.attention.MultiHeadAttention`) for the
  duration of a ``with`` block, so any measurement can be repeated without
  them: if accuracy drops, the heads carried the skill.

Example::

    >>> from minitx.models import GPT, GPTConfig
    >>> model = GPT(GPTConfig(vocab_size=50, block_size=32, n_layer=2, n_head=2, n_embd=16), seed=0)
    >>> prefix_matching_scores(model, n_seq=4, seq_len=10).shape   # (n_layer, n_head)
    (2, 2)
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from .backend import to_numpy


def repeated_random_tokens(rng: np.random.Generator, n_seq: int, seq_len: int, vocab_size: int,
                           exclude=()) -> np.ndarray:
    """``[n_seq, 2 * seq_len]``: ``seq_len`` distinct random tokens, then the same tokens again.

    Distinct within a copy so that "the earlier occurrence" is unique. ``exclude``: ids never drawn.
    """
    allowed = np.setdiff1d(np.arange(vocab_size), np.asarray(exclude, dtype=np.int64))
    if seq_len > len(allowed):
        raise ValueError(f"seq_len: got {seq_len}, expected at most the {len(allowed)} tokens that may be drawn")
    first = allowed[np.argsort(rng.random((n_seq, len(allowed))), axis=1)[:, :seq_len]]  # (n, L) no repeats
    return np.concatenate([first, first], axis=1)  # (n, 2L)


def attention_maps(model, idx) -> list[np.ndarray]:
    """``idx [B, T] -> [n_layer] x [B, H, T, T]``: every layer's attention weights (NumPy), eval mode."""
    was_training = model.training
    model.eval()
    try:
        model.forward(idx)
    finally:
        model.train(was_training)
    return [to_numpy(block.attn.attn_weights) for block in model.blocks]


def prefix_matching_scores(model, *, n_seq: int = 64, seq_len: int | None = None, seed: int = 0,
                           exclude=()) -> np.ndarray:
    """``-> [n_layer, n_head]``: mean attention from a repeated token to the token after its first occurrence.

    Query position ``i`` in the second copy (``L <= i < 2L``) holds the token
    first seen at ``i - L``; an induction head attends to ``i - L + 1``.
    ``seq_len`` defaults to the largest ``L`` with ``2L <= block_size``
    (at most 32).
    """
    L = seq_len if seq_len is not None else min(32, model.config.block_size // 2)
    if not isinstance(L, int) or L < 2 or 2 * L > model.config.block_size:
        raise ValueError(f"seq_len: got {L!r}, expected an integer >= 2 with 2 * seq_len <= block_size="
                         f"{model.config.block_size}")
    idx = repeated_random_tokens(np.random.default_rng([seed, 11]), n_seq, L, model.config.vocab_size, exclude)
    query = np.arange(L, 2 * L)  # (L,) positions in the second copy
    scores = [w[:, :, query, query - L + 1].mean(axis=(0, 2)) for w in attention_maps(model, idx)]  # each (H,)
    return np.stack(scores)  # (n_layer, n_head)


def attention_to_targets(model, idx, query, targets, *, maps=None) -> np.ndarray:
    """``-> [n_layer, n_head]``: mean attention mass from position ``query`` onto the ``targets`` positions.

    ``idx [B, T]`` token ids, ``query`` one position (``-1``: the last),
    ``targets [B, T]`` bool: where an induction head should look from
    there, i.e. the tokens that came right after an earlier match of the
    query token. :func:`prefix_matching_scores` is this on repeated random
    tokens (exact matches); on a few-shot prompt the match can be *fuzzy*
    (the same sentiment, not the same word), which is what a model trained
    on :mod:`minitx.datasets.icl` learns to match. ``maps`` (the
    :func:`attention_maps` of ``idx``) saves the forward pass when several
    target sets are scored on the same prompts.
    """
    targets = np.asarray(targets, dtype=bool)
    maps = attention_maps(model, idx) if maps is None else maps  # n_layer x (B, H, T, T)
    return np.stack([(w[:, :, query, :] * targets[:, None, :]).sum(axis=-1).mean(axis=0) for w in maps])


def set_head_mask(model, heads) -> None:
    """Zero the heads ``[(layer, head), ...]`` of ``model`` (others keep mask 1); ``[]`` removes every mask."""
    n_layer, n_head = model.config.n_layer, model.config.n_head
    masks = np.ones((n_layer, n_head))
    for h in heads:
        if not (isinstance(h, (tuple, list)) and len(h) == 2 and 0 <= h[0] < n_layer and 0 <= h[1] < n_head):
            raise ValueError(f"heads: got {h!r}, expected (layer, head) with layer < {n_layer} and head < {n_head}")
        masks[h[0], h[1]] = 0.0
    for layer, block in enumerate(model.blocks):
        block.attn.head_mask = None if masks[layer].all() else masks[layer]


@contextmanager
def ablate_heads(model, heads):
    """``with ablate_heads(model, [(1, 0)]): ...``: those heads' outputs are zero inside, restored after."""
    saved = [block.attn.head_mask for block in model.blocks]
    set_head_mask(model, heads)
    try:
        yield model
    finally:
        for block, mask in zip(model.blocks, saved):
            block.attn.head_mask = mask


__all__ = ["ablate_heads", "attention_maps", "attention_to_targets", "prefix_matching_scores", "repeated_random_tokens", "set_head_mask"]
