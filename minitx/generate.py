"""Generation: turning next-token probabilities into text, one token at a time.

A language model gives, for the last position, a score (logit) per vocabulary
entry. Decoding is the loop

    logits = model(context)[:, -1]        (B, V)  scores for the next token
    next   = choose(logits)               (B,)    greedy, or a random draw
    context = context + [next]

and the whole art is in ``choose``. The controls, applied in this order by
:func:`next_token_probs`:

* **temperature** ``tau``: ``softmax(logits / tau)``. ``tau < 1`` sharpens the
  distribution (safer, more repetitive), ``tau > 1`` flattens it (more
  surprising, more mistakes); ``tau = 0`` means *greedy*: always the argmax.
* **top-k**: keep only the ``k`` most likely tokens (Fan et al., 2018).
* **top-p** (nucleus, Holtzman et al., 2019): keep the smallest set of most
  likely tokens whose probabilities add up to at least ``p``; the set is
  small when the model is sure and large when it is not, which top-k cannot do.

Then renormalise and draw. Randomness comes from an explicit
``numpy.random.Generator`` (``seed=``), so a sample can be reproduced.

**The KV cache.** Without it, every step runs the model over the whole
context again: step t costs O(t) token-passes, a whole generation O(n^2).
With it (:class:`~minitx.nn.KVCache`), each attention layer keeps the keys and
values of the tokens it has already seen, and a step runs the model on the
one new token, attending to the cached keys and values. The tokens are the
same (a test proves it); only the work differs.

**The context window.** A prompt longer than ``block_size`` is cropped to its
last ``block_size`` tokens, with a warning. When generation fills the window,
the oldest token must drop out; with learned absolute positions every cached
key then sits at the wrong position, so the cache is rebuilt from the last
``block_size`` tokens at each further step (exactly what the uncached loop
computes, hence identical tokens; as slow as recomputing, too). Rotary and
ALiBi models have no position table and could attend further, but their
``block_size`` is the context they were trained on and the size of their
caches, so they slide the same window in the same way.
"""
from __future__ import annotations

import math
import warnings

import numpy as np

from .backend import to_numpy


# --------------------------------------------------------------------------
# Argument checks: one-line errors that name the argument
# --------------------------------------------------------------------------
def check_sampling_args(temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                        max_new_tokens: int | None = None) -> None:
    """Raise ``ValueError`` for out-of-range sampling controls (the CLI shows the message)."""
    if not isinstance(temperature, (int, float)) or not math.isfinite(temperature) or temperature < 0:
        raise ValueError(f"temperature: got {temperature!r}, expected a number >= 0 (0 means greedy)")
    if top_k is not None and (not isinstance(top_k, (int, np.integer)) or isinstance(top_k, bool) or top_k < 1):
        raise ValueError(f"top_k: got {top_k!r}, expected an integer >= 1")
    if top_p is not None and (not isinstance(top_p, (int, float)) or not 0.0 < top_p <= 1.0):
        raise ValueError(f"top_p: got {top_p!r}, expected a number in (0, 1]")
    if max_new_tokens is not None and (not isinstance(max_new_tokens, (int, np.integer)) or max_new_tokens < 0):
        raise ValueError(f"max_new_tokens: got {max_new_tokens!r}, expected an integer >= 0")


