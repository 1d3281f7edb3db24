"""Run minitx's CUDA kernels on the CPU: a small SIMT emulator for tests.

CI has no GPU, yet the kernels in ``kernels/*.cu`` should not reach their
first GPU untested. This module compiles the *same source text* the GPU
compiles (:func:`minitx.cuda.loader.read_source`) with g++, behind the header
``minitx/cuda/simt.hpp``, which gives every CUDA word a CPU meaning: one
fiber per CUDA thread, barriers that park fibers, warp shuffles and the bf16
``mma.sync`` computed from the lanes' fragments by the PTX ISA tables (see
the header for the whole list, and for what it cannot catch).

Use it through :func:`activate`, which points :mod:`minitx.cuda.ops` at an
:class:`EmulatorRuntime`; the wrappers then take NumPy arrays and run the
whole path a GPU would run: input checks, launch arithmetic, argument
packing, the kernel::

    >>> import numpy as np
    >>> from minitx.cuda import emulator, ops
    >>> a = np.ones((5, 3), np.float32); b = np.ones((3, 2), np.float32)
    >>> with emulator.activate():                              # doctest: +SKIP
    ...     c = ops.matmul(a, b, version="v5_blocktile2d")     # 3.0 everywhere

Each launch also checks what a GPU would not report politely:

* the argument widths packed by :func:`minitx.cuda.launch.pack_args` equal
  the kernel's C parameter sizes (a wrong width scrambles every later
  argument on a GPU, silently);
* every pointer argument is copied to a buffer that ends at a guard page, and
  the dynamic shared memory too: a read or write past the end is reported
  with the block and thread that made it;
* outputs that ``ops`` allocates with ``empty`` start as NaN, so an element
  the kernel forgot to write shows up in the comparison;
* threads per block, shared memory and grid fit an sm_90 GPU.

``activate(order="reverse")`` runs the blocks, and the threads inside each
block, in reverse order: a kernel whose result depends on the order in
which threads happen to run (a missing ``__syncthreads``) gives a different
answer, which the tests compare against the reference in both orders.
``activate(cp_async="early")`` lands each ``cp.async`` copy when it is issued
instead of at the issuing thread's wait: the other legal extreme, which
exposes a copy into a buffer other warps are still reading. Between two
barriers, warps run one after another by default (``schedule="greedy"``,
as far apart as a barrier allows) or interleaved at every warp-wide
operation (``"lockstep"``). :func:`schedule_for` maps a test's seed to one
of the eight combinations.

The emulator needs g++ (C++17) and a POSIX system; :func:`available` says
whether this machine has them. Compiled kernels are cached under
``$MINITX_EMULATOR_CACHE`` (default ``~/.cache/minitx/emulator``), keyed by a
hash of everything that goes into the build.
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import mmap
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from . import launch, loader

HEADER = Path(__file__).with_name("simt.hpp")
CXX = os.environ.get("CXX", "g++")
#: -fsanitize=alignment with a trap: a float4 access at an address that is not a multiple of 16 (a fault
#: on the GPU, harmless on x86) stops the kernel with SIGILL, which the emulator reports.
CXXFLAGS = ("-std=c++17", "-O1", "-fPIC", "-shared", "-w", "-fno-strict-aliasing", "-ffp-contract=off",
            "-fsanitize=alignment", "-fsanitize-undefined-trap-on-error")
#: The GPU whose limits a launch is checked against (an H200: sm_90).
MAX_THREADS_PER_BLOCK = 1024
MAX_SMEM_PER_BLOCK = launch.MAX_SMEM_OPTIN[90]
#: The SM count the emulated device reports (small, so per-SM launch arithmetic runs several rows per block).
SM_COUNT = 4
PAGE = mmap.PAGESIZE


class EmulatorError(RuntimeError):
    """A kernel did something a GPU would punish: a fault, a deadlock, a divergent warp, a bad argument."""


def available() -> str | None:
    """``None`` if the emulator can run here, else the reason it cannot."""
    if sys.platform.startswith("win"):
        return "the CUDA emulator needs a POSIX system (ucontext fibers, guard pages)"
    if shutil.which(CXX) is None:
        return f"the CUDA emulator needs a C++17 compiler: {CXX!r} not found (set CXX)"
    return None


# --------------------------------------------------------------------------
# Building: kernel source -> shared library with a table of template instances
# --------------------------------------------------------------------------
# extern __shared__ [__align__(n)] <type words> <name>[];
_EXTERN_SHARED = re.compile(r"extern\s+__shared__\s+(?:__align__\(\d+\)\s+)?"
                            r"([\w:]+(?:\s+[\w:]+)*?)\s+(\w+)\s*\[\s*\]\s*;")


def translate(source_text: str) -> str:
    """The kernel text with its one construct g++ cannot take as is rewritten.

    ``extern __shared__ float smem[];`` (dynamic shared memory, sized at launch)
    becomes a pointer to the emulator's per-block buffer. Everything else is
    handled by macros in ``simt.hpp``.
    """
    return _EXTERN_SHARED.sub(lambda m: f"{m.group(1)}* {m.group(2)} = reinterpret_cast<{m.group(1)}*>"
                                         f"(minitx_emu::dynamic_smem());", source_text)


def program(source: str) -> str:
    """The whole C++ translation unit for ``kernels/<source>``, with every instance launch.py lists."""
    return program_text(loader.read_source(source), launch.name_expressions(source), f"kernels/{source}")


def program_text(kernel_text: str, expressions, origin: str = "kernel text") -> str:
    """A C++ translation unit: the header, the translated kernels, a table of ``expressions``."""
    entries = ",\n    ".join(f'MINITX_EMU_ENTRY("{e}", {e})' for e in expressions)
    return f"""// Generated by minitx.cuda.emulator from {origin}; do not edit.
