"""In-context learning against scale, its mechanism (induction heads), measured.

    python -m minitx.bench.icl [--seed S] [--json] [--fast] [--cache DIR]

1. **Train** GPTs of four sizes (about 6k to 110k parameters, 1 and 2
   layers) on the same generated data (:mod:`minitx.datasets.icl`: every
   sequence hides its own label words) with the same token budget and the
   same two-phase recipe (:class:`Budget`: plain instructions first, then
   half the rows listing the label words; phase 1 tried again from a new
   initialisation, at most three times, when a probe finds the model still
   on the plateau after it), each through the one
   :class:`~minitx.train.trainer.Trainer`, two data-parallel threads.
   Trained models are cached as Trainer checkpoints (safetensors + JSON)
   in ``--cache`` (default ``.cache/icl``), keyed by size, seed and
   budget, so the tutorials reuse them; a second run only evaluates.
2. **Evaluate** k-shot accuracy for k = 0, 1, 2, 4, 8: prompts built by
   :func:`minitx.prompt.build_prompt` and checked by
   :func:`minitx.prompt.fit_prompt`; the answer is the candidate label with
   the higher next-token logit (rank classification, as Brown et al. score
   multiple choice), so chance is 1/2. Every drawn prompt is also asked with
   its label words swapped (counterbalanced), so a model that ignores the
   examples scores exactly chance. Every prompt is asked with two
   instructions of the same length: the headline one lists the two label
   words ("Classify each review as tiger or lemon."), the other does not
   ("... as this or that."); with one example only the list names the label
   the example did not show. The issue's targets are checked on the
   headline prompts and printed under the tables.
3. **Mechanism.** A matching score per head of the largest model names
   the induction heads (:func:`matching_scores`: on 8-shot prompts, how much
   the head's attention from the query's word to the examples depends on
   whether they share the query's sentiment; Olsson et al.'s
   prefix-matching score on repeated random tokens,
   :func:`minitx.interpret.prefix_matching_scores`, is reported beside it).
   Zeroing the matching heads' output (:func:`minitx.interpret.ablate_heads`)
   and re-measuring few-shot accuracy shows how much of the skill they
   carry. As many other heads, drawn at random, are ablated as a control,
   and every head is also zeroed alone.

``--json`` prints one object a line: accuracy rows ``{"model", "n_params",
"k", "accuracy", "chance", "n_eval", "prompt"}`` (``prompt`` is ``"listed"``
or ``"plain"``), per-label rows (``"k_per_label"`` in place of ``"k"``),
then ablation rows (``"ablation"`` names which heads were zeroed) and one
``"induction_heads"`` row (with the scores, the timings and each model's
``"tries"``).
``--fast`` shrinks everything to seconds (the tests run it); its numbers
check the structure, not the targets.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..datasets import icl
from .. import interpret
from ..interpret import ablate_heads, attention_to_targets, prefix_matching_scores
from ..models.gpt import GPT, GPTConfig
from ..prompt import fit_prompt
from ..train.config import TrainConfig

SHOTS = (0, 1, 2, 4, 8)
PER_LABEL_SHOTS = (1, 2, 4)  # k examples of each label (8 in all at most: the window holds 8 examples)
MAX_K = 8
CHANCE = 0.5  # two candidate labels
MATCH_THRESHOLD = 0.1  # a head whose matching score reaches this counts as an induction head
N_CONTROLS = 4  # random sets of as many other heads zeroed, as the control


@dataclass(frozen=True)
class Size:
    name: str
    n_layer: int
    n_head: int
    n_embd: int


#: The model sizes, smallest first. The 1-layer model cannot compose a previous-token head with an
#: induction head (that takes two layers), which is the contrast the scale axis should show.
SIZES = (Size("gpt-1x16", 1, 2, 16), Size("gpt-2x24", 2, 2, 24), Size("gpt-2x40", 2, 4, 40),
         Size("gpt-2x64", 2, 4, 64))
FAST_SIZES = (Size("gpt-1x8", 1, 1, 8), Size("gpt-2x16", 2, 2, 16), Size("gpt-2x32", 2, 2, 32))


@dataclass(frozen=True)
class Budget:
    """The training recipe and token budget every size gets, and the evaluation sizes.

    Training has two phases, through the one Trainer, on the same model:

    1. ``max_iters`` steps at ``lr`` on plain-instruction rows only ("Classify
       each review as this or that."): the model learns what sentiment is
       and forms the matching circuit that reads labels off the examples;
    2. ``listing_iters`` steps at ``listing_lr`` where ``listed_share`` of
       the rows list the two label words in the instruction ("... as tiger
       or lemon."): the model learns to use the list, which one example
       alone cannot give it (the other label's word).

    Why not mix the listed rows in from the start: then a model can lower
    its loss by always answering one of the two listed words, without
    reading the examples; it settles there (loss about log 2 on every
    label) and the matching circuit never forms. Measured on gpt-2x64,
    seed 0: mixed from step 0, every k stays at chance; in this order, k=1
    rises from 0.58 to 0.985 on listing prompts. A curriculum: the hard
    skill first, the shortcut only once it cannot replace it.

    Why ``lr`` 6e-3: the matching circuit forms in a sudden transition,
    and at 3e-3 the largest model never reached it in seed 6 (chance at
    every k after 3000 steps, and after 5000); at 6e-3 the same seed forms
    it within 3000 (k=8 0.995 on plain prompts).

    **Restarts.** Whatever the learning rate or batch, about one seed in
    six or seven leaves a model on the plateau after phase 1 (measured:
    3e-3 fails seed 6, 6e-3 seed 5, batch 64 seed 2; longer training did
    not help): it answers ``positive``/``negative`` rows and guesses fresh
    labels. That is visible right after phase 1, on fresh training-
    distribution prompts (:func:`circuit_probe`, never the evaluation
    prompts), so the run starts phase 1 again from a new initialisation and
    data order, at most ``max_restarts`` times, when the probe's accuracy
    is under ``restart_below``: what one does with a run whose loss never
    leaves its plateau. Every size gets the same rule, and the number of
    tries is reported with each model; the one-layer model, which cannot
    build the two-layer circuit, uses every restart and still cannot.
    A try that passes is trained exactly as without the rule.
    """

    max_iters: int = 3000
    batch_size: int = 32
    lr: float = 6e-3
    listing_iters: int = 1000
    listing_lr: float = 1e-3
    listed_share: float = 0.5
    max_restarts: int = 3  # new tries of phase 1 when the circuit did not form
    restart_below: float = 0.75  # circuit_probe accuracy under which phase 1 is tried again
    n_probe: int = 64  # drawn prompts (x2, counterbalanced) for the probe
    n_eval: int = 200  # drawn prompts per cell; counterbalancing doubles it
    n_prefix: int = 64  # repeated random sequences for the prefix-matching score

    @property
    def tokens(self) -> int:
        return (self.max_iters + self.listing_iters) * self.batch_size * icl.BLOCK_SIZE

    def recipe(self) -> dict:
        """What the trained weights depend on (a cached model must match it)."""
        return {k: getattr(self, k) for k in ("max_iters", "batch_size", "lr", "listing_iters", "listing_lr",
                                              "listed_share", "max_restarts", "restart_below", "n_probe")}


FULL = Budget()
FAST = Budget(max_iters=30, batch_size=8, listing_iters=10, n_eval=20, n_prefix=8,
              max_restarts=1, n_probe=8)  # models this small stay on the plateau: each restarts once
#: Added to the seed for phase 2's data stream, so it draws rows of its own (not phase 1's again).
LISTING_SEED_OFFSET = 10_000
#: Added to the seed (times the try) for a restarted phase 1's initialisation and data order.
RESTART_SEED_OFFSET = 1_000


def model_config(size: Size) -> GPTConfig:
    return GPTConfig(vocab_size=len(icl.VOCAB), block_size=icl.BLOCK_SIZE, n_layer=size.n_layer,
                     n_head=size.n_head, n_embd=size.n_embd, dropout=0.0)


def train_config(iters: int, lr: float, batch_size: int, seed: int) -> TrainConfig:
    return TrainConfig(batch_size=batch_size, max_iters=iters, lr=lr, min_lr=lr / 10,
                       warmup_iters=max(1, iters // 20), weight_decay=0.1, beta2=0.99,
                       eval_interval=iters, eval_iters=4, seed=seed)


def phases(budget: Budget, seed: int, block_size: int = icl.BLOCK_SIZE, *,
           attempt: int = 0) -> list[tuple[icl.ICLData, TrainConfig]]:
    """The two training phases of :class:`Budget`: ``(data, config)`` each, in order.

    ``attempt`` > 0 is a restart: phase 1 draws its rows in another order (phase 2 is the same).
    """
    return [(icl.ICLData(block_size), train_config(budget.max_iters, budget.lr, budget.batch_size,
                                                   seed + attempt * RESTART_SEED_OFFSET)),
            (icl.ICLData(block_size, listed_share=budget.listed_share),
             train_config(budget.listing_iters, budget.listing_lr, budget.batch_size, seed + LISTING_SEED_OFFSET))]


def circuit_probe(model: GPT, budget: Budget, seed: int, attempt: int) -> float:
    """Plain-instruction 8-shot accuracy on fresh prompts of the training distribution: has the circuit formed?

    Drawn from a generator of its own (``[seed, 23, attempt]``), never the
    evaluation prompts' (``[seed, 7, ...]``). A model on the plateau scores
    0.5 (the prompts are counterbalanced); one that reads the labels off
    the examples, near 1.
    """
    tokenizer = icl.tokenizer()
    eps = icl.episodes(np.random.default_rng([seed, 23, attempt]), budget.n_probe, MAX_K)
    was_training = model.training
    acc = accuracy(model.eval(), encode_episodes(eps, tokenizer, icl.BLOCK_SIZE))
    model.train(was_training)
    return acc


def run_dir(cache: Path, size: Size, budget: Budget, seed: int) -> Path:
    return Path(cache) / (f"{size.name}-seed{seed}-iters{budget.max_iters}-listing{budget.listing_iters}"
                          f"-batch{budget.batch_size}")


def train_or_load(size: Size, budget: Budget, seed: int, cache, *, threads: int = 2, log=print) -> tuple[GPT, dict]:
    """The model of ``size`` trained with ``budget`` and ``seed``: from ``cache`` if there, else trained now.

    Returns ``(model in eval mode, info)``; ``info`` has ``val_loss``,
    ``seconds`` and ``cpu_seconds`` (of the training, also when cached:
    they are read back from the checkpoint's metadata).
    """
    from ..train.lm import gpt_meta, read_checkpoint  # noqa: PLC0415
    from ..train.parallel import DataParallel  # noqa: PLC0415
    from ..train.trainer import Trainer  # noqa: PLC0415

    out = run_dir(cache, size, budget, seed)
    config = model_config(size)
    if (out / "ckpt").is_dir():
        state, _, meta = read_checkpoint(out)
        if meta.get("config") == config.to_dict() and meta.get("icl_run", {}).get("recipe") == budget.recipe():
            model = GPT(config, seed=seed)
            model.load_state_dict(state)
            return model.eval(), dict(meta["icl_run"], cached=True)
    t0, c0 = time.perf_counter(), time.process_time()
    probes = []
    for attempt in range(budget.max_restarts + 1):
        model = GPT(config, seed=seed + attempt * RESTART_SEED_OFFSET)
        wrapped = DataParallel(model, threads=threads, seed=seed) if threads > 1 else model
        first, second = phases(budget, seed, config.block_size, attempt=attempt)

        def train_phase(data, train_cfg):  # the same model, phase after phase
            trainer = Trainer(wrapped, data, train_cfg, None, meta=gpt_meta(model, data.tokenizer),
                              progress=False, log=lambda *a, **k: None)
            return trainer, trainer.train()[-1]["val_loss"]

        try:
            _, loss1 = train_phase(*first)
            probes.append(circuit_probe(model, budget, seed, attempt))
            if probes[-1] < budget.restart_below and attempt < budget.max_restarts:
                log(f"{size.name}: after phase 1 (try {attempt + 1}) the {MAX_K}-shot probe is at "
                    f"{probes[-1]:.2f}, on the plateau: phase 1 again from a new initialisation")
                continue
            trainer, loss2 = train_phase(*second)
            val_losses = [loss1, loss2]
            break
        finally:
            if threads > 1:
                wrapped.close()
    info = {"val_loss": val_losses[-1], "phase_val_losses": val_losses, "recipe": budget.recipe(),
            "tries": len(probes), "probe_accuracies": probes,
            "seconds": round(time.perf_counter() - t0, 1), "cpu_seconds": round(time.process_time() - c0, 1),
            "tokens": budget.tokens, "threads": threads}
    trainer.out_dir = out  # write the checkpoint only now, with the run's figures in its metadata
    trainer.meta["icl_run"] = info
    trainer.save()
    log(f"trained {size.name} ({model.num_parameters():,} parameters) in {info['seconds']:.0f} s: "
        f"val loss {info['val_loss']:.4f}")
    return model.eval(), dict(info, cached=False)


def last_logits(model: GPT, ids: np.ndarray, chunk: int = 128) -> np.ndarray:
    """``ids [N, T] -> logits [N, V]`` at the last position, in chunks of ``chunk`` prompts (memory)."""
    return np.concatenate([model.forward(ids[i : i + chunk])[:, -1] for i in range(0, len(ids), chunk)])


def encode_episodes(eps: list[dict], tokenizer, window: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Prompts checked against ``window`` (overflow is an error) -> ``ids [N, T]``, answer and other label ids."""
    ids = np.array([fit_prompt(e["prompt"], tokenizer, window).ids for e in eps])  # (N, T): equal lengths
    answer = np.array([tokenizer.stoi[e["answer"]] for e in eps])  # (N,)
    other = np.array([tokenizer.stoi[next(c for c in e["candidates"] if c != e["answer"])] for e in eps])
    return ids, answer, other


def accuracy(model: GPT, encoded) -> float:
    """Share of prompts where the right label's logit beats the other candidate's."""
    ids, answer, other = encoded
    logits = last_logits(model, ids)  # (N, V)
    rows = np.arange(len(ids))
    return float(np.mean(logits[rows, answer] > logits[rows, other]))


#: The two instructions every prompt is asked with: the headline one lists the label words.
PROMPTS = ("listed", "plain")


def eval_sets(seed: int, n: int, tokenizer, window: int, *, per_label: bool = False, listed: bool = True) -> dict:
    """``{k: encoded prompts}``, the same prompts for every model (their own generator per k).

    ``listed`` and plain sets of the same ``seed`` hold the same reviews and labels; only the
    instruction differs.
    """
    return {k: encode_episodes(icl.episodes(np.random.default_rng([seed, 7, k, per_label]), n, k,
                                            per_label=per_label, listed=listed), tokenizer, window)
            for k in (PER_LABEL_SHOTS if per_label else SHOTS)}


#: The tokens of an example that hold its sentiment or its label, as offsets from its label: the
#: adjective before it, the label, and the newline after it (which a first-layer head can fill with the label).
EXAMPLE_OFFSETS = (-1, 0, 1)


def matching_scores(model: GPT, ids: np.ndarray, eps: list[dict]) -> np.ndarray:
    """``[n_layer, n_head]``: how much each head's attention from the query's word depends on sentiment.

    An induction head attends from the current token to what followed an
    earlier *match* and copies it (Olsson et al.); here the match is by
    sentiment. For each of the example tokens of :data:`EXAMPLE_OFFSETS`,
    the attention from the last position to that token in the examples of
    the query's sentiment minus to it in the others; the score adds up the
    sizes of these differences. It is 0 for a head blind to sentiment, and
    up to 2 for one that looks only at one sentiment's examples. Its sign
    is not kept because the trained heads do both: some copy from the
    examples of the query's sentiment (their labels: "answer like these"),
    some look at the other sentiment's examples ("not those labels"), and
    which ones a model grows varies with the seed.
    """
    same = icl.matching_label_positions(eps, ids.shape[1])  # (N, T) the labels of same-sentiment examples
    labels = np.zeros_like(same)
    labels[:, [icl.label_position(j) for j in range(len(eps[0]["prompt"].examples))]] = True
    maps = interpret.attention_maps(model, ids)  # one forward pass for every target set below
    score = 0.0
    for offset in EXAMPLE_OFFSETS:  # the same token of each example, shifted from its label
        mine, every = np.roll(same, offset, axis=1), np.roll(labels, offset, axis=1)
        score = score + np.abs(attention_to_targets(model, ids, -1, mine, maps=maps)
                               - attention_to_targets(model, ids, -1, every & ~mine, maps=maps))  # (L, H)
    return score


def run(seed: int = 0, *, fast: bool = False, cache=".cache/icl", threads: int = 2, log=print) -> dict:
    """Train (or load) every size, evaluate, find and ablate induction heads. Returns every figure."""
    budget, sizes = (FAST, FAST_SIZES) if fast else (FULL, SIZES)
    t0, c0 = time.perf_counter(), time.process_time()
    tokenizer = icl.tokenizer()
    window = icl.BLOCK_SIZE
    sets = {kind: eval_sets(seed, budget.n_eval, tokenizer, window, listed=kind == "listed") for kind in PROMPTS}
    per_label = {kind: eval_sets(seed, budget.n_eval, tokenizer, window, per_label=True, listed=kind == "listed")
                 for kind in PROMPTS}  # k examples of each label
    rows, label_rows, models, infos = [], [], {}, {}
    for size in sizes:
        model, info = train_or_load(size, budget, seed, cache, threads=threads, log=log)
        n_params = model.num_parameters()
        models[size.name], infos[size.name] = model, dict(info, n_params=n_params)
        for kind in PROMPTS:
            for k in SHOTS:
                rows.append({"model": size.name, "n_params": n_params, "k": k,
                             "accuracy": accuracy(model, sets[kind][k]), "chance": CHANCE,
                             "n_eval": len(sets[kind][k][0]), "prompt": kind})
            for k in PER_LABEL_SHOTS:
                label_rows.append({"model": size.name, "n_params": n_params, "k_per_label": k,
                                   "accuracy": accuracy(model, per_label[kind][k]), "chance": CHANCE,
                                   "n_eval": len(per_label[kind][k][0]), "prompt": kind})
    largest = models[sizes[-1].name]
    headline = sets["listed"]
    ids8, _, _ = headline[MAX_K]
    eps8 = icl.episodes(np.random.default_rng([seed, 7, MAX_K, False]), budget.n_eval, MAX_K, listed=True)  # = ids8
    match = matching_scores(largest, ids8, eps8)  # (n_layer, n_head)
    random_prefix = prefix_matching_scores(largest, n_seq=budget.n_prefix, seed=seed)  # (n_layer, n_head)
    order = [tuple(int(i) for i in np.unravel_index(j, match.shape)) for j in np.argsort(match, axis=None)[::-1]]
    n_top = max(1, int((match >= MATCH_THRESHOLD).sum()))  # every head that matches (at least the best one)
    top = order[:n_top]
    rng = np.random.default_rng([seed, 13])
    others = order[n_top:]
    n_control = min(n_top, len(others))
    controls = [[others[i] for i in rng.choice(len(others), n_control, replace=False)] for _ in range(N_CONTROLS)]
    ablation = []
    for k in (2, 4, 8):
        base = accuracy(largest, headline[k])
        with ablate_heads(largest, top):
            hit = accuracy(largest, headline[k])
        control = []
        for heads in controls:
            with ablate_heads(largest, heads):
                control.append(accuracy(largest, headline[k]))
        for label, heads, acc in (("none", [], base), ("induction", top, hit),
                                  ("control", controls, float(np.mean(control)))):
            ablation.append({"model": sizes[-1].name, "ablation": label, "heads": heads, "k": k, "accuracy": acc,
                             "chance": CHANCE, "n_eval": len(headline[k][0]), "prompt": "listed"})
    single = np.zeros(match.shape)  # (n_layer, n_head) k=8 accuracy with that one head zeroed
    for layer, head in np.ndindex(*match.shape):
        with ablate_heads(largest, [(layer, head)]):
            single[layer, head] = accuracy(largest, headline[MAX_K])
    return {"rows": rows, "label_rows": label_rows, "ablation": ablation, "single_head_ablation": single.tolist(),
            "match_scores": match.tolist(),
            "prefix_scores": random_prefix.tolist(), "induction_heads": top, "models": infos, "seed": seed,
            "fast": fast, "budget": budget.__dict__ | {"tokens": budget.tokens},
            "seconds": round(time.perf_counter() - t0, 1), "cpu_seconds": round(time.process_time() - c0, 1)}


def targets(rows: list[dict]) -> dict:
    """The issue's four targets on the headline (listing) prompts: ``{name: (held, the figures)}``.

    The largest model (the one with most parameters) within 0.1 of chance at k = 0, at least
    0.15 above chance at k = 1, at least 0.9 at k = 8, and above the smallest model at k = 8.
    """
    acc = {(r["model"], r["k"]): r["accuracy"] for r in rows if r["prompt"] == "listed"}
    sizes = sorted({(r["n_params"], r["model"]) for r in rows})
    small, large = sizes[0][1], sizes[-1][1]
    a = {k: acc[large, k] for k in SHOTS}
    return {"k=0 within 0.1 of chance": (abs(a[0] - CHANCE) <= 0.1, f"{a[0]:.3f}"),
            "k=1 at least chance + 0.15": (a[1] >= CHANCE + 0.15, f"{a[1]:.3f}"),
            "k=8 at least 0.9": (a[MAX_K] >= 0.9, f"{a[MAX_K]:.3f}"),
            "k=8 above the smallest": (a[MAX_K] > acc[small, MAX_K], f"{a[MAX_K]:.3f} vs {acc[small, MAX_K]:.3f}")}


def _accuracy_table(result: dict, kind: str) -> list[str]:
    rows = [r for r in result["rows"] if r["prompt"] == kind]
    lines = [f"{'model':<10} {'params':>8} {'val loss':>8} {'tries':>5} "
             + " ".join(f"{'k=' + str(k):>6}" for k in SHOTS)]
    for name in dict.fromkeys(r["model"] for r in rows):
        mine = {r["k"]: r for r in rows if r["model"] == name}
        info = result["models"][name]
        lines.append(f"{name:<10} {info['n_params']:>8,} {info['val_loss']:>8.4f} {info['tries']:>5} "
                     + " ".join(f"{mine[k]['accuracy']:>6.3f}" for k in SHOTS))
    return lines


def format_table(result: dict) -> str:
    """The accuracy tables (rows: sizes, columns: k), the targets and the ablation lines."""
    rows = result["rows"]
    names = list(dict.fromkeys(r["model"] for r in rows))
    n_eval = rows[0]["n_eval"]
    listed = icl.LISTED_INSTRUCTION.format(labels="tiger or lemon")
    lines = [f"k-shot accuracy, k examples in all (chance {CHANCE}, {n_eval} prompts per cell, seed {result['seed']})",
             f"instruction listing the label words: {listed!r}", *_accuracy_table(result, "listed"), "",
             f"the same prompts, instruction {icl.PLAIN_INSTRUCTION!r} (does not say what the other label is):",
             *_accuracy_table(result, "plain"), "",
             "targets (largest model, listing prompts): " + "; ".join(
                 f"{name} {'held' if ok else 'FAILED'} ({fig})" for name, (ok, fig) in targets(rows).items()), ""]
    lines.append("2-way k-shot, k examples of each label (2k in all, in random order), listing / plain instruction:")
    lines.append(f"{'model':<10} " + " ".join(f"{'k=' + str(k) + '/label':>13}" for k in PER_LABEL_SHOTS))
    for name in names:
        mine = {(r["prompt"], r["k_per_label"]): r["accuracy"] for r in result["label_rows"] if r["model"] == name}
        lines.append(f"{name:<10} " + " ".join(f"{mine['listed', k]:>6.3f}/{mine['plain', k]:.3f}"
                                                for k in PER_LABEL_SHOTS))
    lines.append("")
    for key, what in (("match_scores", "matching score (how much the attention from the query's word to the "
                                        "examples' adjectives, labels and newlines depends on their sentiment)"),
                      ("prefix_scores", "prefix-matching score on repeated random tokens (Olsson et al.)")):
        lines.append(f"{what}, per head of {names[-1]} (rows: layers):")
        lines.extend(f"  layer {i}: " + " ".join(f"{s:.2f}" for s in row) for i, row in enumerate(result[key]))
    lines.append(f"k={MAX_K} accuracy with one head zeroed, per head of {names[-1]} (rows: layers; a two-layer "
                 "circuit, so the first layer's heads that feed the matching heads matter too):")
    lines.extend(f"  layer {i}: " + " ".join(f"{s:.3f}" for s in row)
                 for i, row in enumerate(result["single_head_ablation"]))
    lines.append(f"induction heads (layer, head), matching score >= {MATCH_THRESHOLD}: {result['induction_heads']}")
    for k in sorted({a["k"] for a in result["ablation"]}):
        acc = {a["ablation"]: a for a in result["ablation"] if a["k"] == k}
        lines.append(f"  k={k}: accuracy {acc['none']['accuracy']:.3f}; induction heads zeroed "
                     f"{acc['induction']['accuracy']:.3f}; as many other heads zeroed (mean of "
                     f"{len(acc['control']['heads'])} random draws) {acc['control']['accuracy']:.3f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    from . import cache_note, study_parser  # noqa: PLC0415

    p = study_parser("icl", __doc__, seed_help="the models, the data and the prompts",
                     fast_help="tiny models and budgets: seconds, for the tests",
                     cache="trained models")
    args = p.parse_args(argv)
    result = run(args.seed, fast=args.fast, cache=args.cache, threads=args.threads,
                 log=(lambda *a, **k: print(*a, file=sys.stderr, **k)))
    if args.json:
        for r in result["rows"] + result["label_rows"] + result["ablation"]:
            print(json.dumps(r))
        print(json.dumps({"induction_heads": result["induction_heads"], "match_scores": result["match_scores"],
                          "prefix_scores": result["prefix_scores"],
                          "single_head_ablation": result["single_head_ablation"],
                          "tries": {name: info["tries"] for name, info in result["models"].items()},
                          "seconds": result["seconds"], "cpu_seconds": result["cpu_seconds"]}))
    else:
        print(format_table(result))
        print(f"\n{result['seconds']:.0f} s wall clock, {result['cpu_seconds']:.0f} s CPU time "
              f"(token budget {result['budget']['tokens']:,} per model; {cache_note(result['models'])})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
