"""``minitx train`` and ``minitx generate``: the README's main job.

``minitx train`` with no arguments trains a small GPT (4 layers, 4 heads,
128 wide, character-level) on the embedded default corpus (the standard
library's docstrings: nothing to download) for a few minutes on a laptop
CPU, writes ``out/ckpt``, ``out/metrics.jsonl`` and ``out/loss.png``, and
prints a sample. Then::

    minitx generate --checkpoint out/ckpt --prompt "Return the" --temperature 0.8

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
:class:`~minitx.cli.UsageError` or ``ValueError`` *before* anything is written;
``minitx.cli.main`` prints it as one line and exits with status 2.
"""
from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

from ..cli import UsageError

#: What ``minitx train`` does with no arguments (sized for a few minutes on a 2-core CPU).
MAIN_JOB = dict(preset="gpt-micro", block_size=64, batch_size=12, max_iters=3000, eval_interval=500, eval_iters=20,
                lr=1e-3, min_lr=1e-4, warmup_iters=100, beta2=0.99, dropout=0.0, weight_decay=0.1,
                threads=min(2, os.cpu_count() or 1))
ARCH_FLAGS = ("n_layer", "n_head", "n_embd", "block_size", "dropout")
TRAIN_FLAGS = ("batch_size", "max_iters", "lr", "min_lr", "warmup_iters", "beta2", "weight_decay", "eval_interval",
               "eval_iters", "grad_accum", "seed", "threads")
#: The GPU backend ``--device cuda`` uses unless ``--backend`` says otherwise.
DEFAULT_CUDA_BACKEND = "cupy"


def _default_help(what: str, flag: str) -> str:
    """``"what (default N)"``, the default being the main job's (or the preset's) value."""
    key = flag[2:].replace("-", "_")
    if key in ARCH_FLAGS:  # architecture: the main job's value, or the preset's once --preset is given
        return f"{what} (default {MAIN_JOB[key]}, or the preset's with --preset)" if key in MAIN_JOB else \
            f"{what} (default: the preset's)"
    return f"{what} (default {MAIN_JOB[key]})" if key in MAIN_JOB else what


def _add_device_flags(parser) -> None:
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="where to compute (default: cpu); cuda needs an NVIDIA GPU and CuPy")
    parser.add_argument("--backend", choices=("numpy", "cupy", "kernels"), default=None,
                        help="numpy on the CPU; on cuda: cupy (default, cuBLAS) or kernels (minitx's CUDA kernels "
                             "for matmul, softmax, LayerNorm, attention)")


def _select_device(args) -> tuple[str, str]:
    """Validate ``--device``/``--backend``; returns ``(device, backend)`` without changing anything yet."""
    from ..backend import check_cuda  # noqa: PLC0415

    device, name = args.device, args.backend
    if device == "cpu":
        if name not in (None, "numpy"):
            raise UsageError(f"--backend {name}: runs on the GPU, expected --device cuda with it "
                             "(the CPU backend is numpy)")
        return device, "numpy"
    if name == "numpy":
        raise UsageError("--backend numpy: runs on the CPU, expected cupy or kernels with --device cuda")
    reason = check_cuda()
    if reason is not None:
        raise UsageError(f"--device cuda: no CUDA device visible ({reason}); expected an NVIDIA GPU with CuPy "
                         "installed: pip install minitx[cuda]")
    return device, name or DEFAULT_CUDA_BACKEND


class _using_backend:
    """Select a backend for the duration of a command, then restore the previous one."""

    def __init__(self, name: str):
        self.name = name

    def __enter__(self):
        from .. import backend  # noqa: PLC0415

        self.previous = backend.get_backend()
        backend.set_backend(self.name)
        return self

    def __exit__(self, *exc):
        from .. import backend  # noqa: PLC0415

        backend.set_backend(self.previous)
        return False


