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
# # Lesson 12: the heads that read the examples, and a small scaling law
#
# Lesson 11 measured that bigger GPTs learn more from the examples in a
# prompt. This lesson opens the largest of those models and asks *how*, then
# steps back to the most famous regularity of the field:
#
# 1. a **matching score** per attention head: does the head, at the query's
#    word, look at earlier words of the same kind? (Olsson et al., 2022, call
#    the heads that do this and copy what follows **induction heads**);
# 2. their **attention** on a prompt, drawn;
# 3. **ablation**: zero those heads' output and measure few-shot accuracy
#    again, against zeroing other heads;
# 4. **scale**: validation loss against parameter count for five models
#    trained on the same text with the same token budget, on a log-log plot
#    with a fitted power law (Kaplan et al., 2020).

# %%
from pathlib import Path

import numpy as np

import minitx
from minitx.bench import icl as bench
from minitx.bench import scaling
from minitx.datasets import icl
from minitx.interpret import ablate_heads, attention_maps
from minitx.prompt import TEMPLATES, build_prompt, fit_prompt
from minitx.tutorial import FAST, output_dir, plt, savefig

root = Path(minitx.__file__).resolve().parent.parent
cache = output_dir() / "12_icl_cache" if FAST else root / ".cache" / "icl"

# %% [markdown]
# ## 1. Which heads match?
#
# `bench.run` loads the cached models of lesson 11 (or trains them: fast
# mode trains tiny ones in seconds, whose heads have learnt nothing yet)
# and scores every head of the largest one on 8-shot prompts. An induction
# head attends from the current token to what followed an earlier *match*,
# and copies it. Here the match is by sentiment: at the last position, the
# query's word, we compare the attention the head pays to the examples *of
# the same sentiment* with what it pays to the others, token by token (each
# example's adjective, its label, and the newline after the label), and add
# up the sizes of the differences (`bench.matching_scores`). A head blind to
# sentiment scores about 0; one that looks only at one sentiment's
# examples scores up to 2. The sign is dropped on purpose: some trained
# heads look at the examples like the query (to copy their label), others
# at the examples unlike it (to rule their label out), and which kind a
# model grows changes with the seed (`benchmarks/icl.md`).
#
# Olsson et al. define their prefix-matching score on random tokens repeated
# twice: from each token of the second copy, the attention to the token that
# followed its first occurrence. That score is computed too. These models
# never saw random text, and what they match is a review word's *sentiment*,
# not its identity (the query's adjective rarely occurs earlier), so on
# random tokens their heads look about uniform: the exact-copy score finds
# nothing here, the sentiment-matching score does.
#
# How can a label "know" the sentiment of the review before it? A label
# word means nothing by itself. A head of the first layer must first copy
# the preceding word's sentiment into the label's position (a
# previous-token head); only then can a second-layer head match on it.
# That is why one layer is not enough, and section 3 shows both halves.

# %%
result = bench.run(seed=0, fast=FAST, cache=cache)
largest_size = (bench.FAST_SIZES if FAST else bench.SIZES)[-1]
model, _ = bench.train_or_load(largest_size, bench.FAST if FAST else bench.FULL, 0, cache)
match = np.array(result["match_scores"])  # (n_layer, n_head)
prefix = np.array(result["prefix_scores"])
heads = [tuple(h) for h in result["induction_heads"]]
print("matching score, rows = layers:\n", np.round(match, 2))
print("random-token prefix score:\n", np.round(prefix, 2))
print("the matching heads (layer, head), score >= 0.1:", heads)

if plt():
    fig, axes = plt().subplots(1, 2, figsize=(8, 2.8))
    for ax, scores, title in ((axes[0], match, "sentiment matching score"),
                              (axes[1], prefix, "random-token prefix score")):
        im = ax.imshow(scores, cmap="viridis", vmin=min(0, scores.min()), vmax=max(0.1, scores.max()))
        ax.set_xlabel("head")
        ax.set_ylabel("layer")
        ax.set_xticks(range(scores.shape[1]))
        ax.set_yticks(range(scores.shape[0]))
        ax.set_title(title, fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.046)
    savefig(fig, "12_head_scores")

# %% [markdown]
# ## 2. What the best matchers look at
#
# One 4-shot prompt; each panel is one head's attention, queries down,
# keys across. The last row is the query's word: its bright cells should sit
# on the examples of one sentiment (their adjectives, labels or the
# newlines after them), not on both.

# %%
tokenizer = icl.tokenizer()
lines = [("plot superb", "tiger"), ("cast dull", "lemon"), ("music warm", "tiger"), ("ending bland", "lemon")]
prompt = fit_prompt(build_prompt(TEMPLATES["review-label"], "film lovely", lines, labels=("lemon", "tiger")),
                    tokenizer, icl.BLOCK_SIZE)  # the instruction lists the labels, as in the headline table
