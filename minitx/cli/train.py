"""``minitx train`` and ``minitx generate``: the README's main job.

``minitx train`` with no arguments trains a small GPT (4 layers, 4 heads,
128 wide, character-level) on the embedded default corpus (the standard
library's docstrings: nothing to download) for a few minutes on a laptop
CPU, writes ``out/ckpt``, ``out/metrics.jsonl`` and ``out/loss.png``, and
prints a sample. Then::

    minitx generate --checkpoint out --prompt "Return the" --temperature 0.8

Run folders keep what they hold: ``minitx train --out DIR`` where DIR holds
a trained run refuses (exit 2) unless told ``--resume`` (continue it) or
``--overwrite`` (replace it, once the new run writes its first checkpoint).
Ctrl-C finishes the current step, saves it, and says how to resume.

Under ``mpiexec -n N minitx train ...`` every rank computes a share of each
batch (:class:`~minitx.train.parallel.DataParallel`); rank 0 writes and
prints. ``--threads`` then defaults to 1 per rank.

On an NVIDIA GPU add ``--device cuda`` to either command. ``--backend`` then
picks how the GPU computes: ``cupy`` (the default: CuPy's ops and cuBLAS,
the mature path) or ``kernels`` (minitx's own CUDA kernels for matmul,
softmax, LayerNorm and attention; CuPy for the rest). ``cupy`` is the
default because it is the well-trodden, fast path; ``kernels`` is there to
run, compare and learn from minitx's kernels. Checkpoints are NumPy arrays
either way, so a model trained on the GPU generates on the CPU and back.
Without CuPy or a visible GPU, ``--device cuda`` stops with a one-line error
(exit status 2) before anything is read or written.

Every user error (missing data, bad flag value, broken checkpoint) raises
:class:`~minitx.cli.errors.UsageError` or ``ValueError`` *before* anything is written;
``minitx.cli.main`` prints it as one line and exits with status 2.
"""
from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

from .errors import UsageError
from .pretrained import add_generate_options, generate_from_hf_folder, is_hf_folder, print_generation
from .options import (PROMPT_PART_FLAGS, add_adapter_option, add_device_options, add_model_options, add_prompt_options,
                      add_run_options, add_training_options, announce, given, interrupted_message,
                      load_finetuned_or_none, parallel_plan, resolve_prompt, select_device, train_config,
                      using_backend)

#: What ``minitx train`` does with no arguments (sized for a few minutes on a 2-core CPU).
MAIN_JOB = dict(preset="gpt-micro", block_size=64, batch_size=12, max_iters=3000, eval_interval=500, eval_iters=20,
                lr=1e-3, min_lr=1e-4, warmup_iters=100, beta2=0.99, dropout=0.0, weight_decay=0.1)
if os.environ.get("MINITX_MAIN_JOB_FAST") == "1":  # the README test: the same steps, seconds instead of minutes
    MAIN_JOB.update(max_iters=20, eval_interval=10, eval_iters=2, warmup_iters=2)
#: ``--flag`` dest -> GPTConfig field (the CLI says --d-model everywhere; GPT-2 calls the width n_embd).
ARCH_FIELDS = {"n_layer": "n_layer", "n_head": "n_head", "d_model": "n_embd", "block_size": "block_size",
               "dropout": "dropout"}


