"""The ``minitx`` command: one module per command group, in the order a learner meets them.

    minitx demo        build a tiny GPT, run forward + backward, gradient-check it    (demo.py)
    minitx tokenizer   train a BPE tokenizer / encode text with one                    (tokenizer.py)
    minitx train       train a GPT (no arguments: the README's main job)               (train.py)
    minitx generate    continue a prompt with a trained GPT                            (train.py)
    minitx train-classifier / classify     sentence classification (encoder)           (tasks.py)
    minitx train-tagger / tag              named-entity tagging (encoder)              (tasks.py)
    minitx train-translator / translate    translation (encoder-decoder, beam search)  (tasks.py)
    minitx embed / search   sentence embeddings and semantic search (HF encoder folder)  (pretrained.py)
    minitx bench       benchmark the CUDA kernels against cuBLAS and PyTorch (GPU)     (bench.py)

Flags that mean the same thing are defined once, in :mod:`minitx.cli.options`.
Errors a user can cause (a missing file, a bad flag value, a corrupted
checkpoint) are raised as :class:`~minitx.cli.errors.UsageError` (or
``ValueError``/``OSError``) and reported here as one line on stderr with
exit code 2: never a traceback. A training run that diverges is one line
and exit code 1; Ctrl-C is exit code 130.
"""
from __future__ import annotations

import argparse
import sys

from .errors import UsageError


def _registrars():
    # Imported here, not at the top: `minitx --help` should not pay for NumPy-heavy imports.
    from . import bench, demo, pretrained, tasks, tokenizer, train

    return [demo.add_parser, tokenizer.add_parser, train.add_parser, tasks.add_parser, pretrained.add_parser,
            bench.add_parser]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="minitx", description="minitx: a transformer library you can read.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for add in _registrars():
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from ..train.config import TrainingDiverged  # noqa: PLC0415 - a leaf module, no NumPy-heavy imports

    parser = build_parser()
    args = parser.parse_args(argv)  # argparse prints usage and exits 2 on a bad flag
    try:
        return int(args.func(args) or 0)
    except TrainingDiverged as exc:
        print(f"minitx {args.command}: {exc}", file=sys.stderr)
        return 1
    except (ValueError, OSError) as exc:  # UsageError is a ValueError
        print(f"minitx {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("minitx: interrupted", file=sys.stderr)
        return 130


__all__ = ["UsageError", "build_parser", "main"]

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
