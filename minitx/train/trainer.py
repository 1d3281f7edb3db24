"""The training loop: batches in, lower loss out, checkpoints along the way.

One iteration, written out (this is all of it; everything else is bookkeeping)::

    lr = cosine_with_warmup(it, ...)             # the schedule sets the step size
    model.zero_grad()
    for micro in range(grad_accum):              # gradient accumulation
        x, y = data.get_batch("train", B, T, data_rng)
        loss, _ = model.loss(x, y)               # forward: (B, T) ids -> scalar
        model.backward_loss(1 / grad_accum)      # backward: ADDS into every p.grad
    clip_grad_norm(model, 1.0)                   # one bad batch cannot throw us far
    optimizer.step()

Every ``eval_interval`` iterations (and at the end) the trainer estimates the
train and validation loss on ``eval_iters`` fixed batches each, appends a line
to ``<out>/metrics.jsonl``, redraws ``<out>/loss.png`` (if matplotlib is
installed) and writes a checkpoint to ``<out>/ckpt`` (see
:mod:`minitx.train.checkpoint`: safetensors + JSON, written atomically).

**Bit-identical resume.** A run is a deterministic function of its seed:
the model's initial weights and its dropout masks come from ``model.rng``,
the batch offsets from ``data_rng``, and evaluation uses its own generator,
re-seeded at every evaluation, so evaluating never shifts the training
stream. A checkpoint stores the weights, the optimizer's moments and step
count, and both generators' states (``rng.bit_generator.state``); loading
it and continuing therefore replays exactly the computation the
uninterrupted run would have done, bit for bit (a test proves it).

**When the loss becomes NaN or Inf** the step is *not* applied, training
stops with :class:`TrainingDiverged` (a one-line message naming the
iteration), and the last checkpoint, written before things went wrong, is
left as it was.

**Data parallelism on one machine** (``threads=2``): each micro-batch is cut
in two halves, and two model *replicas* that share the parameter arrays (but
own their gradients and caches) run forward and backward on one half each,
in two Python threads; NumPy releases the GIL inside its kernels, so both CPU
cores work. The two gradients are then averaged, exactly what multi-GPU data
parallelism does with an all-reduce. BLAS is told to use one thread per
replica (``threadpoolctl``, optional), so the threads do not fight over cores.

**On a GPU** the same loop runs unchanged: move the model first
(``model.to("cuda")``, then build the Trainer, whose optimizer buffers are
created next to the weights), and pick the backend (``cupy`` or ``kernels``,
:func:`minitx.backend.set_backend`). Batches are drawn on the host and copied
over by :meth:`GPT.loss <minitx.models.gpt.GPT.loss>`; checkpoints are written
as NumPy arrays, so a run saved on the GPU resumes or generates on the CPU
and back. One replica only (``threads=1``) on a GPU.
"""
from __future__ import annotations

import json
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from .. import __version__
from ..backend import device_of
from ..models.gpt import GPT, GPTConfig
from ..optim import AdamW, clip_grad_norm, cosine_with_warmup
from .checkpoint import load_checkpoint, save_checkpoint

CHECKPOINT_KIND = "minitx-gpt"
METRICS_FILE = "metrics.jsonl"
PLOT_FILE = "loss.png"


class TrainingDiverged(ValueError):
    """The loss (or the gradient norm) became NaN or infinite; training stopped."""