def add_parser(sub) -> None:
    t = sub.add_parser("train", help="train a GPT (no arguments: the README's main job)",
                       description="Train a GPT. With no arguments: a 4-layer character-level model on the "
                                   "embedded corpus (standard-library docstrings), a few minutes on a CPU.")
    g = t.add_argument_group("data")
    g.add_argument("--data", metavar="FILE", help="UTF-8 text file (default: the embedded stdlib-docstring corpus)")
    g.add_argument("--tokenizer", choices=("char", "bpe"), default=None, help="character-level (default) or BPE")
    g.add_argument("--vocab-size", type=int, default=None, help="BPE vocabulary size (default 512)")
    g = t.add_argument_group("model")
    g.add_argument("--preset", default=None, help=f"named size (default {MAIN_JOB['preset']}); see minitx.models.PRESETS")
    for flag, typ, what in (("--n-layer", int, "transformer blocks"), ("--n-head", int, "attention heads"),
                            ("--n-embd", int, "model width d_model (divisible by --n-head)"),
                            ("--block-size", int, "context window in tokens"),
                            ("--dropout", float, "dropout probability in [0, 1)")):
        g.add_argument(flag, type=typ, default=None, help=_default_help(what, flag))
    g = t.add_argument_group("training")
    for flag, typ, what in (("--batch-size", int, "sequences per step"), ("--max-iters", int, "training steps"),
                            ("--lr", float, "peak learning rate"), ("--min-lr", float, "learning rate after the cosine"),
                            ("--warmup-iters", int, "linear warmup steps"), ("--beta2", float, "AdamW beta2"),
                            ("--weight-decay", float, "AdamW decay on 2-D weights"),
                            ("--eval-interval", int, "steps between evaluations and checkpoints"),
                            ("--eval-iters", int, "batches per loss estimate"),
                            ("--grad-accum", int, "micro-batches per optimizer step"),
                            ("--seed", int, "seed for initialisation, batches and dropout")):
        g.add_argument(flag, type=typ, default=None, help=_default_help(what, flag))
    g.add_argument("--threads", type=int, default=None,
                   help="data-parallel replicas, one Python thread each (default: 2 if the CPU has 2 cores)")
    g.add_argument("--out", default="out", help="output folder: ckpt/, metrics.jsonl, loss.png (default: out)")
    g.add_argument("--resume", action="store_true", help="continue the checkpoint in OUT/ckpt")
    g.add_argument("--sample-tokens", type=int, default=300, help="length of the sample printed at the end (0: none)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar (log lines instead)")
    _add_device_flags(t)
    t.set_defaults(func=run_train)

    gen = sub.add_parser("generate", help="sample text from a trained GPT checkpoint",
                         description="Continue a prompt with a trained GPT.")
    gen.add_argument("--checkpoint", required=True, metavar="DIR", help="a checkpoint folder, e.g. out/ckpt")
    gen.add_argument("--prompt", default="\n", help="text to continue (default: a newline)")
    gen.add_argument("--max-new-tokens", type=int, default=300, help="tokens to generate (default 300)")
    gen.add_argument("--temperature", type=float, default=0.8, help="0 = greedy; <1 safer, >1 wilder")
    gen.add_argument("--top-k", type=int, default=None, help="sample among the k most likely tokens")
    gen.add_argument("--top-p", type=float, default=None, help="nucleus sampling: smallest set with mass >= p")
    gen.add_argument("--stop", action="append", default=None, metavar="TEXT", help="stop at this string (repeatable)")
    gen.add_argument("--seed", type=int, default=None, help="make the sample reproducible")
    gen.add_argument("--no-kv-cache", action="store_true", help="recompute the whole context at every step")
    gen.add_argument("--beam", type=int, default=None, metavar="N",
                     help="beam search with N beams instead of sampling (deterministic; the sampling flags are unused)")
    gen.add_argument("--length-penalty", type=float, default=1.0,
                     help="beam search ranks by log-probability / length**penalty (default 1.0)")
    _add_device_flags(gen)
    gen.set_defaults(func=run_generate)


# --------------------------------------------------------------------------
# minitx train
# --------------------------------------------------------------------------
def _given(args, names) -> dict:
    return {n: getattr(args, n) for n in names if getattr(args, n) is not None}


def _load_text(path):
    from ..corpus import default_corpus, load_text  # noqa: PLC0415

    if path is None:
        return default_corpus()
    return load_text(path)  # raises ValueError naming the file (missing, empty, not UTF-8, ...)