def add_parser(sub) -> None:
    t = sub.add_parser("train", help="train a GPT (no arguments: the README's main job)",
                       description="Train a GPT. With no arguments: a 4-layer character-level model on the "
                                   "embedded corpus (standard-library docstrings), a few minutes on a CPU.")
    g = t.add_argument_group("data")
    g.add_argument("--data", metavar="FILE", help="UTF-8 text file (default: the embedded stdlib-docstring corpus)")
    g.add_argument("--tokenizer", choices=("char", "bpe"), default=None, help="character-level (default) or BPE")
    g.add_argument("--vocab-size", type=int, default=None, help="BPE vocabulary size (default 512)")
    shown = {k: v for k, v in MAIN_JOB.items()}
    shown["d_model"] = "128 (gpt-micro)"
    shown.update(n_layer="4 (gpt-micro)", n_head="4 (gpt-micro)")
    add_model_options(t, shown, preset_help="named size, see minitx.models.PRESETS")
    add_training_options(t, MAIN_JOB)
    add_run_options(t, out_default="out")
    t.add_argument("--sample-tokens", type=int, default=300, help="length of the sample printed at the end "
                                                                  "(0: none; default 300)")
    t.add_argument("--max-minutes", type=float, default=None,
                   help="a time budget: stop after this many minutes, evaluated and checkpointed, resumable with "
                        "--resume (default: no budget, run all --max-iters)")
    add_device_options(t)
    t.set_defaults(func=run_train)

    gen = sub.add_parser("generate", help="sample text from a trained GPT or a Hugging Face folder",
                         description="Continue a prompt with a trained GPT, or run a Hugging Face GPT-2 / T5 / BART "
                                     "folder (for an encoder-decoder the prompt is the encoder's input).")
    gen.add_argument("--checkpoint", required=True, metavar="DIR",
                     help="the --out folder of minitx train (or its ckpt/ folder), or a Hugging Face model folder")
    add_prompt_options(gen, prompt_help="text to continue, as is (default: a newline)")
    gen.add_argument("--max-new-tokens", type=int, default=300, help="tokens to generate (default 300)")
    gen.add_argument("--temperature", type=float, default=None,
                     help="0 = greedy; <1 safer, >1 wilder (default 0.8; for a Hugging Face folder, what its "
                          "generation_config says: greedy unless do_sample)")
    gen.add_argument("--top-k", type=int, default=None, help="sample among the k most likely tokens (default: all)")
    gen.add_argument("--top-p", type=float, default=None,
                     help="nucleus sampling: smallest set with mass >= p (default: off)")
    gen.add_argument("--stop", action="append", default=None, metavar="TEXT", help="stop at this string (repeatable; default: no stop string)")
    gen.add_argument("--seed", type=int, default=None, help="make the sample reproducible (default: random)")
    gen.add_argument("--no-kv-cache", action="store_true", help="recompute the whole context at every step")
    gen.add_argument("--beam", type=int, default=None, metavar="N",
                     help="beam search with N beams instead of sampling (deterministic; the sampling flags are unused; "
                          "default: sample)")
    gen.add_argument("--length-penalty", type=float, default=1.0,
                     help="beam search ranks by log-probability / length**penalty (default 1.0)")
    add_generate_options(gen)
    add_adapter_option(gen)
    gen.add_argument("--interactive", action="store_true",
                     help="read prompts from the terminal (or stdin), one a line, and answer each, until EOF (Ctrl-D) "
                          "or Ctrl-C; --prompt is then unused")
    add_device_options(gen)
    gen.set_defaults(func=run_generate)


# --------------------------------------------------------------------------
# minitx train
# --------------------------------------------------------------------------
def _arch(args) -> dict:
    """GPTConfig overrides from the shape flags given."""
    return {ARCH_FIELDS[k]: v for k, v in given(args, ARCH_FIELDS).items()}


def _load_text(path):
    from ..corpus import default_corpus, load_text  # noqa: PLC0415

    if path is None:
        return default_corpus()
    return load_text(path)  # raises ValueError naming the file (missing, empty, not UTF-8, ...)


def _build_tokenizer(kind: str, text: str, vocab_size, say):
    from ..tokenizer import BPETokenizer, CharTokenizer  # noqa: PLC0415

    if kind == "char":
        if vocab_size is not None:
            raise UsageError("--vocab-size: only used with --tokenizer bpe (a character vocabulary is the text's "
                             "characters)")
        return CharTokenizer().train(text)
    vocab_size = 512 if vocab_size is None else vocab_size
    if vocab_size < 257:
        raise UsageError(f"--vocab-size: got {vocab_size}, expected at least 257 for byte-level BPE")
    say(f"training a BPE tokenizer (vocab_size={vocab_size}) on {len(text):,} characters...", flush=True)
    return BPETokenizer().train(text, vocab_size)


