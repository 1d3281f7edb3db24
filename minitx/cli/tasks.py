"""``minitx train-classifier | classify | train-tagger | tag | train-translator | translate``.

Train and use the encoder and encoder-decoder models from the command line::

    minitx train-classifier --out out/sentiment           # generated sentiment data
    minitx classify --checkpoint out/sentiment "the plot was not bad at all"
    minitx train-tagger --out out/ner                     # generated NER data
    minitx tag --checkpoint out/ner "maria lopez visited port alder"
    minitx train-translator --out out/tolan               # generated translation data
    minitx translate --checkpoint out/tolan --beam 4 "the red cat sees a dog"

With no data flags the training commands use minitx's generated datasets
(:mod:`minitx.datasets`); ``--train FILE`` (and optionally ``--val``,
``--test``) trains on your own tab-separated files instead:

    train-classifier   label<TAB>text
    train-tagger       words<TAB>tags       (space-separated, one tag per word)
    train-translator   source<TAB>target

Without ``--val`` the last 10% of ``--train`` is held out. Bad input (a
malformed line, an unknown label, an empty source) is a one-line error with
exit code 2. The training, model and run-folder options are ``minitx
train``'s (:mod:`minitx.cli.options`), with each task's own defaults; a run
folder holds ``ckpt/`` (the latest state, for ``--resume``) and ``best/``
(the model with the best validation metric, which ``classify``, ``tag`` and
``translate`` load when given the folder). ``--threads`` and ``mpiexec``
make training data-parallel, as for ``minitx train``.
"""
from __future__ import annotations

import os
import sys


from pathlib import Path

from .errors import UsageError
from .options import (add_adapter_option, add_model_options, add_run_options, add_training_options, announce, given,
                      interrupted_message, load_finetuned_or_none, parallel_plan, train_config)

#: Each task's training defaults (what the flags default to).
DEFAULTS = {
    "train-classifier": dict(preset="enc-small", n_train=8000, max_iters=600, batch_size=32, lr=1e-3, eval_interval=200),
    "train-tagger": dict(preset="enc-small", n_train=6000, max_iters=400, batch_size=32, lr=1e-3, eval_interval=100),
    "train-translator": dict(preset="s2s-small", n_train=20000, max_iters=1000, batch_size=64, lr=1e-3, eval_interval=250,
                             label_smoothing=0.1),
}
_COMMON = dict(min_lr="lr/10", warmup_iters=100, beta2=0.98, weight_decay=0.01, seed=1337)
if os.environ.get("MINITX_MAIN_JOB_FAST") == "1":  # the README test: the same steps, seconds instead of minutes
    for _defaults in DEFAULTS.values():
        _defaults.update(max_iters=4, eval_interval=4, n_train=200)
    _COMMON.update(warmup_iters=2)
#: Config fields a task's ``fit`` derives from the data (the vocabulary sizes, the special ids).
SET_BY_FIT = ("vocab_size", "pad_id", "src_vocab_size", "tgt_vocab_size", "share_embeddings", "bos_id", "eos_id")
#: ``--flag`` dest -> the encoder / seq2seq config field.
ARCH_FIELDS = {"n_layer": "n_layer", "n_head": "n_head", "d_model": "d_model", "block_size": "max_len",
               "dropout": "dropout"}


# --------------------------------------------------------------------------
# shared options
# --------------------------------------------------------------------------
def _add_task_training(p, command: str):
    defaults = {**_COMMON, **DEFAULTS[command]}
    g = p.add_argument_group("data")
    g.add_argument("--train", metavar="TSV", help="training data (default: minitx's generated dataset)")
    g.add_argument("--val", metavar="TSV", help="validation data (default: the last 10%% of --train)")
    g.add_argument("--test", metavar="TSV", help="test data, scored once at the end (default: generated, or none)")
    g.add_argument("--n-train", type=int, default=None, help="generated data: training examples (default: the "
                                                             "task's)")
    g.add_argument("--data-seed", type=int, default=0, help="generated data: seed (default 0)")
    add_model_options(p, {"preset": defaults["preset"]}, preset_help="model size")
    add_training_options(p, defaults)
    add_run_options(p, out_default=None)
    p.set_defaults(task_defaults=defaults)