words = tokenizer.tokenize(prompt.text)
maps = attention_maps(model, np.array([prompt.ids]))  # n_layer x (1, H, T, T)
for layer, head in heads:
    row = maps[layer][0, head, -1]  # (T,) attention of the query's word
    top = np.argsort(-row)[:3]
    print(f"head {layer}.{head}: from 'lovely' to " + ", ".join(f"{words[i]!r} ({row[i]:.2f})" for i in top))

if plt():
    fig, axes = plt().subplots(1, len(heads), figsize=(6 * len(heads), 5.5), squeeze=False)
    for ax, (layer, head) in zip(axes[0], heads):
        ax.imshow(maps[layer][0, head], cmap="Blues", vmin=0, vmax=1)
        ax.set_xticks(range(len(words)), [w.replace("\n", "\\n") for w in words], rotation=90, fontsize=7)
        ax.set_yticks(range(len(words)), [w.replace("\n", "\\n") for w in words], fontsize=7)
        ax.set_title(f"layer {layer}, head {head}")
    savefig(fig, "12_induction_attention")

# %% [markdown]
# ## 3. Ablation: the accuracy without them
#
# `ablate_heads` sets a per-head mask in the attention layers (0 removes a
# head's output from the sum its layer writes; a test checks that this equals
# zeroing the rows of the output projection that read the head). The bench
# zeroed every head whose matching score reaches 0.1 and, as a control, as
# many other heads drawn at random (four draws), and measured 2-, 4- and
# 8-shot accuracy each time, on the listing prompts. With a model this
# small the random control is blunt: the circuit has two halves, and a
# random draw of the other heads nearly always hits a first-layer head that
# feeds the matching ones. Zeroing one head at a time says more: the
# matching heads of the second layer share the work (zeroing one of them
# costs a little), while zeroing one first-layer previous-token head is
# about as bad as zeroing all matching heads (`benchmarks/icl.md` lists
# five seeds).

# %%
for k in (2, 4, 8):
    acc = {a["ablation"]: a["accuracy"] for a in result["ablation"] if a["k"] == k}
    print(f"k={k}: intact {acc['none']:.3f}, best matchers zeroed {acc['induction']:.3f}, "
          f"as many other heads zeroed {acc['control']:.3f}")
print("k=8 accuracy with one head zeroed (rows = layers):\n", np.round(np.array(result["single_head_ablation"]), 3))
with ablate_heads(model, heads):  # the same mask, by hand, on the prompt above
    zeroed = model.forward(np.array([prompt.ids]))[0, -1]
intact = model.forward(np.array([prompt.ids]))[0, -1]
tiger, lemon = tokenizer.stoi["tiger"], tokenizer.stoi["lemon"]
print(f"on the prompt above, logit(tiger) - logit(lemon): intact {intact[tiger] - intact[lemon]:+.2f}, "
      f"best matchers zeroed {zeroed[tiger] - zeroed[lemon]:+.2f}")

if plt():
    fig, ax = plt().subplots(figsize=(6, 3.2))
    ks = [2, 4, 8]
    width = 0.27
    for i, (label, name) in enumerate((("none", "intact"), ("induction", "best matchers zeroed"),
                                       ("control", "other heads zeroed"))):
        values = [next(a["accuracy"] for a in result["ablation"] if a["k"] == k and a["ablation"] == label)
                  for k in ks]
        ax.bar(np.arange(len(ks)) + (i - 1) * width, values, width, label=name)
    ax.axhline(bench.CHANCE, color="gray", ls="--", lw=1)
    ax.set_xticks(range(len(ks)), [f"k={k}" for k in ks])
    ax.set_ylabel("accuracy")
    ax.set_ylim(0.3, 1.02)
    ax.legend(fontsize=8)
    ax.set_title(f"{largest_size.name}: ablating heads")
    savefig(fig, "12_ablation")

# %% [markdown]
# ## 4. A small scaling law
#
# Kaplan et al. trained language models from thousands to billions of
# parameters and found the test loss falling as a power law in the
# non-embedding parameter count, `L(N) = (N_c / N) ** alpha` with alpha about
# 0.076: a straight line on a log-log plot. `python -m minitx.bench.scaling`
# does the same at toy scale: five character-level GPTs, 2 layers, 16 to 128
# wide, on the embedded corpus, each with the same token budget. (The budget
# is half a million characters, far from convergence: the points are not
# quite on one line, the slope steepening towards the larger models, which
# learn more per token. Kaplan's law is for models trained to convergence,
# or with compute to match; `benchmarks/icl.md` has the measured exponent.)

# %%
scale = scaling.run(seed=0, fast=FAST, cache=output_dir() / "12_scaling_cache" if FAST else root / ".cache" / "scaling")
for r in scale["rows"]:
    print(f"{r['model']:<10} N = {r['n_non_embedding']:>7,}  val loss {r['val_loss']:.4f}")
fit = scale["fit"]
print(f"fitted: L = {fit['a']:.3f} * N^-{fit['alpha']:.4f}  (R^2 {fit['r2']:.3f})")
if plt():
    print("plot:", scaling.plot(scale, output_dir() / "12_scaling_law.png"))
