"""``minitx tokenizer``: train a BPE tokenizer, or encode text with one.

    minitx tokenizer train --vocab-size 4096 --output tok.model          # the embedded corpus
    minitx tokenizer train --input corpus.txt --vocab-size 4096 --output tok.model
    echo "Hello world" | minitx tokenizer encode --model tok.model
    echo "Hello world" | minitx tokenizer encode --model tok.model --show

``train`` writes ``tok.model`` (minitx's versioned text format) and
``tok.model.vocab`` (a readable listing). ``encode`` reads text on stdin and
prints the ids separated by spaces, or with ``--show`` the token pieces.
Mistakes (a missing file, a vocabulary too small, a damaged model) end with a
one-line error and exit code 2.
"""
from __future__ import annotations

import sys
from pathlib import Path

from ..tokenizer.patterns import PATTERNS
from .errors import UsageError


def add_parser(sub) -> None:
    p = sub.add_parser("tokenizer", help="train a BPE tokenizer or encode text with one", description="Train a BPE tokenizer, or encode text with one.")
    actions = p.add_subparsers(dest="tokenizer_command", metavar="ACTION")
    actions.required = True

    t = actions.add_parser("train", help="learn BPE merges from a text file")
    t.add_argument("--input", default=None,
                   help="UTF-8 text file to learn from (default: the embedded corpus, Python's standard-library "
                        "docstrings)")
    t.add_argument("--vocab-size", required=True, type=int, help="256 bytes + merges + special tokens")
    t.add_argument("--output", required=True, help="where to write the model (plus <output>.vocab)")
    t.add_argument("--overwrite", action="store_true", help="replace an existing model at --output")
    t.add_argument(
        "--pattern", default="gpt4", help=f"split pattern: {', '.join(PATTERNS)} or a regex (default: gpt4)"
    )
    t.add_argument("--special", action="append", default=[], metavar="TOKEN", help="a special token (repeatable; default: none)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=run_train)

    e = actions.add_parser("encode", help="encode stdin with a trained model")
    e.add_argument("--model", required=True, help="a model written by 'minitx tokenizer train'")
    e.add_argument("--show", action="store_true", help="print the token pieces instead of ids")
    e.add_argument(
        "--allowed-special",
        default="none_raise",
        choices=["none_raise", "all", "none"],
        help="what to do with special-token text in the input (default: refuse it)",
    )
    e.set_defaults(func=run_encode)


def _read_text(path: str) -> str:
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"--input: {path!r} does not exist or is not a file")
    try:
        return p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"--input: {path!r} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def run_train(args) -> int:
    minimum = 256 + len(args.special)
    if args.vocab_size < minimum:
        raise UsageError(
            f"--vocab-size: got {args.vocab_size}, expected at least {minimum} (256 byte tokens + {len(args.special)} special)"
        )
    if len(set(args.special)) != len(args.special) or any(not s for s in args.special):
        raise UsageError(f"--special: got {args.special!r}, expected distinct non-empty tokens")
    if args.input is None:
        from ..corpus import default_corpus  # noqa: PLC0415

        text = default_corpus()
    else:
        text = _read_text(args.input)
    out_dir = Path(args.output).resolve().parent
    if not out_dir.is_dir():
        raise UsageError(f"--output: directory {str(out_dir)!r} does not exist")
    # Checked before training, not after: minutes of work should not end in a refusal.
    existing = [p for p in (args.output, args.output + ".vocab") if Path(p).exists()]
    if existing and not args.overwrite:
        raise UsageError(f"--output: {existing[0]!r} already exists; pass --overwrite to replace it")
    from ..tokenizer import BPETokenizer  # noqa: PLC0415

    try:
        tok = BPETokenizer().train(
            text, args.vocab_size, pattern=args.pattern, special_tokens=args.special or None, progress=not args.quiet
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    tok.save(args.output)
    print(f"trained {tok!r}; wrote {args.output} and {args.output}.vocab", file=sys.stderr)
    if tok.vocab_size < args.vocab_size:  # training stops when no pair of tokens occurs twice: nothing to merge
        print(f"note: the vocabulary stopped at {tok.vocab_size} of the {args.vocab_size} asked for: no pair of "
              "adjacent tokens occurs twice in the text any more, so there is nothing left worth merging; "
              "a longer text gives more merges", file=sys.stderr)
    return 0


def run_encode(args) -> int:
    if not Path(args.model).is_file():
        raise UsageError(f"--model: {args.model!r} does not exist or is not a file")
    from ..tokenizer import BPETokenizer, render_token  # noqa: PLC0415

    tok = BPETokenizer.load(args.model)
    text = sys.stdin.read()
    ids = tok.encode(text, allowed_special=args.allowed_special)
    if args.show:
        print("".join(f"[{render_token(tok.vocab[i])}]" for i in ids))
    else:
        print(" ".join(map(str, ids)))
    return 0
