"""RNN, GRU and GPT on the recall task: why attention won, measured.

    python -m minitx.bench.rnn [--seed S] [--json] [--fast]

Three language models of about the same size (about 0.1M parameters) are
trained on the same generated data (:class:`~minitx.datasets.recall.RecallTask`:
facts "key k has value v" under a fresh binding per sequence, and queries
naming a key: the token after a query is the value the key's latest fact,
N positions earlier, gave it)
with the same :class:`~minitx.train.config.TrainConfig` (only the peak
learning rate is each model's own, the best of a small sweep), so the same
seed gives every model the *same batches*, and the same token budget:

* ``rnn``: a vanilla tanh RNN (:class:`~minitx.nn.rnn.RNN`), hidden size 256;
* ``gru``: a GRU (:class:`~minitx.nn.rnn.GRU`), hidden size 144;
* ``gpt``: a 2-layer, 2-head, 64-wide GPT (:class:`~minitx.models.gpt.GPT`).

Two kinds of row are printed (with ``--json``, one JSON object a line):

* ``{"model", "n_params", "distance", "accuracy"}``: the share of fresh
  sequences (``n_eval`` per cell) whose answer at distance N (the
  queried key's latest fact N tokens back) is the model's top token; chance
  is ``1 / n_values`` = 0.25;
* ``{"model", "val_loss", "tokens_per_s"}``: the cross-entropy of the answer
  on validation sequences (distances drawn like the training data's) and the
  training throughput over the whole run, every input token counted. A GPT
  layer processes all T positions in one matrix product; an RNN takes T
  sequential steps, each a small ``(B, H) @ (H, G*H)`` product plus Python
  overhead.

Target, under any seed: at the farthest distance the GPT's accuracy is at
least 0.9 and the vanilla RNN's at least 0.3 lower, while the RNN reaches at
least 0.8 at the nearest distance; the command exits 1 when that fails
(``--fast`` is a seconds-long structural run with tiny models and checks
nothing). The full run stays within 15 minutes on 2 cores; results are
recorded in ``benchmarks/rnn.md``.
"""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field

import numpy as np


@dataclass
class RecallBenchSettings:
    """Everything a bench run is made of; :meth:`full` is the issue's run, :meth:`fast` the tests'."""

    n_keys: int = 4
    n_values: int = 4
    seq_len: int = 72  # distances up to 71
    query_rate: float = 0.5
    distances: tuple = (2, 4, 8, 16, 32, 48, 64)
    iters: int = 1500
    batch_size: int = 32
    lr: dict = field(default_factory=lambda: dict(rnn=1e-3, gru=3e-3, gpt=3e-3))  # each model's best of {1, 2, 3}e-3
    warmup_iters: int = 50
    n_eval: int = 500
    eval_iters: int = 20
    gpt: dict = field(default_factory=lambda: dict(n_layer=2, n_head=2, n_embd=64))
    rnn: dict = field(default_factory=lambda: dict(n_embd=64, hidden_size=256))
    gru: dict = field(default_factory=lambda: dict(n_embd=64, hidden_size=144))

    @classmethod
    def full(cls) -> RecallBenchSettings:
        return cls()

    @classmethod
    def fast(cls) -> RecallBenchSettings:
        return cls(n_keys=4, n_values=4, seq_len=10, distances=(2, 4, 8), iters=30, batch_size=16, lr=dict(rnn=3e-3, gru=3e-3, gpt=3e-3), warmup_iters=5, n_eval=40,
                   eval_iters=2, gpt=dict(n_layer=1, n_head=2, n_embd=16), rnn=dict(n_embd=8, hidden_size=24),
                   gru=dict(n_embd=8, hidden_size=14))


MODELS = ("rnn", "gru", "gpt")


def build_model(name: str, task, settings: RecallBenchSettings, seed: int):
    """The model ``name`` ("rnn", "gru" or "gpt") sized by ``settings`` for ``task``'s vocabulary and length."""
    from minitx.models import GPT, RNNLM, GPTConfig, RNNConfig

    if name == "gpt":
        return GPT(GPTConfig(vocab_size=task.vocab_size, block_size=task.seq_len, **settings.gpt), seed=seed)
    if name in ("rnn", "gru"):
        return RNNLM(RNNConfig(vocab_size=task.vocab_size, cell=name, **getattr(settings, name)), seed=seed)
    raise ValueError(f"model: got {name!r}, expected one of {MODELS}")


def train_config(settings: RecallBenchSettings, seed: int, name: str):
    """The same schedule, batches and token budget for every model; only the peak learning rate is the model's own."""
    from minitx.train.config import TrainConfig

    s, lr = settings, settings.lr[name]
    return TrainConfig(batch_size=s.batch_size, max_iters=s.iters, lr=lr, min_lr=lr / 10,
                       warmup_iters=s.warmup_iters, eval_interval=s.iters, eval_iters=s.eval_iters,
                       weight_decay=0.0, seed=seed)