def _plan_fresh(args, say):
    """Model config, train config, tokenizer and dataset for a new run: everything validated, nothing written."""
    from ..models import GPTConfig  # noqa: PLC0415
    from ..train.data import LMDataset  # noqa: PLC0415

    preset = args.preset or MAIN_JOB["preset"]
    # unspecified settings come from the main job; its block_size and dropout only when no preset was named
    arch = {} if args.preset else {ARCH_FIELDS[k]: MAIN_JOB[k] for k in ARCH_FIELDS if k in MAIN_JOB}
    arch.update(_arch(args))
    GPTConfig.from_preset(preset, vocab_size=1, **arch)  # unknown preset / bad shape: fail before reading data
    config_train = train_config(args, MAIN_JOB)
    text = _load_text(args.data)
    tokenizer = _build_tokenizer(args.tokenizer or "char", text, args.vocab_size, say)
    config = GPTConfig.from_preset(preset, vocab_size=tokenizer.vocab_size, **arch)
    dataset = LMDataset(text, tokenizer, block_size=config.block_size)
    return config, config_train, tokenizer, dataset, {"data": {"path": args.data}, "preset": preset}


def _plan_resume(args, out):
    """The same, read from the run folder ``out``; flags that would change the model are refused."""
    from ..models import GPTConfig  # noqa: PLC0415
    from ..train.data import LMDataset  # noqa: PLC0415
    from ..train.lm import read_checkpoint, tokenizer_from_meta  # noqa: PLC0415

    meta = read_checkpoint(out)[2]
    config = GPTConfig.from_dict(meta["config"])
    for name, value in _arch(args).items():
        if getattr(config, name) != value:
            flag = next(k for k, v in ARCH_FIELDS.items() if v == name).replace("_", "-")
            raise UsageError(f"--{flag} {value}: the checkpoint has {name}={getattr(config, name)}; "
                             "expected the checkpoint's architecture when resuming")
    for flag in ("preset", "tokenizer", "vocab_size"):
        if getattr(args, flag) is not None:
            raise UsageError(f"--{flag.replace('_', '-')}: not allowed with --resume (the checkpoint fixes it)")
    config_train = train_config(args, MAIN_JOB, meta.get("train", {}))
    tokenizer = tokenizer_from_meta(meta.get("tokenizer"))
    data_path = args.data if args.data is not None else (meta.get("data") or {}).get("path")
    text = _load_text(data_path)
    try:
        dataset = LMDataset(text, tokenizer, block_size=config.block_size)
    except ValueError as exc:
        raise UsageError(f"the data does not fit the checkpoint's tokenizer: {exc}") from None
    return config, config_train, tokenizer, dataset, {"data": {"path": data_path}, "preset": meta.get("preset")}


def run_train(args) -> int:
    from ..train.checkpoint import check_run_folder  # noqa: PLC0415

    if args.sample_tokens < 0:
        raise UsageError(f"--sample-tokens: got {args.sample_tokens}, expected an integer >= 0")
    if args.max_minutes is not None and not args.max_minutes > 0:
        raise UsageError(f"--max-minutes: got {args.max_minutes}, expected a number of minutes > 0")
    device, backend_name = select_device(args)  # before any data is read
    threads, comm = parallel_plan(args, device)
    check_run_folder(args.out, resume=args.resume, overwrite=args.overwrite)  # before anything is written
    with using_backend(backend_name):
        return _train(args, device, threads, comm)


