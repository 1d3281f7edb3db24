"""What the classifier, the tagger and the translator share: padding, training, checkpoints.

A task object bundles a model with the vocabularies and label set it was
trained with. It trains through the one :class:`~minitx.train.trainer.Trainer`
(the same loop, schedule, clipping, checkpoints and resume as ``minitx
train``), with the task's own evaluation (accuracy, F1, BLEU) and the
"keep the best checkpoint by that metric" policy::

    data = PaddedRows((x_all, lengths), (y_all, None))     # random rows, trimmed
    trainer = Trainer(model, data, config, out_dir, evaluate=lambda: task.evaluate(val_rows),
                      keep_best=("accuracy", "max"), meta=task.checkpoint_meta())
    trainer.train()

A run folder then holds ``ckpt/`` (the latest state, to ``--resume``) and
``best/`` (the model with the best validation metric, which the task
commands load). Weights are safetensors, everything else JSON.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..train.checkpoint import BEST_DIR, CKPT_DIR, check_kind, load_checkpoint, resolve_checkpoint, save_checkpoint
from ..train.config import TrainConfig
from ..train.parallel import DataParallel, SingleProcess
from ..train.trainer import Trainer

TASK_KIND = "minitx-task"
TASK_FORMAT = 2


def pad_batch(seqs, pad_id: int = 0, fill=None) -> np.ndarray:
    """``[[ids...], ...] -> [B, T_max]`` int64, right-padded with ``pad_id`` (or ``fill``)."""
    if not seqs:
        raise ValueError("pad_batch: got no sequences, expected at least one")
    T = max(len(s) for s in seqs)
    out = np.full((len(seqs), T), pad_id if fill is None else fill, dtype=np.int64)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = s
    return out


def task_meta(task: str, model, **fields) -> dict:
    """The JSON a task checkpoint carries: kind, task, format, the model's config, vocabularies..."""
    return {"kind": TASK_KIND, "task_format": TASK_FORMAT, "task": task, "config": model.config.to_dict(), **fields}


def train_task(task, data, config: TrainConfig, *, evaluate, metric: str, out_dir=None, resume: bool = False,
               threads: int = 1, comm=None, progress: bool = True, log=print) -> list[dict]:
    """Train ``task.model`` on ``data`` through the Trainer; afterwards the model holds the best weights.

    ``evaluate()`` returns the task's metrics; the checkpoint with the highest
    ``metric`` is kept in ``<out_dir>/best``. ``threads`` / ``comm`` make it
    data-parallel (:class:`~minitx.train.parallel.DataParallel`).
    """
    comm = comm if comm is not None else SingleProcess()
    parallel = threads > 1 or comm.size > 1
    model = DataParallel(task.model, threads=threads, comm=comm, seed=config.seed) if parallel else task.model
    trainer = Trainer(model, data, config, out_dir, evaluate=evaluate, keep_best=(metric, "max"),
                      meta=task.checkpoint_meta(), progress=progress, log=log)
    try:
        if resume:
            trainer.resume(Path(out_dir) / CKPT_DIR)
        history = trainer.train()
    finally:
        if parallel:
            model.close()
    best = trainer.best_state
    if best is None and out_dir is not None and (Path(out_dir) / BEST_DIR).is_dir():
        best = load_checkpoint(Path(out_dir) / BEST_DIR)[0]  # resumed, and no better model since
    if best is not None:  # continue with the best model, as the metric chose it
        task.model.load_state_dict(best)
    task.history = history
    return history


def save_task(directory, model, meta: dict) -> None:
    """Write a task checkpoint (weights only, no optimizer state): for a model trained elsewhere."""
    save_checkpoint(directory, model_state=model.state_dict(), optim_arrays={}, meta=meta)


def read_task(path, task: str | None = None) -> tuple[dict, dict, Path]:
    """``(model_state, meta, folder)`` of a task checkpoint: a run folder (its ``best``, else ``ckpt``) or one folder.

    A checkpoint of another kind or task is a one-line error naming what it holds.
    """
    directory = resolve_checkpoint(path, prefer=(BEST_DIR, CKPT_DIR))
    model_state, _, meta = load_checkpoint(directory)
    check_kind(directory, meta, TASK_KIND, task)
    if meta.get("task_format") != TASK_FORMAT:
        raise ValueError(f"checkpoint {str(directory)!r}: task_format {meta.get('task_format')!r}, "
                         f"expected {TASK_FORMAT} (written by an older minitx; train it again)")
    return model_state, meta, directory
