"""``minitx bench``: benchmark harnesses. ``minitx bench kernels`` needs a CUDA GPU and CuPy
(or ``--device emulator`` for a CPU dry run of the harness)."""
from __future__ import annotations

import sys


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("bench", help="benchmarks (kernels: minitx CUDA kernels vs cuBLAS / SDPA)")
    sub = p.add_subparsers(dest="bench_command", metavar="BENCH")
    sub.required = True
    k = sub.add_parser("kernels", help="time every kernel variant against its baseline (needs a GPU)")
    k.add_argument("--out", default="benchmarks/kernels_out", help="folder for kernels.jsonl, kernels.md, plot (default benchmarks/kernels_out)")
    k.add_argument("--ops", default="matmul,attention,rows",
                   help="comma-separated subset of: matmul, attention, rows (softmax + LayerNorm) (default: all three)")
    k.add_argument("--quick", action="store_true", help="small shapes (a smoke test, not the reported figures)")
    k.add_argument("--budget", type=float, default=0.6, help="seconds of repetitions per measurement (default 0.6)")
    k.add_argument("--device", choices=("cuda", "emulator"), default="cuda",
                   help="cuda (default), or emulator: a CPU dry run of the harness at tiny shapes, timings meaningless")
    k.set_defaults(func=_kernels)


def _kernels(args) -> int:
    ops = tuple(o.strip() for o in args.ops.split(",") if o.strip())
    bad = set(ops) - {"matmul", "attention", "rows"}
    if bad:
        raise ValueError(f"--ops: got {sorted(bad)}, expected a subset of matmul, attention, rows")
    if args.device == "emulator":
        from minitx.cuda import emulator  # noqa: PLC0415

        if emulator.available():
            raise ValueError(f"bench kernels --device emulator: {emulator.available()}")
    else:
        try:
            import cupy  # noqa: PLC0415

            if cupy.cuda.runtime.getDeviceCount() < 1:
                raise RuntimeError("no device")
        except Exception as exc:  # noqa: BLE001
            raise ValueError(f"bench kernels needs CuPy and a CUDA GPU ({type(exc).__name__}: {exc}); "
                             "--device emulator runs the harness on the CPU") from exc
    from minitx.bench.kernels import run  # noqa: PLC0415

    rows = run(args.out, ops, quick=args.quick, budget_s=args.budget, device=args.device)
    print(f"wrote {args.out}/kernels.md and kernels.jsonl")
    for failure in rows.failures:
        print(f"minitx bench kernels: section failed: {failure}", file=sys.stderr)
    return 1 if rows.failures else 0