def _build_tokenizer(kind: str, text: str, vocab_size):
    from ..tokenizer import BPETokenizer, CharTokenizer  # noqa: PLC0415

    if kind == "char":
        if vocab_size is not None:
            raise UsageError("--vocab-size: only used with --tokenizer bpe (a character vocabulary is the text's "
                             "characters)")
        return CharTokenizer().train(text)
    vocab_size = 512 if vocab_size is None else vocab_size
    if vocab_size < 257:
        raise UsageError(f"--vocab-size: got {vocab_size}, expected at least 257 for byte-level BPE")
    print(f"training a BPE tokenizer (vocab_size={vocab_size}) on {len(text):,} characters...", flush=True)
    return BPETokenizer().train(text, vocab_size)


def _plan_fresh(args):
    """Model config, train config, tokenizer and dataset for a new run: everything validated, nothing written."""
    from ..models import GPTConfig  # noqa: PLC0415
    from .data import LMDataset  # noqa: PLC0415
    from .trainer import TrainConfig  # noqa: PLC0415

    preset = args.preset or MAIN_JOB["preset"]
    # unspecified settings come from the main job; its block_size and dropout only when no preset was named
    arch = {} if args.preset else {k: MAIN_JOB[k] for k in ARCH_FLAGS if k in MAIN_JOB}
    arch.update(_given(args, ARCH_FLAGS))
    training = {k: v for k, v in MAIN_JOB.items() if k in TRAIN_FLAGS}
    training.update(_given(args, TRAIN_FLAGS))
    GPTConfig.from_preset(preset, vocab_size=1, **arch)  # unknown preset / bad shape: fail before reading data
    train_config = TrainConfig(**training)
    text = _load_text(args.data)
    tokenizer = _build_tokenizer(args.tokenizer or "char", text, args.vocab_size)
    config = GPTConfig.from_preset(preset, vocab_size=tokenizer.vocab_size, **arch)
    dataset = LMDataset(text, tokenizer)
    dataset.check_block_size(config.block_size)
    return config, train_config, tokenizer, dataset, {"data": {"path": args.data}, "preset": preset}


def _plan_resume(args, ckpt_dir):
    """The same, read from ``ckpt_dir``; flags that would change the model are refused."""
    from ..models import GPTConfig  # noqa: PLC0415
    from .data import LMDataset  # noqa: PLC0415
    from .trainer import TrainConfig, read_checkpoint, tokenizer_from_meta  # noqa: PLC0415

    state = read_checkpoint(ckpt_dir)
    meta = state[2]
    config = GPTConfig.from_dict(meta["config"])
    for name, value in _given(args, ARCH_FLAGS).items():
        if getattr(config, name) != value:
            raise UsageError(f"--{name.replace('_', '-')} {value}: the checkpoint has {name}={getattr(config, name)}; "
                             "expected the checkpoint's architecture when resuming")
    for flag in ("preset", "tokenizer", "vocab_size"):
        if getattr(args, flag) is not None:
            raise UsageError(f"--{flag.replace('_', '-')}: not allowed with --resume (the checkpoint fixes it)")
    train_config = TrainConfig.from_dict({**meta.get("train", {}), **_given(args, TRAIN_FLAGS)})
    tokenizer = tokenizer_from_meta(meta.get("tokenizer"))
    data_path = args.data if args.data is not None else (meta.get("data") or {}).get("path")
    text = _load_text(data_path)
    try:
        dataset = LMDataset(text, tokenizer)
    except ValueError as exc:
        raise UsageError(f"the data does not fit the checkpoint's tokenizer: {exc}") from None
    return config, train_config, tokenizer, dataset, {"data": {"path": data_path}, "preset": meta.get("preset")}, state


def run_train(args) -> int:
    if args.sample_tokens < 0:
        raise UsageError(f"--sample-tokens: got {args.sample_tokens}, expected an integer >= 0")
    device, backend_name = _select_device(args)  # before any data is read
    if device == "cuda":
        if args.threads is not None and args.threads != 1:
            raise UsageError(f"--threads {args.threads}: data-parallel threads are a CPU feature, expected 1 "
                             "(or no --threads) with --device cuda")
        args.threads = 1
    with _using_backend(backend_name):
        return _train(args, device)


