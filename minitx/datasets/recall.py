"""The recall task: the next token is set by the fact that stood N positions back.

A sequence is a stream of *facts* and *queries*. A fact token says "key k
has value v" (one token per pair (k, v)); a query token names a key alone,
and the token to predict after it is that key's value. Each sequence draws
its own *binding* (a value for every key), so no binding can be learned:
only the context reveals it, in the most recent fact about the key, N
positions before the query::

    position:  0        1        2        3     4        5     ...
    x:         (k3,v2)  (k0,v1)  (k1,v0)  ?k0   (k3,v2)  ?k3   ...   (k,v) = fact, ?k = query
    y:         .        .        .        v1    .        v2    ...   "." = -100: not scored
                                          N=2            N=1

Only the queries are scored (a fact is random, so scoring it would add the
same irreducible loss to every model and hide the difference); a query about
a key with no fact before it is not scored either. The validation loss is
therefore the mean cross-entropy of the recalled values; chance is
``log(n_values)``. ``batch_at(N)`` builds sequences whose last token is a
query about the fact exactly N positions before it (the key's most recent
fact) and scores only that: the accuracy-against-distance curve.

Why this separates attention from recurrence (a one-token-per-fact form of
the associative-recall task; see Zoology, Arora et al. 2023):

* a **transformer** looks the answer up: the query's key vector matches the
  facts about the same key, attention puts its weight there and copies the
  value. One attention layer is enough, and distance does not enter (the
  learned position embeddings are trained at every position, since facts and
  queries stand anywhere);
* an **RNN** must have *written* every fact it may be asked about into its
  hidden state and kept it there while all later facts were written too:
  recent facts survive, older ones are overwritten. A vanilla RNN's memory
  fades fast with N; a GRU's gates let it keep more.

Token ids: facts ``k * n_values + v`` (``0 .. n_keys * n_values - 1``), then
the ``n_keys`` query tokens, then the ``n_values`` answer tokens (which only
ever appear as targets). Every batch has ``seq_len`` tokens.

Example::

    >>> task = RecallTask(n_keys=6, n_values=4, seq_len=20)
    >>> x, y = task.batch_at(5, 2, np.random.default_rng(0))
    >>> x.shape, bool((task.key_of(x[:, -1]) == task.key_of(x[:, -6])).all())
    ((2, 20), True)
    >>> bool((task.answer_of(y[:, -1]) == task.value_of(x[:, -6])).all())
    True
"""
from __future__ import annotations

import numpy as np

from ..nn.loss import IGNORE_INDEX

IGNORE = IGNORE_INDEX  # cross_entropy's ignore_index: not scored


