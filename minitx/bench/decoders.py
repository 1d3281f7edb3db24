"""GPT-2, LLaMA and BLOOM decoders side by side: what each change buys, measured.

    python -m minitx.bench.decoders [--seed S] [--json] [--fast] [--plot FILE] [--data FILE]

The one :class:`~minitx.models.gpt.GPT`, configured eight ways, each trained
by the one :class:`~minitx.train.trainer.Trainer` on the same characters
(tiny Shakespeare when it is found beside the repository, else minitx's
embedded corpus, and the run says which) with the same
:class:`~minitx.train.config.TrainConfig`: the same seed, hence the same
batches, and the same token budget.

======================  ==========================================================
``gpt2``                LayerNorm, learned positions (a ``block_size`` table), GELU MLP
``gpt2+rmsnorm``        GPT-2 with one change: RMSNorm (likewise ``gpt2+rope``, ``gpt2+swiglu``)
``llama-kv4``           RMSNorm, RoPE, SwiGLU, no biases, 4 key/value heads (MHA)
``llama-kv2``           the same with grouped-query attention, 2 KV heads (LLaMA-style)
``llama-kv1``           the same with one KV head (multi-query)
``bloom``               GPT-2's block with ALiBi instead of positions and a norm on the embeddings
======================  ==========================================================

Every variant's ``d_ff`` is chosen so that its parameter count matches the
GPT-2-style model's (the count is printed, with the difference): a SwiGLU
holds three ``D x d_ff`` matrices where the MLP holds two, fewer KV heads
free attention weights, and no position table frees ``block_size x D``.
The token embedding is tied to the LM head in all of them, as in GPT-2 and
minitx's small ``llama-*`` presets. The peak learning rate is the same for
all (3e-3, not tuned per model).

Three measurements, printed as tables (``--json``: one object a line, the
field ``"kind"`` says which):

* ``"model"``: parameters, validation loss at the end of training (the
  Trainer's estimate, ``eval_iters`` batches of the validation split),
  training tokens/s, and the loss curve (``"curve"``: ``[iter, val_loss]``
  pairs, every ``eval_interval`` iterations).
* ``"extrapolation"``: the mean next-token loss on the first ``eval_tokens``
  characters of the validation split, cut into non-overlapping windows of
  1x, 2x and 4x the trained context (the same characters at every length);
  ``"loss_past_trained"`` averages only the positions at or past the trained
  context, the ones the model never saw in training. A learned-position
  model cannot run past its table: its rows there carry the ``ValueError``
  its ``forward`` raises (``"error"``) instead of a number.
* ``"kv_cache"``: each LLaMA variant decodes greedily from a prompt until its
  context is full; the bytes its KV caches hold (``KVCache.nbytes``, summed
  over the layers) divided by the tokens cached, beside the formula
  ``2 (K and V) x n_layer x n_kv_head x head_size x itemsize``, and whether the
  cached tokens equal those of decoding without a cache.

``--fast`` is a seconds-long structural run (tiny models, a few iterations,
the first 20,000 characters) for the tests: its numbers check the plumbing,
not the findings. The full run is about 6 minutes of CPU time (all
threads together; a shared host stretches its wall clock, not that); it is
recorded in ``benchmarks/decoders.md``.
"""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..models.gpt import BLOOM, GPT, LLAMA, GPTConfig

# --------------------------------------------------------------------------
# What is compared
# --------------------------------------------------------------------------
#: Model name -> the GPTConfig fields that make it what it is (the rest is the shared size).
#: ``LLAMA`` and ``BLOOM`` are the recipes the ``llama-*`` and ``bloom-*`` presets use.
FAMILIES: dict[str, dict] = {
    "gpt2": {},
    "gpt2+rmsnorm": dict(norm="rmsnorm"),  # one change at a time: what each buys on its own
    "gpt2+rope": dict(positions="rope"),
    "gpt2+swiglu": dict(ffn="swiglu"),
    "llama-kv4": dict(LLAMA, n_kv_head=4),
    "llama-kv2": dict(LLAMA, n_kv_head=2),
    "llama-kv1": dict(LLAMA, n_kv_head=1),
    "bloom": dict(BLOOM),
}
REFERENCE = "gpt2"  # every other model's parameter count is matched to this one's
KV_CACHE_MODELS = ("llama-kv4", "llama-kv2", "llama-kv1")  # the same model at 4, 2 and 1 KV heads
MATCH_TOLERANCE = 0.03  # the widest relative parameter difference allowed