#include "{HEADER}"

{translate(kernel_text)}

static const minitx_emu::Entry minitx_emu_table[] = {{
    {entries}
}};

extern "C" {{
int minitx_emu_count() {{ return (int)(sizeof minitx_emu_table / sizeof minitx_emu_table[0]); }}
const char* minitx_emu_name(int i) {{ return minitx_emu_table[i].name; }}
int minitx_emu_param_count(int i) {{ return minitx_emu_table[i].param_count; }}
unsigned long long minitx_emu_param_size(int i, int j) {{ return minitx_emu_table[i].param_sizes[j]; }}
int minitx_emu_launch(int i, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                      void* smem, unsigned long long smem_bytes, void** args, int mode, char* err, int errlen) {{
    dim3 grid{{gx, gy, gz}}, block{{bx, by, bz}};
    return minitx_emu::launch(minitx_emu_table[i], grid, block, smem, smem_bytes, args, mode, err, errlen);
}}
}}
"""


def cache_dir() -> Path:
    return Path(os.environ.get("MINITX_EMULATOR_CACHE", Path.home() / ".cache" / "minitx" / "emulator"))


class Module:
    """One compiled kernel source: its template instances by name expression."""

    def __init__(self, path: Path):
        self.lib = ctypes.CDLL(str(path))
        lib = self.lib
        lib.minitx_emu_name.restype = ctypes.c_char_p
        lib.minitx_emu_param_size.restype = ctypes.c_ulonglong
        lib.minitx_emu_launch.argtypes = [ctypes.c_int] + [ctypes.c_uint] * 6 + [
            ctypes.c_void_p, ctypes.c_ulonglong, ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        self.index = {lib.minitx_emu_name(i).decode(): i for i in range(lib.minitx_emu_count())}

    def param_sizes(self, name: str) -> list[int]:
        i = self.index[name]
        return [self.lib.minitx_emu_param_size(i, j) for j in range(self.lib.minitx_emu_param_count(i))]


@functools.lru_cache(maxsize=None)
def build(source: str) -> Module:
    """Compile ``kernels/<source>`` for the CPU (cached on disk by content hash)."""
    return compile_text(program(source), Path(source).stem)


def compile_text(text: str, stem: str = "kernels", defines: tuple[str, ...] = ()) -> Module:
    """Compile a translation unit from :func:`program_text` into a loaded :class:`Module`.

    ``defines``: extra ``-D`` macros, e.g. ``("MINITX_EMU_UCONTEXT",)`` for the
    portable (slower) fiber switch that non-x86-64 machines use.
    """
    reason = available()
    if reason:
        raise EmulatorError(reason)
    flags = (*CXXFLAGS, *(f"-D{d}" for d in defines))
    key = hashlib.sha256("\0".join([text, HEADER.read_text(), CXX, *flags]).encode()).hexdigest()[:20]
    out = cache_dir() / f"{stem}-{key}.so"
    if not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            cpp = Path(tmp) / f"{stem}.cpp"
            cpp.write_text(text, encoding="utf-8")
            so = Path(tmp) / out.name
            proc = subprocess.run([CXX, *flags, "-o", str(so), str(cpp)], capture_output=True, text=True)
            if proc.returncode != 0:
                raise EmulatorError(f"g++ could not compile {stem} for the emulator:\n{proc.stderr[-4000:]}")
            staged = out.with_name(f"{out.name}.{os.getpid()}.tmp")
            shutil.move(str(so), staged)
            os.replace(staged, out)  # atomic: a parallel build never sees half a library
    return Module(out)


# --------------------------------------------------------------------------
# Guarded memory: a copy of each buffer that ends exactly at a PROT_NONE page
# --------------------------------------------------------------------------
_libc = ctypes.CDLL(None, use_errno=True)
_libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]


#: Vector accesses (float4, uint4) need 16-byte alignment; guarded copies keep the original address mod this.
ALIGN = 16
SLACK_BYTE = b"\xff"  # 0xffffffff is a NaN as a float: reading the slack poisons the result


class Guarded:
    """``nbytes`` of memory that ends (almost) right before an inaccessible page.

    The copy starts at the same address modulo :data:`ALIGN` as the original
    (``like``), so a kernel's vectorised loads see the alignment they would
    see on the GPU; the fewer than ALIGN bytes of *slack* between the end and
    the guard page are filled with NaN bytes and checked for writes after the
    launch (:meth:`slack_written`). Reads and writes that go further fault.
    """

    def __init__(self, nbytes: int, like: int = 0):
        self.nbytes = nbytes
        self.slack = (-(nbytes + like)) % ALIGN  # end + slack is a multiple of ALIGN: addr == like (mod ALIGN)
        data_pages = -(-max(nbytes + self.slack, 1) // PAGE)
        self.map = mmap.mmap(-1, (data_pages + 1) * PAGE)
        self._anchor = ctypes.c_char.from_buffer(self.map)
        base = self.base = ctypes.addressof(self._anchor)
        if _libc.mprotect(base + data_pages * PAGE, PAGE, 0) != 0:
            raise OSError(ctypes.get_errno(), "mprotect failed for an emulator guard page")
        self.end = base + data_pages * PAGE - self.slack  # one past the last byte of the buffer
        self.addr = self.end - nbytes
        ctypes.memmove(self.end, SLACK_BYTE * self.slack, self.slack)

    def slack_written(self) -> bool:
        return ctypes.string_at(self.end, self.slack) != SLACK_BYTE * self.slack

    def close(self):
        _libc.mprotect(self.base, len(self.map), 3)  # readable and writable again before unmapping
        del self._anchor
        self.map.close()


def _extent(a: np.ndarray) -> tuple[int, int]:
    """(lowest, one-past-highest) byte address any element of ``a`` occupies."""
    lo = hi = a.ctypes.data
    for n, s in zip(a.shape, a.strides):
        if n == 0:
            return a.ctypes.data, a.ctypes.data
        if s > 0:
            hi += (n - 1) * s
        else:
            lo += (n - 1) * s
    return lo, hi + a.itemsize


# --------------------------------------------------------------------------
# The runtime minitx.cuda.ops launches through
# --------------------------------------------------------------------------
def _check_limits(where: str, cfg: launch.Launch, static_smem: int) -> None:
    """Refuse a launch an sm_90 GPU would refuse."""
    threads = int(np.prod(cfg.block))
    if threads > MAX_THREADS_PER_BLOCK:
        raise EmulatorError(f"{where}: {threads} threads per block, expected at most {MAX_THREADS_PER_BLOCK}")
    if cfg.shared_mem + static_smem > MAX_SMEM_PER_BLOCK:
        raise EmulatorError(f"{where}: {cfg.shared_mem} B dynamic + {static_smem} B static shared memory, "
                            f"expected at most {MAX_SMEM_PER_BLOCK}")
    if cfg.grid[0] > launch.INT32_MAX or cfg.grid[1] > 65535 or cfg.grid[2] > 65535:
        raise EmulatorError(f"{where}: grid {cfg.grid} exceeds the GPU's limits")



class PoisonedNumPy:
    """NumPy as the wrappers' array module, with ``empty`` returning NaN-filled arrays."""

    def __getattr__(self, name):
        return getattr(np, name)

    @staticmethod
    def _poison(a):
        if a.dtype.kind == "f":
            a.fill(np.nan)
        else:
            a.view(np.uint8).fill(0xAB)
        return a

    def empty(self, shape, dtype=np.float32, **kw):
        return self._poison(np.empty(shape, dtype=dtype, **kw))

    def empty_like(self, a, dtype=None, **kw):
        return self._poison(np.empty_like(a, dtype=dtype, **kw))


