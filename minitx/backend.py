"""The array backend: which library holds the numbers.

Every layer in minitx is written against an *array module* called ``xp``.
On a CPU that module is NumPy; on an NVIDIA GPU it is CuPy, which copies
NumPy's API function for function. Choosing it happens here and only here,
explicitly: nothing in minitx ever does ``try: import cupy as np``.

Two questions get answered in this file:

* "What module should I use to *create* new arrays?"  -> :func:`get_xp`
  (the backend the user selected with :func:`set_backend`).
* "What module do *these* arrays live in?"            -> :func:`array_module`
  (so a layer handed CuPy arrays does its maths in CuPy, whatever the default).

Example::

    >>> from minitx import backend
    >>> backend.get_backend()
    'numpy'
    >>> xp = backend.get_xp(); x = xp.ones((2, 3), dtype=backend.DEFAULT_DTYPE)
    >>> backend.array_module(x).__name__
    'numpy'
"""
from __future__ import annotations

import math

import numpy

#: Training and inference run in float32; gradient checks run in float64.
DEFAULT_DTYPE = numpy.float32
#: The dtype the gradient checker uses: central differences need its 52-bit mantissa.
CHECK_DTYPE = numpy.float64

_BACKENDS = ("numpy", "cupy")
_current = "numpy"


def _import_cupy():
    """Import CuPy on request, with an error that says how to get it."""
    try:
        import cupy  # noqa: PLC0415 - imported only when the user asks for the GPU
    except ImportError as exc:  # pragma: no cover - depends on the machine
        raise ValueError(
            "backend 'cupy' requested but CuPy is not installed; "
            "expected `pip install minitx[cuda]` (CUDA 13) or `minitx[cuda12]`"
        ) from exc
    return cupy


def set_backend(name: str) -> None:
    """Select the array library used to create parameters and buffers.

    ``name`` is ``"numpy"`` (CPU, the default) or ``"cupy"`` (NVIDIA GPU).
    """
    global _current
    if name not in _BACKENDS:
        raise ValueError(f"backend: got {name!r}, expected one of {_BACKENDS}")
    if name == "cupy":
        _import_cupy()
    _current = name


def get_backend() -> str:
    """The name of the selected backend: ``"numpy"`` or ``"cupy"``."""
    return _current


def get_xp():
    """The module (numpy or cupy) that new arrays should be created with."""
    return _import_cupy() if _current == "cupy" else numpy


def array_module(*arrays):
    """The module that ``arrays`` belong to: numpy, or cupy for GPU arrays.

    Layers call this on their inputs, so the same code runs on either device.
    Only looks at the type's module name, so it never imports CuPy itself.
    """
    for a in arrays:
        if type(a).__module__.startswith("cupy"):
            return _import_cupy()
    return numpy


def to_numpy(a):
    """Copy an array to host memory as a NumPy array (no-op for NumPy arrays)."""
    if type(a).__module__.startswith("cupy"):
        return a.get()
    return numpy.asarray(a)


def to_device(a, backend: str | None = None):
    """Move an array to ``backend`` (default: the selected one)."""
    backend = backend or _current
    if backend == "cupy":
        return _import_cupy().asarray(a)
    return to_numpy(a)


def erf(x):
    """The error function, elementwise, in the dtype of ``x``.

    NumPy has no ``erf`` of its own; SciPy is not a minitx dependency. On the
    CPU we therefore apply the C library's correctly rounded ``math.erf`` to
    each element. That is slow (a Python call per number), which is fine: the
    exact-erf GELU is a reference, the tanh form is the fast one. On the GPU,
    CuPy ships an ``erf`` kernel.
    """
    xp = array_module(x)
    if xp is not numpy:  # pragma: no cover - GPU only
        import cupyx.scipy.special  # noqa: PLC0415

        return cupyx.scipy.special.erf(x)
    flat = numpy.fromiter(map(math.erf, numpy.ravel(x).tolist()), dtype=numpy.float64, count=numpy.size(x))
    return flat.reshape(numpy.shape(x)).astype(x.dtype, copy=False)