@dataclass(frozen=True)
class DecoderBenchSettings:
    """Everything a run is made of; :meth:`full` is the recorded run, :meth:`fast` the tests'."""

    n_layer: int = 4
    n_head: int = 4  # so that 4, 2 and 1 KV heads are full, grouped and multi-query attention
    n_embd: int = 64
    block_size: int = 64  # the trained context
    batch_size: int = 32
    iters: int = 500
    lr: float = 3e-3
    warmup_iters: int = 25
    eval_interval: int = 50
    eval_iters: int = 10
    factors: tuple = (1, 2, 4)  # evaluated contexts, in multiples of block_size
    eval_tokens: int = 32768  # characters of the validation split scored at every length
    prompt_tokens: int = 8  # the KV-cache measurement's prompt; it decodes until block_size is full
    corpus_chars: int | None = None  # None: the whole text
    threads: int = 2  # data-parallel threads per training step
    models: tuple = tuple(FAMILIES)

    @classmethod
    def full(cls) -> DecoderBenchSettings:
        return cls()

    @classmethod
    def fast(cls) -> DecoderBenchSettings:
        return cls(n_layer=1, n_head=4, n_embd=16, block_size=8, batch_size=4, iters=6, warmup_iters=1,
                   eval_interval=3, eval_iters=1, eval_tokens=128, prompt_tokens=3, corpus_chars=20_000, threads=1)

    @property
    def tokens(self) -> int:
        """Training tokens every model sees: ``iters x batch_size x block_size``."""
        return self.iters * self.batch_size * self.block_size


def load_text(path=None, corpus_chars: int | None = None) -> tuple[str, str]:
    """``(text, description)``: ``path``, else tiny Shakespeare if present, else the embedded corpus."""
    from . import shakespeare_path  # noqa: PLC0415

    if path is None:
        path = shakespeare_path()
        if path is None:
            from ..corpus import default_corpus  # noqa: PLC0415

            text, what = default_corpus(), "minitx's embedded corpus (tiny Shakespeare not found)"
            return (text if corpus_chars is None else text[:corpus_chars]), what
        what = f"tiny Shakespeare ({path})"
    else:
        what = str(path)
    text = Path(path).read_text(encoding="utf-8")
    return (text if corpus_chars is None else text[:corpus_chars]), what


# --------------------------------------------------------------------------
# The same parameter count
# --------------------------------------------------------------------------
def base_config(settings: DecoderBenchSettings, vocab_size: int, name: str, d_ff: int | None = None) -> GPTConfig:
    s = settings
    return GPTConfig(vocab_size=vocab_size, block_size=s.block_size, n_layer=s.n_layer, n_head=s.n_head,
                     n_embd=s.n_embd, d_ff=d_ff, **FAMILIES[name])


def count_parameters(config: GPTConfig) -> int:
    return GPT(config, seed=0).num_parameters()


def matched_config(settings: DecoderBenchSettings, vocab_size: int, name: str, target: int) -> GPTConfig:
    """The config of ``name`` whose ``d_ff`` brings its parameter count closest to ``target``.

    The count is linear in ``d_ff`` (each hidden unit adds the same weights
    in every layer), so two model builds give the line and the best width
    follows; the neighbours of the rounded answer are then counted exactly.
    """
    n1, n2 = (count_parameters(base_config(settings, vocab_size, name, d)) for d in (1, 2))
    per_unit = n2 - n1
    guess = max(1, round(1 + (target - n1) / per_unit))
    best = min(range(max(1, guess - 1), guess + 2),
               key=lambda d: abs(count_parameters(base_config(settings, vocab_size, name, d)) - target))
    return base_config(settings, vocab_size, name, best)


