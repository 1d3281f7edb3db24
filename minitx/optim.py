"""Optimizers, the learning-rate schedule and gradient clipping.

After ``model.backward(dlogits)`` every :class:`~minitx.nn.module.Parameter`
holds its gradient ``p.grad``. An *optimizer* turns those gradients into a
change of ``p.data``. This module has the two every course needs:

* :class:`SGD`: plain gradient descent, optionally with momentum (a running
  average of past gradients that smooths the noise of small batches);
* :class:`AdamW`: Adam (a per-weight step size from running averages of the
  gradient and of its square) with *decoupled* weight decay; what GPT-2,
  nanoGPT and almost every transformer is trained with.

and the two helpers that make transformer training stable:

* :func:`cosine_with_warmup`: the learning rate as a function of the
  iteration: a short linear warmup (Adam's second-moment estimates are poor in
  the first steps, so big steps then are dangerous), then a cosine decay to a
  floor ``min_lr``;
* :func:`clip_grad_norm`: rescales all gradients together when their global
  L2 norm exceeds ``max_norm`` (one bad batch cannot throw the model far).

Frozen weights
--------------
A parameter with ``requires_grad=False`` (see
:meth:`minitx.nn.module.Module.freeze`) is not handed to the optimizer at
all: no moments, no decay, no step; :func:`clip_grad_norm` skips it too.
That is all fine-tuning a part of a model needs from this module.

Which weights decay
-------------------
Weight decay pulls weights towards zero. It helps the matrices (linear and
embedding weights: ``ndim >= 2``) and hurts the vectors (biases, LayerNorm
gains and shifts: ``ndim < 2``), whose job is to shift and scale, not to be
small. minitx makes that rule explicit: an optimizer is built from
``model.named_parameters()`` and splits them into two *parameter groups*
with :func:`split_decay_groups`; you can print ``opt.param_groups`` to see
which name went where. (nanoGPT and minGPT do the same.)

Worked example (a training step, with gradient accumulation)::

    opt = AdamW(model.named_parameters(), lr=1e-3, weight_decay=0.1)
    for it in range(max_iters):
        opt.lr = cosine_with_warmup(it, lr=1e-3, min_lr=1e-4,
                                    warmup_iters=100, max_iters=max_iters)
        model.zero_grad()
        for micro in range(accum_steps):          # gradient accumulation:
            x, y = data.get_batch("train", B, T, rng)
            loss, dlogits = ...                   # forward + loss
            model.backward(dlogits / accum_steps) # backward *adds* into .grad
        clip_grad_norm(model.parameters(), 1.0)
        opt.step()

Gradient accumulation needs nothing from the optimizer: backward passes
*add* into ``p.grad`` (see :mod:`minitx.nn.module`), so ``k`` micro-batches
whose loss gradients are each scaled by ``1/k`` leave in ``p.grad`` exactly
the gradient of the mean loss over the ``k`` micro-batches, as if one batch
``k`` times bigger had been used. Then clip, step once, and zero the grads.

Implementation rules (so the numbers match PyTorch and run on a GPU):

* ``p.data`` is updated **in place** (other code, e.g. a tied output head,
  holds a reference to the same array);
* every operation uses the parameter's own array module (NumPy or CuPy, see
  :func:`minitx.backend.array_module`) and is vectorised over the whole array;
* float32 stays float32: hyperparameters are kept as Python floats, which
  NumPy 2 treats as "weak" scalars that never upcast an array (a NumPy
  ``float64`` scalar would silently make the update float64).
"""
from __future__ import annotations

import math
from collections.abc import Iterable

from .backend import array_module, to_numpy

__all__ = [
    "Optimizer",
    "SGD",
    "AdamW",
    "split_decay_groups",
    "cosine_with_warmup",
    "clip_grad_norm",
]


