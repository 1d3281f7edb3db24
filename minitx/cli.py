"""The ``minitx`` command.

Each subcommand lives next to the code it drives and registers itself through
an ``add_parser(subparsers)`` function, so this file stays a table of contents:

    minitx demo        build a tiny GPT, run forward + backward, gradient-check it
    minitx tokenizer   train a BPE tokenizer / encode text with one
    minitx train       train a GPT (no arguments: the README's main job)
    minitx generate    sample from a trained GPT checkpoint
    minitx train-classifier / classify     sentiment-style classification (encoder)
    minitx train-tagger / tag              named-entity tagging (encoder)
    minitx train-translator / translate    translation (encoder-decoder, beam search)
    minitx bench       benchmark the CUDA kernels against cuBLAS and PyTorch (GPU)

Errors a user can cause (a missing file, a bad flag value, a corrupted
checkpoint) are raised as :class:`UsageError` (or ``ValueError``/``OSError``)
and reported here as one line on stderr with exit code 2: never a traceback.
"""
from __future__ import annotations

import argparse
import sys


class UsageError(ValueError):
    """A problem with what the user asked for; the CLI prints it and exits 2."""


class _Parser(argparse.ArgumentParser):
    """argparse already exits 2 on bad flags; keep its one-line message."""


def _registrars():
    # Imported lazily: `minitx --help` should not pay for NumPy-heavy imports.
    from minitx import demo, tasks_cli
    from minitx.bench import cli as bench_cli
    from minitx.tokenizer import cli as tokenizer_cli
    from minitx.train import cli as train_cli

    return [demo.add_parser, tokenizer_cli.add_parser, train_cli.add_parser, tasks_cli.add_parser,
            bench_cli.add_parser]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="minitx", description="minitx: a transformer library you can read.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for add in _registrars():
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, OSError) as exc:  # UsageError is a ValueError
        print(f"minitx {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("minitx: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