def _train(args, device: str, threads: int, comm) -> int:
    from ..models import GPT  # noqa: PLC0415
    from ..train.config import TrainingInterrupted  # noqa: PLC0415
    from ..train.lm import gpt_meta  # noqa: PLC0415
    from ..train.parallel import DataParallel  # noqa: PLC0415
    from ..train.trainer import Trainer, plot_available  # noqa: PLC0415

    say = announce(comm)
    out = Path(args.out)
    if args.resume:
        config, config_train, tokenizer, dataset, extra = _plan_resume(args, out)
    else:
        config, config_train, tokenizer, dataset, extra = _plan_fresh(args, say)

    model = GPT(config, seed=config_train.seed).to(device)  # weights drawn on the host, then moved
    parallel = threads > 1 or comm.size > 1
    wrapped = DataParallel(model, threads=threads, comm=comm, seed=config_train.seed) if parallel else model
    trainer = Trainer(wrapped, dataset, config_train, out, meta=gpt_meta(model, tokenizer, **extra),
                      progress=not args.no_progress)
    try:
        if args.resume:
            trainer.resume(out / "ckpt")
        from ..backend import get_backend  # noqa: PLC0415

        where = "" if device == "cpu" else f" on cuda ({get_backend()} backend)"
        replicas = f"; {comm.size} MPI ranks x {threads} threads" if comm.size > 1 else \
            (f"; {threads} data-parallel threads" if threads > 1 else "")
        say(f"GPT {config.n_layer} layers, {config.n_head} heads, {config.n_embd} wide, block {config.block_size}"
            f"{where}: {model.num_parameters():,} parameters; {type(tokenizer).__name__} vocab "
            f"{tokenizer.vocab_size}; {len(dataset.train):,} train / {len(dataset.val):,} val tokens{replicas}; "
            f"{'resuming at iteration ' + str(trainer.iter) if args.resume else 'starting'} -> "
            f"{config_train.max_iters}", flush=True)
        if not plot_available():
            say("note: loss.png will not be drawn: matplotlib is not installed (pip install matplotlib); "
                "metrics.jsonl is written all the same", file=sys.stderr)
        history = trainer.train(max_seconds=None if args.max_minutes is None else 60 * args.max_minutes)
        if trainer.stopped_early:
            say(f"stopped at the time budget (--max-minutes {args.max_minutes:g}): iteration {trainer.iter} of "
                f"{config_train.max_iters} saved; continue with: minitx train --out {out} --resume")
    except TrainingInterrupted as exc:
        say(interrupted_message(exc, "train", out), file=sys.stderr)
        return 130
    finally:
        if parallel:
            wrapped.close()
    if history:
        last = history[-1]
        say(f"done: iteration {last['iter']}, train loss {last['train_loss']:.4f}, val loss {last['val_loss']:.4f}; "
            f"checkpoint in {out / 'ckpt'}, metrics in {out / 'metrics.jsonl'}")
    if args.sample_tokens and comm.rank == 0:
        from ..generate import generate_text  # noqa: PLC0415

        prompt = _default_prompt(tokenizer)
        print(f"\n--- sample (temperature 0.8, seed {config_train.seed}) ---")
        sys.stdout.write(prompt)
        generate_text(model, tokenizer, prompt, args.sample_tokens, temperature=0.8, seed=config_train.seed,
                      on_text=lambda piece: sys.stdout.write(piece))
        print("\n---")
        print(f"more: minitx generate --checkpoint {out} --prompt \"...\" --temperature 0.8")
    return 0


def _default_prompt(tokenizer) -> str:
    """A newline when the vocabulary has one, else the first token's text."""
    try:
        tokenizer.encode("\n")
        return "\n"
    except ValueError:
        return tokenizer.decode([0])


# --------------------------------------------------------------------------
# minitx generate
# --------------------------------------------------------------------------
def run_generate(args) -> int:
    from ..generate import check_sampling_args  # noqa: PLC0415

    if args.temperature is None and not is_hf_folder(args.checkpoint):
        args.temperature = 0.8  # a Hugging Face folder's default comes from its generation_config
    check_sampling_args(0.0 if args.temperature is None else args.temperature, args.top_k, args.top_p,
                        args.max_new_tokens)  # before the slow part
    if args.stop is not None and any(not s for s in args.stop):
        raise UsageError("--stop: got an empty string, expected non-empty text")
    if args.beam is not None and args.beam < 1:
        raise UsageError(f"--beam: got {args.beam}, expected at least 1 beam")
    if args.beam is not None and args.stop is not None:
        raise UsageError("--stop with --beam: beam search stops at the end token, expected one or the other")
    if args.interactive:
        parts = [n for n in PROMPT_PART_FLAGS if getattr(args, n) is not None]
        if parts:
            raise UsageError(f"--{parts[0].replace('_', '-')} with --interactive: each line read is a prompt; "
                             "expected one or the other")
    device, backend_name = select_device(args)
    with using_backend(backend_name):
        if args.interactive:
            return _interactive(args, device)
        return _generate(args, device)


