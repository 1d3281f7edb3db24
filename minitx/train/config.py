"""How to train: the hyperparameters every model family shares.

:class:`TrainConfig` says *how* to train (batch size, schedule, optimizer,
clipping, evaluation cadence, seed); the model's shape lives in its own
config (:class:`~minitx.models.gpt.GPTConfig`,
:class:`~minitx.models.encoder.EncoderConfig`, ...). This module imports no
model, so a task, a benchmark or a fine-tuning recipe can build a
``TrainConfig`` without pulling in the GPT.

How many replicas compute each step (threads or MPI ranks) is not here
either: data parallelism wraps the model
(:class:`~minitx.train.parallel.DataParallel`), and the trainer never knows.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

from ..optim import cosine_with_warmup


class TrainingDiverged(RuntimeError):
    """The loss, an activation or the gradient norm became NaN or infinite; the step was not applied."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training: the last completed iteration was checkpointed first.

    ``iter`` is that iteration and ``checkpoint`` the folder written (``None``
    when there was no output folder to write to).
    """

    def __init__(self, iteration: int, checkpoint):
        super().__init__(f"interrupted after iteration {iteration}")
        self.iter, self.checkpoint = iteration, checkpoint


@dataclass
class TrainConfig:
    """How to train. The defaults are nanoGPT's small-CPU recipe.

    ``lr_decay_iters`` defaults to ``max_iters`` (the cosine reaches
    ``min_lr`` at the last iteration). ``batch_size`` is the *global* batch:
    with data parallelism each replica computes a share of it, and the
    result is the same step.
    """

    batch_size: int = 12
    max_iters: int = 2000
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_iters: int = 100
    lr_decay_iters: int | None = None
    beta1: float = 0.9
    beta2: float = 0.99
    weight_decay: float = 0.1
    grad_clip: float = 1.0  # 0 turns clipping off
    grad_accum: int = 1
    eval_interval: int = 250
    eval_iters: int = 20
    label_smoothing: float = 0.0
    seed: int = 1337

    def __post_init__(self):
        for name in ("batch_size", "max_iters", "grad_accum", "eval_interval", "eval_iters"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}: got {value!r}, expected a positive integer")
        for name in ("warmup_iters", "seed"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name}: got {value!r}, expected an integer >= 0")
        for name in ("lr", "min_lr", "weight_decay", "grad_clip"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name}: got {value!r}, expected a finite number >= 0")
        if self.min_lr > self.lr:
            raise ValueError(f"min_lr: got {self.min_lr}, expected at most lr={self.lr}")
        for name in ("beta1", "beta2", "label_smoothing"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0 <= value < 1:
                raise ValueError(f"{name}: got {value!r}, expected a number in [0, 1)")
        if self.lr_decay_iters is not None and (not isinstance(self.lr_decay_iters, int) or self.lr_decay_iters < 1):
            raise ValueError(f"lr_decay_iters: got {self.lr_decay_iters!r}, expected a positive integer or None")

    @property
    def decay_iters(self) -> int:
        return max(self.lr_decay_iters or self.max_iters, self.warmup_iters)

    def lr_at(self, it: int) -> float:
        """The learning rate of iteration ``it``: linear warmup, then cosine down to ``min_lr``."""
        return cosine_with_warmup(it, lr=self.lr, min_lr=self.min_lr, warmup_iters=self.warmup_iters,
                                  max_iters=self.decay_iters)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """Inverse of ``dataclasses.asdict``; keys it does not know (an older ``threads``) are ignored."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


__all__ = ["TrainConfig", "TrainingDiverged", "TrainingInterrupted"]