# --------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------
@dataclass
class TrainConfig:
    """How to train (the model's shape lives in :class:`~minitx.models.gpt.GPTConfig`).

    The defaults are nanoGPT's small-CPU recipe; ``lr_decay_iters`` defaults
    to ``max_iters`` (the cosine reaches ``min_lr`` at the last iteration).
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
    seed: int = 1337
    threads: int = 1  # data-parallel replicas (1 or 2 make sense on a laptop)

    def __post_init__(self):
        for name in ("batch_size", "max_iters", "grad_accum", "eval_interval", "eval_iters", "threads"):
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
        for name in ("beta1", "beta2"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0 <= value < 1:
                raise ValueError(f"{name}: got {value!r}, expected a number in [0, 1)")
        if self.batch_size < self.threads:
            raise ValueError(f"batch_size: got {self.batch_size}, expected at least threads={self.threads}")

    @property
    def decay_iters(self) -> int:
        return max(self.lr_decay_iters or self.max_iters, self.warmup_iters)

    def lr_at(self, it: int) -> float:
        return cosine_with_warmup(it, lr=self.lr, min_lr=self.min_lr, warmup_iters=self.warmup_iters,
                                  max_iters=self.decay_iters)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


# --------------------------------------------------------------------------
# Tokenizers in a checkpoint: described in JSON, never pickled
# --------------------------------------------------------------------------
def tokenizer_to_meta(tokenizer) -> dict:
    """A JSON-able description of a Char or BPE tokenizer (goes into checkpoint.json)."""
    from ..tokenizer import BPETokenizer, CharTokenizer  # noqa: PLC0415

    if isinstance(tokenizer, CharTokenizer):
        return {"type": "char", "chars": list(tokenizer.chars)}
    if isinstance(tokenizer, BPETokenizer):
        from ..tokenizer.formats import dumps_bpe  # noqa: PLC0415

        return {"type": "bpe", "model": dumps_bpe(tokenizer)}
    raise ValueError(f"tokenizer: got {type(tokenizer).__name__}, expected a CharTokenizer or BPETokenizer")


def tokenizer_from_meta(meta) -> object:
    """Inverse of :func:`tokenizer_to_meta`; a malformed description raises ValueError."""
    from ..tokenizer import CharTokenizer  # noqa: PLC0415

    kind = meta.get("type") if isinstance(meta, dict) else None
    if kind == "char" and isinstance(meta.get("chars"), list):
        return CharTokenizer(meta["chars"])
    if kind == "bpe" and isinstance(meta.get("model"), str):
        from ..tokenizer.formats import loads_bpe  # noqa: PLC0415

        return loads_bpe(meta["model"], source="checkpoint tokenizer")
    raise ValueError(f"tokenizer description: got type {kind!r}, expected 'char' (with chars) or 'bpe' (with model)")


# --------------------------------------------------------------------------
# Data-parallel replicas
# --------------------------------------------------------------------------
def make_replica(model: GPT, seed=0) -> GPT:
    """A second GPT that *shares* ``model``'s parameter arrays but owns its gradients.

    Weights are read by both replicas and written only by the optimizer (on
    ``model``), so sharing them is safe; gradients and backward caches are
    per-replica, so two threads never write to the same array.
    """
    replica = GPT(model.config, rng=np.random.default_rng(seed), dtype=model.dtype)  # own dropout stream
    for (_, p), (_, q) in zip(model.named_parameters(), replica.named_parameters()):
        q.data = p.data  # the same array object: an optimizer step is seen by both
    return replica


def _share_out(items: list, n: int) -> list[list]:
    """Deal ``(parameter, ...)`` tuples into ``n`` lists of about equal total size (largest first)."""
    shares, sizes = [[] for _ in range(n)], [0] * n
    for item in sorted(items, key=lambda it: -it[0].data.size):
        i = sizes.index(min(sizes))  # the lightest share so far
        shares[i].append(item)
        sizes[i] += item[0].data.size
    return shares


_BLAS_CONTROLLER = None


def _blas_single_thread():
    """``threadpoolctl`` limits BLAS to one thread per replica; without it, a no-op.

    The controller (which scans the loaded libraries, about a millisecond) is
    built once; switching the limit afterwards costs microseconds.
    """
    global _BLAS_CONTROLLER
    try:
        from threadpoolctl import ThreadpoolController  # noqa: PLC0415 - optional dependency
    except ImportError:
        return nullcontext()
    if _BLAS_CONTROLLER is None:
        _BLAS_CONTROLLER = ThreadpoolController()
    return _BLAS_CONTROLLER.limit(limits=1, user_api="blas")


# --------------------------------------------------------------------------
# The trainer
# --------------------------------------------------------------------------
class Trainer:
    """Trains ``model`` on ``dataset`` (an :class:`~minitx.train.data.LMDataset`).

    ``out_dir`` receives ``ckpt/``, ``metrics.jsonl`` and ``loss.png``.
    ``extra_meta`` (JSON-able) is stored in every checkpoint, e.g. where the
    data came from. Call :meth:`resume` before :meth:`train` to continue a run.
    """

    def __init__(self, model: GPT, dataset, config: TrainConfig, out_dir, *, tokenizer=None,
                 extra_meta: dict | None = None, progress: bool = True, log=print):
        self.model, self.dataset, self.config = model, dataset, config
        self.out_dir = Path(out_dir)
        self.tokenizer = tokenizer if tokenizer is not None else getattr(dataset, "tokenizer", None)
        self.extra_meta = dict(extra_meta or {})
        self.progress, self.log = progress, log
        dataset.check_block_size(model.config.block_size)
        if config.threads > 1 and device_of(model.wte.weight.data) != "cpu":
            raise ValueError(f"threads: got {config.threads} with the model on the GPU, expected 1 "
                             "(data-parallel threads are a CPU feature)")
        self.optimizer = AdamW(model.named_parameters(), lr=config.lr, betas=(config.beta1, config.beta2),
                               weight_decay=config.weight_decay)
        self.data_rng = np.random.default_rng([config.seed, 1])
        self.iter = 0  # the next iteration to run
        self.best_val_loss = math.inf
        self.history: list[dict] = []  # every metrics.jsonl record of this run
        self.replicas = [model] + [make_replica(model, [config.seed, 3, i]) for i in range(1, config.threads)]
        self._pool = ThreadPoolExecutor(config.threads) if config.threads > 1 else None
        self._reduce_shares = _share_out(list(zip(*[r.parameters() for r in self.replicas])), config.threads)

    @property
    def ckpt_dir(self) -> Path:
        return self.out_dir / "ckpt"

    # ---- one optimisation step -------------------------------------------
    def _forward_backward(self, x, y, scale: float) -> float:
        """Loss on ``(x, y)``; its gradient times ``scale`` is added into the parameters' grads.

        Overflow warnings are silenced: a diverging run is caught by the
        finite-value checks (and stopped with one clear message) instead.
        """
        if self._pool is None:
            with np.errstate(over="ignore", invalid="ignore"):
                loss, _ = self.model.loss(x, y)
                self.model.backward_loss(scale)
            return loss
        # data parallel: split the batch, one replica per thread, then average
        B, n = x.shape[0], len(self.replicas)
        parts = [slice(i * B // n, (i + 1) * B // n) for i in range(n)]  # contiguous shares of the batch

        def work(replica, rows):
            if replica is not self.model:
                replica.zero_grad()  # this replica's gradients hold only this step's share
            with np.errstate(over="ignore", invalid="ignore"):  # per thread: NumPy's error state is thread-local
                loss, _ = replica.loss(x[rows], y[rows])
                share = (rows.stop - rows.start) / B
                replica.backward_loss(scale * share)  # weight by the share of the batch
            return loss * share

        losses = list(self._pool.map(work, self.replicas, parts))  # BLAS: one thread each (see train_step)

        def all_reduce(share):  # sum the replicas' gradients into the main model's, for a share of the parameters
            for p, *others in share:
                for q in others:
                    p.grad += q.grad

        for _ in self._pool.map(all_reduce, self._reduce_shares):  # each thread reduces its own share
            pass
        return float(sum(losses))

    def train_step(self) -> tuple[float, float]:
        """Run iteration ``self.iter``; returns ``(loss, lr)``. Raises TrainingDiverged on NaN/Inf.

        With data-parallel threads, BLAS is held at one thread for the whole
        step (a process-wide setting): had the optimizer's maths run with BLAS's
        own second thread, that thread would still be busy-waiting, stealing a
        core, when the replicas start the next step.
        """
        if self._pool is None:
            return self._train_step()
        with _blas_single_thread():
            return self._train_step()

    def _train_step(self) -> tuple[float, float]:
        c = self.config
        lr = c.lr_at(self.iter)
        self.optimizer.lr = lr
        self.model.zero_grad()
        loss = 0.0
        stopped = ("training stopped and the step was not applied; the last good checkpoint "
                   f"({self.ckpt_dir}) is unchanged; expected finite values: try a lower --lr")
        try:
            for _ in range(c.grad_accum):
                x, y = self.dataset.get_batch("train", c.batch_size, self.model.config.block_size, self.data_rng)
                loss += self._forward_backward(x, y, 1.0 / c.grad_accum) / c.grad_accum
        except ValueError as exc:
            # the layers refuse NaN/Inf activations (a LayerNorm or softmax row check) before the loss exists
            if "NaN or Inf" not in str(exc):
                raise
            raise TrainingDiverged(f"non-finite activations at iteration {self.iter} ({exc}); {stopped}") from None
        with np.errstate(over="ignore", invalid="ignore"):
            grad_norm = clip_grad_norm(self.model.parameters(), c.grad_clip) if c.grad_clip > 0 else 0.0
        if not (math.isfinite(loss) and math.isfinite(grad_norm)):
            raise TrainingDiverged(f"loss is {loss} (gradient norm {grad_norm}) at iteration {self.iter}; {stopped}")
        self.optimizer.step()
        self.iter += 1
        return loss, lr

    # ---- evaluation --------------------------------------------------------
    def estimate_loss(self) -> dict:
        """Mean loss over ``eval_iters`` batches of each split, dropout off.

        The batches come from a generator re-seeded at every evaluation: the
        same batches each time (so successive numbers compare like with like),
        and the training stream's generator is never touched.
        """
        c, model = self.config, self.model
        rng = np.random.default_rng([c.seed, 2])
        was_training = model.training
        model.eval()
        out = {}
        try:
            for split in ("train", "val"):
                losses = []
                for _ in range(c.eval_iters):
                    x, y = self.dataset.get_batch(split, c.batch_size, model.config.block_size, rng)
                    with np.errstate(over="ignore", invalid="ignore"):
                        losses.append(model.loss(x, y)[0])
                out[split] = float(np.mean(losses))
        finally:
            model.train(was_training)
        return out

    # ---- checkpoints -------------------------------------------------------
    def checkpoint_meta(self) -> dict:
        optim_arrays, optim_meta = self.optimizer.state_dict()
        meta = {
            "kind": CHECKPOINT_KIND,
            "minitx_version": __version__,
            "config": self.model.config.to_dict(),
            "train": asdict(self.config),
            "tokenizer": tokenizer_to_meta(self.tokenizer) if self.tokenizer is not None else None,
            "iter": self.iter,
            "best_val_loss": self.best_val_loss if math.isfinite(self.best_val_loss) else None,
            "rng": {"data": self.data_rng.bit_generator.state, "model": self.model.rng.bit_generator.state,
                    "replicas": [r.rng.bit_generator.state for r in self.replicas[1:]]},
            "optim": optim_meta,
            **self.extra_meta,
        }
        return meta, optim_arrays

    def save(self) -> Path:
        meta, optim_arrays = self.checkpoint_meta()
        return save_checkpoint(self.ckpt_dir, model_state=self.model.state_dict(), optim_arrays=optim_arrays,
                               meta=meta)

    def resume(self, model_state: dict, optim_arrays: dict, meta: dict) -> None:
        """Continue from a loaded checkpoint (see :func:`load_checkpoint`); validates before writing."""
        if meta.get("config") != self.model.config.to_dict():
            raise ValueError("checkpoint model config differs from this model's; expected the same architecture")
        try:
            data_state, model_state_rng = meta["rng"]["data"], meta["rng"]["model"]
            it = int(meta["iter"])
        except (KeyError, TypeError, ValueError):
            raise ValueError("checkpoint.json lacks iter or rng states; expected a minitx training checkpoint") from None
        replica_states = meta["rng"].get("replicas", [])
        if len(replica_states) != len(self.replicas) - 1 and self.model.config.dropout == 0:
            # without dropout the replicas' generators are never drawn from: nothing to match, so a
            # checkpoint moves between thread counts (and onto a GPU, which runs one replica)
            replica_states = [r.rng.bit_generator.state for r in self.replicas[1:]]
        if len(replica_states) != len(self.replicas) - 1:
            raise ValueError(f"checkpoint was trained with threads={len(replica_states) + 1}, expected "
                             f"threads={len(self.replicas)} (the dropout streams must match to resume exactly)")
        probe = np.random.default_rng()
        try:  # validate the RNG states before anything is changed
            for state in [data_state, model_state_rng, *replica_states]:
                probe.bit_generator.state = state
        except (TypeError, ValueError, KeyError) as exc:
            raise ValueError(f"checkpoint RNG state is malformed ({exc}); expected numpy PCG64 states") from None
        self.model.load_state_dict(model_state)
        self.optimizer.load_state_dict(optim_arrays, meta["optim"])
        self.data_rng.bit_generator.state = data_state
        self.model.rng.bit_generator.state = model_state_rng
        for replica, state in zip(self.replicas[1:], replica_states):
            replica.rng.bit_generator.state = state
        self.iter = it
        best = meta.get("best_val_loss")
        self.best_val_loss = math.inf if best is None else float(best)
        self._trim_metrics(it)

    def _trim_metrics(self, it: int) -> None:
        """Keep metrics.jsonl records up to iteration ``it`` (a crash may have left later ones)."""
        path = self.out_dir / METRICS_FILE
        if not path.is_file():
            return
        kept = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and record.get("iter", math.inf) <= it:
                kept.append(record)
        self.history = kept
        path.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")

    # ---- the loop ------------------------------------------------------------
    def _evaluate_and_save(self, tokens_per_sec: float) -> dict:
        try:
            losses = self.estimate_loss()
        except ValueError as exc:
            if "NaN or Inf" not in str(exc):
                raise
            losses = {"train": math.nan, "val": math.nan}
        record = {"iter": self.iter, "train_loss": losses["train"], "val_loss": losses["val"],
                  "lr": self.config.lr_at(min(self.iter, self.config.max_iters)),
                  "tokens_per_sec": round(tokens_per_sec, 1)}
        if not (math.isfinite(losses["train"]) and math.isfinite(losses["val"])):
            raise TrainingDiverged(f"evaluation loss is not finite at iteration {self.iter} ({losses}); training "
                                   f"stopped; the last good checkpoint ({self.ckpt_dir}) is unchanged")
        self.best_val_loss = min(self.best_val_loss, losses["val"])
        self.history.append(record)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with open(self.out_dir / METRICS_FILE, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        self.save()
        plot_losses(self.history, self.out_dir / PLOT_FILE)
        return record

    def train(self, *, stop_at: int | None = None) -> list[dict]:
        """Train until ``max_iters`` (or until ``stop_at``, to simulate an interruption).

        Evaluates and checkpoints at iteration 0, every ``eval_interval`` and at
        ``max_iters``; a resumed run does not repeat the evaluation it resumed from.
        Returns the metrics records of this run.
        """
        c = self.config
        end = c.max_iters if stop_at is None else min(stop_at, c.max_iters)
        tokens_per_iter = c.batch_size * self.model.config.block_size * c.grad_accum
        start = self.iter
        skip_eval = any(r.get("iter") == start for r in self.history)  # resumed right after that evaluation
        bar = _progress(enabled=self.progress, initial=self.iter, total=c.max_iters)
        tick, tokens, rate = time.perf_counter(), 0, 0.0
        self.model.train()
        try:
            for it in range(start, end + 1):
                if (it % c.eval_interval == 0 or it == c.max_iters) and not (skip_eval and it == start):
                    record = self._evaluate_and_save(rate)
                    self._print(bar, f"iter {it}: train loss {record['train_loss']:.4f}, "
                                     f"val loss {record['val_loss']:.4f}, lr {record['lr']:.2e}, "
                                     f"{record['tokens_per_sec']:,.0f} tokens/s")
                    tick, tokens = time.perf_counter(), 0  # throughput excludes evaluation time
                if it == end:
                    break
                loss, lr = self.train_step()
                tokens += tokens_per_iter
                rate = tokens / max(time.perf_counter() - tick, 1e-9)
                if bar is not None:
                    bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", tok_s=f"{rate:,.0f}", refresh=False)
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
        return self.history

    def _print(self, bar, message: str) -> None:
        if bar is not None:
            bar.write(message)
        elif self.log is not None:
            self.log(message)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()


def _progress(*, enabled: bool, initial: int, total: int):
    """A tqdm bar (loss, lr, tokens/s in its postfix), or None when disabled."""
    if not enabled:
        return None
    from tqdm.auto import tqdm  # noqa: PLC0415

    return tqdm(total=total, initial=initial, desc="train", unit="it", dynamic_ncols=True)


def plot_losses(history: list[dict], path: Path) -> Path | None:
    """Draw train and val loss against iteration (skipped quietly without matplotlib)."""
    try:
        import matplotlib  # noqa: PLC0415 - optional extra

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        return None
    its = [r["iter"] for r in history]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(its, [r["train_loss"] for r in history], "o-", label="train")
    ax.plot(its, [r["val_loss"] for r in history], "o-", label="val")
    ax.set_xlabel("iteration")
    ax.set_ylabel("cross-entropy loss")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")  # write, then rename: never a half-drawn plot
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
    return path


# --------------------------------------------------------------------------
# Loading a trained model (for generation)
# --------------------------------------------------------------------------
def read_checkpoint(directory) -> tuple[dict, dict, dict]:
    """:func:`load_checkpoint` plus a check that the folder holds a minitx GPT."""
    model_state, optim_arrays, meta = load_checkpoint(directory)
    if meta.get("kind") != CHECKPOINT_KIND:
        raise ValueError(f"checkpoint {str(directory)!r} has kind={meta.get('kind')!r}, expected {CHECKPOINT_KIND!r} "
                         "(written by a different or incompatible minitx version)")
    if not isinstance(meta.get("config"), dict):
        raise ValueError(f"checkpoint {str(directory)!r} has no model config; expected one written by minitx train")
    return model_state, optim_arrays, meta


def load_model(directory, *, dtype=None, device: str = "cpu") -> tuple[GPT, object, dict]:
    """``(model, tokenizer, meta)`` from a checkpoint folder, model in eval mode on ``device``.

    Checkpoints hold NumPy arrays whichever device wrote them, so any
    checkpoint loads on ``"cpu"`` or ``"cuda"``.
    """
    model_state, _, meta = read_checkpoint(directory)
    config = GPTConfig.from_dict(meta["config"])
    model = GPT(config, seed=0, **({} if dtype is None else {"dtype": dtype}))
    model.load_state_dict(model_state)
    model.to(device)
    tokenizer = tokenizer_from_meta(meta.get("tokenizer"))
    if tokenizer.vocab_size > config.vocab_size:
        raise ValueError(f"checkpoint tokenizer has {tokenizer.vocab_size} tokens, expected at most the model's "
                         f"vocab_size={config.vocab_size}")
    return model.eval(), tokenizer, meta