class EmulatorRuntime:
    """Launch kernels on the CPU emulator; arrays are NumPy arrays."""

    array_kind = "NumPy"

    def __init__(self, order: str = "forward", cp_async: str = "late", schedule: str = "greedy"):
        for name, value, allowed in (("order", order, ("forward", "reverse")),
                                     ("cp_async", cp_async, ("late", "early")),
                                     ("schedule", schedule, ("greedy", "lockstep"))):
            if value not in allowed:
                raise ValueError(f"emulator {name}: got {value!r}, expected {allowed[0]!r} or {allowed[1]!r}")
        self.reverse = order == "reverse"
        self.mode = ((1 if self.reverse else 0) | (2 if cp_async == "early" else 0)
                     | (4 if schedule == "lockstep" else 0))  # simt.hpp's MODE_* bits
        self.xp = PoisonedNumPy()
        self.launches = 0

    def ptr(self, x) -> int:
        return x.ctypes.data

    def sm_count(self) -> int:
        return SM_COUNT

    def launch(self, v: launch.Variant, cfg: launch.Launch, args: tuple) -> None:
        """What :mod:`minitx.cuda.ops` calls: build ``v.source`` (once) and run the instance."""
        self.run(build(v.source), v.name_expression, cfg, args, static_smem=v.static_smem)

    def run(self, module: Module, where: str, cfg: launch.Launch, args: tuple, static_smem: int = 0) -> None:
        """Launch ``where`` (a name expression in ``module``) with ``cfg``; ``args`` as pack_args makes them.

        Three steps: check the launch against the GPU's limits and the kernel's
        C signature; copy every array into guarded memory and build the
        ``void* args[]`` that cuLaunchKernel would take; run, then check the
        slack after each buffer and copy back what the kernel changed.
        """
        if where not in module.index:
            raise EmulatorError(f"{where}: not compiled into this module (have {sorted(module.index)})")
        _check_limits(where, cfg, static_smem)
        sizes = module.param_sizes(where)
        if len(sizes) != len(args):
            raise EmulatorError(f"{where}: packed {len(args)} arguments, the kernel takes {len(sizes)}")
        guards: list[tuple[Guarded, np.ndarray | None, int, int, bytes]] = []  # (copy, original, lo, hi, bytes)
        try:
            holders = [self._marshal(where, n, arg, size, guards) for n, (arg, size) in enumerate(zip(args, sizes))]
            argv = (ctypes.c_void_p * max(1, len(holders)))(
                *(ctypes.cast(ctypes.pointer(h), ctypes.c_void_p) for h in holders))
            smem = Guarded(cfg.shared_mem) if cfg.shared_mem else None  # dynamic shared memory, 16-byte aligned
            if smem:
                guards.append((smem, None, 0, 0, b""))
            err = ctypes.create_string_buffer(1024)
            rc = module.lib.minitx_emu_launch(module.index[where], *(int(d) for d in cfg.grid),
                                              *(int(d) for d in cfg.block), smem.addr if smem else None,
                                              cfg.shared_mem, ctypes.cast(argv, ctypes.c_void_p), self.mode,
                                              err, len(err))
            if rc != 0:
                raise EmulatorError(f"{where}: {self._explain(err.value.decode(), guards, args)}")
            for g, arg, *_ in guards:
                if g.slack_written():
                    which = "dynamic shared memory" if arg is None else self._name(arg, args)
                    raise EmulatorError(f"{where}: wrote within {ALIGN} bytes past the end of {which}")
            for g, arg, lo, hi, before in guards:  # copy back what the kernel changed
                if arg is not None and ctypes.string_at(g.addr, hi - lo) != before:
                    ctypes.memmove(lo, g.addr, hi - lo)
            self.launches += 1
        finally:
            for g, *_ in guards:
                g.close()

    @staticmethod
    def _marshal(where, n, arg, size, guards):
        """One argument's value as the kernel receives it (a ctypes object); arrays go to guarded copies."""
        if isinstance(arg, np.ndarray) and arg.ndim > 0:
            if size != 8:
                raise EmulatorError(f"{where} argument {n}: an array passed for a {size}-byte parameter")
            lo, hi = _extent(arg)
            g = Guarded(hi - lo, like=lo)
            guards.append((g, arg, lo, hi, ctypes.string_at(lo, hi - lo)))
            ctypes.memmove(g.addr, lo, hi - lo)
            return ctypes.c_uint64(g.addr + (arg.ctypes.data - lo))  # the pointer, into the copy
        scalar = np.asarray(arg)
        if scalar.dtype.itemsize != size:
            raise EmulatorError(f"{where} argument {n}: packed as {scalar.dtype} ({scalar.dtype.itemsize} bytes), "
                                f"the kernel's parameter has {size} bytes")
        return ctypes.create_string_buffer(scalar.tobytes(), size)

    @staticmethod
    def _explain(message: str, guards, args) -> str:
        """Name the buffer a faulting address ran off the end of."""
        m = re.search(r"memory fault at address 0x([0-9a-f]+)", message)
        if not m:
            return message
        addr = int(m.group(1), 16)
        for g, arg, lo, hi, _ in guards:
            if g.end <= addr < g.end + g.slack + PAGE:
                which = "dynamic shared memory" if arg is None else EmulatorRuntime._name(arg, args)
                return message.replace("memory fault", f"access {addr - g.end} bytes past the end of {which}, a fault")
        return message

    @staticmethod
    def _name(arg, args) -> str:
        return f"argument {next(i for i, a in enumerate(args) if a is arg)} (shape {arg.shape}, {arg.dtype})"