class RecallTask:
    """Generated recall sequences; a batch source for :class:`~minitx.train.trainer.Trainer`.

    ``get_batch(split, batch_size, rng)``: every position is a query with
    probability ``query_rate``, else a fact; keys are uniform, so the gap
    back to a key's last fact is roughly geometric with mean about
    ``n_keys / (1 - query_rate)`` positions. ``batch_at(distance, ...)``
    fixes the gap of the last query. Both splits come from the same
    generator: with a fresh binding and key order per sequence, validation
    sequences are (with overwhelming probability) ones no model trained on.
    """

    def __init__(self, n_keys: int = 4, n_values: int = 4, seq_len: int = 72, query_rate: float = 0.5):
        for name, value, low in (("n_keys", n_keys, 2), ("n_values", n_values, 2), ("seq_len", seq_len, 3)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
                raise ValueError(f"RecallTask {name}: got {value!r}, expected an integer >= {low}")
        if not isinstance(query_rate, (int, float)) or not 0 < query_rate < 1:
            raise ValueError(f"RecallTask query_rate: got {query_rate!r}, expected a number in (0, 1)")
        self.n_keys, self.n_values, self.seq_len = int(n_keys), int(n_values), int(seq_len)
        self.query_rate = float(query_rate)
        self.n_facts = self.n_keys * self.n_values
        self.first_query = self.n_facts  # query ids: first_query + k
        self.first_answer = self.n_facts + self.n_keys  # answer ids: first_answer + v
        self.vocab_size = self.first_answer + self.n_values
        self.max_distance = self.seq_len - 1

    # ---- reading tokens back (tests, tutorials) ---------------------------
    def key_of(self, tokens):
        """The key a fact or query token names."""
        tokens = np.asarray(tokens)
        return np.where(tokens < self.n_facts, tokens // self.n_values, tokens - self.first_query)

    def value_of(self, facts):
        return np.asarray(facts) % self.n_values

    def answer_of(self, targets):
        return np.asarray(targets) - self.first_answer

    # ---- sequences ----------------------------------------------------------
    def _draw(self, batch_size: int, rng: np.random.Generator):
        B, T = batch_size, self.seq_len
        is_query = rng.random((B, T)) < self.query_rate  # (B, T)
        keys = rng.integers(0, self.n_keys, size=(B, T))  # (B, T)
        binding = rng.integers(0, self.n_values, size=(B, self.n_keys))  # (B, n_keys): this sequence's values
        return is_query, keys, binding

    def _tokens(self, is_query, keys, binding):
        values = np.take_along_axis(binding, keys, axis=1)  # (B, T) the value of each position's key
        x = np.where(is_query, self.first_query + keys, keys * self.n_values + values)  # (B, T)
        return x.astype(np.int64), (self.first_answer + values).astype(np.int64)

    def get_batch(self, split: str, batch_size: int, rng: np.random.Generator):
        """``(x, y)`` of shape ``(batch_size, seq_len)``; every query about a key with an earlier fact is scored."""
        if split not in ("train", "val"):
            raise ValueError(f"RecallTask split: got {split!r}, expected 'train' or 'val'")
        is_query, keys, binding = self._draw(batch_size, rng)
        x, y = self._tokens(is_query, keys, binding)
        fact_onehot = (keys[:, :, None] == np.arange(self.n_keys)) & ~is_query[:, :, None]  # (B, T, n_keys)
        facts_before = np.cumsum(fact_onehot, axis=1) - fact_onehot  # (B, T, n_keys): facts strictly before t
        known = np.take_along_axis(facts_before, keys[:, :, None], axis=2)[:, :, 0] > 0  # (B, T)
        y[~(is_query & known)] = IGNORE
        return x, y

    def batch_at(self, distance: int, batch_size: int, rng: np.random.Generator):
        """``(x, y)``: the last token queries the key whose latest fact is ``distance`` positions back."""
        if not isinstance(distance, (int, np.integer)) or not 1 <= distance <= self.max_distance:
            raise ValueError(f"RecallTask distance: got {distance!r}, expected an integer in "
                             f"[1, {self.max_distance}]")
        T, d = self.seq_len, int(distance)
        is_query, keys, binding = self._draw(batch_size, rng)
        is_query[:, T - 1 - d], is_query[:, T - 1] = False, True  # the fact, and the query about it
        query = keys[:, T - 1 - d]  # (B,)
        between = keys[:, T - d:T - 1]  # (B, d-1): no fact (or query) about that key since
        other = rng.integers(0, self.n_keys - 1, size=between.shape)  # (B, d-1) uniform over the other keys
        other += other >= query[:, None]
        keys[:, T - d:T - 1] = np.where(between == query[:, None], other, between)
        keys[:, T - 1] = query
        x, y = self._tokens(is_query, keys, binding)
        y[:, :-1] = IGNORE
        return x, y


def recall_accuracy(model, task: RecallTask, distance: int, n_eval: int, rng: np.random.Generator,
                    batch_size: int = 100) -> float:
    """Share of ``n_eval`` fresh sequences at ``distance`` whose answer is the model's top token."""
    correct = 0
    for start in range(0, n_eval, batch_size):
        x, y = task.batch_at(distance, min(batch_size, n_eval - start), rng)
        logits = np.asarray(model.forward(x)[:, -1])  # (B, V): the prediction after the last key
        correct += int((logits.argmax(axis=-1) == y[:, -1]).sum())
    return correct / n_eval


__all__ = ["IGNORE", "RecallTask", "recall_accuracy"]
