"""``minitx train-classifier | classify | train-tagger | tag | train-translator | translate``.

Train and use the encoder and encoder-decoder models from the command line::

    minitx train-classifier --out out/sentiment           # generated sentiment data
    minitx classify --checkpoint out/sentiment/ckpt "the plot was not bad at all"
    minitx train-tagger --out out/ner                     # generated NER data
    minitx tag --checkpoint out/ner/ckpt "maria lopez visited port alder"
    minitx train-translator --out out/tolan               # generated translation data
    minitx translate --checkpoint out/tolan/ckpt --beam 4 "the red cat sees a dog"

With no data flags the training commands use minitx's generated datasets
(:mod:`minitx.datasets`); ``--train FILE`` (and optionally ``--val``,
``--test``) trains on your own tab-separated files instead:

    train-classifier   label<TAB>text
    train-tagger       words<TAB>tags       (space-separated, one tag per word)
    train-translator   source<TAB>target

Without ``--val`` the last 10% of ``--train`` is held out. Bad input (a
malformed line, an unknown label, an empty source) is a one-line error with
exit code 2. The training options mirror ``minitx train``.

Register in :mod:`minitx.cli` with ``tasks_cli.add_parser`` (it adds all six);
until then ``python -m minitx.tasks_cli ...`` runs them.
"""
from __future__ import annotations

import argparse
import sys


# --------------------------------------------------------------------------
# shared options
# --------------------------------------------------------------------------
def _add_training_options(p, *, preset: str, max_iters: int, batch_size: int, lr: float, eval_interval: int,
                          label_smoothing: float):
    p.add_argument("--train", metavar="TSV", help="training data (default: minitx's generated dataset)")
    p.add_argument("--val", metavar="TSV", help="validation data (default: the last 10%% of --train)")
    p.add_argument("--test", metavar="TSV", help="test data, scored once at the end")
    p.add_argument("--n-train", type=int, default=None, help="generated data: training examples")
    p.add_argument("--data-seed", type=int, default=0, help="generated data: seed (default 0)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (metrics.jsonl, ckpt/)")
    p.add_argument("--preset", default=preset, help=f"model size (default {preset})")
    p.add_argument("--n-layer", type=int, help="override the preset's layer count")
    p.add_argument("--n-head", type=int)
    p.add_argument("--d-model", type=int)
    p.add_argument("--max-len", type=int)
    p.add_argument("--dropout", type=float)
    p.add_argument("--max-iters", type=int, default=max_iters)
    p.add_argument("--batch-size", type=int, default=batch_size)
    p.add_argument("--lr", type=float, default=lr)
    p.add_argument("--min-lr", type=float, default=None, help="default lr / 10")
    p.add_argument("--warmup-iters", type=int, default=100)
    p.add_argument("--beta2", type=float, default=0.98)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--eval-interval", type=int, default=eval_interval)
    p.add_argument("--label-smoothing", type=float, default=label_smoothing)
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")


def _train_config(args):
    from .train.trainer import TrainConfig

    return TrainConfig(batch_size=args.batch_size, max_iters=args.max_iters, lr=args.lr,
                       min_lr=args.lr / 10 if args.min_lr is None else args.min_lr, warmup_iters=args.warmup_iters,
                       beta2=args.beta2, weight_decay=args.weight_decay, eval_interval=args.eval_interval,
                       seed=args.seed)


def _model_overrides(args, *, encoder_only: bool) -> dict:
    out = {"n_head": args.n_head, "d_model": args.d_model, "max_len": args.max_len, "dropout": args.dropout}
    if encoder_only:
        out["n_layer"] = args.n_layer
    elif args.n_layer is not None:
        out["n_enc_layer"] = out["n_dec_layer"] = args.n_layer
    return out


