"""``minitx demo``: forward + backward through a tiny GPT, then a gradient check (see :mod:`minitx.demo`)."""
from __future__ import annotations


def add_parser(sub):
    p = sub.add_parser("demo", help="forward + backward through a tiny GPT, then gradient-check it",
                       description="Build a tiny GPT, run a forward and a backward pass on a random batch, print "
                                   "every parameter's gradient norm, then prove the backward pass right with the "
                                   "gradient checker in float64.")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from ..demo import run_demo  # noqa: PLC0415

    return 0 if run_demo(args.seed) <= 1e-6 else 1
