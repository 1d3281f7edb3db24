"""minitx's own CUDA kernels, reached through CuPy.

* :mod:`minitx.cuda.launch`    pure-Python launch arithmetic (grid, block,
  shared memory, argument dtypes) for every kernel variant; no CuPy needed.
* :mod:`minitx.cuda.loader`    reads ``kernels/*.cu``, inlines shared headers,
  compiles with ``cupy.RawModule`` (on a GPU) or ``cupy.cuda.nvrtc`` (on any
  machine, for the compile-and-spill check).
* :mod:`minitx.cuda.ops`       the launch wrappers: ``matmul``, ``softmax``,
  ``layernorm_*``, ``attention_*`` on CuPy arrays (or NumPy arrays under
  the emulator: ``ops.use_runtime``).
* :mod:`minitx.cuda.reference` NumPy twins of the tiled algorithms, so each
  algorithm is proven on a CPU before a GPU runs it.
* :mod:`minitx.cuda.occupancy` theoretical occupancy per variant from the
  compiler's register and shared-memory report (``python -m minitx.cuda.occupancy``).
* :mod:`minitx.cuda.emulator`  runs the CUDA source itself on the CPU (g++,
  one fiber per CUDA thread; ``simt.hpp`` gives each CUDA word its meaning),
  behind the same wrappers, so CI executes every kernel without a GPU.
"""