def _train(args, device: str) -> int:
    from ..models import GPT  # noqa: PLC0415
    from .checkpoint import META_FILE  # noqa: PLC0415
    from .trainer import Trainer  # noqa: PLC0415

    out = Path(args.out)
    ckpt_dir = out / "ckpt"
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {str(out)!r} is a file, expected a folder (or a path that does not exist yet)")
    if args.resume:
        config, train_config, tokenizer, dataset, extra, state = _plan_resume(args, ckpt_dir)
    else:
        config, train_config, tokenizer, dataset, extra = _plan_fresh(args)
        state = None
        if (ckpt_dir / META_FILE).is_file():
            print(f"note: {ckpt_dir} holds an earlier run; this new run replaces it at its first checkpoint "
                  "(use --resume to continue it instead)", file=sys.stderr)

    model = GPT(config, seed=train_config.seed).to(device)  # weights drawn on the host, then moved
    trainer = Trainer(model, dataset, train_config, out, tokenizer=tokenizer, extra_meta=extra,
                      progress=not args.no_progress)
    if state is not None:
        trainer.resume(*state)
    from ..backend import get_backend  # noqa: PLC0415

    where = "" if device == "cpu" else f" on cuda ({get_backend()} backend)"
    print(f"GPT {config.n_layer} layers, {config.n_head} heads, {config.n_embd} wide, block {config.block_size}{where}: "
          f"{model.num_parameters():,} parameters; {type(tokenizer).__name__} vocab {tokenizer.vocab_size}; "
          f"{len(dataset.train):,} train / {len(dataset.val):,} val tokens; "
          f"{'resuming at iteration ' + str(trainer.iter) if state else 'starting'} -> {train_config.max_iters}",
          flush=True)
    try:
        history = trainer.train()
    finally:
        trainer.close()
    if history:
        last = history[-1]
        print(f"done: iteration {last['iter']}, train loss {last['train_loss']:.4f}, val loss {last['val_loss']:.4f}; "
              f"checkpoint in {ckpt_dir}, metrics in {out / 'metrics.jsonl'}")
    if args.sample_tokens:
        from ..generate import generate_text  # noqa: PLC0415

        prompt = _default_prompt(tokenizer)
        print(f"\n--- sample (temperature 0.8, seed {train_config.seed}) ---")
        sys.stdout.write(prompt)
        generate_text(model, tokenizer, prompt, args.sample_tokens, temperature=0.8, seed=train_config.seed,
                      on_text=lambda piece: sys.stdout.write(piece))
        print("\n---")
        print(f"more: minitx generate --checkpoint {ckpt_dir} --prompt \"...\" --temperature 0.8")
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

    check_sampling_args(args.temperature, args.top_k, args.top_p, args.max_new_tokens)  # before the slow part
    if args.stop is not None and any(not s for s in args.stop):
        raise UsageError("--stop: got an empty string, expected non-empty text")
    if args.beam is not None and args.beam < 1:
        raise UsageError(f"--beam: got {args.beam}, expected at least 1 beam")
    if args.beam is not None and args.stop is not None:
        raise UsageError("--stop with --beam: beam search stops at the end token, expected one or the other")
    device, backend_name = _select_device(args)
    with _using_backend(backend_name):
        return _generate(args, device)


def _generate(args, device: str) -> int:
    from ..generate import generate_text  # noqa: PLC0415
    from .trainer import load_model  # noqa: PLC0415

    model, tokenizer, _ = load_model(args.checkpoint, device=device)
    try:
        ids = tokenizer.encode(args.prompt)
    except ValueError as exc:
        raise UsageError(f"--prompt: {exc}") from None
    if not ids:
        raise UsageError("--prompt: got an empty prompt, expected at least one character")
    sys.stdout.write(args.prompt)
    if args.beam is not None:  # the most likely continuation, not a sample
        from ..beam import beam_search_gpt  # noqa: PLC0415

        best = beam_search_gpt(model, [ids], beam_size=args.beam, max_new_tokens=args.max_new_tokens,
                               length_penalty=args.length_penalty)[0][0]
        sys.stdout.write(tokenizer.decode(best.tokens) + "\n")
        return 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        generate_text(model, tokenizer, args.prompt, args.max_new_tokens, temperature=args.temperature,
                      top_k=args.top_k, top_p=args.top_p, seed=args.seed, stop=args.stop,
                      use_kv_cache=not args.no_kv_cache, on_text=lambda piece: sys.stdout.write(piece))
    sys.stdout.write("\n")
    for w in caught:
        print(f"minitx generate: warning: {w.message}", file=sys.stderr)
    return 0


__all__ = ["MAIN_JOB", "add_parser", "run_generate", "run_train"]