def _split(rows, args):
    """Return ``(train, val, test)`` rows from ``--train/--val/--test`` files."""
    if len(rows) < 2 and not args.val:
        raise ValueError(f"--train {args.train}: {len(rows)} example(s), expected at least 2 (or pass --val)")
    if args.val:
        return rows, None, None
    k = max(1, len(rows) // 10)
    return rows[:-k], rows[-k:], None


def _texts(args) -> list[str]:
    """Inputs from positional TEXT arguments or ``--input FILE`` (one per line)."""
    from pathlib import Path

    texts = list(args.text)
    if args.input:
        path = Path(args.input)
        if not path.is_file():
            raise ValueError(f"--input {args.input!r}: not found, expected a text file")
        texts += [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not texts:
        raise ValueError("no input: expected TEXT arguments or --input FILE")
    return texts


def _add_input_options(p):
    p.add_argument("--checkpoint", required=True, metavar="DIR", help="a checkpoint folder (…/ckpt)")
    p.add_argument("text", nargs="*", help="input sentence(s)")
    p.add_argument("--input", metavar="FILE", help="read inputs from FILE, one per line")


def _print_scores(name: str, scores: dict) -> None:
    print(name + ": " + ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in scores.items()))


# --------------------------------------------------------------------------
# classification
# --------------------------------------------------------------------------
def cmd_train_classifier(args) -> int:
    from .datasets import bag_of_words_baseline, make_sentiment, read_tsv
    from .tasks.classify import TextClassifier

    if args.train:
        flip = lambda rows: [(text, label) for label, text in rows]  # noqa: E731 - files hold label<TAB>text
        train = flip(read_tsv(args.train, 2))
        val = flip(read_tsv(args.val, 2)) if args.val else None
        test = flip(read_tsv(args.test, 2)) if args.test else None
        n_labels = len({y for _, y in train})
        if n_labels > 2 and n_labels > len(train) // 2:
            raise ValueError(f"--train {args.train}: {n_labels} distinct labels in {len(train)} lines, expected a few "
                             "(the format is label<TAB>text; is the file text<TAB>label?)")
        if val is None:
            train, val, _ = _split(train, args)
    else:
        data = make_sentiment(args.n_train or 8000, seed=args.data_seed)
        train, val, test = data["train"], data["val"], data["test"]
    labels = args.labels.split(",") if args.labels else None
    if labels is None and test is not None:
        known = {y for _, y in train}
        for i, (_, y) in enumerate(test):
            if y not in known:
                raise ValueError(f"--test example {i + 1}: unknown label {y!r}, "
                                 f"expected one of {', '.join(sorted(known))}")
    clf = TextClassifier.fit(train, val, _train_config(args), preset=args.preset, pooling=args.pooling,
                             labels=labels, out_dir=args.out, label_smoothing=args.label_smoothing,
                             progress=not args.no_progress, **_model_overrides(args, encoder_only=True))
    _print_scores("val", clf.evaluate(val))
    if test is not None:
        for i, (_, y) in enumerate(test):
            clf.labels.encode(y, where=f"test example {i + 1}: ")
        _print_scores("test", clf.evaluate(test))
        print(f"test: bag-of-words baseline accuracy {bag_of_words_baseline(train, test):.4f}")
    print(f"checkpoint: {args.out}/ckpt")
    return 0


def cmd_classify(args) -> int:
    from .tasks.classify import TextClassifier

    clf = TextClassifier.load(args.checkpoint)
    texts = _texts(args)
    probs = clf.predict_proba(texts)
    for text, p in zip(texts, probs):
        print(f"{clf.labels.decode(p.argmax())}\t{p.max():.3f}\t{text}")
    return 0


# --------------------------------------------------------------------------
# tagging
# --------------------------------------------------------------------------
def cmd_train_tagger(args) -> int:
    from .datasets import make_ner, read_tsv
    from .tasks.tag import Tagger

    if args.train:
        split = lambda rows: [(w.split(), t.split()) for w, t in rows]  # noqa: E731
        train = split(read_tsv(args.train, 2))
        val = split(read_tsv(args.val, 2)) if args.val else None
        test = split(read_tsv(args.test, 2)) if args.test else None
        if val is None:
            train, val, _ = _split(train, args)
    else:
        data = make_ner(args.n_train or 6000, seed=args.data_seed)
        train, val, test = data["train"], data["val"], data["test"]
    tags = args.tags.split(",") if args.tags else None
    tagger = Tagger.fit(train, val, _train_config(args), preset=args.preset, tags=tags,
                        word_dropout=args.word_dropout, out_dir=args.out,
                        label_smoothing=args.label_smoothing, progress=not args.no_progress,
                        **_model_overrides(args, encoder_only=True))
    _print_scores("val", tagger.evaluate(val))
    if test is not None:
        from .tasks.tag import check_tagged

        check_tagged(test, tagger.tags, "test")
        _print_scores("test", tagger.evaluate(test))
    print(f"checkpoint: {args.out}/ckpt")
    return 0


def cmd_tag(args) -> int:
    from .tasks.tag import Tagger

    tagger = Tagger.load(args.checkpoint)
    sentences = [t.split() for t in _texts(args)]
    for words, tags in zip(sentences, tagger.predict(sentences)):
        print(" ".join(f"{w}/{t}" for w, t in zip(words, tags)))
    return 0


# --------------------------------------------------------------------------
# translation
# --------------------------------------------------------------------------
def _add_decoding_options(p):
    p.add_argument("--beam", type=int, default=0, metavar="N", help="beam search with N beams (default: greedy)")
    p.add_argument("--length-penalty", type=float, default=1.0, help="beam search: score / length**lp")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy; > 0 samples")
    p.add_argument("--top-k", type=int)
    p.add_argument("--top-p", type=float)
    p.add_argument("--seed", type=int, default=None, help="sampling seed")
    p.add_argument("--max-new-tokens", type=int, default=None)


def _check_decoding(args) -> None:
    from .generate import check_sampling_args

    if args.beam < 0:
        raise ValueError(f"--beam: got {args.beam}, expected an integer >= 1 (or 0 for greedy)")
    if args.beam and args.temperature:
        raise ValueError("--beam with --temperature: expected one of beam search or sampling")
    check_sampling_args(args.temperature, args.top_k, args.top_p, args.max_new_tokens)


def cmd_train_translator(args) -> int:
    from .datasets import make_translation, read_tsv
    from .tasks.translate import Translator

    if args.train:
        train = read_tsv(args.train, 2)
        val = read_tsv(args.val, 2) if args.val else None
        test = read_tsv(args.test, 2) if args.test else None
        if val is None:
            train, val, _ = _split(train, args)
    else:
        data = make_translation(args.n_train or 20000, seed=args.data_seed)
        train, val, test = data["train"], data["val"], data["test"]
    tr = Translator.fit(train, val, _train_config(args), preset=args.preset, share_embeddings=args.share_embeddings,
                        out_dir=args.out, label_smoothing=args.label_smoothing, progress=not args.no_progress,
                        **_model_overrides(args, encoder_only=False))
    _print_scores("val (greedy)", tr.evaluate(val))
    if test is not None:
        from .tasks.translate import check_pairs

        check_pairs(test, "test")
        _print_scores("test (greedy)", tr.evaluate(test))
        if args.eval_beam:
            _print_scores(f"test (beam {args.eval_beam})", tr.evaluate(test, beam=args.eval_beam))
    print(f"checkpoint: {args.out}/ckpt")
    return 0


def cmd_translate(args) -> int:
    from .tasks.translate import Translator

    _check_decoding(args)
    tr = Translator.load(args.checkpoint)
    texts = _texts(args)
    outputs = tr.translate(texts, beam=args.beam, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                           top_k=args.top_k, top_p=args.top_p, seed=args.seed, length_penalty=args.length_penalty)
    for out in outputs:
        print(out)
    return 0


# --------------------------------------------------------------------------
# registration
# --------------------------------------------------------------------------
def add_parser(sub) -> None:
    """Add the six task subcommands to ``minitx``'s subparsers."""
    p = sub.add_parser("train-classifier", help="train a sentence classifier (encoder; default: generated sentiment)")
    _add_training_options(p, preset="enc-small", max_iters=600, batch_size=32, lr=1e-3, eval_interval=200,
                          label_smoothing=0.0)
    p.add_argument("--pooling", choices=("first", "mean"), default="first")
    p.add_argument("--labels", help="comma-separated label set (default: the labels of --train)")
    p.set_defaults(func=cmd_train_classifier)

    p = sub.add_parser("classify", help="classify sentences with a trained classifier")
    _add_input_options(p)
    p.set_defaults(func=cmd_classify)

    p = sub.add_parser("train-tagger", help="train a token tagger (encoder; default: generated NER)")
    _add_training_options(p, preset="enc-small", max_iters=400, batch_size=32, lr=1e-3, eval_interval=100,
                          label_smoothing=0.0)
    p.add_argument("--tags", help="comma-separated tag set (default: the tags of --train)")
    p.add_argument("--word-dropout", type=float, default=0.1,
                   help="replace training words by <unk> with this probability (default 0.1)")
    p.set_defaults(func=cmd_train_tagger)

    p = sub.add_parser("tag", help="tag the words of sentences with a trained tagger")
    _add_input_options(p)
    p.set_defaults(func=cmd_tag)

    p = sub.add_parser("train-translator", help="train an encoder-decoder translator (default: generated data)")
    _add_training_options(p, preset="s2s-small", max_iters=1000, batch_size=64, lr=1e-3, eval_interval=250,
                          label_smoothing=0.1)
    p.add_argument("--share-embeddings", action="store_true", help="one joint vocabulary and embedding")
    p.add_argument("--eval-beam", type=int, default=4, help="also score the test set with this beam (0: skip)")
    p.set_defaults(func=cmd_train_translator)

    p = sub.add_parser("translate", help="translate sentences with a trained translator")
    _add_input_options(p)
    _add_decoding_options(p)
    p.set_defaults(func=cmd_translate)


def main(argv: list[str] | None = None) -> int:
    """Run one of these subcommands (what ``minitx`` does once they are registered)."""
    parser = argparse.ArgumentParser(prog="minitx", description="minitx task commands")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    add_parser(sub)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, OSError) as exc:
        print(f"minitx {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