# ---------------------------------------------------------------------------
# argument checks: errors name the argument, the value and what was expected
# ---------------------------------------------------------------------------
def _check_number(owner: str, name: str, value, *, low: float, high: float | None = None,
                  high_open: bool = False, low_open: bool = False) -> float:
    """Return ``value`` as a Python float, or raise a ValueError saying why not."""
    if high is None:
        expected = f"a finite number {'>' if low_open else '>='} {low}"
    else:
        expected = (f"a number in {'(' if low_open else '['}{low}, {high}"
                    f"{')' if high_open else ']'}")
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{owner}: {name}={value!r}, expected {expected}") from None
    bad = (
        not math.isfinite(x)
        or (x <= low if low_open else x < low)
        or (high is not None and (x >= high if high_open else x > high))
    )
    if bad:
        raise ValueError(f"{owner}: {name}={value!r}, expected {expected}")
    return x


def _check_int(owner: str, name: str, value, *, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) and not hasattr(value, "__index__"):
        raise ValueError(f"{owner}: {name}={value!r}, expected an integer >= {low}")
    v = int(value)
    if v < low:
        raise ValueError(f"{owner}: {name}={value!r}, expected an integer >= {low}")
    return v


# ---------------------------------------------------------------------------
# parameter groups: the weight-decay rule, in one visible place
# ---------------------------------------------------------------------------
def _named_list(owner: str, named_parameters) -> list:
    """Accept ``model.named_parameters()`` (or a Module), check it, and keep the trainable parameters.

    A frozen parameter (``requires_grad=False``) is left out here, once: it
    gets no moment buffers, no weight decay and no update, and the
    optimizer's checkpoint names only what it trains.
    """
    if hasattr(named_parameters, "named_parameters"):  # a Module was passed
        named_parameters = named_parameters.named_parameters()
    items = list(named_parameters)
    if not items:
        raise ValueError(f"{owner}: named_parameters is empty, expected at least one "
                         "(name, Parameter) pair, e.g. model.named_parameters()")
    seen_names, seen_ids = set(), set()
    for item in items:
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)
                and hasattr(item[1], "data") and hasattr(item[1], "grad")):
            raise ValueError(f"{owner}: named_parameters contains {item!r}, expected "
                             "(name, Parameter) pairs such as model.named_parameters() yields")
        name, p = item
        if name in seen_names or id(p) in seen_ids:
            raise ValueError(f"{owner}: parameter {name!r} is listed twice, expected each "
                             "parameter once (a tied weight must appear under one name)")
        if p.data.dtype.kind != "f":
            raise ValueError(f"{owner}: parameter {name!r} has dtype {p.data.dtype}, "
                             "expected a floating-point dtype")
        seen_names.add(name)
        seen_ids.add(id(p))
    trainable = [(name, p) for name, p in items if getattr(p, "requires_grad", True)]
    if not trainable:
        raise ValueError(f"{owner}: every one of the {len(items)} parameters is frozen, expected at least one "
                         "trainable parameter (see Module.unfreeze)")
    return trainable


def split_decay_groups(named_parameters: Iterable, weight_decay: float) -> list[dict]:
    """Split parameters into the two groups of the weight-decay rule.

    Returns ``[decay_group, no_decay_group]``, each a dict::

        {"name": "decay",    "weight_decay": weight_decay, "params": [(name, p), ...]}
        {"name": "no_decay", "weight_decay": 0.0,          "params": [(name, p), ...]}

    The rule: a parameter decays if and only if ``p.data.ndim >= 2`` (weight
    matrices and embedding tables); biases and LayerNorm parameters (vectors)
    never decay. Order inside each group is the order of ``named_parameters``.
    """
    decay, no_decay = [], []
    for name, p in named_parameters:
        (decay if p.data.ndim >= 2 else no_decay).append((name, p))
    return [
        {"name": "decay", "weight_decay": float(weight_decay), "params": decay},
        {"name": "no_decay", "weight_decay": 0.0, "params": no_decay},
    ]


def _host_copy(a):
    """A NumPy copy of ``a`` (for checkpoints: later steps must not change it)."""
    return a.get() if type(a).__module__.startswith("cupy") else a.copy()


