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
# # Lesson 16: why start from a pretrained model
#
# Fine-tuning a model that has already read a lot of text is the default
# way to build a classifier. Why not train the same network from scratch
# on our own data? Because our data is small, and the world is bigger than
# our data. This lesson makes that concrete with one experiment:
#
# * a few hundred generated reviews to train on, whose sentiment words are
#   *good, great, awful, terrible...*;
# * a test set whose sentiment words are *superb, splendid, dreadful,
#   abysmal...*: synonyms that **never occur in training**.
#
# Three learners get the same data and the same number of steps: the real
# all-MiniLM-L6-v2 with a new classification head, fine-tuned; the same
# architecture with random weights, trained from scratch; and a bag of
# words. Only one of them can know that *splendid* means *great*.

# %%
import numpy as np

from minitx.bench import finetune as bench
from minitx.datasets.reviews_heldout import TEST_WORDS, TRAIN_WORDS, make_heldout_reviews
from minitx.tutorial import FAST, plt, savefig

budget = bench.FAST if FAST else bench.FULL
data = make_heldout_reviews(budget.n_reviews, 100, budget.n_review_test, seed=0)
print("train words:", TRAIN_WORDS)
print("test words: ", TEST_WORDS)
for split in ("train", "test"):
    print(f"\n{split}:")
    for text, label in data[split][:4]:
        print(f"  {label:<8} {text}")

# %% [markdown]
# ## 1. What the pretrained model already knows
#
# Before any training: MiniLM's sentence embeddings (mean-pooled,
# normalised, :func:`minitx.pretrained.embeddings.embed`) of a word in a
# fixed frame. If pretraining put the synonyms close together, then
# *splendid* sits nearer to *great* than to *awful*: the map a fine-tuned
# head can use on words it never saw in our data.

# %%
import minitx  # noqa: E402
from minitx.pretrained.embeddings import cosine_similarity, embed  # noqa: E402

body, tokenizer = minitx.from_pretrained(bench.minilm_folder())
words = list(TRAIN_WORDS[1][:3]) + list(TRAIN_WORDS[0][:3]) + list(TEST_WORDS[1][:3]) + list(TEST_WORDS[0][:3])
e = embed(body, tokenizer, [f"the film was {w}" for w in words])
sim = cosine_similarity(e)  # (12, 12)
for i in range(6, 12):
    near = max(range(6), key=lambda j: sim[i, j])
    print(f"{words[i]:<11} nearest training word: {words[near]:<9} (cosine {sim[i, near]:.3f})")

if plt():
    fig, ax = plt().subplots(figsize=(6, 5))
    im = ax.imshow(sim, cmap="viridis")
    ax.set_xticks(range(len(words)), words, rotation=60)
    ax.set_yticks(range(len(words)), words)
    ax.set_title("MiniLM: cosine of 'the film was <word>'")
    fig.colorbar(im)
    savefig(fig, "16_synonyms")

# %% [markdown]
# ## 2. The experiment, same data and same budget
#
# :func:`minitx.bench.finetune.heldout_words` runs all four learners through
# the one `Trainer`; every step is the same batch size, the same number of
# steps. "head" trains only the new linear layer on a frozen body;
# "pretrained-finetuned" also trains the last blocks; "scratch" trains
# everything, from random weights.

# %%
rows, timing = bench.heldout_words(0, budget, pretrained=(body, tokenizer))
for r in rows:
    print(f"{r['method']:<22} test accuracy {r['score']:.3f}   trains {r['trainable_params']:>11,} "
          f"of {r['total_params']:>11,}")
print("seconds:", timing)

# %%
if plt():
    fig, ax = plt().subplots(figsize=(6, 3.5))
    names = [r["method"] for r in rows]
    ax.bar(names, [r["score"] for r in rows], color=["grey", "tab:blue", "tab:green", "tab:red"][: len(rows)])
    ax.axhline(0.5, color="black", linestyle="--", label="chance")
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy on unseen words")
    ax.legend()
    ax.set_title("Reviews with held-out sentiment words")
    savefig(fig, "16_heldout_words")

# %% [markdown]
# ## 3. Reading the result
#
# The bag of words has one weight per training word; every test sentiment
# word is outside its vocabulary, so it decides on the shared filler words,
# which carry no label: chance. The model from scratch is no better off:
# its embedding rows for *splendid* and *dreadful* were never touched by a
# gradient, so they are as random as at initialisation. The pretrained
# model was trained on both kinds of word long before it saw our reviews,
# and fine-tuning only has to learn *which direction* in its space means
# "positive": the synonyms already point the same way (section 1).
#
# In `--fast` mode (the tests) the numbers are from a few steps and say
# little; `python -m minitx.bench.finetune` runs the full budget, and
# `benchmarks/finetune.md` records it for three seeds.
