"""Load the CUDA sources in ``kernels/`` and compile them.

Two paths, one set of options:

* At run time (a GPU present) :func:`get_function` builds a ``cupy.RawModule``
  from the source text with :data:`OPTIONS` and the template instances listed
  in :mod:`minitx.cuda.launch` as ``name_expressions``. CuPy caches the binary
  on disk under a hash of the source text and options.
* Anywhere (no GPU needed) :func:`nvrtc_compile` runs NVRTC directly through
  ``cupy.cuda.nvrtc`` with the options CuPy would end up using
  (:func:`runtime_options`), plus ``--ptxas-options=-v`` so that the
  assembler reports registers, shared memory and spills per kernel. The CI
  test compiles every source for sm_80 and sm_90 this way.

Headers: a line ``#include "name.cuh"`` is replaced by the text of
``kernels/name.cuh`` (once per header per source). CuPy hashes only the
source string it is given, so inlining is what makes a header edit
invalidate the cache.
"""
from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path

from . import launch

#: Where the .cu and .cuh files live: the repository's kernels/ (override with MINITX_KERNEL_DIR).
KERNEL_DIR = Path(os.environ.get("MINITX_KERNEL_DIR", Path(__file__).resolve().parents[2] / "kernels"))

#: Options minitx passes to RawModule. Stated explicitly: C++17 (CuPy 14's
#: default anyway), no fast-math (expf/logf stay accurate to ~1 ulp; the tests
#: compare with float64).
OPTIONS: tuple[str, ...] = ("--std=c++17",)

_INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"\s*$', re.MULTILINE)


def read_source(name: str, kernel_dir: Path | None = None) -> str:
    """The text of ``kernels/<name>`` with its local ``#include "x.cuh"`` lines inlined."""
    kernel_dir = Path(kernel_dir or KERNEL_DIR)
    path = kernel_dir / name
    if not path.is_file():
        raise FileNotFoundError(f"kernel source {name!r}: no file {path} (set MINITX_KERNEL_DIR to the kernels/ folder)")
    seen: set[str] = set()

    def expand(text: str) -> str:
        def repl(match):
            header = match.group(1)
            if header in seen:
                return f"// (already included: {header})"
            seen.add(header)
            hpath = kernel_dir / header
            if not hpath.is_file():
                raise FileNotFoundError(f"kernel header {header!r} included from {name}: no file {hpath}")
            body = hpath.read_text(encoding="utf-8").replace("#pragma once", "")
            return f"// ---- begin {header} ----\n{expand(body)}\n// ---- end {header} ----"

        return _INCLUDE.sub(repl, text)

    return expand(path.read_text(encoding="utf-8"))


def runtime_options(arch: int) -> tuple[str, ...]:
    """The options CuPy 14 compiles a RawModule with on a GPU of compute capability ``arch``.

    :data:`OPTIONS`, then what ``cupy.cuda.compiler`` appends on the NVRTC path:
    ``-ftz=true`` (flush subnormals; why the tests use inputs without them),
    ``-arch=sm_XX`` (straight to machine code) and
    ``--device-as-default-execution-space``.
    """
    return OPTIONS + ("-ftz=true", f"-arch=sm_{arch}", "--device-as-default-execution-space")


# --------------------------------------------------------------------------
# Compile without a GPU: NVRTC directly, with the assembler's resource report
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class Resources:
    """What ptxas reports for one kernel."""

    registers: int
    stack: int
    spill_stores: int
    spill_loads: int
    smem: int  # static shared memory, bytes


@dataclass
class CompileResult:
    source: str
    arch: int
    cubin: bytes
    log: str
    lowered: dict  # name expression -> mangled name
    resources: dict  # mangled name -> Resources

    def for_expression(self, expr: str) -> Resources:
        return self.resources[self.lowered[expr]]


_ENTRY = re.compile(r"Compiling entry function '([^']+)' for 'sm_(\d+)'")
_FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_USED = re.compile(r"Used (\d+) registers(?:.*?(\d+) bytes smem)?")


def parse_ptxas_log(log: str) -> dict:
    """``ptxas -v`` output -> ``{mangled name: Resources}``."""
    out, current, frame = {}, None, (0, 0, 0)
    for line in log.splitlines():
        m = _ENTRY.search(line)
        if m:
            current, frame = m.group(1), (0, 0, 0)
            continue
        m = _FRAME.search(line)
        if m and current:
            frame = tuple(int(g) for g in m.groups())
            continue
        m = _USED.search(line)
        if m and current:
            smem = int(m.group(2)) if m.group(2) else 0
            out[current] = Resources(int(m.group(1)), frame[0], frame[1], frame[2], smem)
            current = None
    return out


def nvrtc_compile(name: str, arch: int, extra_options: tuple[str, ...] = ()) -> CompileResult:
    """Compile ``kernels/<name>`` for ``sm_<arch>`` with NVRTC; needs CuPy and NVRTC, not a GPU.

    Results are cached per process by the source text (headers inlined), so
    the compile gate and the occupancy table share one compilation.
    """
    return nvrtc_compile_text(read_source(name), tuple(launch.name_expressions(name)), arch, name,
                              tuple(extra_options))


@functools.lru_cache(maxsize=None)
def nvrtc_compile_text(source: str, exprs: tuple[str, ...], arch: int, name: str = "kernel.cu",
                       extra_options: tuple[str, ...] = ()) -> CompileResult:
    """Compile CUDA ``source`` (headers already inlined) with the template instances ``exprs``."""
    from cupy.cuda import nvrtc  # noqa: PLC0415 - optional dependency

    prog = nvrtc.createProgram(source, name, [], [])
    try:
        for e in exprs:
            nvrtc.addNameExpression(prog, e)
        options = list(runtime_options(arch)) + ["--ptxas-options=-v", *extra_options]
        try:
            nvrtc.compileProgram(prog, options)
        except nvrtc.NVRTCError as exc:
            raise RuntimeError(f"NVRTC failed on {name} for sm_{arch}:\n{nvrtc.getProgramLog(prog)}") from exc
        log = nvrtc.getProgramLog(prog)
        lowered = {e: nvrtc.getLoweredName(prog, e) for e in exprs}
        cubin = nvrtc.getCUBIN(prog)
    finally:
        nvrtc.destroyProgram(prog)
    return CompileResult(name, arch, cubin, log, lowered, parse_ptxas_log(log))


# --------------------------------------------------------------------------
# Run time: RawModule
# --------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def get_module(name: str):
    """The ``cupy.RawModule`` for ``kernels/<name>`` (compiled on first use, cached by CuPy)."""
    import cupy  # noqa: PLC0415

    return cupy.RawModule(code=read_source(name), options=OPTIONS, name_expressions=launch.name_expressions(name))


@functools.lru_cache(maxsize=None)
def get_function(variant: launch.Variant):
    """The kernel for one variant, with its dynamic shared-memory ceiling raised when it needs > 48 KiB."""
    fn = get_module(variant.source).get_function(variant.name_expression)
    need = launch.max_dynamic_smem(variant)
    if need > launch.DEFAULT_SMEM_LIMIT:
        fn.max_dynamic_shared_size_bytes = need
    return fn
