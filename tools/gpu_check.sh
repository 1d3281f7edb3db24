#!/usr/bin/env bash
# The one prepared GPU check for minitx's CUDA kernels (issue 6).
#
#   tools/gpu_check.sh [OUTDIR]        (default: $OUT, else ./gpu_report)
#
# Runs on one GPU (sized for an H200: Python 3.12, CuPy 14.x for CUDA 13,
# PyTorch 2.11, no network) from the source tree, in under 6 minutes:
#   1. the GPU property tests (tests/test_kernels_gpu.py), the GPU training
#      tests (tests/test_gpu_training.py: a GPT step on the kernels and cupy
#      backends against numpy, KV-cache generation, checkpoints CPU <-> GPU,
#      `minitx train/generate --device cuda`), the dispatch tests and the CPU gate
#      (the CPU-emulator runs of the kernel tests are left to CI: -k "not emulator"),
#   2. `minitx bench kernels` (matmul 4096^3 ladder + sweep, attention T=4096,
#      softmax, LayerNorm) against cuBLAS / PyTorch.
# Writes into OUTDIR: report.md (GPU, driver, date, commit, test summary,
# benchmark table), tests.log, tests.xml, kernels.md, kernels.jsonl,
# kernels_ladder.png. Exit status: that of the tests (benchmarks are reported,
# not judged). Commit the report under benchmarks/ afterwards.
set -uo pipefail
cd "$(dirname "$0")/.."
OUTDIR=${1:-${OUT:-gpu_report}}
mkdir -p "$OUTDIR"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" CUPY_TF32=0 PYTHONUNBUFFERED=1 MPLBACKEND=Agg
COMMIT=${MINITX_COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}
PY=${PYTHON:-python3}
REPORT="$OUTDIR/report.md"

{
  echo "# minitx GPU check"
  echo
  echo "- date (UTC): $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "- commit: $COMMIT"
  echo "- GPU: $(nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader 2>/dev/null || echo 'nvidia-smi unavailable')"
  echo "- software: $($PY - <<'PY'
import platform, numpy
try:
    import cupy; cp = f"CuPy {cupy.__version__} (CUDA runtime {cupy.cuda.runtime.runtimeGetVersion()}, NVRTC {cupy.cuda.nvrtc.getVersion()})"
except Exception as e:
    cp = f"CuPy unavailable ({e})"
try:
    import torch; th = f"PyTorch {torch.__version__}"
except Exception:
    th = "PyTorch unavailable"
print(f"Python {platform.python_version()}, NumPy {numpy.__version__}, {cp}, {th}")
PY
)"
  echo
} > "$REPORT"

echo "== 1/2 tests ==" | tee -a "$OUTDIR/tests.log"
timeout 185 $PY -m pytest -q -p no:cacheprovider -rs tests/test_kernels_gpu.py tests/test_gpu_training.py \
  tests/test_backend_dispatch.py tests/test_kernels_cpu.py -k "not emulator" \
  --junitxml="$OUTDIR/tests.xml" 2>&1 | tee -a "$OUTDIR/tests.log"
TEST_RC=${PIPESTATUS[0]}
{
  echo "## Tests (exit status $TEST_RC)"
  echo
  echo '```'
  grep -E "passed|failed|error|skipped" "$OUTDIR/tests.log" | tail -5
  grep -E "^FAILED|^ERROR" "$OUTDIR/tests.log" | head -40
  echo '```'
  echo
} >> "$REPORT"

echo "== 2/2 benchmarks ==" | tee -a "$OUTDIR/tests.log"
timeout 165 $PY -c "from minitx.bench.kernels import run; run('$OUTDIR')" 2>&1 | tee "$OUTDIR/bench.log"
BENCH_RC=${PIPESTATUS[0]}
{
  echo "## Benchmarks (exit status $BENCH_RC; median of L2-flushed repetitions, CUDA events)"
  echo
  if [ -s "$OUTDIR/kernels.md" ]; then
    cat "$OUTDIR/kernels.md"
  elif [ -s "$OUTDIR/kernels.jsonl" ]; then  # cut short: every row measured so far is in the jsonl
    echo "(the benchmark stopped early; the rows it finished:)"
    echo
    $PY -c "from minitx.bench.kernels import markdown_from_jsonl; print(markdown_from_jsonl('$OUTDIR/kernels.jsonl'), end='')"
  else
    echo '```'; tail -30 "$OUTDIR/bench.log"; echo '```'
  fi
} >> "$REPORT"
echo
cat "$REPORT"
exit "$TEST_RC"
