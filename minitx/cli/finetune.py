"""``minitx finetune``: start from a trained model, train some of it on new data.

    minitx finetune --checkpoint out --task lm --data notes.txt --method lora --out ft
    minitx generate --checkpoint ft --prompt "Return the"            # the fine-tuned GPT
    minitx finetune --checkpoint MINILM_FOLDER --task classify --data reviews.tsv --method head --out clf
    minitx classify --checkpoint clf "a warm, funny film"

``--checkpoint`` is the base: the run folder of ``minitx train`` or
``minitx train-classifier``, or a Hugging Face folder (GPT-2, BERT/MiniLM).
``--task`` says what to learn:

* ``lm``: next-token prediction on ``--data FILE`` (UTF-8 text), for a GPT base;
* ``classify``: labels from ``--data FILE.tsv`` (``label<TAB>text`` lines,
  as ``train-classifier --train`` reads; ``--val`` or the last 10% to
  validate), for an encoder base; a new head is put on the body unless the
  base is a minitx classifier with exactly these labels.

``--method`` says what trains: ``full`` (everything), ``head`` (the
classification head alone, ``classify`` only) or ``lora`` (adapters of
``--rank`` and ``--alpha`` on the Linear layers ``--targets`` names, other
ranks for some with ``--rank-pattern '*attn.qkv=8'``, plus a new head). Training is the one Trainer (:mod:`minitx.train.trainer`)
with ``minitx train``'s flags; ``--out`` gets ``ckpt/`` (and ``best/`` for
``classify``), ``metrics.jsonl``, ``loss.png``, and for LoRA ``adapter/``:
the adapter alone, to pass as ``--adapter`` with the base. ``generate``,
``classify`` and ``embed`` accept the run folder, the adapter folder, or
the base with ``--adapter``.

Bad input is one line and exit 2, before anything is written: a pattern that
matches no module, ``--rank 0``, a base of the wrong kind for the task or
the method, an output folder that already holds a run (``--overwrite``
replaces it, ``--resume`` continues it: the same flags, and the Trainer
checks that the base, method and data are the checkpoint's).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from .errors import UsageError
from .options import (add_lora_options, add_run_options, add_training_options, announce, interrupted_message,
                      lora_rank_pattern, lora_targets, parallel_plan, train_config)

#: Training defaults: short runs at a small learning rate (the model already knows a lot).
DEFAULTS = dict(max_iters=200, eval_interval=50, eval_iters=10, batch_size=16, warmup_iters=10, min_lr="lr/10",
                weight_decay=0.0, seed=1337)
if os.environ.get("MINITX_MAIN_JOB_FAST") == "1":  # the README test: the same steps, seconds instead of minutes
    DEFAULTS.update(max_iters=4, eval_interval=2, eval_iters=2, warmup_iters=1)
#: The peak learning rate by method: the whole model moves gently; a head or adapters start from nothing.
LR = {"full": 1e-4, "head": 1e-3, "lora": 1e-3}
#: The context window of ``--task lm`` unless ``--block-size`` says otherwise (at most the model's).
LM_BLOCK = 128


def add_parser(sub) -> None:
    p = sub.add_parser("finetune", help="fine-tune a trained model (full, a new head, or LoRA)",
                       description="Fine-tune a minitx run folder or a Hugging Face folder on new data: every "
                                   "weight (full), a new classification head (head), or LoRA adapters (lora).")
    p.add_argument("--checkpoint", required=True, metavar="BASE",
                   help="the base: a minitx run folder (train, train-classifier) or a Hugging Face folder")
    p.add_argument("--task", required=True, choices=("lm", "classify"),
                   help="lm: next-token prediction on a text file (GPT base); classify: label<TAB>text lines "
                        "(encoder base)")
    p.add_argument("--method", required=True, choices=("full", "head", "lora"), help="what trains")
    p.add_argument("--data", required=True, metavar="FILE", help="lm: a UTF-8 text file; classify: label<TAB>text")
    p.add_argument("--val", default=None, metavar="FILE", help="classify: validation file (default: the last 10%% "
                                                               "of --data)")
    p.add_argument("--pooling", choices=("first", "mean"), default="mean",
                   help="classify, new head: sentence vector = mean of the tokens (default) or the first token")
    p.add_argument("--block-size", type=int, default=None,
                   help=f"lm: context window in tokens (default {LM_BLOCK}, at most the model's)")
    p.add_argument("--unfreeze-body", action="store_true", help="--method head: train the body too")
    add_lora_options(p)
    add_training_options(p, {**DEFAULTS, "lr": "1e-4 full, 1e-3 head and lora"})
    add_run_options(p, out_default=None)
    p.set_defaults(func=run_finetune)


def _check_args(args) -> None:
    from ..finetune.lora import check_lora_settings  # noqa: PLC0415

    if args.method == "head" and args.task != "classify":
        raise UsageError(f"--method head with --task {args.task}: a new head is a classification head, expected "
                         "--task classify (or --method full / lora)")
    if args.unfreeze_body and args.method != "head":
        raise UsageError("--unfreeze-body: only with --method head")
    if args.block_size is not None and args.block_size < 1:
        raise UsageError(f"--block-size: got {args.block_size}, expected a positive integer")
    if args.method == "lora":
        try:
            check_lora_settings(args.rank, args.alpha)
        except ValueError as exc:
            raise UsageError(str(exc).replace("LoRA rank", "--rank").replace("LoRA alpha", "--alpha")) from None
        lora_rank_pattern(args)  # a malformed pattern list: one line, exit 2
    elif args.targets is not None or args.rank_pattern is not None:
        flag = "--targets" if args.targets is not None else "--rank-pattern"
        raise UsageError(f"{flag} with --method {args.method}: adapters are LoRA's, expected --method lora")
    elif args.train_norms:
        raise UsageError(f"--train-norms with --method {args.method}: it trains norms beside LoRA's adapters, "
                         "expected --method lora")


def run_finetune(args) -> int:
    from ..train.checkpoint import check_run_folder  # noqa: PLC0415

    _check_args(args)
    threads, comm = parallel_plan(args, "cpu")
    check_run_folder(args.out, resume=args.resume, overwrite=args.overwrite)  # before anything is read or written
    adapter_dir = Path(args.out) / "adapter"
    if (args.method == "lora" and (adapter_dir / "adapter.json").is_file() and not args.overwrite
            and not args.resume):
        raise UsageError(f"--out {args.out!r} already holds an adapter ({adapter_dir}); expected --overwrite to "
                         "replace it (or another --out)")
    defaults = {**DEFAULTS, "lr": LR[args.method]}
    saved = None
    if args.resume:  # the run's own settings, unless a flag says otherwise; the Trainer checks the rest
        from ..train.checkpoint import CKPT_DIR, load_checkpoint  # noqa: PLC0415

        saved = load_checkpoint(Path(args.out) / CKPT_DIR)[2].get("train", {})
    config = train_config(args, defaults, saved)
    say = announce(comm)
    if args.task == "lm":
        job = _plan_lm(args)
    else:
        job = _plan_classify(args, config.seed)
    model = job["model"]
    say(f"{args.method} fine-tuning of {args.checkpoint} ({type(model).__name__}) for --task {args.task}: "
        f"{model.num_trainable_parameters():,} of {model.num_parameters():,} parameters train "
        f"({100 * model.num_trainable_parameters() / model.num_parameters():.2f}%)", flush=True)
    try:
        history = job["train"](config, threads, comm)
    except _Interrupted as exc:
        say(interrupted_message(exc.inner, "finetune ...", args.out) + " (and the same flags)", file=sys.stderr)
        return 130
    if comm.rank != 0:
        return 0
    if history:
        last = history[-1]
        say("done: " + ", ".join(f"{k} {v:.4f}" for k, v in last.items() if isinstance(v, float) and k != "lr"))
    if args.method == "lora":
        from ..finetune import save_adapter  # noqa: PLC0415

        save_adapter(model, adapter_dir, base=job["base_path"], overwrite=True, meta=job["adapter_meta"])
        say(f"adapter: {adapter_dir} ({sum(p.data.size for n, p in model.named_parameters() if p.requires_grad):,} "
            f"numbers; load it onto the base with --checkpoint {args.checkpoint} --adapter {adapter_dir})")
    use = "generate --prompt \"...\"" if args.task == "lm" else "classify \"some text\""
    say(f"next: minitx {use} --checkpoint {args.out}")
    return 0


class _Interrupted(Exception):
    def __init__(self, inner):
        self.inner = inner


def _prepare(args, model, **opts):
    from ..finetune import prepare  # noqa: PLC0415

    return prepare(model, args.method, targets=lora_targets(args), rank=args.rank, alpha=args.alpha,
                   rank_pattern=lora_rank_pattern(args), train_norms=args.train_norms, freeze_body=not args.unfreeze_body, **opts)


def _plan_lm(args) -> dict:
    from ..corpus import load_text  # noqa: PLC0415
    from ..finetune.models import finetune_meta, load_base  # noqa: PLC0415
    from ..models.gpt import GPT  # noqa: PLC0415
    from ..train.data import LMDataset  # noqa: PLC0415

    base = load_base(args.checkpoint)
    if not isinstance(base.model, GPT):
        raise UsageError(f"--checkpoint {args.checkpoint}: holds a {type(base.model).__name__}; --task lm expected a "
                         "GPT base (a minitx train run folder or a Hugging Face GPT-2 folder)")
    if base.tokenizer is None:
        raise UsageError(f"--checkpoint {args.checkpoint}: no tokenizer, expected one beside the model")
    text = load_text(args.data)
    block = min(args.block_size or LM_BLOCK, base.model.config.block_size)
    try:
        data = LMDataset(text, base.tokenizer, block_size=block)
    except ValueError as exc:
        raise UsageError(f"--data {args.data}: {exc}") from None
    model = _prepare(args, base.model)
    meta = finetune_meta(task="lm", method=args.method, base=base, model=model)
    meta["data"] = {"path": os.path.abspath(args.data), "block_size": block}

    def train(config, threads, comm):
        return _run_trainer(model, data, config, args, threads, comm, meta=meta)

    return {"model": model, "train": train, "base_path": meta["base"], "adapter_meta": {"task": "lm"}}


def _plan_classify(args, seed: int) -> dict:
    import numpy as np  # noqa: PLC0415

    from ..datasets import read_tsv  # noqa: PLC0415
    from ..datasets.vocab import LabelSet  # noqa: PLC0415
    from ..finetune.models import classifier_task, finetune_meta, load_base  # noqa: PLC0415
    from ..train.data import PaddedRows  # noqa: PLC0415

    def rows_of(path):
        return [(text, label) for label, text in read_tsv(path, 2)]  # files hold label<TAB>text

    train_rows = rows_of(args.data)
    if args.val is not None:
        val_rows = rows_of(args.val)
    else:
        cut = max(1, len(train_rows) // 10)
        if len(train_rows) < 2:
            raise UsageError(f"--data {args.data}: {len(train_rows)} line(s), expected at least 2 (or --val)")
        train_rows, val_rows = train_rows[:-cut], train_rows[-cut:]
    labels = LabelSet(sorted({y for _, y in train_rows}), "label")
    for where, rows in (("--val" if args.val else "--data (held out)", val_rows),):
        for i, (_, y) in enumerate(rows):
            labels.encode(y, where=f"{where} example {i + 1}: ")
    base = load_base(args.checkpoint)
    clf, new_head = classifier_task(base, labels, pooling=args.pooling, seed=seed)
    model = _prepare(args, clf.model)  # head: everything but clf.model.head frozen (unless --unfreeze-body)
    if new_head and args.method == "lora":
        model.unfreeze("head.*")  # a new head has nothing to adapt from: it trains whole
    meta = finetune_meta(task="classify", method=args.method, base=base, model=model, labels=labels,
                         new_head=new_head)
    x_all = clf.encode_texts([t for t, _ in train_rows])  # (N, T) padded once
    y_all = np.array([labels.encode(y) for _, y in train_rows])  # (N,)
    data = PaddedRows((x_all, (x_all != model.config.pad_id).sum(axis=1)), (y_all, None))

    def train(config, threads, comm):
        from ..tasks.common import train_task  # noqa: PLC0415
        from ..train.config import TrainingInterrupted  # noqa: PLC0415

        job = _Job(model, meta)
        try:
            return train_task(job, data, config, evaluate=lambda: clf.evaluate(val_rows), metric="accuracy",
                              out_dir=args.out, resume=args.resume, threads=threads, comm=comm,
                              progress=not args.no_progress)
        except TrainingInterrupted as exc:
            raise _Interrupted(exc) from None

    adapter_meta = {"task": "classify", "labels": labels.to_dict(), "pooling": model.pooling}
    return {"model": model, "train": train, "base_path": meta["base"], "adapter_meta": adapter_meta}


class _Job:
    """What :func:`minitx.tasks.common.train_task` needs of a task: its model and its checkpoint JSON."""

    def __init__(self, model, meta):
        self.model, self._meta = model, meta

    def checkpoint_meta(self) -> dict:
        return self._meta


def _run_trainer(model, data, config, args, threads, comm, *, meta) -> list[dict]:
    from ..train.config import TrainingInterrupted  # noqa: PLC0415
    from ..train.parallel import DataParallel  # noqa: PLC0415
    from ..train.trainer import Trainer  # noqa: PLC0415

    parallel = threads > 1 or comm.size > 1
    wrapped = DataParallel(model, threads=threads, comm=comm, seed=config.seed) if parallel else model
    trainer = Trainer(wrapped, data, config, args.out, meta=meta, progress=not args.no_progress)
    try:
        if args.resume:
            trainer.resume(Path(args.out) / "ckpt")
        return trainer.train()
    except TrainingInterrupted as exc:
        raise _Interrupted(exc) from None
    finally:
        if parallel:
            wrapped.close()


__all__ = ["add_parser", "run_finetune"]