def _plan(args):
    """Everything decided before the data is read: the run folder rule, the parallel plan, the config."""
    from ..train.checkpoint import check_run_folder, load_checkpoint  # noqa: PLC0415

    threads, comm = parallel_plan(args, "cpu")
    check_run_folder(args.out, resume=args.resume, overwrite=args.overwrite)
    meta = load_checkpoint(Path(args.out) / "ckpt")[2] if args.resume else {}
    if args.resume:
        if args.preset is not None:
            raise UsageError("--preset: not allowed with --resume (the checkpoint fixes the model)")
        fixed = {k: v for k, v in (meta.get("config") or {}).items() if k not in SET_BY_FIT}
        for name, value in given(args, ARCH_FIELDS).items():
            field = ARCH_FIELDS[name]
            if field in fixed and fixed[field] != value:
                raise UsageError(f"--{name.replace('_', '-')} {value}: the checkpoint has {field}={fixed[field]}; "
                                 "expected the checkpoint's architecture when resuming")
        args.resume_config = fixed
    config = train_config(args, args.task_defaults, meta.get("train"))
    return config, threads, comm


def _fit_options(args, threads, comm) -> dict:
    """Keyword arguments every task's ``fit`` takes from the command line."""
    overrides = getattr(args, "resume_config", None) or {ARCH_FIELDS[k]: v for k, v in given(args, ARCH_FIELDS).items()}
    return dict(preset=args.preset or args.task_defaults["preset"], out_dir=args.out, resume=args.resume,
                threads=threads, comm=comm, progress=not args.no_progress and comm.rank == 0,
                log=announce(comm), **overrides)


#: What each generated dataset is, for the header a training command prints.
GENERATED = {
    "train-classifier": "generated movie reviews labelled positive/negative (minitx.datasets.sentiment: negation, "
                        "'but' and concessions, so counting words is not enough)",
    "train-tagger": "generated news-like sentences with people and places tagged B-/I-PER, B-/I-LOC "
                    "(minitx.datasets.ner)",
    "train-translator": "generated English-like sentences and their translations into Tolan, a made-up language "
                        "with gendered articles, adjectives after the noun and the verb last "
                        "(minitx.datasets.translation)",
}


def _header(args, config, threads, comm, n_train: int, n_val: int, n_test: int) -> str:
    """``train-translator: s2s-small, ... data: ...; 600 iterations of batch 64 ...``: what is about to happen."""
    data = f"{args.train} (tab-separated)" if args.train else GENERATED[args.command]
    preset = args.preset or args.task_defaults["preset"]
    where = f"; {comm.size} MPI ranks x {threads} threads" if comm.size > 1 else \
        (f"; {threads} data-parallel threads" if threads > 1 else "")
    resume = ", resuming" if args.resume else ""
    return (f"{args.command}: model {preset}{resume}; data: {data}; {n_train:,} train / {n_val:,} val / "
            f"{n_test:,} test examples; {config.max_iters} iterations of batch {config.batch_size}, evaluated every "
            f"{config.eval_interval}{where}")


def _fit(fit, args, *rows, test=None, **kwargs):
    """``fit(*rows, config, ...)`` after a header; Ctrl-C becomes a message and exit code 130."""
    from ..train.config import TrainingInterrupted  # noqa: PLC0415

    config, threads, comm = _plan(args)
    announce(comm)(_header(args, config, threads, comm, len(rows[0]), len(rows[1]), len(test or ())), flush=True)
    try:
        return fit(*rows, config, **_fit_options(args, threads, comm), **kwargs), comm
    except TrainingInterrupted as exc:
        announce(comm)(interrupted_message(exc, args.command, args.out), file=sys.stderr)
        raise SystemExit(130) from None


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
    p.add_argument("--checkpoint", required=True, metavar="DIR",
                   help="the --out folder of the training command (its best/), or a checkpoint folder")
    p.add_argument("text", nargs="*", help="input sentence(s)")
    p.add_argument("--input", metavar="FILE", help="read inputs from FILE, one per line (default: the TEXT arguments)")


def _print_scores(name: str, scores: dict) -> None:
    print(name + ": " + ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in scores.items()))


