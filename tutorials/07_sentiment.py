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
# # Lesson 07: sentiment classification with an encoder
#
# An encoder reads the whole review at once, in both directions, and a
# classification head turns one vector per review into "positive" or
# "negative". We will
#
# 1. generate reviews whose sentiment depends on word *order and scope*
#    ("not bad at all", "great acting, but a dull plot");
# 2. show that a bag-of-words model, which only counts words, is stuck near
#    a coin flip on them;
# 3. train a small BERT-style encoder on a CPU and break its accuracy down by
#    construction (negation, contrast);
# 4. look at what the `<cls>` token attends to.
#
# The full-size run and its numbers are in `benchmarks/tasks.md`
# (`minitx train-classifier`); in FAST mode (CI) everything is smaller.

# %%
import numpy as np

from minitx.datasets import bag_of_words_baseline, make_sentiment
from minitx.tasks import TextClassifier
from minitx.train.config import TrainConfig
from minitx.tutorial import FAST, plt, savefig

data = make_sentiment(n_train=1500 if FAST else 8000, n_val=200, n_test=300 if FAST else 2000, seed=0)
for text, label in data["train"][:8]:
    print(f"{label:9s} {text}")

# %% [markdown]
# ## The baseline: logistic regression on word counts
#
# The grammar pairs every contrast with *opposite* polarities and negates 40%
# of the clauses, so the same words appear in positive and negative reviews
# alike. A bag of words cannot tell "the plot was not good , but the acting
# was great" from "the plot was good , but the acting was not great".

# %%
bow = bag_of_words_baseline(data["train"], data["test"])
print(f"bag-of-words test accuracy: {bow:.3f}")

# %% [markdown]
# ## The encoder
#
# `enc-small`: 2 layers, 4 heads, d_model 64. Each review becomes
# `<cls> w1 w2 ...`; the classifier reads the `<cls>` position of the last
# layer ("first" pooling) through a `Linear(64, 2)`. AdamW, warmup then cosine
# decay, gradient clipping at 1: the same recipe as the GPT lessons.

# %%
# FAST (CI) trains for a few seconds only: expect well under the full run's accuracy.
config = TrainConfig(max_iters=100 if FAST else 600, eval_interval=100 if FAST else 200, batch_size=32,
                     lr=2e-3 if FAST else 1e-3, min_lr=1e-4, warmup_iters=20, beta2=0.98, weight_decay=0.01, seed=0)
clf = TextClassifier.fit(data["train"], data["val"], config, preset="enc-small", progress=True)
print("test accuracy:", clf.evaluate(data["test"])["accuracy"])

# %% [markdown]
# ## Where does it get things right?
#
# Split the test set by construction. Simple, un-negated reviews are learned
# first; negation and contrast come later (after a few hundred steps; the
# FAST run stops before that), and they are exactly where the bag of words fails.

# %%
def kind(text):
    if " but " in text:
        return "X , but Y"
    if text.startswith("although"):
        return "although X , Y"
    if "even though" in text:
        return "Y , even though X"
    if " and " in text:
        return "X and Y"
    return "negated clause" if (" not " in text or " never " in text) else "plain clause"


groups = {}
for (text, label), pred in zip(data["test"], clf.predict([t for t, _ in data["test"]])):
    groups.setdefault(kind(text), []).append(pred == label)
for k, hits in sorted(groups.items()):
    print(f"{k:20s} {np.mean(hits):.3f}  ({len(hits)} reviews)")

# %% [markdown]
# ## What does `<cls>` look at?
#
# The attention weights of the last layer, from the `<cls>` query to every
# word, averaged over heads. In a trained model the main clause (after
# "but", or outside the "although" clause) tends to get more of the weight.

# %%
review = "great acting , but the plot was dull"
ids = clf.encode_texts([review])
clf.model.eval()
probs = clf.predict_proba([review])[0]
weights = clf.model.encoder.blocks[-1].attn.attn_weights[0].mean(axis=0)[0]  # (T,) from <cls>
words = ["<cls>"] + review.split()
for w, a in zip(words, weights):
    print(f"{w:8s} {a:.3f} " + "#" * int(60 * a))
print("prediction:", dict(zip(clf.labels.labels, probs.round(3))))

if plt():
    fig, ax = plt().subplots(figsize=(7, 2))
    ax.bar(range(len(words)), weights)
    ax.set_xticks(range(len(words)), words, rotation=30)
    ax.set_title("last-layer attention from <cls> (mean over heads)")
    savefig(fig, "07_cls_attention")

# %% [markdown]
# Try your own reviews; and `minitx classify --checkpoint out/sentiment/ckpt "..."`
# after `minitx train-classifier --out out/sentiment` does the same from the shell.

# %%
for text in ["the music was not bad at all", "i would not call the ending clever",
             "although the plot was dull , the cast was wonderful"]:
    print(clf.predict([text])[0], "<-", text)