# --------------------------------------------------------------------------
# From logits to a distribution, and from a distribution to a token
# --------------------------------------------------------------------------
def next_token_probs(logits, *, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None):
    """``logits [B, V] -> probs [B, V]`` (float64) after temperature, top-k and top-p.

    ``temperature=0`` returns a one-hot distribution on the argmax (greedy).
    Worked example, logits ``[2, 1, 0, -1]``::

        temperature 1           -> [0.64, 0.24, 0.09, 0.03]
        temperature 1, top_k=2  -> [0.73, 0.27, 0,    0   ]
        temperature 1, top_p=0.8 -> [0.73, 0.27, 0,   0   ]  (0.64 < 0.8 <= 0.64 + 0.24)
    """
    check_sampling_args(temperature, top_k, top_p)
    z = np.asarray(to_numpy(logits), dtype=np.float64)  # (B, V); sampling maths is tiny, do it in float64
    B, V = z.shape
    if temperature == 0:
        probs = np.zeros_like(z)
        probs[np.arange(B), z.argmax(axis=-1)] = 1.0
        return probs
    z = z / temperature
    if top_k is not None and top_k < V:
        kth = np.partition(z, V - top_k, axis=-1)[:, V - top_k, None]  # (B, 1) the k-th largest score
        z = np.where(z < kth, -np.inf, z)  # ties with the k-th are kept
    z = z - z.max(axis=-1, keepdims=True)
    probs = np.exp(z)
    probs /= probs.sum(axis=-1, keepdims=True)  # (B, V)
    if top_p is not None and top_p < 1.0:
        order = np.argsort(-probs, axis=-1, kind="stable")  # (B, V) most likely first
        sorted_p = np.take_along_axis(probs, order, axis=-1)  # (B, V)
        mass_before = np.cumsum(sorted_p, axis=-1) - sorted_p  # probability of the tokens ranked above
        keep_sorted = mass_before < top_p  # the first token always survives (mass_before = 0)
        keep = np.zeros_like(keep_sorted)
        np.put_along_axis(keep, order, keep_sorted, axis=-1)  # back to vocabulary order
        probs = np.where(keep, probs, 0.0)
        probs /= probs.sum(axis=-1, keepdims=True)
    return probs


def sample_from(probs, rng) -> np.ndarray:
    """``probs [B, V] -> ids [B]``: one draw per row by inverting the cumulative distribution.

    One uniform number per row, so the number of random draws (and therefore
    the generator's state afterwards) never depends on the vocabulary size.
    """
    cdf = np.cumsum(probs, axis=-1)  # (B, V)
    u = rng.random(probs.shape[0]) * cdf[:, -1]  # (B,) scaled by the total, which is 1 up to rounding
    ids = (cdf <= u[:, None]).sum(axis=-1)  # (B,) first index whose cdf exceeds u
    return np.minimum(ids, probs.shape[1] - 1)


# --------------------------------------------------------------------------
# The decoding loop
# --------------------------------------------------------------------------
def crop_context(idx, block_size: int, warn: bool = True):
    """Keep the last ``block_size`` tokens of ``idx [B, T]`` (warning if anything is dropped)."""
    if idx.shape[1] > block_size:
        if warn:
            warnings.warn(f"prompt has {idx.shape[1]} tokens, more than block_size={block_size}; "
                          f"keeping the last {block_size}", stacklevel=3)
        idx = idx[:, -block_size:]
    return idx


def iter_tokens(model, idx, max_new_tokens: int, *, temperature: float = 1.0, top_k: int | None = None,
                top_p: float | None = None, rng=None, seed: int | None = None, use_kv_cache: bool = True):
    """Yield the next token ids ``[B]`` one step at a time (the loop behind :func:`generate`).

    ``idx [B, T]``: the prompt's token ids. The model is put in eval mode
    (no dropout) and restored afterwards.
    """
    check_sampling_args(temperature, top_k, top_p, max_new_tokens)
    idx = np.asarray(idx)
    if idx.ndim != 2 or idx.shape[1] == 0:
        raise ValueError(f"prompt ids: got shape {idx.shape}, expected (B, T) with at least one token")
    rng = rng if rng is not None else np.random.default_rng(seed)
    block_size = model.config.block_size
    context = crop_context(idx, block_size)  # (B, T <= block_size)
    was_training = model.training
    model.eval()
    try:
        caches = model.new_kv_caches() if use_kv_cache else None
        logits = model.forward(context, kv_caches=caches)[:, -1]  # (B, V) prefill: the whole prompt once
        for step in range(max_new_tokens):
            if temperature == 0:  # greedy: the argmax, no distribution needed (nor any randomness)
                nxt = to_numpy(logits).argmax(axis=-1)  # (B,)
            else:
                probs = next_token_probs(logits, temperature=temperature, top_k=top_k, top_p=top_p)  # (B, V)
                nxt = sample_from(probs, rng)  # (B,)
            yield nxt
            if step == max_new_tokens - 1:
                break  # the last token needs no logits after it
            context = np.concatenate([context, nxt[:, None]], axis=1)[:, -block_size:]  # (B, <= block_size)
            if not use_kv_cache:
                logits = model.forward(context)[:, -1]  # recompute everything: O(T) per step
            elif caches[0].length < block_size:
                logits = model.forward(nxt[:, None], kv_caches=caches)[:, -1]  # one new token: O(1) per step
            else:  # the window is full and every position shifts: rebuild the cache
                caches = model.new_kv_caches()
                logits = model.forward(context, kv_caches=caches)[:, -1]
    finally:
        model.train(was_training)


