"""Cross-entropy, fused with log-softmax.

For logits z (one row per prediction) and target class t:
    loss = -log softmax(z)_t = logsumexp(z) - z_t
Fusing the two steps is both stabler (no log of a tiny probability) and gives
the famous simple gradient: softmax(z) - onehot(t).

Label smoothing (Szegedy et al., 2016) replaces the one-hot target by
(1 - eps) * onehot(t) + eps / C, so the model is not pushed to infinite
confidence. Targets equal to ``ignore_index`` (padding) contribute nothing,
and the mean is taken over the remaining ones, as PyTorch does.
"""
from __future__ import annotations

from ..backend import array_module
from .checks import check_array
from .softmax import log_softmax_forward

#: The target that contributes nothing to the loss (PyTorch's default ``ignore_index``): padding, prompt
#: tokens in instruction tuning, unscored positions. Data pipelines write it; the loss skips it.
IGNORE_INDEX = -100


def cross_entropy_forward(logits, targets, ignore_index: int = IGNORE_INDEX, label_smoothing: float = 0.0):
    """``[..., C] float, [...] int -> scalar`` mean loss; caches probs and targets.

    If every target is ignored the loss is 0 with zero gradient (PyTorch
    returns NaN there; a padding-only batch should not kill a training run).
    """
    check_array("cross_entropy logits", logits, min_ndim=1)
    check_array("cross_entropy targets", targets, kind="iu")
    if targets.shape != logits.shape[:-1]:
        raise ValueError(
            f"cross_entropy targets: got shape {tuple(targets.shape)}, "
            f"expected {tuple(logits.shape[:-1])} (the logits' shape without the class axis)"
        )
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy label_smoothing: got {label_smoothing!r}, expected a number in [0, 1]")
    xp = array_module(logits)
    C = logits.shape[-1]
    z = logits.reshape(-1, C)  # (N, C)
    t = targets.reshape(-1)  # (N,)
    valid = t != ignore_index  # (N,)
    t_safe = xp.where(valid, t, 0)
    if t_safe.size and (int(t_safe.min()) < 0 or int(t_safe.max()) >= C):
        raise ValueError(f"cross_entropy targets: got a class id outside [0, {C}) that is not ignore_index={ignore_index}; "
                         f"expected ids in [0, {C}) or {ignore_index}")
    logp, probs = log_softmax_forward(z)  # (N, C) each
    n_valid = int(valid.sum())
    nll = -logp[xp.arange(z.shape[0]), t_safe]  # (N,)
    if label_smoothing:
        nll = (1.0 - label_smoothing) * nll - label_smoothing * logp.mean(axis=-1)
    denom = max(n_valid, 1)
    loss = (nll * valid).sum() / denom
    return loss.astype(logits.dtype), (probs, t_safe, valid, denom, label_smoothing, logits.shape)


def cross_entropy_backward(dloss, cache):
    """dL/dz_j = (softmax(z)_j - target_j) / N for each valid row, 0 for ignored rows,
    where target = (1 - eps) * onehot(t) + eps / C.
    """
    probs, t, valid, denom, eps, shape = cache
    xp = array_module(probs)
    C = probs.shape[-1]
    d = probs.copy()  # (N, C)
    d[xp.arange(d.shape[0]), t] -= 1.0 - eps
    if eps:
        d -= eps / C
    d *= (valid * (float(dloss) / denom)).astype(d.dtype)[:, None]
    return d.reshape(shape)
