"""The ``minitx`` command: one module per command group, in the order a learner meets them.

    minitx demo        build a tiny GPT, run forward + backward, gradient-check it    (demo.py)
    minitx tokenizer   train a BPE tokenizer / encode text with one                    (tokenizer.py)
    minitx train       train a GPT (no arguments: the README's main job)               (train.py)
    minitx generate    continue a prompt with a trained GPT                            (train.py)
    minitx prompt      build a prompt from parts, count its tokens against the window  (prompt.py)
    minitx train-classifier / classify     sentence classification (encoder)           (tasks.py)
    minitx train-tagger / tag              named-entity tagging (encoder)              (tasks.py)
    minitx train-translator / translate    translation (encoder-decoder, beam search)  (tasks.py)
    minitx embed / search   sentence embeddings and semantic search (HF encoder folder)  (pretrained.py)
    minitx finetune    fine-tune a trained model: full, a new head, or LoRA            (finetune.py)
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
import difflib
import re
import sys

from .errors import UsageError


class _Parser(argparse.ArgumentParser):
    """argparse, with "did you mean" for a mistyped command name (argparse exits 2 with one message)."""

    def error(self, message):
        m = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if m:
            choices = re.findall(r"'([^']*)'", m.group(2)) or [c.strip() for c in m.group(2).split(",")]
            close = difflib.get_close_matches(m.group(1), choices, n=1)
            if close:
                message += f"; did you mean {close[0]!r}?"
        super().error(message)


def _leaves(parser):
    """Every (sub)parser below ``parser``, each told to remember itself (``args._parser``)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                sub.set_defaults(_parser=sub)
                yield sub
                yield from _leaves(sub)


def _unknown_flags(args, extras) -> None:
    """A flag the command does not have: its own usage and the nearest flag it does have, then exit 2."""
    parser = args._parser
    flag = extras[0].split("=", 1)[0]
    known = [o for a in parser._actions for o in a.option_strings if o.startswith("--")]
    close = difflib.get_close_matches(flag, known, n=1, cutoff=0.6) if flag.startswith("-") else []
    hint = f"; did you mean {close[0]}?" if close else ""
    parser.error(f"unrecognized argument{'s' if len(extras) > 1 else ''}: {' '.join(extras)}{hint}")


def _registrars():
    # Imported here, not at the top: `minitx --help` should not pay for NumPy-heavy imports.
    from . import bench, demo, finetune, pretrained, prompt, tasks, tokenizer, train

    return [demo.add_parser, tokenizer.add_parser, train.add_parser, prompt.add_parser, tasks.add_parser,
            pretrained.add_parser, finetune.add_parser, bench.add_parser]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="minitx", description="minitx: a transformer library you can read.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for add in _registrars():
        add(sub)
    parser.set_defaults(_parser=parser)
    list(_leaves(parser))
    return parser


def main(argv: list[str] | None = None) -> int:
    from ..train.config import TrainingDiverged  # noqa: PLC0415 - a leaf module, no NumPy-heavy imports

    parser = build_parser()
    args, extras = parser.parse_known_args(argv)  # argparse prints usage and exits 2 on a bad value
    if extras:
        _unknown_flags(args, extras)
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