def generate(model, idx, max_new_tokens: int, *, temperature: float = 1.0, top_k: int | None = None,
             top_p: float | None = None, stop_token: int | None = None, rng=None, seed: int | None = None,
             use_kv_cache: bool = True) -> np.ndarray:
    """``idx [B, T] -> [B, T + n]``: the prompt followed by ``n <= max_new_tokens`` new tokens.

    Stops early once every row has produced ``stop_token`` (which is kept;
    rows that finished first are padded with it).
    """
    idx = np.asarray(idx)
    out = [idx]
    done = np.zeros(idx.shape[0] if idx.ndim == 2 else 0, dtype=bool)
    for nxt in iter_tokens(model, idx, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                           rng=rng, seed=seed, use_kv_cache=use_kv_cache):
        if stop_token is not None:
            nxt = np.where(done, stop_token, nxt)
            done |= nxt == stop_token
        out.append(nxt[:, None].astype(idx.dtype))
        if stop_token is not None and done.all():
            break
    return np.concatenate(out, axis=1)


def generate_text(model, tokenizer, prompt: str, max_new_tokens: int = 200, *, stop: str | list[str] | None = None,
                  stop_token: int | None = None, on_text=None, return_ids: bool = False, **sampling):
    """Continue ``prompt`` and return the new text (without the prompt).

    ``return_ids=True`` returns ``(text, ids)`` instead: the new token ids,
    without the one that completed a stop string or the stop token.

    ``stop``: a string (or several); generation ends as soon as the new text
    contains one, and the text is cut just before it. ``on_text(piece)`` is
    called with each newly decoded piece (for streaming to a terminal).
    ``sampling``: ``temperature``, ``top_k``, ``top_p``, ``seed``, ``rng``,
    ``use_kv_cache`` as in :func:`generate`.
    """
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    if any(not s for s in stops):
        raise ValueError("stop: got an empty string, expected non-empty stop strings")
    ids = tokenizer.encode(prompt)
    # the new text is what decoding adds after the prompt's last token: a word-level tokenizer puts the space
    # between words when it joins them, so decoding the new ids alone would glue the first new word to the
    # prompt; one token of context is enough for that, and keeps each step's decode as short as before
    context = ids[-1:]
    prefix = len(tokenizer.decode(context))
    new_ids: list[int] = []
    text, shown = "", 0  # the new text so far; how much of it on_text has seen
    for nxt in iter_tokens(model, np.asarray([ids], dtype=np.int64), max_new_tokens, **sampling):
        token = int(nxt[0])
        if stop_token is not None and token == stop_token:
            break
        new_ids.append(token)
        text = tokenizer.decode(context + new_ids)[prefix:]
        hits = [text.find(s) for s in stops if s in text]
        if hits:
            text = text[: min(hits)]
            new_ids.pop()
            break
        if on_text is not None:  # hold back a tail that might be the start of a stop string
            safe = len(text) - _longest_stop_prefix(text, stops)
            if safe > shown:
                on_text(text[shown:safe])
                shown = safe
    if on_text is not None and len(text) > shown:
        on_text(text[shown:])
    return (text, new_ids) if return_ids else text


def _longest_stop_prefix(text: str, stops: list[str]) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of a stop string."""
    best = 0
    for s in stops:
        for n in range(min(len(s) - 1, len(text)), best, -1):
            if text.endswith(s[:n]):
                best = n
                break
    return best
