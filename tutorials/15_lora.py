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
# This lesson derives the backward pass, checks it numerically, does the
# same for the token embedding (which a GPT ties to its output head),
# trains LoRA on the instruction tasks of lesson 14, and asks *why* so few
# parameters suffice: by looking at the singular values of the update that
# full fine-tuning learned.

# %%
import numpy as np

from minitx.bench import finetune as bench
from minitx.datasets import instructions as inst
from minitx.finetune import apply_lora, lora_layers, merge_lora, unmerge_lora
from minitx.gradcheck import gradcheck_module
from minitx.models import GPT, GPTConfig
from minitx.nn import Embedding, Linear
from minitx.nn.lora import LoRAEmbedding, LoRALinear
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
# ## 2. The token embedding, and the head tied to it
#
# An embedding lookup `W[ids]` is a Linear applied to one-hot rows, so the
# same correction applies to the table `W` (V, D):
#
#     W_eff = W + s A B        A: (V, r)   B: (r, D)
#
# Here `A` (one row per token) starts at zero and `B` is random (PEFT's
# choice for embeddings). A GPT *ties* this table to its LM head,
# `logits = h W_effᵀ`, so the adapter changes both what a token reads in
# and how it is scored on the way out, and both gradients add:
#
# * lookup: `dB = s A[ids]ᵀ dx`, and `dA[v]` collects `s dx Bᵀ` over the
#   positions that read token `v` (a scatter-add, like the embedding's own);
# * head: the head's `dW_eff = dlogitsᵀ h`, and through `W_eff = W + s A B`,
#   `dA = s dW_eff Bᵀ`, `dB = s Aᵀ dW_eff`.
#
# Why bother? In a small model the rows of the *answer* tokens in that
# tied head are what a new task must change most; with the table frozen,
# LoRA on the blocks alone stalls (`benchmarks/finetune.md` measures it).
# The checker below perturbs `A` and `B` of a whole tiny GPT, so a head
# that ignored the adapter would fail it.

# %%
table = LoRAEmbedding(Embedding(9, 4, rng=rng, dtype=np.float64), rank=2, alpha=4.0, rng=rng)
table.A.data[...] = rng.normal(size=table.A.data.shape)  # leave the zero start, so dB is not trivially 0
print("lookup alone:", gradcheck_module(table, np.array([[1, 4, 4, 0]])))
tiny = GPT(GPTConfig(vocab_size=9, block_size=8, n_layer=1, n_head=2, n_embd=8), seed=0, dtype=np.float64)
print("wrapped:", apply_lora(tiny, ["wte", "blocks.*.attn.qkv"], rank=2, alpha=4.0, train_norms=True))
tiny.wte.A.data[...] = rng.normal(size=tiny.wte.A.data.shape) * 0.3
report = gradcheck_module(tiny, np.array([[1, 2, 2, 5]]))
print("a GPT, lookup and tied head:", report)
print("checked:", sorted(report.per_array))

# %% [markdown]
# ## 3. LoRA on the instruction tasks
#
# The base GPT of lesson 14, adapters on the token embedding `wte` (= the
# tied head) and on every Linear of every block (attention `qkv` and
# `proj`, feed-forward `fc` and `proj`), the LayerNorms trained too
# (`train_norms`: a few hundred numbers), everything else frozen. The
# ranks are not all equal (`rank_pattern`): 8 on the attention's `qkv`,
# which decides where each position looks (and copying a name out of the
# sentence is a question of where to look), 2 on the wide feed-forward
# layers, whose adapters cost the most per rank, 4 elsewhere. Same data as
# full fine-tuning; a larger learning rate and more steps
# (`budget.lora_iters` against `budget.tune_iters`), because the update
# starts at zero and only has `r` directions to move in.

# %%
budget = bench.FAST if FAST else bench.FULL
seed = 0
corpus = bench.corpus_data(budget, seed)
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
    model, config = bench.tuning_setup(base, method, budget, seed)  # a copy; LoRA's adapters put on by name
    if method == "lora":
        print("LoRA ranks:", {name: layer.rank for name, layer in lora_layers(model)})
    stats = bench.train(model, rows, config, evaluate=lambda m=model: bench.tuning_loss(m, *probe),
                        threads=2)  # both cores, one data-parallel replica each
    scores = bench.task_scores(model, tokenizer, data["test"], data["train"], shots=0, seed=seed)
    print(f"{method:<5} trains {model.num_trainable_parameters():>8,} of {model.num_parameters():>8,} "
          f"({model.num_trainable_parameters() / model.num_parameters():.1%}); "
          + ", ".join(f"{t} {s:.2f}" for t, (s, _) in scores.items()))
    tuned[method] = model

# %% [markdown]
# ## 4. Merging: no cost at inference
#
# After training, `(alpha / r) A B` can be folded into `W`: one matrix
# again, as fast as the base model (for `wte`, the merged table serves the
# lookup and the tied head alike). Unmerging subtracts it back out.

# %%
ids = x[:4, :32]
before = np.asarray(tuned["lora"].forward(ids))
merge_lora(tuned["lora"])
merged = np.asarray(tuned["lora"].forward(ids))
unmerge_lora(tuned["lora"])
print("largest logit change from merging:", float(np.abs(merged - before).max()))

# %% [markdown]
# ## 5. Why low rank is enough
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
#   and the gradient checker agrees with it; on a tied embedding both uses
#   (lookup and head) feed the same two factors.
# * Trained on the same data, with a larger learning rate and more steps,
#   it learns the tasks' formats while training under 5% of the weights,
#   and the adapters are a small file next to an unchanged base. How close
#   it comes to full fine-tuning depends on the base: LoRA's bet is a base
#   that already knows the world and only needs the format. On docstrings
#   alone it had nothing to adapt (NER and translation near 0 where full
#   fine-tuning reached 0.84-0.94); with the tasks' world mixed into
#   pretraining, rank 8 on `qkv` and 16000 steps, it is within 0.03 of
#   full fine-tuning on every task in each of the seven seeds measured
#   (`benchmarks/finetune.md`). At 8000 steps it was not: NER (copying
#   names) fell short by 0.065 in one seed, and float rounding alone moved
#   that score by 0.05. LoRA needs its steps.
# * The embedding adapter and the trained norms each help: on the bench's
#   seed-0 base, 1500 steps leave a tuning loss of 0.82 with adapters on the
#   block Linears alone and 0.50 with both added (`benchmarks/finetune.md`).
# * The update full fine-tuning learns is itself dominated by a few
#   directions: the measured reason a low rank is enough.
