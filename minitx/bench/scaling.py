"""A small scaling law: validation loss against parameter count, fitted by a power law.

    python -m minitx.bench.scaling [--seed S] [--json] [--fast] [--cache DIR] [--threads N] [--plot FILE]

Kaplan et al. (2020) found that a language model's loss falls as a power
law in its (non-embedding) parameter count ``N`` when data and compute are
not the bottleneck: ``L(N) = (N_c / N) ** alpha_N`` with ``alpha_N``
about 0.076 for their models. On a log-log plot that is a straight line of
slope ``-alpha_N``.

Here: five character-level GPTs (2 layers, 16 to 128 wide) trained on the
same text (the embedded default corpus, first 90% train, last 10% val) with
the same token budget, each through the one Trainer with two data-parallel
threads. ``N`` counts the non-embedding parameters (Kaplan's convention: the
token and position tables only look words up). The fit is least squares on
``log L = log a - alpha log N``. With a toy budget (half a million
characters, loss still above 2 nats) the points are not quite on one line:
measured, the slope steepens towards the larger models (they learn faster
per token), so the exponent is a toy run's, not Kaplan's, and R^2 says how
straight the line is.

``--json`` prints a row ``{"model", "n_params", "n_non_embedding", "val_loss",
"tokens"}`` per size, then ``{"fit": {"alpha", "a", "r2"}}``.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..models.gpt import GPT, GPTConfig
from ..train.config import TrainConfig

WIDTHS = (16, 32, 48, 64, 128)
FAST_WIDTHS = (8, 12, 16, 24)


@dataclass(frozen=True)
class ScalingBudget:
    max_iters: int = 500
    batch_size: int = 16
    block_size: int = 64
    lr: float = 3e-3
    n_layer: int = 2
    corpus_chars: int | None = None  # None: the whole default corpus

    @property
    def tokens(self) -> int:
        return self.max_iters * self.batch_size * self.block_size


FULL = ScalingBudget()
FAST = ScalingBudget(max_iters=20, batch_size=4, block_size=16, corpus_chars=40_000)


def non_embedding_params(model: GPT) -> int:
    """Parameters outside the token and position tables (Kaplan et al.'s N)."""
    return sum(int(p.data.size) for name, p in model.named_parameters() if not name.startswith(("wte.", "wpe.")))


def fit_power_law(n, loss) -> dict:
    """Least squares on ``log L = log a - alpha log N``: ``{"alpha", "a", "r2"}``."""
    x, y = np.log(np.asarray(n, dtype=float)), np.log(np.asarray(loss, dtype=float))
    slope, intercept = np.polyfit(x, y, 1)
    residual = y - (intercept + slope * x)
    r2 = 1.0 - float(residual @ residual) / float(((y - y.mean()) ** 2).sum())
    return {"alpha": float(-slope), "a": float(np.exp(intercept)), "r2": r2}


def run(seed: int = 0, *, fast: bool = False, cache=".cache/scaling", threads: int = 2, log=print) -> dict:
    from ..corpus import default_corpus  # noqa: PLC0415
    from ..tokenizer import CharTokenizer  # noqa: PLC0415
    from ..train.data import LMDataset  # noqa: PLC0415
    from ..train.lm import gpt_meta, read_checkpoint  # noqa: PLC0415
    from ..train.parallel import DataParallel  # noqa: PLC0415
    from ..train.trainer import Trainer  # noqa: PLC0415

    budget, widths = (FAST, FAST_WIDTHS) if fast else (FULL, WIDTHS)
    t0, c0 = time.perf_counter(), time.process_time()
    text = default_corpus()
    if budget.corpus_chars is not None:
        text = text[: budget.corpus_chars]
    tokenizer = CharTokenizer().train(text)
    data = LMDataset(text, tokenizer, block_size=budget.block_size)
    rows, infos = [], {}
    for width in widths:
        config = GPTConfig(vocab_size=tokenizer.vocab_size, block_size=budget.block_size, n_layer=budget.n_layer,
                           n_head=max(1, width // 16), n_embd=width)
        name = f"gpt-{budget.n_layer}x{width}"
        out = Path(cache) / f"{name}-seed{seed}-iters{budget.max_iters}-chars{len(text)}"
        model = GPT(config, seed=seed)
        meta = None
        if (out / "ckpt").is_dir():
            state, _, meta = read_checkpoint(out)
            if meta.get("config") == config.to_dict() and meta.get("iter") == budget.max_iters:
                model.load_state_dict(state)
                infos[name] = dict(meta["scaling_run"], cached=True)
            else:
                meta = None
        if meta is None:
            wrapped = DataParallel(model, threads=threads, seed=seed) if threads > 1 else model
            train = TrainConfig(batch_size=budget.batch_size, max_iters=budget.max_iters, lr=budget.lr,
                                min_lr=budget.lr / 10, warmup_iters=max(1, budget.max_iters // 20),
                                eval_interval=budget.max_iters, eval_iters=20 if not fast else 2, seed=seed)
            trainer = Trainer(wrapped, data, train, None, meta=gpt_meta(model, tokenizer), progress=False,
                              log=lambda *a, **k: None)
            start = time.perf_counter()
            try:
                history = trainer.train()
            finally:
                if threads > 1:
                    wrapped.close()
            trainer.out_dir = out
            trainer.meta["scaling_run"] = {"val_loss": history[-1]["val_loss"],
                                           "seconds": round(time.perf_counter() - start, 1)}
            trainer.save()
            meta = {"scaling_run": trainer.meta["scaling_run"]}
            infos[name] = dict(meta["scaling_run"], cached=False)
            log(f"trained {name} ({model.num_parameters():,} parameters) in "
                f"{meta['scaling_run']['seconds']:.0f} s: val loss {history[-1]['val_loss']:.4f}")
        rows.append({"model": name, "n_params": model.num_parameters(), "n_non_embedding": non_embedding_params(model),
                     "val_loss": float(meta["scaling_run"]["val_loss"]), "tokens": budget.tokens})
    fit = fit_power_law([r["n_non_embedding"] for r in rows], [r["val_loss"] for r in rows])
    return {"rows": rows, "fit": fit, "seed": seed, "fast": fast, "models": infos,
            "seconds": round(time.perf_counter() - t0, 1), "cpu_seconds": round(time.process_time() - c0, 1)}


def plot(result: dict, path) -> Path | None:
    """Log-log scatter of val loss against N with the fitted line; None without matplotlib."""
    from . import pyplot, save_figure  # noqa: PLC0415

    plt = pyplot()
    if plt is None:
        return None
    n = np.array([r["n_non_embedding"] for r in result["rows"]], dtype=float)
    loss = np.array([r["val_loss"] for r in result["rows"]])
    fit = result["fit"]
    fig, ax = plt.subplots(figsize=(5, 3.6))
    ax.loglog(n, loss, "o", label="trained models")
    grid = np.geomspace(n.min() / 1.5, n.max() * 1.5, 50)
    ax.loglog(grid, fit["a"] * grid ** -fit["alpha"], "--",
              label=f"fit: L = {fit['a']:.2f} N^-{fit['alpha']:.3f} (R² {fit['r2']:.2f})")
    for r in result["rows"]:
        ax.annotate(r["model"], (r["n_non_embedding"], r["val_loss"]), fontsize=7, xytext=(3, 3),
                    textcoords="offset points")
    ax.set_xlabel("non-embedding parameters N")
    ax.set_ylabel("validation loss (nats/char)")
    ax.set_title(f"same data, {result['rows'][0]['tokens']:,} training tokens each")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    return save_figure(fig, path)


def main(argv=None) -> int:
    from . import cache_note, study_parser  # noqa: PLC0415

    p = study_parser("scaling", __doc__, seed_help="the models and batches",
                     fast_help="tiny models and budgets: seconds, for the tests",
                     cache="trained models")
    p.add_argument("--plot", default=None, metavar="FILE", help="write the log-log plot here (default: none)")
    args = p.parse_args(argv)
    result = run(args.seed, fast=args.fast, cache=args.cache, threads=args.threads,
                 log=lambda *a, **k: print(*a, file=sys.stderr, **k))
    if args.plot and plot(result, args.plot) is None:
        print(f"--plot: no figure written to {args.plot}: matplotlib is not installed (pip install '.[plot]')",
              file=sys.stderr)
    if args.json:
        for r in result["rows"]:
            print(json.dumps(r))
        print(json.dumps({"fit": result["fit"], "seconds": result["seconds"], "cpu_seconds": result["cpu_seconds"]}))
        return 0
    print(f"validation loss against size (seed {result['seed']}, {result['rows'][0]['tokens']:,} tokens each)")
    print(f"{'model':<10} {'params':>9} {'non-emb N':>10} {'val loss':>9}")
    for r in result["rows"]:
        print(f"{r['model']:<10} {r['n_params']:>9,} {r['n_non_embedding']:>10,} {r['val_loss']:>9.4f}")
    f = result["fit"]
    print(f"power law: L = {f['a']:.3f} * N^-{f['alpha']:.4f} (R^2 {f['r2']:.3f}); fitted exponent alpha = "
          f"{f['alpha']:.4f} (Kaplan et al.: about 0.076)")
    print(f"{result['seconds']:.0f} s wall clock, {result['cpu_seconds']:.0f} s CPU time ({cache_note(result['models'])})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