# ---------------------------------------------------------------------------
# the optimizer base class
# ---------------------------------------------------------------------------
class Optimizer:
    """Shared bookkeeping: parameter groups, the learning rate, state save/restore.

    Subclasses define ``_state_names`` (the per-parameter buffers, e.g.
    ``("exp_avg", "exp_avg_sq")``), ``_hyper`` (their own hyperparameters,
    saved in checkpoints), ``_checked_hyper(**hyper)`` (validates them; used
    by the constructor and by :meth:`load_state_dict`) and
    ``_update(p, buffers, weight_decay)`` (the update rule for one parameter).
    """

    _state_names: tuple[str, ...] = ()
    _hyper: tuple[str, ...] = ()

    def __init__(self, named_parameters, *, lr: float, weight_decay: float):
        owner = type(self).__name__
        items = _named_list(owner, named_parameters)
        self.lr = lr  # validated by the property setter
        self.weight_decay = _check_number(owner, "weight_decay", weight_decay, low=0.0)
        self.param_groups = split_decay_groups(items, self.weight_decay)
        #: number of steps taken so far (Adam's bias correction uses it)
        self.step_count = 0
        #: per-parameter buffers, ``state[name][buffer_name] -> array``,
        #: same shape, dtype and device as the parameter.
        self.state: dict[str, dict] = {}
        for name, p in items:
            xp = array_module(p.data)
            self.state[name] = {b: xp.zeros_like(p.data) for b in self._state_names}

    # ---- the learning rate is set every step by the schedule -------------
    @property
    def lr(self) -> float:
        return self._lr

    @lr.setter
    def lr(self, value) -> None:
        # float(...) also turns a NumPy float64 scalar into a weak Python float.
        self._lr = _check_number(type(self).__name__, "lr", value, low=0.0)

    def named_parameters(self):
        """``(name, Parameter)`` for every parameter, decay group first."""
        for group in self.param_groups:
            yield from group["params"]

    def zero_grad(self) -> None:
        """Set every gradient to zero, in place."""
        for _, p in self.named_parameters():
            p.grad[...] = 0

    def step(self) -> None:
        """Apply one update to every parameter, from its current ``.grad``."""
        self.step_count += 1
        for group in self.param_groups:
            for name, p in group["params"]:
                self._update(p, self.state[name], group["weight_decay"])

    def _update(self, p, buffers: dict, weight_decay: float) -> None:  # pragma: no cover
        raise NotImplementedError

    # ---- checkpoints -----------------------------------------------------
    def state_dict(self) -> tuple[dict, dict]:
        """The optimizer state, ready for safetensors (arrays) and JSON (meta).

        Returns ``(arrays, meta)``:

        * ``arrays``: ``{"<param name>.<buffer>": numpy array}``, e.g.
          ``"blocks.0.attn.qkv.weight.exp_avg"``; host copies, so later steps
          do not change them;
        * ``meta``: JSON-able scalars: the optimizer's type, ``step_count``,
          hyperparameters and the parameter names of each group.
        """
        arrays = {
            f"{name}.{b}": _host_copy(buf)
            for name, buffers in self.state.items()
            for b, buf in buffers.items()
        }
        meta = {
            "type": type(self).__name__,
            "step_count": self.step_count,
            "lr": self.lr,
            "weight_decay": self.weight_decay,
            **{h: getattr(self, h) for h in self._hyper},
            "groups": {g["name"]: [n for n, _ in g["params"]] for g in self.param_groups},
        }
        return arrays, meta

    def load_state_dict(self, arrays: dict, meta: dict) -> None:
        """Restore what :meth:`state_dict` returned, copying into the existing buffers.

        Everything is checked before anything is written: the optimizer type,
        the parameter names, and every buffer's presence and shape. A mismatch
        raises ValueError and leaves this optimizer unchanged.
        """
        owner = type(self).__name__
        if meta.get("type") != owner:
            raise ValueError(f"{owner}.load_state_dict: meta type={meta.get('type')!r}, "
                             f"expected {owner!r}")
        groups = {g["name"]: [n for n, _ in g["params"]] for g in self.param_groups}
        if meta.get("groups") != groups:
            raise ValueError(f"{owner}.load_state_dict: the saved parameter groups do not match "
                             "this optimizer's; expected the same model (same parameter names)")
        expected = {f"{n}.{b}": buf for n, bs in self.state.items() for b, buf in bs.items()}
        missing = sorted(set(expected) - set(arrays))
        unexpected = sorted(set(arrays) - set(expected))
        if missing or unexpected:
            raise ValueError(f"{owner}.load_state_dict: missing {missing[:3]}, unexpected "
                             f"{unexpected[:3]}; expected exactly the buffers of this optimizer")
        for key, buf in expected.items():
            if tuple(arrays[key].shape) != tuple(buf.shape):
                raise ValueError(f"{owner}.load_state_dict: {key} has shape "
                                 f"{tuple(arrays[key].shape)}, expected {tuple(buf.shape)}")
        step_count = _check_int(owner, "step_count", meta.get("step_count"), low=0)
        try:
            lr = _check_number(owner, "lr", meta.get("lr"), low=0.0)
            weight_decay = _check_number(owner, "weight_decay", meta.get("weight_decay"), low=0.0)
            hyper = self._checked_hyper(**{h: meta[h] for h in self._hyper})
        except KeyError as exc:
            raise ValueError(f"{owner}.load_state_dict: meta has no {exc.args[0]!r}, expected "
                             "the meta dict returned by state_dict()") from None
        # all checked: now write
        for key, buf in expected.items():
            xp = array_module(buf)
            buf[...] = xp.asarray(arrays[key], dtype=buf.dtype)
        self.step_count = step_count
        self.lr = lr
        self.weight_decay = weight_decay
        self._set_hyper(hyper)
        self.param_groups[0]["weight_decay"] = weight_decay  # the "decay" group

    @staticmethod
    def _checked_hyper(**hyper) -> dict:  # overridden by subclasses
        return hyper

    def _set_hyper(self, hyper: dict) -> None:
        for key, value in hyper.items():
            setattr(self, key, value)

    def __repr__(self):
        groups = ", ".join(f"{g['name']}: {len(g['params'])} params (weight_decay="
                           f"{g['weight_decay']})" for g in self.param_groups)
        return f"{type(self).__name__}(lr={self.lr}, {groups})"