def run(settings: RecallBenchSettings, seed: int = 0, *, models=MODELS, log=None):
    """Train and evaluate each model; returns ``(rows, trained models by name)``.

    Every model gets the same ``TrainConfig`` (hence the same batches) and an
    evaluation generator seeded from ``seed`` alone, so every model is
    evaluated on the same fresh sequences.
    """
    from minitx.datasets.recall import RecallTask, recall_accuracy
    from minitx.train.trainer import Trainer

    s = settings
    task = RecallTask(n_keys=s.n_keys, n_values=s.n_values, seq_len=s.seq_len, query_rate=s.query_rate)
    rows, trained = [], {}
    for name in models:
        model = build_model(name, task, s, seed)
        t0 = time.perf_counter()
        history = Trainer(model, task, train_config(s, seed, name), None, progress=False, log=None).train()
        seconds = time.perf_counter() - t0
        model.eval()
        final = history[-1]
        for distance in s.distances:
            acc = recall_accuracy(model, task, distance, s.n_eval, np.random.default_rng([seed, 7, distance]))
            rows.append({"model": name, "n_params": model.num_parameters(), "distance": distance,
                         "accuracy": round(acc, 4)})
        rows.append({"model": name, "val_loss": round(final["val_loss"], 4),
                     "tokens_per_s": round(final["tokens_per_sec"], 1)})
        trained[name] = model
        if log is not None:
            log(f"  {name}: {model.num_parameters():,} parameters, trained in {seconds:.0f} s")
    return rows, trained


def check_target(rows) -> list[str]:
    """The issue's target as a list of failures (empty = met)."""
    acc = {(r["model"], r["distance"]): r["accuracy"] for r in rows if "accuracy" in r}
    near, far = min(d for _, d in acc), max(d for _, d in acc)
    failures = []
    if acc[("gpt", far)] < 0.9:
        failures.append(f"gpt at distance {far}: {acc[('gpt', far)]:.3f}, expected >= 0.9")
    if acc[("rnn", far)] > acc[("gpt", far)] - 0.3:
        failures.append(f"rnn at distance {far}: {acc[('rnn', far)]:.3f}, expected <= gpt - 0.3 = "
                        f"{acc[('gpt', far)] - 0.3:.3f}")
    if acc[("rnn", near)] < 0.8:
        failures.append(f"rnn at distance {near}: {acc[('rnn', near)]:.3f}, expected >= 0.8")
    return failures


def format_tables(rows) -> str:
    acc_rows = [r for r in rows if "accuracy" in r]
    models = list(dict.fromkeys(r["model"] for r in acc_rows))
    distances = list(dict.fromkeys(r["distance"] for r in acc_rows))
    acc = {(r["model"], r["distance"]): r["accuracy"] for r in acc_rows}
    params = {r["model"]: r["n_params"] for r in acc_rows}
    lines = ["accuracy by distance N (chance 1 / n_values):",
             f"{'model':<6}{'params':>9}" + "".join(f"{'N=' + str(d):>8}" for d in distances)]
    for m in models:
        lines.append(f"{m:<6}{params[m]:>9,}" + "".join(f"{acc[(m, d)]:>8.3f}" for d in distances))
    lines += ["", f"{'model':<6}{'val_loss':>10}{'tokens/s':>10}"]
    for r in rows:
        if "val_loss" in r:
            lines.append(f"{r['model']:<6}{r['val_loss']:>10.4f}{r['tokens_per_s']:>10,.0f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    from . import cpu_model, positive_int, study_parser  # noqa: PLC0415

    p = study_parser("rnn", __doc__, seed_help="the weights, the data and the evaluation",
                     fast_help="tiny models, seconds: checks the structure, not the target")
    p.add_argument("--blas-threads", type=positive_int, default=1,
                   help="BLAS threads for every model (default 1: these matrices are small, and on a shared host "
                        "a second spinning BLAS thread costs more than it gives)")
    args = p.parse_args(argv)
    settings = RecallBenchSettings.fast() if args.fast else RecallBenchSettings.full()
    err = (lambda m: print(m, file=sys.stderr)) if args.json else print
    load0 = os.getloadavg()
    err(f"recall task: {settings.n_keys} keys, {settings.n_values} values, queries at rate {settings.query_rate}; "
        f"{settings.iters} iterations x batch {settings.batch_size} x {settings.seq_len} tokens per model, "
        f"seed {args.seed}")
    err(f"machine: {cpu_model()}, {os.cpu_count()} cores, "
        f"load average {load0[0]:.2f} at start, BLAS threads {args.blas_threads}")
    from threadpoolctl import (
        threadpool_limits,  # a core dependency (see minitx.train.parallel)
    )

    t0 = time.perf_counter()
    with threadpool_limits(limits=args.blas_threads, user_api="blas"):
        rows, _ = run(settings, args.seed, log=err)
    minutes = (time.perf_counter() - t0) / 60
    if args.json:
        for r in rows:
            print(json.dumps(r))
    else:
        print(format_tables(rows))
    err(f"{minutes:.1f} min wall clock; load average {os.getloadavg()[0]:.2f} at the end")
    if args.fast:
        return 0
    failures = check_target(rows)
    err("target met" if not failures else "target MISSED: " + "; ".join(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