#: The eight legal schedules the tests cycle through, by ``seed % 8``: see :func:`schedule_for`.
SCHEDULES = tuple((order, land, sched) for sched in ("greedy", "lockstep") for land in ("late", "early")
                  for order in ("forward", "reverse"))


def schedule_for(seed: int) -> dict:
    """The emulator settings a test with this seed runs under (bit 0: order, bit 1: cp.async, bit 2: schedule)."""
    order, land, sched = SCHEDULES[seed % len(SCHEDULES)]
    return dict(order=order, cp_async=land, schedule=sched)


@contextlib.contextmanager
def activate(order: str = "forward", cp_async: str = "late", schedule: str = "greedy"):
    """Inside the block, :mod:`minitx.cuda.ops` runs every kernel on the CPU emulator over NumPy arrays.

    ``order``: threads and blocks run first-to-last or last-to-first.
    ``cp_async``: a copy lands at its thread's wait ("late") or when issued ("early").
    ``schedule``: each warp runs to the next ``__syncthreads`` before the next
    warp starts ("greedy"), or all warps advance together ("lockstep").
    """
    from . import ops  # noqa: PLC0415 - ops imports this package

    runtime = EmulatorRuntime(order, cp_async, schedule)
    with ops.use_runtime(runtime):
        yield runtime