# --------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------
def loss_by_position(model, ids, length: int, batch_rows: int = 16):
    """Mean next-token loss at each position of windows of ``length`` tokens: ``-> [length]`` (float64).

    ``ids`` (1-D) is cut into ``(len(ids) - 1) // length`` non-overlapping
    windows; the one extra token is the last window's final target. Raises whatever ``model.forward`` raises for
    a window it cannot take (a learned-position model past its table).
    """
    from ..backend import to_numpy  # noqa: PLC0415
    from ..nn import log_softmax_forward  # noqa: PLC0415

    n = (len(ids) - 1) // length
    x = ids[: n * length].reshape(n, length)  # (n, L) inputs
    y = ids[1 : n * length + 1].reshape(n, length)  # (n, L) next tokens
    total = np.zeros(length)
    model.eval()
    for i in range(0, n, batch_rows):
        logits = model.forward(x[i : i + batch_rows])  # (b, L, V)
        logp, _ = log_softmax_forward(logits)  # (b, L, V)
        picked = np.take_along_axis(to_numpy(logp), y[i : i + batch_rows, :, None], axis=-1)[..., 0]  # (b, L)
        total -= picked.astype(np.float64).sum(axis=0)  # (L,)
    return total / n


def extrapolation_rows(name: str, model, ids, settings: DecoderBenchSettings) -> list[dict]:
    """Loss at every evaluated context (``settings.factors x block_size``) on the same tokens."""
    T = settings.block_size
    rows = []
    for factor in settings.factors:
        L = factor * T
        row = {"kind": "extrapolation", "model": name, "positions": model.config.positions, "trained_context": T,
               "context": L, "factor": factor}
        try:
            by_pos = loss_by_position(model, ids, L)  # (L,)
        except ValueError as exc:
            row.update(loss=None, loss_past_trained=None, error=str(exc))
        else:
            row.update(loss=round(float(by_pos.mean()), 4),
                       loss_past_trained=round(float(by_pos[T:].mean()), 4) if L > T else None,
                       by_position=[round(float(v), 4) for v in by_pos])
        rows.append(row)
    return rows


def kv_cache_row(name: str, model, prompt) -> dict:
    """Decode greedily from ``prompt [1, P]`` until the caches are full; measure what they hold.

    The loop is the KV-cached decoding of :func:`minitx.generate.iter_tokens`
    written out, so that the caches themselves can be weighed afterwards.
    Its tokens are compared with ``generate(..., use_kv_cache=False)``,
    which recomputes every step from the ids alone.
    """
    from ..backend import to_numpy  # noqa: PLC0415
    from ..generate import generate  # noqa: PLC0415

    c = model.config
    model.eval()
    caches = model.new_kv_caches()  # one per block, for block_size tokens
    n_new = c.block_size - prompt.shape[1] + 1  # the last token needs no logits after it, so it is never cached
    logits = model.forward(prompt, kv_caches=caches)[:, -1]  # (1, V) prefill
    tokens = []
    for step in range(n_new):
        nxt = to_numpy(logits).argmax(axis=-1)  # (1,)
        tokens.append(int(nxt[0]))
        if step < n_new - 1:
            logits = model.forward(nxt[:, None], kv_caches=caches)[:, -1]  # one new token
    recomputed = generate(model, prompt, n_new, temperature=0, use_kv_cache=False)[0, prompt.shape[1]:]
    held = sum(cache.nbytes for cache in caches)
    length = caches[0].length
    head_size = c.n_embd // c.n_head
    n_kv = c.n_kv_head or c.n_head
    itemsize = np.dtype(model.dtype).itemsize
    return {"kind": "kv_cache", "model": name, "n_head": c.n_head, "n_kv_head": n_kv, "n_layer": c.n_layer,
            "head_size": head_size, "dtype": str(np.dtype(model.dtype)), "tokens_cached": length,
            "nbytes": int(held), "bytes_per_token": held / length,
            "formula_bytes_per_token": 2 * c.n_layer * n_kv * head_size * itemsize,
            "mha_bytes_per_token": 2 * c.n_layer * c.n_head * head_size * itemsize,  # the same model, H KV heads
            "allocated_nbytes": int(sum(cache.allocated_nbytes for cache in caches)),
            "cache_matches_recompute": [int(t) for t in recomputed] == tokens}


