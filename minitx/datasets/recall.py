"""The recall task: the next token is one that appeared N positions earlier.

A sequence is random *filler* tokens with one *value* token somewhere, and
ends with a *query* token; the token to predict after the query is the
value, which stands exactly N positions before it::

    position:  0   1   2  ...  T-1-N  ...  T-2   T-1
    x:         f   f   f  ...    v    f ...  f    Q        f = filler, v = value, Q = query
    y:         .   .   .  ...    .    . ...  .    v        "." = -100: not scored

Only the last position is scored: every other next token is random (a filler,
or the value itself, which nothing before it predicts), so scoring it would
add the same irreducible ``log(n_fillers)`` to every model and hide the
difference. The validation loss of this task is therefore the mean
cross-entropy of the answer, and chance is ``log(n_values)``.

Why this separates attention from recurrence:

* a **transformer** solves it in one attention layer at any distance: the
  query attends to the one position whose token is a value (a match on
  *content*, through the key) and copies it through the value vector.
  Distance does not enter, apart from the learned position embeddings, which
  are trained at every position because the value's position varies;
* an **RNN** has seen the value N steps before the query and must have carried
  it in its hidden state through N updates by random filler tokens. A
  vanilla RNN's memory (and its gradient, in training) fades geometrically
  with N; a GRU can learn to latch it with its update gate.

Token ids: ``0 .. n_values-1`` are values, the next ``n_fillers`` are
fillers, and the last id is the query. Distances of the training data are
drawn uniformly from ``[min_distance, max_distance]``; the sequence length is
``max_distance + 2`` for every batch (the query always sits at the last
position), so every model sees the same shape.

Example::

    >>> task = RecallTask(n_values=4, n_fillers=6, max_distance=8)
    >>> x, y = task.batch_at(3, 2, np.random.default_rng(0))
    >>> x.shape, int(x[0, -1]) == task.query_id, bool((y[:, -1] == x[:, -4]).all())
    ((2, 10), True, True)
"""
from __future__ import annotations

import numpy as np

IGNORE = -100  # cross_entropy's ignore_index


class RecallTask:
    """Generated recall sequences; a batch source for :class:`~minitx.train.trainer.Trainer`.

    ``get_batch(split, batch_size, rng)`` draws distances uniformly from
    ``[min_distance, max_distance]``; ``batch_at(distance, ...)`` fixes one
    (for the accuracy-against-distance curve). Both splits come from the same
    generator: every sequence is drawn fresh from a space of about
    ``n_fillers ** max_distance`` sequences, so the validation batches are
    (with overwhelming probability) sequences no model trained on.
    """

    def __init__(self, n_values: int = 8, n_fillers: int = 16, max_distance: int = 64, min_distance: int = 2):
        for name, value, low in (("n_values", n_values, 2), ("n_fillers", n_fillers, 1),
                                 ("min_distance", min_distance, 1)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
                raise ValueError(f"RecallTask {name}: got {value!r}, expected an integer >= {low}")
        if not isinstance(max_distance, (int, np.integer)) or max_distance < min_distance:
            raise ValueError(f"RecallTask max_distance: got {max_distance!r}, expected an integer >= "
                             f"min_distance={min_distance}")
        self.n_values, self.n_fillers = int(n_values), int(n_fillers)
        self.min_distance, self.max_distance = int(min_distance), int(max_distance)
        self.query_id = self.n_values + self.n_fillers
        self.vocab_size = self.query_id + 1
        self.seq_len = self.max_distance + 2  # at least one filler before the farthest value

    def _sequences(self, distances: np.ndarray, rng: np.random.Generator):
        B, T = len(distances), self.seq_len
        x = rng.integers(self.n_values, self.n_values + self.n_fillers, size=(B, T))  # (B, T) fillers
        values = rng.integers(0, self.n_values, size=B)  # (B,)
        x[np.arange(B), T - 1 - distances] = values  # the value, N positions before the query
        x[:, T - 1] = self.query_id
        y = np.full((B, T), IGNORE, dtype=np.int64)  # (B, T): only the answer is scored
        y[:, T - 1] = values
        return x.astype(np.int64), y

    def get_batch(self, split: str, batch_size: int, rng: np.random.Generator):
        """``(x, y)`` of shape ``(batch_size, seq_len)``, distances uniform in [min_distance, max_distance]."""
        if split not in ("train", "val"):
            raise ValueError(f"RecallTask split: got {split!r}, expected 'train' or 'val'")
        lo, hi = np.log(self.min_distance), np.log(self.max_distance + 1)
        distances = np.floor(np.exp(rng.uniform(lo, hi, size=batch_size))).astype(np.int64)  # (B,) log-uniform
        return self._sequences(distances, rng)

    def batch_at(self, distance: int, batch_size: int, rng: np.random.Generator):
        """``(x, y)`` with the value exactly ``distance`` positions before the query."""
        if not isinstance(distance, (int, np.integer)) or not 1 <= distance <= self.max_distance:
            raise ValueError(f"RecallTask distance: got {distance!r}, expected an integer in "
                             f"[1, {self.max_distance}]")
        return self._sequences(np.full(batch_size, int(distance)), rng)


def recall_accuracy(model, task: RecallTask, distance: int, n_eval: int, rng: np.random.Generator,
                    batch_size: int = 100) -> float:
    """Share of ``n_eval`` fresh sequences at ``distance`` whose answer is the model's top token."""
    correct = 0
    for start in range(0, n_eval, batch_size):
        x, y = task.batch_at(distance, min(batch_size, n_eval - start), rng)
        logits = np.asarray(model.forward(x)[:, -1])  # (B, V): the prediction after the query
        correct += int((logits.argmax(axis=-1) == y[:, -1]).sum())
    return correct / n_eval


__all__ = ["IGNORE", "RecallTask", "recall_accuracy"]
