"""The array backend: which library holds the numbers.

Every layer in minitx is written against an *array module* called ``xp``.
On a CPU that module is NumPy; on an NVIDIA GPU it is CuPy, which copies
NumPy's API function for function. Choosing it happens here and only here,
explicitly: nothing in minitx ever does ``try: import cupy as np``.

Three backends, chosen with :func:`set_backend`:

* ``"numpy"``   (default) CPU arrays; every op is the readable NumPy reference.
* ``"cupy"``    GPU arrays (CuPy); the same layer code runs on them, so matrix
  products go to cuBLAS and everything else to CuPy's own kernels.
* ``"kernels"`` GPU arrays too, but the hot ops (the matmuls inside Linear and
  the LM head, softmax, LayerNorm forward/backward, attention forward/backward)
  call minitx's own CUDA kernels (``kernels/*.cu`` through
  :mod:`minitx.cuda.ops`); everything else is CuPy as above.

The hot-path dispatch is one explicit test at the top of each functional
forward/backward (:func:`kernels_enabled`): "is the backend ``kernels`` and is
this a GPU array?". On NumPy arrays it is false, and the NumPy code below it
runs unchanged. Where a kernel does not cover a case (float64 for gradient
checks, dropout on attention weights, a dense ``attn_mask``, head size > 128,
...), :mod:`minitx.ops` says so in one predicate and the layer falls back to
its CuPy path, explicitly; :mod:`minitx.ops` lists every such case.

Devices are named ``"cpu"`` and ``"cuda"``; :func:`check_cuda` says why CUDA
is not usable on a machine, and ``Module.to(device)`` moves a model.

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

_BACKENDS = ("numpy", "cupy", "kernels")
#: The backends whose arrays live on the GPU (CuPy arrays).
GPU_BACKENDS = ("cupy", "kernels")
DEVICES = ("cpu", "cuda")
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

    ``name`` is ``"numpy"`` (CPU, the default), ``"cupy"`` (NVIDIA GPU,
    CuPy's ops and cuBLAS) or ``"kernels"`` (NVIDIA GPU, minitx's CUDA kernels
    for the hot ops; CuPy for the rest).
    """
    global _current
    if name not in _BACKENDS:
        raise ValueError(f"backend: got {name!r}, expected one of {_BACKENDS}")
    if name in GPU_BACKENDS:
        _import_cupy()
    _current = name


def get_backend() -> str:
    """The name of the selected backend: ``"numpy"``, ``"cupy"`` or ``"kernels"``."""
    return _current


def get_xp():
    """The module (numpy or cupy) that new arrays should be created with."""
    return _import_cupy() if _current in GPU_BACKENDS else numpy


def kernels_enabled(x) -> bool:
    """Should a hot op on ``x`` run minitx's CUDA kernels?

    True only when the backend is ``"kernels"`` *and* ``x`` is a CuPy array.
    This is the whole dispatch rule: layers call it once at the top of a
    functional forward/backward, and on NumPy arrays (or with the ``numpy``
    and ``cupy`` backends) it is false, so their own code runs unchanged.
    """
    return _current == "kernels" and type(x).__module__.startswith("cupy")


def check_cuda() -> str | None:
    """``None`` when CuPy is installed and sees a CUDA device, else the reason why not (one line)."""
    try:
        import cupy  # noqa: PLC0415
    except ImportError:
        return "CuPy is not installed"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # noqa: BLE001 - no driver, wrong driver, no device: all mean "no GPU here"
        first = str(exc).splitlines()[0] if str(exc) else ""
        return f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    return None if count > 0 else "CuPy sees 0 devices"


def device_of(a) -> str:
    """``"cuda"`` for a CuPy array, ``"cpu"`` for anything else."""
    return "cuda" if type(a).__module__.startswith("cupy") else "cpu"


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
    """Move an array to ``backend`` (default: the selected one).

    ``backend`` may also be a device name: ``"cuda"`` (same as ``"cupy"``) or
    ``"cpu"`` (same as ``"numpy"``). An array already there is returned as is.
    """
    backend = backend or _current
    if backend in GPU_BACKENDS or backend == "cuda":
        return _import_cupy().asarray(a)
    if backend not in ("numpy", "cpu"):
        raise ValueError(f"device: got {backend!r}, expected one of {DEVICES} or a backend in {_BACKENDS}")
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
