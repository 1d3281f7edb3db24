"""The training loop: batches in, lower loss out, checkpoints along the way.

One iteration, written out (this is all of it; everything else is bookkeeping)::

    optimizer.lr = config.lr_at(it)              # warmup, then cosine decay
    model.zero_grad()
    for micro in range(config.grad_accum):       # gradient accumulation
        batch = data.get_batch("train", config.batch_size, data_rng)
        loss, _ = model.loss(*batch)             # forward: batch -> scalar
        model.backward_loss(1 / grad_accum)      # backward: ADDS into every p.grad
    clip_grad_norm(model.parameters(), 1.0)      # one bad batch cannot throw us far
    optimizer.step()

**Any model.** The trainer needs only what every minitx model offers:
``loss(*batch) -> (loss, ...)``, ``backward_loss(scale)``,
``named_parameters()``, ``zero_grad()``, ``train()``/``eval()`` and
``state_dict()``/``load_state_dict()``. The GPT, the encoder classifier
and tagger, the masked LM and the seq2seq translator all train here; so
does a :class:`~minitx.train.parallel.DataParallel` wrapper around any of
them, which is how data parallelism (threads, MPI ranks) happens without
the trainer knowing. The batch source is any object with
``get_batch(split, batch_size, rng) -> tuple`` (the tuple is passed to
``model.loss``), such as :class:`~minitx.train.data.LMDataset`.

**Fine-tuning** runs here unchanged: a frozen parameter
(``requires_grad=False``, see :mod:`minitx.finetune`) is left out by the
optimizer and by gradient clipping, so freezing the body, training a new
head or training LoRA adapters is decided before the Trainer is built,
not inside its loop. Checkpoints still hold every weight.

**Evaluation** runs every ``eval_interval`` iterations and at the end, in
eval mode (dropout off). By default it is the mean loss over ``eval_iters``
batches of the ``train`` and ``val`` splits (nanoGPT's ``estimate_loss``);
a task passes its own ``evaluate() -> {metric: value}`` (accuracy, F1,
BLEU). Each evaluation appends a line to ``<out>/metrics.jsonl``, redraws
``<out>/loss.png`` (with matplotlib) and writes the checkpoint
``<out>/ckpt`` (not at iteration 0: an untrained model is not worth a
file). With ``keep_best=("accuracy", "max")`` the model with the best
value so far is also kept in ``<out>/best``.

**Bit-identical resume.** A run is a deterministic function of its seed:
the initial weights and dropout masks come from the model's generator, the
batches from ``data_rng``, and evaluation uses a generator of its own,
re-seeded at every evaluation, so evaluating never shifts the training
stream. A checkpoint stores the weights, the optimizer's moments and step
count, and every generator's state; loading it and continuing replays
exactly the computation the uninterrupted run would have done, bit for bit.

**Nothing saved is lost.** Checkpoints are written atomically
(:mod:`minitx.train.checkpoint`). When the loss, an activation or the
gradient norm becomes NaN or Inf, the step is *not* applied and
:class:`TrainingDiverged` is raised; the last checkpoint, written before
things went wrong, is left as it was. Ctrl-C lets the current iteration
finish, writes a checkpoint of it and raises :class:`TrainingInterrupted`
(a second Ctrl-C stops at once).

**On a GPU** the same loop runs unchanged: move the model first
(``model.to("cuda")``; the optimizer's buffers are created next to the
weights) and pick the backend (:func:`minitx.backend.set_backend`).
Checkpoints hold NumPy arrays, so a run saved on the GPU resumes on the CPU
and back.
"""
from __future__ import annotations

import json
import math
import os
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import numpy as np

from .. import __version__
from ..backend import to_numpy
from ..fileio import atomic_write_text
from ..nn.checks import NonFiniteError
from ..optim import AdamW, clip_grad_norm
from .checkpoint import BEST_DIR, CKPT_DIR, check_kind, load_checkpoint, save_checkpoint
from .config import TrainConfig, TrainingDiverged, TrainingInterrupted
from .parallel import rng_states, set_rng_states

METRICS_FILE = "metrics.jsonl"
PLOT_FILE = "loss.png"
#: Entries of a run's ``meta`` that a resumed run may change (the rest must equal the checkpoint's).
RESUME_MAY_CHANGE = ("data", "preset", "minitx_version")


