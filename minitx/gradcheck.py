"""The gradient checker: proof that a hand-written backward pass is right.

A backward pass claims to compute dL/dtheta. We can *measure* that derivative
without calculus: nudge one number and watch the loss,

    dL/dtheta ~ (L(theta + h) - L(theta - h)) / (2h)        (central difference)

minitx uses the fourth-order central stencil

    dL/dtheta ~ (L(-2h) - 8 L(-h) + 8 L(+h) - L(+2h)) / (12h)

whose error shrinks like h^4 instead of h^2, so a larger step (h = 1e-3)
can be used and round-off stays small. Everything runs in float64: in
float32 the differences drown in rounding noise.

Where the loss curves sharply (a LayerNorm over two features, a saturated
softmax), even that stencil can be off by more than the tolerance. Only
then, the checker re-measures that element with Ridders' method: central
differences at shrinking steps, extrapolated to h = 0 (Richardson), keeping
the estimate with the smallest error. A real bug disagrees with both.

Error measure, per element: ``|analytic - numeric| / max(|analytic|, |numeric|, floor)``.
The ``floor`` (default 1e-4) stops gradients that are essentially zero from
producing huge "relative" errors out of pure noise: differences of a float64
loss of order 1 cannot resolve a derivative better than about 1e-11, so a
gradient smaller than the floor is held to an absolute error of tol * floor
(1e-10 at the tests' tolerance of 1e-6). The report names the
worst element: which array, which index, both values.

Two entry points:

* :func:`gradcheck` for any function: give it a closure computing the loss
  from arrays it reads, those arrays, and the gradients you claim.
* :func:`gradcheck_module` for a :class:`minitx.nn.Module`: it builds the
  scalar loss ``L = sum(out * G)`` with a fixed random ``G`` (so every output
  element matters), runs ``backward(G)``, and checks the input gradients and
  every parameter's gradient.

Example::

    >>> import numpy as np
    >>> from minitx.nn import Linear
    >>> from minitx.gradcheck import gradcheck_module
    >>> layer = Linear(3, 2, rng=np.random.default_rng(0), dtype=np.float64)
    >>> gradcheck_module(layer, np.ones((4, 3))).max_rel_error < 1e-6
    True
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .backend import CHECK_DTYPE, array_module, to_numpy


@dataclass
class GradcheckResult:
    """The outcome of a gradient check."""

    max_rel_error: float  # worst elementwise relative error over everything checked
    where: str  # e.g. "attn.qkv.weight[3, 7]"
    analytic: float  # the analytic gradient at that element
    numeric: float  # the finite-difference gradient at that element
    per_array: dict = field(default_factory=dict)  # name -> worst relative error in that array
    n_checked: int = 0

    def ok(self, tol: float = 1e-6) -> bool:
        return self.max_rel_error <= tol

    def __str__(self):
        return (f"gradcheck: worst relative error {self.max_rel_error:.2e} at {self.where} "
                f"(analytic {self.analytic:+.6e}, numeric {self.numeric:+.6e}; {self.n_checked} elements checked)")


def _pick_indices(size: int, max_elements: int | None, rng) -> np.ndarray:
    if max_elements is None or size <= max_elements:
        return np.arange(size)
    return np.sort(rng.choice(size, max_elements, replace=False))


def _stencil(loss_at, h: float) -> float:
    """Fourth-order central difference of ``loss_at(offset)`` at offset 0."""
    return (loss_at(-2 * h) - 8 * loss_at(-h) + 8 * loss_at(h) - loss_at(2 * h)) / (12 * h)


def _ridders(loss_at, h: float, shrink: float = 1.4, steps: int = 10) -> tuple[float, float]:
    """Ridders' extrapolation of central differences to h -> 0 (Numerical Recipes' dfridr).

    Row ``i`` of the tableau holds central differences at step h / shrink^i;
    each column ``j`` cancels the next even power of h, as Richardson does.
    Returns ``(estimate, error_estimate)``.
    """
    table = [[(loss_at(h) - loss_at(-h)) / (2 * h)]]
    best, best_err = table[0][0], float("inf")
    for i in range(1, steps):
        h /= shrink
        row = [(loss_at(h) - loss_at(-h)) / (2 * h)]
        factor = shrink * shrink
        for j in range(1, i + 1):
            row.append((row[j - 1] * factor - table[i - 1][j - 1]) / (factor - 1))
            factor *= shrink * shrink
            err = max(abs(row[j] - row[j - 1]), abs(row[j] - table[i - 1][j - 1]))
            if err <= best_err:
                best, best_err = row[j], err
        table.append(row)
        if abs(row[i] - table[i - 1][i - 1]) >= 2 * best_err:
            break  # higher orders are getting worse: round-off has taken over
    return best, best_err


def _careful_derivative(loss_at) -> float:
    """Ridders from a few starting steps; keep the one that reports the smallest error.

    A starting step wider than the region where the loss is smooth (a
    LayerNorm row with variance near eps) extrapolates from bad data, so no
    single start suits every function.
    """
    return min((_ridders(loss_at, h0) for h0 in (1e-2, 1e-3, 1e-4)), key=lambda r: r[1])[0]


def gradcheck(loss_fn, arrays: dict, analytic: dict, *, h: float = 1e-3, floor: float = 1e-4,
              max_elements: int | None = None, seed: int = 0) -> GradcheckResult:
    """Compare ``analytic[name]`` with finite differences of ``loss_fn()`` w.r.t. ``arrays[name]``.

    ``loss_fn()`` must return a scalar computed from the arrays *as they are
    now*; the checker perturbs them in place (and restores them). Arrays must
    be float64. ``max_elements`` samples that many elements per array
    (deterministically, from ``seed``) to bound the cost on big layers.
    """
    rng = np.random.default_rng(seed)
    worst = GradcheckResult(0.0, "nothing checked", 0.0, 0.0)
    for name, arr in arrays.items():
        if arr.dtype != CHECK_DTYPE:
            raise ValueError(f"gradcheck {name}: got dtype {arr.dtype}, expected float64")
        grad = to_numpy(analytic[name])
        if grad.shape != arr.shape:
            raise ValueError(f"gradcheck {name}: analytic gradient has shape {grad.shape}, expected {arr.shape}")
        flat = arr.reshape(-1)  # a view: writing to it perturbs arr
        if array_module(arr).shares_memory(flat, arr) is False:  # pragma: no cover - defensive
            raise ValueError(f"gradcheck {name}: expected a contiguous array")
        array_worst = 0.0
        for i in _pick_indices(flat.size, max_elements, rng):
            original = float(flat[i])

            def loss_at(offset):
                flat[i] = original + offset
                return float(loss_fn())

            a = float(grad.reshape(-1)[i])
            numeric = _stencil(loss_at, h)
            rel = abs(a - numeric) / max(abs(a), abs(numeric), floor)
            if rel > 1e-7:  # sharp curvature? measure again, more carefully
                numeric = _careful_derivative(loss_at)
                rel = abs(a - numeric) / max(abs(a), abs(numeric), floor)
            flat[i] = original
            worst.n_checked += 1
            array_worst = max(array_worst, rel)
            if rel > worst.max_rel_error or worst.where == "nothing checked":
                idx = np.unravel_index(i, arr.shape)
                worst.max_rel_error, worst.analytic, worst.numeric = rel, a, numeric
                worst.where = f"{name}[{', '.join(str(int(j)) for j in idx)}]"
        worst.per_array[name] = array_worst
    return worst


def gradcheck_module(module, *inputs, forward_kwargs: dict | None = None, check_inputs: bool = True,
                     seed: int = 0, **kwargs) -> GradcheckResult:
    """Gradient-check ``module`` at ``inputs`` (all float inputs and every parameter).

    The module must hold float64 parameters and be deterministic (eval mode,
    or dropout 0). ``backward`` may return one gradient or a tuple, matched in
    order to the float inputs. ``kwargs`` go to :func:`gradcheck`.
    """
    forward_kwargs = forward_kwargs or {}
    for name, p in module.named_parameters():
        if p.data.dtype != CHECK_DTYPE:
            raise ValueError(f"gradcheck_module {name}: got dtype {p.data.dtype}, expected a float64 module")

    def run():
        out = module.forward(*inputs, **forward_kwargs)
        return out[0] if isinstance(out, tuple) else out

    out = run()
    G = np.random.default_rng(seed + 1).standard_normal(out.shape).astype(CHECK_DTYPE)  # fixed upstream gradient
    G = array_module(out).asarray(G)
    module.zero_grad()
    dinputs = module.backward(G)
    if not isinstance(dinputs, tuple):
        dinputs = (dinputs,)

    arrays, analytic = {}, {}
    if check_inputs:
        float_inputs = [(i, x) for i, x in enumerate(inputs) if getattr(x, "dtype", None) is not None and x.dtype.kind == "f"]
        for (i, x), dx in zip(float_inputs, dinputs):
            arrays[f"input{i}"], analytic[f"input{i}"] = x, dx
    for name, p in module.named_parameters():
        if p.requires_grad:  # a frozen parameter has no gradient to check
            arrays[name], analytic[name] = p.data, p.grad.copy()

    def loss():
        return float((run() * G).sum())

    return gradcheck(loss, arrays, analytic, seed=seed, **kwargs)
