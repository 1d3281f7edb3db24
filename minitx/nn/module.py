"""Parameters and modules: the bookkeeping around the maths.

A :class:`Parameter` is an array we learn (``data``) plus the gradient of the
loss with respect to it (``grad``), accumulated by the backward pass.

A :class:`Module` is a layer. It owns parameters and sub-modules, and has two
methods that mirror each other:

* ``forward(x)`` computes the output and keeps, in ``self.cache``, exactly the
  tensors its backward pass will need;
* ``backward(dout)`` takes dL/d(output), **adds** dL/d(parameter) into each
  ``Parameter.grad`` and returns dL/d(input).

Gradients are *added*, never assigned, for two reasons: a parameter used twice
(GPT's token embedding is also its output head) collects both contributions,
and several micro-batches can be accumulated before one optimizer step. Call
:meth:`Module.zero_grad` before each step.

The maths itself lives in pure functions beside each module
(``linear_forward(x, W, b) -> (out, cache)``,
``linear_backward(dout, cache) -> (dx, dW, db)``), so every saved tensor is
visible and the same function serves several modules.

A parameter can be *frozen* (``requires_grad=False``, :meth:`Module.freeze`):
it keeps its value while the rest trains, which is what fine-tuning a part
of a pretrained model means (see ``docs/finetuning.md``).

Parameters are found by walking attributes in the order they were assigned,
which gives readable names such as ``blocks.0.attn.qkv.weight``: the names an
optimizer, a checkpoint and a weight importer all key on.
"""
from __future__ import annotations

from collections.abc import Iterator
from fnmatch import fnmatchcase

import numpy as np

from ..backend import DEVICES, array_module, check_cuda, to_device


class Parameter:
    """A learnable array and its gradient (same shape, same dtype, same device).

    ``requires_grad=False`` *freezes* it (see :meth:`Module.freeze`): the
    optimizer, gradient clipping and data parallelism then leave it alone,
    and layers may skip computing its gradient (``Linear`` does), so its
    ``grad`` means nothing while it is frozen. It is still a parameter:
    ``state_dict`` and checkpoints keep it.
    """

    __slots__ = ("data", "grad", "requires_grad")

    def __init__(self, data, requires_grad: bool = True):
        self.data = data
        self.grad = array_module(data).zeros_like(data)
        self.requires_grad = requires_grad

    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    def __repr__(self):
        frozen = "" if self.requires_grad else ", frozen"
        return f"Parameter(shape={tuple(self.data.shape)}, dtype={self.data.dtype}{frozen})"


