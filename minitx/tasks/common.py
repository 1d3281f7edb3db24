"""The loop shared by the classifier, the tagger and the translator.

One iteration is the GPT trainer's, with a task's batch in place of a
language-model batch::

    optimizer.lr = config.lr_at(it)             warmup, then cosine decay
    model.zero_grad()
    loss, _ = model.loss(x, y, label_smoothing=ls)
    model.backward_loss()                       gradients added into every p.grad
    clip_grad_norm(model, config.grad_clip)
    optimizer.step()

Every ``eval_interval`` iterations (and at the end) the task's ``evaluate``
runs on the validation set in eval mode (dropout off); the result is
appended to ``<out>/metrics.jsonl`` and a checkpoint of the *best* model so
far (by the task's main metric) is written to ``<out>/ckpt``. The
hyperparameters are :class:`minitx.train.trainer.TrainConfig`'s (batch size,
iterations, lr schedule, AdamW betas, weight decay, clipping, seed).
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np

from ..optim import AdamW, clip_grad_norm
from ..train.checkpoint import load_checkpoint, save_checkpoint

TASK_KIND = "minitx-task"
TASK_FORMAT = 1


def pad_batch(seqs, pad_id: int = 0, fill=None) -> np.ndarray:
    """``[[ids...], ...] -> [B, T_max]`` int64, right-padded with ``pad_id`` (or ``fill``)."""
    if not seqs:
        raise ValueError("pad_batch: got no sequences, expected at least one")
    T = max(len(s) for s in seqs)
    out = np.full((len(seqs), T), pad_id if fill is None else fill, dtype=np.int64)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = s
    return out


def train_loop(model, get_batch, evaluate, config, *, main_metric: str, out_dir=None, save=None,
               label_smoothing: float = 0.0, progress: bool = True, log=print) -> list[dict]:
    """Train ``model``; return the list of evaluation records.

    ``get_batch(rng) -> (inputs..., targets)`` tuple whose last element is the
    target; ``evaluate() -> dict`` of metrics (higher ``main_metric`` is
    better); ``save(directory, meta)`` writes a checkpoint (the task's).
    """
    from tqdm import tqdm

    optimizer = AdamW(model.named_parameters(), lr=config.lr, betas=(config.beta1, config.beta2),
                      weight_decay=config.weight_decay)
    rng = np.random.default_rng(config.seed)
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.jsonl").write_text("")
    history, best = [], -math.inf
    bar = tqdm(range(config.max_iters), disable=not progress, dynamic_ncols=True, leave=False)
    t0, losses, n_tokens = time.perf_counter(), [], 0
    model.train()
    for it in bar:
        optimizer.lr = config.lr_at(it)
        model.zero_grad()
        *inputs, targets = get_batch(rng)
        loss, _ = model.loss(*inputs, targets, label_smoothing=label_smoothing)
        if not math.isfinite(loss):
            raise ValueError(f"training diverged: loss is {loss} at iteration {it}; try a lower --lr")
        model.backward_loss()
        if config.grad_clip:
            clip_grad_norm(model, config.grad_clip)
        optimizer.step()
        losses.append(loss)
        n_tokens += int(sum(np.asarray(x).size for x in inputs))
        bar.set_postfix(loss=f"{loss:.3f}", lr=f"{optimizer.lr:.1e}")
        if (it + 1) % config.eval_interval == 0 or it + 1 == config.max_iters:
            model.eval()
            metrics = evaluate()
            model.train()
            elapsed = time.perf_counter() - t0
            record = {"iter": it + 1, "train_loss": float(np.mean(losses)), "lr": optimizer.lr,
                      "tokens_per_sec": n_tokens / max(elapsed, 1e-9), "elapsed_s": elapsed, **metrics}
            losses = []
            history.append(record)
            log(" ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in record.items()))
            if out is not None:
                with open(out / "metrics.jsonl", "a", encoding="utf-8") as f:
                    f.write(json.dumps(record) + "\n")
                if save is not None and metrics[main_metric] > best:
                    best = metrics[main_metric]
                    save(out / "ckpt", {"step": it + 1, "metrics": metrics, "train": vars(config)})
    bar.close()
    return history


def save_task(directory, model, task: str, meta: dict) -> None:
    """Write a task checkpoint: weights in safetensors, config + vocabularies in JSON."""
    save_checkpoint(directory, model_state=model.state_dict(), optim_arrays={},
                    meta={"kind": TASK_KIND, "task_format": TASK_FORMAT, "task": task, **meta})


def read_task(directory, task: str | None = None) -> tuple[dict, dict]:
    """Load ``(model_state, meta)``; a checkpoint of another kind or task is a one-line error."""
    model_state, _, meta = load_checkpoint(directory)
    if meta.get("kind") != TASK_KIND:
        raise ValueError(f"checkpoint {str(directory)!r}: kind {meta.get('kind')!r}, expected {TASK_KIND!r} "
                         "(written by minitx train-classifier / train-tagger / train-translator)")
    if meta.get("task_format") != TASK_FORMAT:
        raise ValueError(f"checkpoint {str(directory)!r}: task_format {meta.get('task_format')!r}, "
                         f"expected {TASK_FORMAT}")
    if task is not None and meta.get("task") != task:
        raise ValueError(f"checkpoint {str(directory)!r}: holds a {meta.get('task')!r} model, expected {task!r}")
    return model_state, meta


def load_task(directory):
    """Load any task checkpoint as its task object (TextClassifier, Tagger or Translator)."""
    from .classify import TextClassifier
    from .tag import Tagger
    from .translate import Translator

    _, meta = read_task(directory)
    return {"classify": TextClassifier, "tag": Tagger, "translate": Translator}[meta["task"]].load(directory)