def _interactive(args, device: str) -> int:
    """A prompt loop: each line read is a prompt, answered with the same flags; EOF or Ctrl-C ends it.

    The model is loaded once (the first answer), then kept. A prompt the
    model cannot take (a character it never saw) is reported and the loop
    goes on; a broken checkpoint ends it with the usual one-line error.
    """
    tty = sys.stdin.isatty()
    if tty:
        print(f"minitx generate: prompts for {args.checkpoint}, one a line; Ctrl-D or Ctrl-C to stop", file=sys.stderr)
    try:
        while True:
            if tty:
                sys.stderr.write("> ")
                sys.stderr.flush()
            line = sys.stdin.readline()
            if not line:
                break
            prompt = line.rstrip("\n")
            if not prompt:
                continue
            args.prompt = prompt.replace("\\n", "\n")  # "\n" typed on one line stands for a newline
            try:
                _generate(args, device)
            except UsageError as exc:  # this prompt cannot be answered; the next one may be
                print(f"minitx generate: {exc}", file=sys.stderr)
            sys.stdout.flush()
    except KeyboardInterrupt:
        if tty:
            sys.stderr.write("\n")
    return 0


_LOADED: dict = {}  # (folder, device) -> what load_model returned: the interactive loop loads once
_FINETUNED: dict = {}  # (folder, adapter, device) -> load_finetuned_or_none's answer (None: a plain model)


def _generate(args, device: str) -> int:
    from ..generate import generate_text  # noqa: PLC0415
    from ..train.lm import load_model  # noqa: PLC0415

    key = (str(args.checkpoint), args.adapter, device)
    if not args.interactive or key not in _FINETUNED:
        _FINETUNED.clear()
        _FINETUNED[key] = load_finetuned_or_none(args)
    fine = _FINETUNED[key]
    if fine is not None:  # a minitx finetune run, an adapter, or --adapter on the base
        from ..models.gpt import GPT  # noqa: PLC0415

        if not isinstance(fine.model, GPT):
            raise UsageError(f"--checkpoint {args.checkpoint}: a fine-tuned {type(fine.model).__name__} cannot "
                             "generate text, expected a GPT fine-tuned with --task lm")
        if fine.kind == "hf":
            return generate_from_hf_folder(args, device, loaded=(fine.model, fine.tokenizer))
        model, tokenizer = fine.model.to(device), fine.tokenizer
    elif is_hf_folder(args.checkpoint):  # a Hugging Face folder: minitx.pretrained runs it
        return generate_from_hf_folder(args, device)
    else:
        key = (str(args.checkpoint), device)
        if not args.interactive or key not in _LOADED:
            _LOADED.clear()
            _LOADED[key] = load_model(args.checkpoint, device=device)
        model, tokenizer, _ = _LOADED[key]
    prompt = resolve_prompt(args, tokenizer, model.config.block_size, default="\n")  # checked against the window
    ids = prompt.ids
    if not args.json:
        sys.stdout.write(prompt.text)
    if args.beam is not None:  # the most likely continuation, not a sample
        from ..beam import beam_search_gpt  # noqa: PLC0415

        best = beam_search_gpt(model, [ids], beam_size=args.beam, max_new_tokens=args.max_new_tokens,
                               length_penalty=args.length_penalty)[0][0]
        if args.json:
            print_generation(args, ids, best.tokens, tokenizer.decode(best.tokens))
            return 0
        sys.stdout.write(tokenizer.decode(best.tokens) + "\n")
        return 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stream = None if args.json else (lambda piece: sys.stdout.write(piece))
        text, new_ids = generate_text(model, tokenizer, prompt.text, args.max_new_tokens,
                                      temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                                      seed=args.seed, stop=args.stop, use_kv_cache=not args.no_kv_cache,
                                      on_text=stream, return_ids=True)
    if args.json:
        print_generation(args, ids, new_ids, text)
    else:
        sys.stdout.write("\n")
    for w in caught:
        print(f"minitx generate: warning: {w.message}", file=sys.stderr)
    return 0


__all__ = ["MAIN_JOB", "add_parser", "run_generate", "run_train"]