# ---------------------------------------------------------------------------
# SGD with momentum
# ---------------------------------------------------------------------------
class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum and weight decay.

    PyTorch's formulation (``torch.optim.SGD`` with ``dampening=0``)::

        g ← ∇θ + λ·θ                 (L2 weight decay, added to the gradient;
                                       only for the "decay" group, ndim >= 2)
        b ← μ·b + g                  (momentum buffer; b starts at 0, so b₁ = g₁)
        g ← g + μ·b  if nesterov, else  g ← b
        θ ← θ − lr·g

    With ``momentum=0`` this is the textbook ``θ ← θ − lr·∇θ``. Note that for
    SGD the decay is *coupled* (it passes through the momentum), unlike AdamW.
    """

    _hyper = ("momentum", "nesterov")  # _state_names is set per instance, below

    def __init__(self, named_parameters, *, lr: float = 1e-2, momentum: float = 0.0,
                 nesterov: bool = False, weight_decay: float = 0.0):
        self._set_hyper(self._checked_hyper(momentum=momentum, nesterov=nesterov))
        # plain SGD keeps no state; with momentum, one buffer per parameter
        self._state_names = ("momentum_buffer",) if self.momentum != 0.0 else ()
        super().__init__(named_parameters, lr=lr, weight_decay=weight_decay)

    @staticmethod
    def _checked_hyper(*, momentum, nesterov) -> dict:
        momentum = _check_number("SGD", "momentum", momentum, low=0.0, high=1.0, high_open=True)
        if not isinstance(nesterov, bool):
            raise ValueError(f"SGD: nesterov={nesterov!r}, expected True or False")
        if nesterov and momentum == 0.0:
            raise ValueError("SGD: nesterov=True with momentum=0.0, expected momentum > 0")
        return {"momentum": momentum, "nesterov": nesterov}

    def _update(self, p, buffers, weight_decay):
        xp = array_module(p.data)
        g = p.grad
        if weight_decay != 0.0:
            g = g + weight_decay * p.data  # a new array: p.grad itself is left alone
        if self.momentum != 0.0:
            b = buffers["momentum_buffer"]
            xp.multiply(b, self.momentum, out=b)  # b ← μ·b
            b += g                                # b ← μ·b + g
            g = g + self.momentum * b if self.nesterov else b
        p.data -= self.lr * g                     # θ ← θ − lr·g   (in place)


# ---------------------------------------------------------------------------
# AdamW
# ---------------------------------------------------------------------------
class AdamW(Optimizer):
    """Adam with decoupled weight decay (Loshchilov & Hutter, 2019).

    Defaults follow ``torch.optim.AdamW`` (``lr=1e-3, betas=(0.9, 0.999),
    eps=1e-8, weight_decay=0.01``); GPT training usually sets
    ``weight_decay=0.1`` and ``betas=(0.9, 0.95)`` (or ``0.99`` for tiny models).
    Decay applies only to the ``"decay"`` group (``ndim >= 2``), see
    :func:`split_decay_groups`.
    """

    _state_names = ("exp_avg", "exp_avg_sq")
    _hyper = ("betas", "eps")

    def __init__(self, named_parameters, *, lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.01):
        self._set_hyper(self._checked_hyper(betas=betas, eps=eps))
        super().__init__(named_parameters, lr=lr, weight_decay=weight_decay)

    @staticmethod
    def _checked_hyper(*, betas, eps) -> dict:
        try:
            beta1, beta2 = betas
        except (TypeError, ValueError):
            raise ValueError(f"AdamW: betas={betas!r}, expected a pair (beta1, beta2) "
                             "of numbers in [0, 1)") from None
        beta1 = _check_number("AdamW", "betas[0]", beta1, low=0.0, high=1.0, high_open=True)
        beta2 = _check_number("AdamW", "betas[1]", beta2, low=0.0, high=1.0, high_open=True)
        eps = _check_number("AdamW", "eps", eps, low=0.0)
        # betas as a list, so it round-trips through JSON unchanged
        return {"betas": [beta1, beta2], "eps": eps}

    def _update(self, p, buffers, weight_decay):
        # The update for one parameter θ with gradient g at step t (t = 1, 2, ...):
        #
        #   θ ← θ − lr·λ·θ                      decoupled weight decay (λ = 0 for vectors)
        #   m ← β₁·m + (1 − β₁)·g               first moment: running mean of g
        #   v ← β₂·v + (1 − β₂)·g²              second moment: running mean of g²
        #   m̂ = m / (1 − β₁ᵗ)                   bias correction: m and v start at 0,
        #   v̂ = v / (1 − β₂ᵗ)                   so early averages are too small
        #   θ ← θ − lr · m̂ / (√v̂ + ε)
        #
        # The last two lines are computed as PyTorch does, folding the corrections
        # into scalars:  θ ← θ − (lr / (1 − β₁ᵗ)) · m / (√v / √(1 − β₂ᵗ) + ε).
        xp = array_module(p.data)
        beta1, beta2 = self.betas
        lr, t, g = self.lr, self.step_count, p.grad
        m, v = buffers["exp_avg"], buffers["exp_avg_sq"]

        if weight_decay != 0.0:
            xp.multiply(p.data, 1.0 - lr * weight_decay, out=p.data)  # θ ← (1 − lr·λ)·θ
        xp.multiply(m, beta1, out=m)
        m += (1.0 - beta1) * g                                        # m ← β₁·m + (1−β₁)·g
        xp.multiply(v, beta2, out=v)
        v += (1.0 - beta2) * (g * g)                                  # v ← β₂·v + (1−β₂)·g²

        bias_correction1 = 1.0 - beta1**t                             # Python floats: no upcast
        bias_correction2_sqrt = math.sqrt(1.0 - beta2**t)
        step_size = lr / bias_correction1
        denom = xp.sqrt(v)                                            # new array, dtype of v
        denom /= bias_correction2_sqrt
        denom += self.eps                                             # √v̂ + ε
        p.data -= step_size * (m / denom)                             # θ ← θ − lr·m̂/(√v̂+ε)


# ---------------------------------------------------------------------------
# the learning-rate schedule
# ---------------------------------------------------------------------------
def cosine_with_warmup(it: int, *, lr: float, min_lr: float, warmup_iters: int,
                       max_iters: int) -> float:
    """Learning rate at iteration ``it``: linear warmup, then cosine decay to ``min_lr``.

    nanoGPT's schedule::

        it <  warmup_iters:  lr · (it + 1) / (warmup_iters + 1)   (never exactly 0)
        it >= max_iters:     min_lr
        otherwise:           min_lr + ½·(1 + cos(π·r))·(lr − min_lr),
                             r = (it − warmup_iters) / (max_iters − warmup_iters)

    Worked example (``lr=1e-3, min_lr=1e-4, warmup_iters=100, max_iters=2000``)::

        it=0    -> 9.9e-06   (1e-3 · 1/101)
        it=100  -> 1e-3      (warmup done: the peak)
        it=1050 -> 5.5e-4    (halfway down: (lr + min_lr) / 2)
        it=2000 -> 1e-4      (and 1e-4 for every later it)
    """
    name = "cosine_with_warmup"
    it = _check_int(name, "it", it, low=0)
    lr = _check_number(name, "lr", lr, low=0.0)
    min_lr = _check_number(name, "min_lr", min_lr, low=0.0, high=lr)
    warmup_iters = _check_int(name, "warmup_iters", warmup_iters, low=0)
    max_iters = _check_int(name, "max_iters", max_iters, low=warmup_iters)
    if it < warmup_iters:
        return lr * (it + 1) / (warmup_iters + 1)
    if it >= max_iters:
        return min_lr
    decay_ratio = (it - warmup_iters) / (max_iters - warmup_iters)  # in [0, 1)
    coeff = 0.5 * (1.0 + math.cos(math.pi * decay_ratio))           # 1 -> 0
    return min_lr + coeff * (lr - min_lr)


# ---------------------------------------------------------------------------
# gradient clipping
# ---------------------------------------------------------------------------
def clip_grad_norm(params: Iterable, max_norm: float) -> float:
    """Scale all gradients in place so that their global L2 norm is at most ``max_norm``.

    The global norm treats every gradient of every parameter as one long
    vector: ``total_norm = sqrt(Σ_p Σ_i grad_p[i]²)``. If it exceeds
    ``max_norm`` every gradient is multiplied by ``max_norm / (total_norm + 1e-6)``
    (PyTorch's ``clip_grad_norm_`` formula), which keeps the *direction* of the
    update and only shortens it. Returns the norm measured *before* clipping
    (a Python float; log it: spikes show instability), ``inf`` or ``nan`` if a
    gradient is not finite (gradients are then left as they are).

    ``params``: Parameters, or ``(name, Parameter)`` pairs, or a Module.
    Frozen parameters are left out: their ``grad`` is not a gradient.
    """
    max_norm = _check_number("clip_grad_norm", "max_norm", max_norm, low=0.0, low_open=True)
    if hasattr(params, "parameters"):
        params = params.parameters()
    params = [p[1] if isinstance(p, tuple) else p for p in params]
    grads = [p.grad for p in params if getattr(p, "requires_grad", True)]
    # Each parameter's norm in its own dtype and device; the sum of squares of
    # those few numbers in Python (float64), so no large array is upcast.
    total_sq = 0.0
    for g in grads:
        xp = array_module(g)
        total_sq += float(to_numpy(xp.linalg.norm(g.ravel()))) ** 2
    total_norm = math.sqrt(total_sq)
    if not math.isfinite(total_norm):
        return total_norm
    clip_coef = max_norm / (total_norm + 1e-6)
    if clip_coef < 1.0:
        for g in grads:
            g *= clip_coef
    return total_norm
