# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Lesson 15: LoRA, fine-tuning a few percent of the weights
#
# Full fine-tuning (lesson 14) updates every weight `W` to `W + ΔW`. Hu et
# al. (2021) noticed that the update a task needs has a *low intrinsic
# rank*, and proposed to learn it directly in factored form:
#
#     y = x W + b + (alpha / r) · (x A) B        A: (in, r)   B: (r, out)
#
# with `W` and `b` frozen. `A` starts random and `B` at zero, so at step 0
# the model is exactly the base model. Only `r (in + out)` numbers per
# layer are trained instead of `in · out`.
#
# This lesson derives the backward pass, checks it numerically, trains
# LoRA on the instruction tasks of lesson 14, and asks *why* so few
# parameters suffice: by looking at the singular values of the update that
# full fine-tuning learned.

# %%
import copy

import numpy as np

from minitx.bench import finetune as bench
from minitx.datasets import instructions as inst
from minitx.finetune import apply_lora, merge_lora, unmerge_lora
from minitx.gradcheck import gradcheck_module
from minitx.nn import Linear
from minitx.nn.lora import LoRALinear
from minitx.train.data import PaddedRows
from minitx.tutorial import FAST, output_dir, plt, savefig

# %% [markdown]
# ## 1. The backward pass, derived
#
# Write `s = alpha / r`, `h = x A` (the `r`-wide bottleneck) and
# `y = x W + b + s h B`. Given `dy = dL/dy`:
#
# * `dB = s hᵀ dy` — `B` multiplies `h` like any weight multiplies its input;
# * `dh = s dy Bᵀ`, so `dA = xᵀ dh` — the same rule one layer down;
# * `dx = dy Wᵀ + dh Aᵀ` — both paths from `x` to `y` add up;
# * no `dW`, no `db`: they are frozen, so nothing is computed or stored.
#
# At initialisation `B = 0`, so `dA = 0` too: only `B` moves on the first
# step, and `A` follows once `B` is non-zero. The gradient checker compares
# all of this with finite differences (float64; `B` made non-zero first so
# that every path is exercised).

# %%
rng = np.random.default_rng(0)
layer = LoRALinear(Linear(6, 5, rng=rng, dtype=np.float64), rank=2, alpha=4.0, rng=rng)
layer.B.data[...] = rng.normal(size=layer.B.data.shape)  # leave the zero start, so dA is not trivially 0
report = gradcheck_module(layer, rng.normal(size=(3, 4, 6)))
print(report)
print("trainable:", [n for n, p in layer.named_parameters() if p.requires_grad])

# %% [markdown]
# ## 2. LoRA on the instruction tasks
#
# The base GPT of lesson 14, adapters on every Linear of every block
# (attention `qkv` and `proj`, feed-forward `fc` and `proj`), everything
# else frozen. Same data and steps as
# full fine-tuning; a larger learning rate, because the update starts at
# zero and only has `r` directions to move in.

# %%
budget = bench.FAST if FAST else bench.FULL
seed = 0
corpus = bench.corpus_data(budget)
tokenizer = corpus.tokenizer
cache = output_dir() / "finetune-cache" if FAST else ".cache/finetune"
base, _ = bench.base_model(budget, seed, cache, corpus)
data = inst.make_instructions(budget.n_instructions, budget.n_instruction_test, seed=seed)
mixed = [ex for task in inst.TASKS for ex in data["train"][task]]
x, y, lengths = inst.tuning_arrays(mixed, tokenizer, budget.block_size)
rows = PaddedRows((x, lengths), (y, lengths))
probe = (x[:32, : lengths[:32].max()], y[:32, : lengths[:32].max()])

tuned = {}
for method in ("full", "lora"):
    model = copy.deepcopy(base)
    if method == "lora":
        wrapped = apply_lora(model, list(bench.LORA_TARGETS), rank=budget.lora_rank, alpha=budget.lora_alpha,
                             seed=seed)
        print(f"LoRA on {len(wrapped)} layers, e.g. {wrapped[:2]}")
    lr = budget.lr_full if method == "full" else budget.lr_lora
    stats = bench.train(model, rows, bench.train_config(budget.tune_iters, budget.tune_batch, lr, seed),
                        evaluate=lambda m=model: bench.tuning_loss(m, *probe))
    scores = bench.task_scores(model, tokenizer, data["test"], data["train"], shots=0, seed=seed)
    print(f"{method:<5} trains {model.num_trainable_parameters():>8,} of {model.num_parameters():>8,} "
          f"({model.num_trainable_parameters() / model.num_parameters():.1%}); "
          + ", ".join(f"{t} {s:.2f}" for t, (s, _) in scores.items()))
    tuned[method] = model

# %% [markdown]
# ## 3. Merging: no cost at inference
#
# After training, `(alpha / r) A B` can be folded into `W`: one matrix
# again, as fast as the base model. Unmerging subtracts it back out.

# %%
ids = x[:4, :32]
before = np.asarray(tuned["lora"].forward(ids))
merge_lora(tuned["lora"])
merged = np.asarray(tuned["lora"].forward(ids))
unmerge_lora(tuned["lora"])
print("largest logit change from merging:", float(np.abs(merged - before).max()))

# %% [markdown]
# ## 4. Why low rank is enough
#
# Take the update full fine-tuning learned for one matrix,
# `ΔW = W_tuned - W_base`, and look at its singular values. If a handful
# of directions carry almost all of it, a rank-`r` factorisation loses
# little: that is LoRA's bet. The LoRA update itself, `(alpha/r) A B`, has
# rank at most `r` by construction.

# %%
def delta(name):
    return (np.asarray(dict(tuned["full"].named_parameters())[name].data)
            - np.asarray(dict(base.named_parameters())[name].data))


names = [n for n, _ in base.named_parameters() if n.endswith(("attn.qkv.weight", "ff.fc.weight"))]
spectra = {n: np.linalg.svd(delta(n), compute_uv=False) for n in names}
r = budget.lora_rank
for n, s in spectra.items():
    energy = (s[:r] ** 2).sum() / (s ** 2).sum()
    print(f"{n:<26} shape {delta(n).shape}: top {r} of {len(s)} singular values hold {energy:.0%} of ||ΔW||²")

if plt():
    fig, ax = plt().subplots(figsize=(7, 4))
    for n, s in spectra.items():
        ax.semilogy(np.arange(1, len(s) + 1), s / s[0], label=n)
    ax.axvline(r, color="black", linestyle="--", label=f"LoRA rank {r}")
    ax.set_xlabel("index")
    ax.set_ylabel("singular value / largest")
    ax.set_title("Singular values of the full fine-tuning update ΔW")
    ax.legend(fontsize=7)
    savefig(fig, "15_delta_w_spectrum")

# %% [markdown]
# ## What to take away
#
# * LoRA's backward is two small matrix products more than a frozen layer's,
#   and the gradient checker agrees with it.
# * Trained on the same data for the same steps, it reaches the scores of
#   full fine-tuning while training a few percent of the weights; the
#   adapters are a small file next to an unchanged base.
# * The update full fine-tuning learns is itself dominated by a few
#   directions: the measured reason a low rank is enough.