# --------------------------------------------------------------------------
# classification
# --------------------------------------------------------------------------
def cmd_train_classifier(args) -> int:
    from ..datasets import bag_of_words_baseline, make_sentiment, read_tsv
    from ..tasks.classify import TextClassifier

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
        data = make_sentiment(args.n_train or args.task_defaults["n_train"], seed=args.data_seed)
        train, val, test = data["train"], data["val"], data["test"]
    labels = args.labels.split(",") if args.labels else None
    if labels is None and test is not None:
        known = {y for _, y in train}
        for i, (_, y) in enumerate(test):
            if y not in known:
                raise ValueError(f"--test example {i + 1}: unknown label {y!r}, "
                                 f"expected one of {', '.join(sorted(known))}")
    clf, comm = _fit(TextClassifier.fit, args, train, val, test=test, pooling=args.pooling, labels=labels)
    if comm.rank != 0:
        return 0
    _print_scores("val", clf.evaluate(val))
    if test is not None:
        for i, (_, y) in enumerate(test):
            clf.labels.encode(y, where=f"test example {i + 1}: ")
        _print_scores("test", clf.evaluate(test))
        print(f"test: bag-of-words baseline accuracy {bag_of_words_baseline(train, test):.4f}")
    print(f"checkpoint: {args.out}/best (best validation accuracy); {args.out}/ckpt (latest, for --resume)")
    print(f'next: minitx classify --checkpoint {args.out} "the plot was not bad at all"')
    return 0


def cmd_classify(args) -> int:
    from ..tasks.classify import TextClassifier

    fine = load_finetuned_or_none(args)  # a minitx finetune run, an adapter, or --adapter
    if fine is not None and fine.classifier is None:
        raise UsageError(f"--checkpoint {args.checkpoint}: a fine-tuned {type(fine.model).__name__} is not a "
                         "classifier; expected one fine-tuned with --task classify")
    clf = fine.classifier if fine is not None else TextClassifier.load(args.checkpoint)
    texts = _texts(args)
    probs = clf.predict_proba(texts)
    for text, p in zip(texts, probs):
        print(f"{clf.labels.decode(p.argmax())}\t{p.max():.3f}\t{text}")
    return 0


# --------------------------------------------------------------------------
# tagging
# --------------------------------------------------------------------------
def cmd_train_tagger(args) -> int:
    from ..datasets import make_ner, read_tsv
    from ..tasks.tag import Tagger

    if args.train:
        split = lambda rows: [(w.split(), t.split()) for w, t in rows]  # noqa: E731
        train = split(read_tsv(args.train, 2))
        val = split(read_tsv(args.val, 2)) if args.val else None
        test = split(read_tsv(args.test, 2)) if args.test else None
        if val is None:
            train, val, _ = _split(train, args)
    else:
        data = make_ner(args.n_train or args.task_defaults["n_train"], seed=args.data_seed)
        train, val, test = data["train"], data["val"], data["test"]
    tags = args.tags.split(",") if args.tags else None
    tagger, comm = _fit(Tagger.fit, args, train, val, test=test, tags=tags, word_dropout=args.word_dropout)
    if comm.rank != 0:
        return 0
    _print_scores("val", tagger.evaluate(val))
    if test is not None:
        from ..tasks.tag import check_tagged

        check_tagged(test, tagger.tags, "test")
        _print_scores("test", tagger.evaluate(test))
    print(f"checkpoint: {args.out}/best (best validation F1); {args.out}/ckpt (latest, for --resume)")
    print(f'next: minitx tag --checkpoint {args.out} "maria lopez visited port alder on monday"')
    return 0


def cmd_tag(args) -> int:
    from ..tasks.tag import Tagger

    tagger = Tagger.load(args.checkpoint)
    sentences = [t.split() for t in _texts(args)]
    for words, tags in zip(sentences, tagger.predict(sentences)):
        print(" ".join(f"{w}/{t}" for w, t in zip(words, tags)))
    return 0


# --------------------------------------------------------------------------
# translation
# --------------------------------------------------------------------------
def _add_decoding_options(p):
    p.add_argument("--beam", type=int, default=0, metavar="N", help="beam search with N beams (default 0: greedy)")
    p.add_argument("--length-penalty", type=float, default=1.0,
                   help="beam search ranks by log-probability / length**penalty (default 1.0)")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy; > 0 samples (default 0)")
    p.add_argument("--top-k", type=int, help="sample among the k most likely words (default: all)")
    p.add_argument("--top-p", type=float, help="nucleus sampling: smallest set with mass >= p (default: off)")
    p.add_argument("--seed", type=int, default=None, help="sampling seed (default: random)")
    p.add_argument("--max-new-tokens", type=int, default=None,
                   help="words to generate at most (default: the model's --block-size)")