class Trainer:
    """Trains ``model`` on batches from ``data`` as ``config`` says; see the module docs.

    ``out_dir`` receives ``ckpt/`` (and ``best/``), ``metrics.jsonl`` and
    ``loss.png``; ``None`` trains in memory only. ``meta`` (JSON-able) goes
    into every checkpoint: its ``kind``, the model's ``config``, the
    tokenizer or vocabularies, where the data came from. ``evaluate`` (no
    arguments, returns a dict of floats) replaces the default loss estimate;
    ``keep_best=(metric, "max" | "min")`` keeps the best model in ``best/``.
    Call :meth:`resume` before :meth:`train` to continue a run.
    """

    def __init__(self, model, data, config: TrainConfig, out_dir=None, *, evaluate=None, keep_best=None,
                 meta: dict | None = None, progress: bool = True, log=print):
        if not isinstance(config, TrainConfig):
            raise ValueError(f"config: got {type(config).__name__}, expected a TrainConfig")
        if keep_best is not None and (len(keep_best) != 2 or keep_best[1] not in ("max", "min")):
            raise ValueError(f"keep_best: got {keep_best!r}, expected (metric name, 'max' or 'min')")
        self.model, self.data, self.config = model, data, config
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.evaluate_fn, self.keep_best = evaluate, keep_best
        self.meta = dict(meta or {})
        self.is_main = bool(getattr(model, "is_main_process", True))  # rank 0 writes and prints
        self.progress, self.log = progress and self.is_main, log if self.is_main else None
        self.optimizer = AdamW(model.named_parameters(), lr=config.lr, betas=(config.beta1, config.beta2),
                               weight_decay=config.weight_decay)
        self.data_rng = np.random.default_rng([config.seed, 1])
        self.iter = 0  # the next iteration to run
        self.best = None  # best value of keep_best's metric so far
        self.best_state = None  # a copy of the weights that reached it, in this process
        self.history: list[dict] = []  # every metrics.jsonl record of this run
        self._recent_losses: list[float] = []  # training losses since the last evaluation
        self._loss_kwargs = {"label_smoothing": config.label_smoothing} if config.label_smoothing else {}

    @property
    def ckpt_dir(self) -> Path | None:
        return self.out_dir / CKPT_DIR if self.out_dir is not None else None

    # ---- one optimisation step -------------------------------------------
    def train_step(self) -> tuple[float, float]:
        """Run iteration ``self.iter``; returns ``(loss, lr)``. Raises TrainingDiverged on NaN/Inf."""
        c, model = self.config, self.model
        lr = c.lr_at(self.iter)
        self.optimizer.lr = lr
        model.zero_grad()
        loss, self._step_tokens = 0.0, 0
        try:
            with np.errstate(over="ignore", invalid="ignore"):  # a diverging run is caught below, in one line
                for _ in range(c.grad_accum):
                    batch = self.data.get_batch("train", c.batch_size, self.data_rng)
                    self._step_tokens += _input_tokens(batch)
                    loss += model.loss(*batch, **self._loss_kwargs)[0] / c.grad_accum
                    model.backward_loss(1.0 / c.grad_accum)
                grad_norm = clip_grad_norm(model.parameters(), c.grad_clip) if c.grad_clip > 0 else 0.0
        except NonFiniteError as exc:  # a layer refused NaN/Inf activations before the loss existed
            raise TrainingDiverged(f"non-finite activations at iteration {self.iter} ({exc}); "
                                   f"{self._not_applied()}") from None
        if not (math.isfinite(loss) and math.isfinite(grad_norm)):
            raise TrainingDiverged(f"loss is {loss} (gradient norm {grad_norm}) at iteration {self.iter}; "
                                   f"{self._not_applied()}")
        self.optimizer.step()
        self.iter += 1
        self._recent_losses.append(loss)
        return loss, lr

    def _not_applied(self) -> str:
        where = f"the last good checkpoint ({self.ckpt_dir}) is unchanged; " if self.ckpt_dir is not None else ""
        return f"training stopped and the step was not applied; {where}expected finite values: try a lower --lr"

    # ---- evaluation --------------------------------------------------------
    def estimate_loss(self) -> dict:
        """Mean loss over ``eval_iters`` batches of each split (the default evaluation).

        The batches come from a generator re-seeded at every evaluation: the
        same batches each time (so successive numbers compare like with like),
        and the training stream's generator is never touched.
        """
        c = self.config
        rng = np.random.default_rng([c.seed, 2])
        out = {}
        for split in ("train", "val"):
            losses = []
            for _ in range(c.eval_iters):
                batch = self.data.get_batch(split, c.batch_size, rng)
                with np.errstate(over="ignore", invalid="ignore"):
                    losses.append(self.model.loss(*batch)[0])
            out[f"{split}_loss"] = float(np.mean(losses))
        return out

    def evaluate(self) -> dict:
        """The metrics of the model as it is now, dropout off. Raises TrainingDiverged if one is not finite."""
        was_training = self.model.training
        self.model.eval()
        try:
            metrics = self.estimate_loss() if self.evaluate_fn is None else dict(self.evaluate_fn())
        except NonFiniteError:
            metrics = {"val_loss": math.nan}
        finally:
            self.model.train(was_training)
        bad = {k: v for k, v in metrics.items() if isinstance(v, float) and not math.isfinite(v)}
        if bad:
            where = f"the last good checkpoint ({self.ckpt_dir}) is unchanged" if self.ckpt_dir else "nothing saved"
            raise TrainingDiverged(f"evaluation gave {bad} at iteration {self.iter}; training stopped; {where}")
        return metrics

    def _improved(self, metrics: dict) -> bool:
        if self.keep_best is None:
            return False
        name, mode = self.keep_best
        if name not in metrics:
            raise ValueError(f"keep_best: metric {name!r} is not among the evaluation's {sorted(metrics)}")
        value = metrics[name]
        better = self.best is None or (value > self.best if mode == "max" else value < self.best)
        if better:
            self.best = value
        return better

    # ---- checkpoints -------------------------------------------------------
    def checkpoint_meta(self) -> tuple[dict, dict]:
        """``(meta, optimizer arrays)`` of the run as it is now (on every process: it gathers RNG states)."""
        optim_arrays, optim_meta = self.optimizer.state_dict()
        meta = {
            "minitx_version": __version__,
            **self.meta,
            "train": asdict(self.config),
            "iter": self.iter,
            "best": None if self.keep_best is None else {"metric": self.keep_best[0], "mode": self.keep_best[1],
                                                          "value": self.best},
            "rng": {"data": self.data_rng.bit_generator.state, "model": rng_states(self.model)},
            "optim": optim_meta,
        }
        return meta, optim_arrays

    def save(self, name: str = CKPT_DIR) -> Path | None:
        """Write the checkpoint ``<out>/<name>`` atomically (rank 0 only); returns its path."""
        meta, optim_arrays = self.checkpoint_meta()  # every process: a collective under MPI
        if self.out_dir is None or not self.is_main:
            return None
        return save_checkpoint(self.out_dir / name, model_state=self.model.state_dict(), optim_arrays=optim_arrays,
                               meta=meta)

    def resume(self, directory) -> None:
        """Continue the run saved in checkpoint folder ``directory``; everything is checked before anything changes."""
        model_state, optim_arrays, meta = load_checkpoint(directory)
        if "kind" in self.meta:
            check_kind(directory, meta, self.meta["kind"], self.meta.get("task"))
        for key, value in self.meta.items():  # the architecture, tokenizer, vocabularies: all must match
            if key not in RESUME_MAY_CHANGE and json.loads(json.dumps(value)) != meta.get(key):
                raise ValueError(f"checkpoint {str(directory)!r}: its {key} differs from this run's; expected the "
                                 f"same {key} to resume")
        try:
            data_state, model_states, it = meta["rng"]["data"], list(meta["rng"]["model"]), int(meta["iter"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"checkpoint {str(directory)!r} lacks iter or rng states; expected a checkpoint "
                             "written by a minitx trainer") from None
        mine = rng_states(self.model)
        if len(model_states) != len(mine):
            if getattr(getattr(self.model, "config", None), "dropout", 0) == 0:
                # without dropout no replica ever draws from its generator: nothing to match, so a
                # checkpoint moves between thread and rank counts (and onto a GPU, which runs one replica)
                model_states = (model_states + mine)[:len(mine)]
            else:
                raise ValueError(f"checkpoint {str(directory)!r} was trained by {len(model_states)} replicas, "
                                 f"expected {len(mine)} (with dropout the replicas' random streams must match "
                                 "to resume exactly)")
        probe = np.random.default_rng()
        try:  # validate the RNG states before anything is changed
            for state in [data_state, *model_states]:
                probe.bit_generator.state = state
        except (TypeError, ValueError, KeyError) as exc:
            raise ValueError(f"checkpoint RNG state is malformed ({exc}); expected numpy PCG64 states") from None
        self.model.load_state_dict(model_state)
        self.optimizer.load_state_dict(optim_arrays, meta["optim"])
        self.data_rng.bit_generator.state = data_state
        set_rng_states(self.model, model_states)
        self.iter = it
        best = meta.get("best")
        self.best = best.get("value") if isinstance(best, dict) else None
        self._load_history(it)

    def _load_history(self, it: int) -> None:
        """The metrics.jsonl records up to iteration ``it`` (a crash may have left later ones)."""
        path = self.out_dir / METRICS_FILE if self.out_dir is not None else None
        kept = []
        if path is not None and path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(record, dict) and record.get("iter", math.inf) <= it:
                    kept.append(record)
        self.history = kept

    def _write_metrics(self) -> None:
        """Rewrite metrics.jsonl whole, atomically (a new run's first write replaces an old run's file)."""
        atomic_write_text(self.out_dir / METRICS_FILE, "".join(json.dumps(r) + "\n" for r in self.history))

    # ---- the loop ------------------------------------------------------------
    def _evaluate_and_save(self, tokens_per_sec: float) -> dict:
        metrics = self.evaluate()
        record = {"iter": self.iter}
        if self.evaluate_fn is not None and self._recent_losses:
            record["train_loss"] = float(np.mean(self._recent_losses))
        record.update(metrics)
        record.update({"lr": self.config.lr_at(min(self.iter, self.config.max_iters)),
                       "tokens_per_sec": round(tokens_per_sec, 1)})
        self._recent_losses = []
        improved = self._improved(metrics)
        if improved:
            self.best_state = {name: to_numpy(a).copy() for name, a in self.model.state_dict().items()}
        self.history.append(record)
        if self.iter > 0:  # an untrained model is not worth a checkpoint (nor replacing an old run's)
            self.save(CKPT_DIR)
            if improved:
                self.save(BEST_DIR)
        if self.out_dir is not None and self.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self._write_metrics()
            if len(self.history) > 1:  # one point is no curve (and matplotlib's import costs a user 0.3 s)
                plot_metrics(self.history, self.out_dir / PLOT_FILE)
        return record

    def train(self, *, stop_at: int | None = None, max_seconds: float | None = None) -> list[dict]:
        """Train until ``max_iters`` (or until ``stop_at``, to simulate an interruption).

        Evaluates at iteration 0, every ``eval_interval`` and at ``max_iters``;
        checkpoints at each of those after 0. A resumed run does not repeat
        the evaluation it resumed from. With ``max_seconds`` the run stops
        once that much time has passed, after evaluating and checkpointing
        the iteration it reached (``self.stopped_early`` is then True; the
        schedule is still the one for ``max_iters``, so ``resume`` carries
        on exactly). Returns the metrics records of this run.
        """
        c = self.config
        end = c.max_iters if stop_at is None else min(stop_at, c.max_iters)
        deadline = None if max_seconds is None else time.monotonic() + max_seconds
        self.stopped_early = False
        start = self.iter
        skip_eval = any(r.get("iter") == start for r in self.history)  # resumed right after that evaluation
        agree = getattr(self.model, "any_rank", bool)  # under MPI every rank must stop at the same iteration
        bar = _progress(enabled=self.progress, initial=self.iter, total=c.max_iters)
        tick, tokens, rate = time.perf_counter(), 0, 0.0
        self.model.train()
        try:
            with _ctrl_c_flag() as pressed:
                for it in range(start, end + 1):
                    if (it % c.eval_interval == 0 or it == c.max_iters) and not (skip_eval and it == start):
                        record = self._evaluate_and_save(rate)
                        self._print(bar, format_record(record))
                        tick, tokens = time.perf_counter(), 0  # throughput excludes evaluation time
                    if it == end:
                        break
                    if deadline is not None and it > start and agree(time.monotonic() > deadline):
                        self.stopped_early = True
                        if not any(r.get("iter") == it for r in self.history):
                            self._print(bar, format_record(self._evaluate_and_save(rate)))
                        break
                    if agree(pressed.is_set()):
                        raise TrainingInterrupted(self.iter, self.save(CKPT_DIR) if self.iter > 0 else None)
                    loss, lr = self.train_step()
                    tokens += self._step_tokens
                    rate = tokens / max(time.perf_counter() - tick, 1e-9)
                    if bar is not None:
                        bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", tok_s=f"{rate:,.0f}", refresh=False)
                        bar.update(1)
        finally:
            if bar is not None:
                bar.close()
        return self.history

    def _print(self, bar, message: str) -> None:
        """Hand ``message`` to ``log`` (the caller's choice: stdout, a list, nothing), lifting the bar meanwhile.

        Not ``bar.write``: that always prints to stdout, which would mix
        evaluation lines into a ``--json`` stream whose caller asked for quiet.
        """
        if self.log is None:
            return
        if bar is None:
            self.log(message)
        else:
            with bar.external_write_mode():
                self.log(message)

    def close(self) -> None:
        """Kept for symmetry with earlier versions: the trainer holds no threads (a DataParallel does)."""


def _input_tokens(batch) -> int:
    """Tokens a batch feeds the model: every array but the last (the targets); for ``(x, y)``, ``x.size``."""
    inputs = batch[:-1] if len(batch) > 1 else batch
    return int(sum(getattr(a, "size", 0) for a in inputs))


def format_record(record: dict) -> str:
    """``iter 500: train_loss 1.2345, val_loss 1.3456, lr 1.00e-03, 23,456 tokens/s``."""
    parts = []
    for key, value in record.items():
        if key in ("iter", "tokens_per_sec"):
            continue
        parts.append(f"{key} {value:.2e}" if key == "lr" else f"{key} {value:.4f}" if isinstance(value, float)
                     else f"{key} {value}")
    return f"iter {record['iter']}: " + ", ".join(parts) + f", {record.get('tokens_per_sec', 0):,.0f} tokens/s"


@contextmanager
def _ctrl_c_flag():
    """While inside, the first Ctrl-C only sets the yielded event; the second interrupts at once.

    Letting the current iteration finish is what makes the checkpoint written
    on Ctrl-C consistent: an interrupt in the middle of ``optimizer.step``
    would leave half the weights updated. Outside the main thread (where
    Python delivers no signals) this does nothing.
    """
    pressed = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield pressed
        return

    def handler(signum, frame):
        if pressed.is_set():
            raise KeyboardInterrupt
        pressed.set()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield pressed
    finally:
        signal.signal(signal.SIGINT, previous)


def _progress(*, enabled: bool, initial: int, total: int):
    """A tqdm bar (loss, lr, tokens/s in its postfix), or None when disabled."""
    if not enabled:
        return None
    from tqdm.auto import tqdm  # noqa: PLC0415

    return tqdm(total=total, initial=initial, desc="train", unit="it", dynamic_ncols=True)


def plot_available() -> bool:
    """Whether :func:`plot_metrics` can draw (matplotlib is an optional extra)."""
    import importlib.util  # noqa: PLC0415

    return importlib.util.find_spec("matplotlib") is not None


def plot_metrics(history: list[dict], path: Path) -> Path | None:
    """Losses against iteration (left) and any other metric (right); skipped quietly without matplotlib."""
    try:
        import matplotlib  # noqa: PLC0415 - optional extra

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        return None
    keys = [k for k in dict.fromkeys(k for r in history for k in r) if k not in ("iter", "lr", "tokens_per_sec")]
    losses = [k for k in keys if k.endswith("loss")]
    others = [k for k in keys if k not in losses]
    fig, axes = plt.subplots(1, 2 if others else 1, figsize=(10 if others else 6, 3.5), squeeze=False)
    for ax, names, label in ((axes[0][0], losses, "loss"), *(((axes[0][1], others, "metric"),) if others else ())):
        for name in names:
            points = [(r["iter"], r[name]) for r in history if isinstance(r.get(name), (int, float))]
            if points:
                ax.plot(*zip(*points), "o-", label=name.replace("_", " "))
        ax.set_xlabel("iteration")
        ax.set_ylabel(label)
        if ax.get_lines():
            ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")  # write, then rename: never a half-drawn plot
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
    return path

__all__ = ["METRICS_FILE", "PLOT_FILE", "TrainConfig", "Trainer", "TrainingDiverged", "TrainingInterrupted",
           "format_record", "plot_metrics"]