class Module:
    """Base class of every layer: parameter discovery, train/eval, state dicts."""

    training: bool = True

    # ---- the two methods a layer implements -----------------------------
    def forward(self, *args, **kwargs):  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(self, dout):  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # ---- parameters -----------------------------------------------------
    def named_children(self) -> Iterator[tuple[str, "Module"]]:
        for name, value in vars(self).items():
            if isinstance(value, Module):
                yield name, value

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """Yield ``(dotted_name, Parameter)`` for this module and all below it.

        A parameter reachable twice (weight tying) is listed once, under the
        first name it is found by.
        """
        seen: set[int] = set()
        for name, p in self._walk(prefix):
            if id(p) not in seen:
                seen.add(id(p))
                yield name, p

    def _walk(self, prefix: str):
        for name, value in vars(self).items():
            full = f"{prefix}{name}"
            if isinstance(value, Parameter):
                yield full, value
            elif isinstance(value, Module):
                yield from value._walk(full + ".")

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, "Module"]]:
        """Yield ``(dotted_name, Module)`` for this module (named ``prefix``, "" at the top) and all below it.

        The names are those of :meth:`named_parameters` without the last part:
        module ``blocks.0.attn.qkv`` owns ``blocks.0.attn.qkv.weight``. A module
        reachable twice is listed once, under the first name it is found by.
        """
        seen: set[int] = set()
        stack = [(prefix, self)]
        while stack:
            name, m = stack.pop()
            if id(m) in seen:
                continue
            seen.add(id(m))
            yield name, m
            dot = f"{name}." if name else ""
            stack.extend((dot + child_name, child) for child_name, child in reversed(list(m.named_children())))

    def parameters(self) -> list[Parameter]:
        return [p for _, p in self.named_parameters()]

    def num_parameters(self) -> int:
        return sum(int(p.data.size) for p in self.parameters())

    def num_trainable_parameters(self) -> int:
        """How many numbers the optimizer updates: the parameters that are not frozen."""
        return sum(int(p.data.size) for p in self.parameters() if p.requires_grad)

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad[...] = 0

    # ---- freezing -------------------------------------------------------
    def freeze(self, pattern="*") -> list[str]:
        """Freeze the parameters whose names match ``pattern``; returns the names that changed.

        ``pattern`` is an :mod:`fnmatch` pattern over the dotted names of
        :meth:`named_parameters`, or a list of them: ``"*"`` is everything,
        ``"blocks.*"`` the whole stack, ``"*.bias"`` every bias. (``*``
        crosses dots, as in the shell's fnmatch, not in a path.) A frozen
        parameter keeps its value while the rest trains: fine-tuning a
        pretrained body freezes it, LoRA freezes everything but its
        adapters. A pattern that matches no parameter raises ValueError (a
        typo must not silently train everything).
        """
        return self._set_requires_grad(pattern, False, "freeze")

    def unfreeze(self, pattern="*") -> list[str]:
        """Undo :meth:`freeze` for the names matching ``pattern``; returns the names that changed."""
        return self._set_requires_grad(pattern, True, "unfreeze")

    def _set_requires_grad(self, pattern, value: bool, what: str) -> list[str]:
        patterns = list(pattern) if isinstance(pattern, (list, tuple)) else [pattern]
        if not patterns or not all(isinstance(p, str) for p in patterns):
            raise ValueError(f"{what}: got pattern {pattern!r}, expected an fnmatch pattern (str) or a list of them")
        named = list(self.named_parameters())
        for pat in patterns:
            if not any(fnmatchcase(name, pat) for name, _ in named):
                names = [name for name, _ in named]
                raise ValueError(f"{what}: pattern {pat!r} matches no parameter; expected one of the names "
                                 f"{names[:4]}{'...' if len(names) > 4 else ''} (fnmatch: * matches anything)")
        changed = []
        for name, p in named:
            if any(fnmatchcase(name, pat) for pat in patterns) and p.requires_grad != value:
                p.requires_grad = value
                p.grad[...] = 0  # whatever a frozen layer left there is not a gradient
                changed.append(name)
        return changed

    # ---- modes ----------------------------------------------------------
    def train(self, mode: bool = True) -> "Module":
        """Training mode (dropout active); returns self for chaining."""
        self.training = mode
        for _, child in self.named_children():
            child.train(mode)
        return self

    def eval(self) -> "Module":
        """Evaluation mode (dropout off)."""
        return self.train(False)

    # ---- devices --------------------------------------------------------
    def to(self, device: str) -> "Module":
        """Move every parameter (data *and* grad) and every array buffer to ``device``; returns self.

        ``device`` is ``"cpu"`` (NumPy arrays) or ``"cuda"`` (CuPy arrays).
        Buffers are plain array attributes such as the sinusoidal table of
        :class:`~minitx.nn.SinusoidalPositionalEncoding`. A parameter reached
        twice (GPT's tied ``wte``) is moved once, so it stays tied. Moving
        replaces ``p.data`` and ``p.grad`` by new arrays, so:

        * build the optimizer *after* moving (its moment buffers are created
          like ``p.data``), or load its state again;
        * caches of an earlier forward pass are not moved: run forward again;
        * dropout masks keep coming from the host generator (see
          :mod:`minitx.nn.dropout`), so the RNG state needs no move.

        Whether the GPU runs CuPy's ops or minitx's kernels is the backend's
        business (:func:`minitx.backend.set_backend`), not the module's.
        """
        if device not in DEVICES:
            raise ValueError(f"Module.to: got device {device!r}, expected one of {DEVICES}")
        if device == "cuda":
            reason = check_cuda()
            if reason is not None:
                raise ValueError(f"Module.to('cuda'): no CUDA device visible ({reason}); expected an NVIDIA GPU "
                                 "with CuPy installed: pip install minitx[cuda]")
        moved: set[int] = set()
        for module in self._modules():
            for name, value in list(vars(module).items()):
                if isinstance(value, Parameter) and id(value) not in moved:
                    moved.add(id(value))
                    value.data = to_device(value.data, device)
                    value.grad = to_device(value.grad, device)
                elif _is_array(value):
                    setattr(module, name, to_device(value, device))  # a buffer
        return self

    def _modules(self) -> Iterator["Module"]:
        """This module and every module below it, each once."""
        seen: set[int] = set()
        stack = [self]
        while stack:
            m = stack.pop()
            if id(m) in seen:
                continue
            seen.add(id(m))
            yield m
            stack.extend(child for _, child in reversed(list(m.named_children())))

    # ---- state ----------------------------------------------------------
    def state_dict(self) -> dict:
        """``{name: array}`` for every parameter (the arrays themselves, not copies)."""
        return {name: p.data for name, p in self.named_parameters()}

    def load_state_dict(self, state: dict, strict: bool = True) -> None:
        """Copy arrays into the parameters, checking names and shapes first.

        Everything is validated before anything is written, so a bad state
        dict leaves the module untouched.
        """
        params = dict(self.named_parameters())
        if strict:
            missing = sorted(set(params) - set(state))
            unexpected = sorted(set(state) - set(params))
            if missing or unexpected:
                raise ValueError(
                    f"state dict: missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
                    f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}; "
                    "expected exactly the module's parameter names"
                )
        for name, value in state.items():
            if name in params and tuple(value.shape) != tuple(params[name].data.shape):
                raise ValueError(
                    f"state dict: {name} has shape {tuple(value.shape)}, "
                    f"expected {tuple(params[name].data.shape)}"
                )
        for name, value in state.items():
            if name in params:
                xp = array_module(params[name].data)
                params[name].data[...] = xp.asarray(value, dtype=params[name].data.dtype)

    def __repr__(self):
        lines = [f"{type(self).__name__}("]
        for name, child in self.named_children():
            lines.append(f"  ({name}): " + repr(child).replace("\n", "\n  "))
        lines.append(")")
        return "\n".join(lines) if len(lines) > 2 else f"{type(self).__name__}()"


def _is_array(value) -> bool:
    """A NumPy or CuPy ndarray (not a scalar, not a cache tuple)."""
    return isinstance(value, np.ndarray) or (type(value).__name__ == "ndarray"
                                             and type(value).__module__.startswith("cupy"))


class ModuleList(Module):
    """A list of modules whose parameters are named ``0.…``, ``1.…`` and so on."""

    def __init__(self, modules=()):
        for i, m in enumerate(modules):
            setattr(self, str(i), m)
        self._n = len(modules)

    def __len__(self):
        return self._n

    def __getitem__(self, i: int) -> Module:
        if not -self._n <= i < self._n:
            raise IndexError(f"ModuleList index {i} out of range for length {self._n}")
        return getattr(self, str(i % self._n))

    def __iter__(self):
        return (getattr(self, str(i)) for i in range(self._n))