def _check_decoding(args) -> None:
    from ..generate import check_sampling_args

    if args.beam < 0:
        raise ValueError(f"--beam: got {args.beam}, expected an integer >= 1 (or 0 for greedy)")
    if args.beam and args.temperature:
        raise ValueError("--beam with --temperature: expected one of beam search or sampling")
    check_sampling_args(args.temperature, args.top_k, args.top_p, args.max_new_tokens)


def cmd_train_translator(args) -> int:
    from ..datasets import make_translation, read_tsv
    from ..tasks.translate import Translator

    if args.train:
        train = read_tsv(args.train, 2)
        val = read_tsv(args.val, 2) if args.val else None
        test = read_tsv(args.test, 2) if args.test else None
        if val is None:
            train, val, _ = _split(train, args)
    else:
        data = make_translation(args.n_train or args.task_defaults["n_train"], seed=args.data_seed)
        train, val, test = data["train"], data["val"], data["test"]
    overrides = {}
    if args.n_layer is not None and not args.resume:  # one flag, both stacks
        overrides = {"n_enc_layer": args.n_layer, "n_dec_layer": args.n_layer}
        args.n_layer = None
    tr, comm = _fit(Translator.fit, args, train, val, test=test, share_embeddings=args.share_embeddings, **overrides)
    if comm.rank != 0:
        return 0
    _print_scores("val (greedy)", tr.evaluate(val))
    if test is not None:
        from ..tasks.translate import check_pairs

        check_pairs(test, "test")
        _print_scores("test (greedy)", tr.evaluate(test))
        if args.eval_beam:
            _print_scores(f"test (beam {args.eval_beam})", tr.evaluate(test, beam=args.eval_beam))
    print(f"checkpoint: {args.out}/best (best validation BLEU); {args.out}/ckpt (latest, for --resume)")
    print(f'next: minitx translate --checkpoint {args.out} --beam 4 "the big red dog sees a small cat"')
    return 0


def cmd_translate(args) -> int:
    from ..tasks.translate import Translator

    _check_decoding(args)
    tr = Translator.load(args.checkpoint)
    texts = _texts(args)
    unknown = sorted({w for t in texts for w in t.split() if w not in tr.src_vocab.stoi})
    if unknown:  # they become <unk>: the translation can only guess at them
        print(f"minitx translate: note: {len(unknown)} word(s) the model never saw in training, translated as "
              f"<unk>: {', '.join(unknown[:20])}{' ...' if len(unknown) > 20 else ''}", file=sys.stderr)
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
    _add_task_training(p, "train-classifier")
    p.add_argument("--pooling", choices=("first", "mean"), default="first",
                   help="sentence vector: the <cls> position (first) or the mean over words (default first)")
    p.add_argument("--labels", help="comma-separated label set (default: the labels of --train)")
    p.set_defaults(func=cmd_train_classifier)

    p = sub.add_parser("classify", help="classify sentences with a trained classifier")
    _add_input_options(p)
    add_adapter_option(p)
    p.set_defaults(func=cmd_classify)

    p = sub.add_parser("train-tagger", help="train a token tagger (encoder; default: generated NER)")
    _add_task_training(p, "train-tagger")
    p.add_argument("--tags", help="comma-separated tag set (default: the tags of --train)")
    p.add_argument("--word-dropout", type=float, default=0.1,
                   help="replace training words by <unk> with this probability (default 0.1)")
    p.set_defaults(func=cmd_train_tagger)

    p = sub.add_parser("tag", help="tag the words of sentences with a trained tagger")
    _add_input_options(p)
    p.set_defaults(func=cmd_tag)

    p = sub.add_parser("train-translator", help="train an encoder-decoder translator (default: generated data)")
    _add_task_training(p, "train-translator")
    p.add_argument("--share-embeddings", action="store_true", help="one joint vocabulary and embedding")
    p.add_argument("--eval-beam", type=int, default=4, help="also score the test set with this beam (0: skip; default 4)")
    p.set_defaults(func=cmd_train_translator)

    p = sub.add_parser("translate", help="translate sentences with a trained translator")
    _add_input_options(p)
    _add_decoding_options(p)
    p.set_defaults(func=cmd_translate)