# --------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------
def train_config(settings: DecoderBenchSettings, seed: int):
    """One schedule, the same batches and the same token budget for every model."""
    from ..train.config import TrainConfig  # noqa: PLC0415

    s = settings
    return TrainConfig(batch_size=s.batch_size, max_iters=s.iters, lr=s.lr, min_lr=s.lr / 10,
                       warmup_iters=s.warmup_iters, eval_interval=s.eval_interval, eval_iters=s.eval_iters,
                       weight_decay=0.1, seed=seed)


def run(settings: DecoderBenchSettings, seed: int = 0, *, data=None, progress: bool = False, log=None) -> dict:
    """Train and measure every model of ``settings.models``; returns ``{"rows", "data", "seconds", "cpu_seconds"}``."""
    from ..tokenizer import CharTokenizer  # noqa: PLC0415
    from ..train.data import LMDataset  # noqa: PLC0415
    from ..train.parallel import DataParallel  # noqa: PLC0415
    from ..train.trainer import Trainer  # noqa: PLC0415

    s, say = settings, (log or (lambda *a: None))
    t_start, cpu_start = time.perf_counter(), time.process_time()
    text, what = load_text(data, s.corpus_chars)
    tokenizer = CharTokenizer().train(text)
    dataset = LMDataset(text, tokenizer, block_size=s.block_size)
    longest = max(s.factors) * s.block_size
    val = dataset.split("val")
    span = min(s.eval_tokens, (len(val) - 1) // longest * longest)  # the same tokens at every length
    if span < longest:
        raise ValueError(f"validation split: {len(val)} tokens, expected at least {longest + 1} for a window of "
                         f"{max(s.factors)} x block_size={s.block_size}; use a longer text")
    eval_ids = np.asarray(val[: span + 1])
    prompt = np.asarray(val[None, : s.prompt_tokens])
    say(f"data: {what}; {len(text):,} characters, vocabulary {tokenizer.vocab_size}; "
        f"{s.tokens:,} training tokens per model ({s.iters} iterations x batch {s.batch_size} x {s.block_size})")

    target = count_parameters(base_config(s, tokenizer.vocab_size, REFERENCE))
    rows = []
    for name in s.models:
        config = base_config(s, tokenizer.vocab_size, name) if name == REFERENCE else \
            matched_config(s, tokenizer.vocab_size, name, target)
        model = GPT(config, seed=seed)
        n = model.num_parameters()
        if abs(n - target) > MATCH_TOLERANCE * target:  # a size no d_ff can reach: not a fair comparison
            raise ValueError(f"{name}: {n:,} parameters against {REFERENCE}'s {target:,}, expected within "
                             f"{MATCH_TOLERANCE:.0%}; change the settings' sizes")
        say(f"{name}: {n:,} parameters ({(n - target) / target:+.1%} vs {REFERENCE}), d_ff {config.hidden_width}")
        wrapped = DataParallel(model, threads=s.threads, seed=seed) if s.threads > 1 else model
        t0 = time.perf_counter()
        try:
            history = Trainer(wrapped, dataset, train_config(s, seed), None, progress=progress,
                              log=None).train()
        finally:
            if s.threads > 1:
                wrapped.close()
        seconds = time.perf_counter() - t0
        rows.append({"kind": "model", "model": name, "n_params": n, "params_vs_reference": round((n - target) / target, 4),
                     "norm": config.norm, "positions": config.positions, "ffn": config.ffn,
                     "n_kv_head": config.n_kv_head or config.n_head, "d_ff": config.hidden_width,
                     "embed_norm": config.embed_norm, "val_loss": round(history[-1]["val_loss"], 4),
                     "train_loss": round(history[-1]["train_loss"], 4), "tokens": s.tokens,
                     "train_seconds": round(seconds, 1), "tokens_per_s": round(s.tokens / seconds, 1),
                     "curve": [[r["iter"], round(r["val_loss"], 4)] for r in history]})
        rows.extend(extrapolation_rows(name, model, eval_ids, s))
        if name in KV_CACHE_MODELS:
            rows.append(kv_cache_row(name, model, prompt))
        say(f"  trained in {seconds:.0f} s: val loss {history[-1]['val_loss']:.4f}")
    return {"rows": rows, "data": what, "seconds": round(time.perf_counter() - t_start, 1),
            "cpu_seconds": round(time.process_time() - cpu_start, 1)}  # every thread of this process


# --------------------------------------------------------------------------
# Tables and the plot
# --------------------------------------------------------------------------
def format_tables(rows) -> str:
    models = [r for r in rows if r["kind"] == "model"]
    lines = ["validation loss, same parameter count and training tokens (nats/char):",
             f"{'model':<13}{'norm':>10}{'positions':>10}{'ffn':>8}{'kv':>4}{'d_ff':>6}{'params':>10}{'diff':>7}"
             f"{'val loss':>10}{'vs gpt2':>9}{'tokens/s':>10}"]
    ref = next((r["val_loss"] for r in models if r["model"] == REFERENCE), None)
    for r in models:
        delta = f"{r['val_loss'] - ref:>+9.4f}" if ref is not None else f"{'':>9}"
        lines.append(f"{r['model']:<13}{r['norm']:>10}{r['positions']:>10}{r['ffn']:>8}{r['n_kv_head']:>4}"
                     f"{r['d_ff']:>6}{r['n_params']:>10,}{r['params_vs_reference']:>+7.1%}{r['val_loss']:>10.4f}"
                     f"{delta}{r['tokens_per_s']:>10,.0f}")
    ext = [r for r in rows if r["kind"] == "extrapolation"]
    if ext:
        contexts = list(dict.fromkeys(r["context"] for r in ext))
        T = ext[0]["trained_context"]
        lines += ["", f"length extrapolation (trained on {T}-token windows): mean loss over windows of each length, "
                      f"the same validation characters; past@L: positions >= {T} only:",
                  f"{'model':<13}{'positions':>10}" + "".join(f"{'@' + str(c):>9}" for c in contexts)
                  + "".join(f"{'past@' + str(c):>11}" for c in contexts if c > T)]
        errors = {}  # message -> the models that gave it
        for name in dict.fromkeys(r["model"] for r in ext):
            mine = {r["context"]: r for r in ext if r["model"] == name}
            cells = "".join(f"{mine[c]['loss']:>9.4f}" if mine[c]["loss"] is not None else f"{'refused':>9}"
                            for c in contexts)
            past = "".join(f"{mine[c]['loss_past_trained']:>11.4f}" if mine[c]["loss"] is not None
                           else f"{'refused':>11}" for c in contexts if c > T)
            lines.append(f"{name:<13}{mine[contexts[0]]['positions']:>10}{cells}{past}")
            for c in contexts:
                if mine[c].get("error") and c == 2 * T:
                    errors.setdefault(mine[c]["error"], []).append(name)
        for message, names in errors.items():
            lines.append(f"  {', '.join(names)} at {2 * T} tokens: ValueError: {message}")
    kv = [r for r in rows if r["kind"] == "kv_cache"]
    if kv:
        lines += ["", "KV cache after greedy decoding to a full context (batch 1, "
                      f"{kv[0]['dtype']}; formula 2 x n_layer x n_kv_head x head_size x itemsize):",
                  f"{'model':<10}{'kv heads':>9}{'tokens':>8}{'bytes held':>12}{'bytes/token':>13}{'formula':>9}"
                  f"{'vs MHA':>8}{'= no cache':>11}"]
        for r in kv:
            lines.append(f"{r['model']:<10}{r['n_kv_head']:>9}{r['tokens_cached']:>8}{r['nbytes']:>12,}"
                         f"{r['bytes_per_token']:>13,.0f}{r['formula_bytes_per_token']:>9,}"
                         f"{r['bytes_per_token'] / r['mha_bytes_per_token']:>8.2f}{str(r['cache_matches_recompute']):>11}")
    return "\n".join(lines)


def plot(rows, path) -> Path | None:
    """Loss curves and loss by position at the longest context; None without matplotlib."""
    from . import pyplot, save_figure  # noqa: PLC0415

    plt = pyplot()
    if plt is None:
        return None
    models = [r for r in rows if r["kind"] == "model"]
    ext = [r for r in rows if r["kind"] == "extrapolation"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    color = {r["model"]: f"C{i}" for i, r in enumerate(models)}  # one colour per model in both panels
    per_iter = models[0]["tokens"] / max(models[0]["curve"][-1][0], 1)
    for r in models:
        it, loss = np.array(r["curve"]).T
        ax1.plot(it * per_iter, loss, marker=".", color=color[r["model"]], label=f"{r['model']} ({r['n_params']:,})")
    ax1.set_xlabel("training tokens")
    ax1.set_ylabel("validation loss (nats/char)")
    ax1.set_title("same parameters, same batches")
    if len(models[0]["curve"]) > 2:  # the untrained start (ln V) would flatten the rest of the curves
        ax1.set_ylim(top=1.05 * max(r["curve"][1][1] for r in models))
    ax1.legend(fontsize=7)
    ax1.grid(alpha=0.3)
    if ext:
        T = ext[0]["trained_context"]
        longest = max(r["context"] for r in ext)
        width = max(1, longest // 32)  # mean over bins of positions, so the curves are readable
        for name in dict.fromkeys(r["model"] for r in ext):
            usable = [r for r in ext if r["model"] == name and r["loss"] is not None]
            r = max(usable, key=lambda r: r["context"])
            if r["positions"] == "learned" and name != REFERENCE:
                continue  # every learned-position model stops at its table: one of them says so
            loss = np.array(r["by_position"])
            binned = loss[: len(loss) // width * width].reshape(-1, width).mean(axis=1)
            line, = ax2.plot((np.arange(len(binned)) + 0.5) * width, binned, color=color.get(name),
                             label=f"{name} ({r['positions']})")
            if r["context"] < longest:
                ax2.plot([r["context"]], [binned[-1]], "x", color=line.get_color(), markersize=9)
                ax2.annotate("no position past its table", (r["context"], binned[-1]), fontsize=7,
                             xytext=(4, 6), textcoords="offset points", color=line.get_color())
        ax2.axvline(T, color="grey", linestyle="--", linewidth=1)
        ax2.text(T, ax2.get_ylim()[0], f" trained context {T}", fontsize=7, va="bottom", color="grey")
        ax2.set_xlabel("position in the window")
        ax2.set_ylabel("loss at that position (nats/char)")
        ax2.set_title(f"windows of {longest} tokens ({longest // T}x the trained context)")
        ax2.legend(fontsize=7, loc="upper left")
        ax2.grid(alpha=0.3)
    return save_figure(fig, path)


def main(argv=None) -> int:
    from . import cpu_model  # noqa: PLC0415

    from . import positive_int, study_parser  # noqa: PLC0415

    p = study_parser("decoders", __doc__, seed_help="the weights and the batches",
                     fast_help="tiny models, seconds: checks the structure, not the findings")
    p.add_argument("--data", default=None, metavar="FILE",
                   help="text to train on (default: ../shared/data/tinyshakespeare.txt if present, else minitx's "
                        "embedded corpus)")
    p.add_argument("--plot", default="out/bench-decoders.png", metavar="FILE",
                   help="where the figure goes (default out/bench-decoders.png; 'none' for no figure)")
    p.add_argument("--no-progress", action="store_true", help="no training progress bars")
    p.add_argument("--blas-threads", type=positive_int, default=1,
                   help="BLAS threads per data-parallel thread (default 1: these matrices are small)")
    args = p.parse_args(argv)
    settings = DecoderBenchSettings.fast() if args.fast else DecoderBenchSettings.full()
    err = (lambda m: print(m, file=sys.stderr)) if args.json else print
    load0 = os.getloadavg()[0]
    err(f"machine: {cpu_model()}, {os.cpu_count()} cores, load average {load0:.2f} at start; "
        f"{settings.threads} data-parallel threads x {args.blas_threads} BLAS thread(s); seed {args.seed}")
    from threadpoolctl import threadpool_limits  # noqa: PLC0415 - a core dependency (see minitx.train.parallel)

    with threadpool_limits(limits=args.blas_threads, user_api="blas"):
        result = run(settings, args.seed, data=args.data, progress=not (args.no_progress or args.fast), log=err)
    rows = result["rows"]
    if args.json:
        for r in rows:
            print(json.dumps(r))
    else:
        print(format_tables(rows))
    if args.plot.lower() != "none":
        written = plot(rows, args.plot)
        err(f"figure: {written}" if written else "figure: not drawn (matplotlib is not installed)")
    err(f"{result['seconds'] / 60:.1f} min wall clock, {result['cpu_seconds'] / 60:.1f} min CPU time (all threads); "
        f"load average {os.getloadavg()[0]:.2f} at the end")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
