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
# # Lesson 05: generation and creativity
#
# A trained language model does not write text. It outputs, for the next
# position, one score per vocabulary entry. *We* decide how to turn those
# scores into a token, and that decision changes the text more than you
# might expect. In this lesson:
#
# 1. train a small character-level GPT (a minute or two);
# 2. look at its next-token distribution for a prompt;
# 3. decode the same prompt greedily and with rising temperature, side by side;
# 4. cut the distribution's tail with top-k and top-p (nucleus), and see why
#    top-p adapts where top-k cannot;
# 5. time the KV cache against recomputing, and check they give the same tokens.

# %%
import time
from pathlib import Path

import numpy as np

from minitx.corpus import default_corpus
from minitx.generate import generate, generate_text, next_token_probs
from minitx.models import GPT, GPTConfig
from minitx.tokenizer import CharTokenizer
from minitx.train.data import LMDataset
from minitx.train.config import TrainConfig
from minitx.train.lm import load_model
from minitx.train.trainer import Trainer
from minitx.tutorial import FAST, output_dir, plt, savefig

np.set_printoptions(precision=3, suppress=True, linewidth=110)

# %% [markdown]
# ## 1. A model to sample from
#
# Sampling controls only matter once the model has opinions. If you have run
# the README's main job (`minitx train`, which writes `out/ckpt`), this
# lesson samples from that model. Otherwise it trains its own with lesson
# 04's recipe, for a few hundred iterations (a few dozen in the test
# suite's fast mode, where the text will be gibberish but every step still
# runs), with a progress bar.

# %%
main_job = Path("out")
if not FAST and (main_job / "ckpt").is_dir():
    model, tokenizer, meta = load_model(main_job)
    print(f"sampling from the main job's model in {main_job}/ckpt (iteration {meta['iter']})")
else:
    text = default_corpus()[: 60_000 if FAST else None]
    tokenizer = CharTokenizer().train(text)
    if FAST:
        config = GPTConfig(vocab_size=tokenizer.vocab_size, block_size=32, n_layer=2, n_head=2, n_embd=32)
    else:
        config = GPTConfig.from_preset("gpt-micro", vocab_size=tokenizer.vocab_size)
    data = LMDataset(text, tokenizer, block_size=config.block_size)
    max_iters = 30 if FAST else 600
    model = GPT(config, seed=0)
    trainer = Trainer(model, data, TrainConfig(batch_size=12, max_iters=max_iters, warmup_iters=max_iters // 10,
                                               eval_interval=max_iters, eval_iters=4, seed=0),
                      output_dir() / "05_run", progress=True)
    history = trainer.train()
    print(f"trained a model of our own: val loss {history[-1]['val_loss']:.3f} after {max_iters} iterations")
model.eval()

# %% [markdown]
# ## 2. The next-token distribution
#
# `next_token_probs` applies the sampling controls to the last position's
# logits and returns the resulting distribution. Dividing logits by a
# temperature $\tau$ before the softmax, $p_i \propto e^{z_i/\tau}$, sharpens
# the distribution for $\tau < 1$ and flattens it for $\tau > 1$.

# %%
prompt = "Return the "
ids = np.array([tokenizer.encode(prompt)])  # (1, T)
logits = model.forward(ids)[:, -1]  # (1, V) scores for the character after the prompt
show = lambda i: repr(tokenizer.decode([int(i)]))  # noqa: E731

temperatures = [0.5, 1.0, 1.5]
probs = {t: next_token_probs(logits, temperature=t)[0] for t in temperatures}  # each (V,)
top = np.argsort(-probs[1.0])[:15]  # the 15 most likely characters at temperature 1
for i in top[:5]:
    print(f"{show(i):6s} " + "  ".join(f"T={t}: {probs[t][i]:.3f}" for t in temperatures))

if plt():
    fig, axes = plt().subplots(1, 3, figsize=(12, 3), sharey=True)
    for ax, t in zip(axes, temperatures):
        ax.bar(range(len(top)), probs[t][top])
        ax.set_xticks(range(len(top)), [show(i) for i in top], rotation=90)
        ax.set_title(f"temperature {t}")
    axes[0].set_ylabel(f"P(next | {prompt!r})")
    savefig(fig, "05_next_token_temperature")

# %% [markdown]
# ## 3. Greedy versus rising temperature
#
# **Greedy** decoding (temperature 0) always takes the most likely token. It
# is deterministic and, for small models, quickly falls into a loop: the most
# likely continuation of a phrase leads back to the phrase. Sampling breaks
# loops; the higher the temperature, the more surprising (and the less
# correct) the text. Every sample below uses the same seed.

# %%
n_new = 60 if FAST else 160
for t in [0.0, 0.5, 0.8, 1.0, 1.5]:
    label = "greedy" if t == 0 else f"T={t}"
    sample = generate_text(model, tokenizer, prompt, n_new, temperature=t, seed=1)
    print(f"--- {label}\n{prompt}{sample}\n")

# %% [markdown]
# ## 4. Cutting the tail: top-k and top-p
#
# Even a good model puts a little probability on thousands of bad tokens; at
# temperature 1 the tail, taken together, gets picked surprisingly often.
#
# * **top-k** keeps the `k` most likely tokens and renormalises;
# * **top-p** (nucleus sampling) keeps the smallest set of most likely tokens
#   whose probabilities sum to at least `p`.
#
# The difference shows when the model's confidence changes. Inside a word
# such as `"Retur"` a trained model puts most of the mass on one character,
# so the nucleus is small, while top-k still keeps `k`. After a space many
# words can start, and the nucleus grows. The cell prints both sizes for
# this model (a barely trained one is unsure everywhere, so its nuclei are
# large), then draws the distribution after the prompt, filtered both ways.

# %%
for context in ("Retur", prompt):
    z = model.forward(np.array([tokenizer.encode(context)]))[:, -1]  # (1, V)
    print(f"after {context!r}: the top-p 0.9 nucleus keeps {int((next_token_probs(z, top_p=0.9) > 0).sum())} "
          f"tokens; top-k 5 keeps 5")
filtered = {
    "full (T=1)": next_token_probs(logits)[0],
    "top-k = 5": next_token_probs(logits, top_k=5)[0],
    "top-p = 0.9": next_token_probs(logits, top_p=0.9)[0],
}
for name, p in filtered.items():
    print(f"{name:12s} keeps {int((p > 0).sum()):3d} tokens; P(top) = {p.max():.3f}")
kept = int((filtered["top-p = 0.9"] > 0).sum())
shown = np.argsort(-probs[1.0])[: max(15, kept + 5)]  # every kept token and a few past the cut
if plt():
    fig, axes = plt().subplots(1, 3, figsize=(12, 3.2), sharey=True)
    for ax, (name, p) in zip(axes, filtered.items()):
        ax.bar(range(len(shown)), p[shown])
        ax.set_xticks(range(len(shown)), [show(i) for i in shown], rotation=90, fontsize=7)
        ax.set_title(f"{name}: keeps {int((p > 0).sum())}")
    axes[0].set_ylabel(f"P(next | {prompt!r})")
    savefig(fig, "05_top_k_top_p")

# %% [markdown]
# How big is the nucleus at each position of a real sentence? Small where
# the next character is obvious (inside a word), large where it is not
# (after a space). top-k would keep the same number everywhere.

# %%
sentence = "Return the number of items in the list."
sent_ids = np.array([tokenizer.encode(sentence)])[:, : config.block_size]  # (1, T)
all_logits = model.forward(sent_ids)[0]  # (T, V): a prediction after every prefix
nucleus = [int((next_token_probs(all_logits[t : t + 1], top_p=0.9) > 0).sum()) for t in range(len(all_logits))]
print("nucleus sizes (p=0.9):", nucleus)
if plt():
    fig, ax = plt().subplots(figsize=(10, 2.8))
    ax.bar(range(len(nucleus)), nucleus)
    ax.axhline(5, color="gray", ls=":", label="top-k = 5 (always)")
    ax.set_xticks(range(len(nucleus)), list(sentence[: len(nucleus)]))
    ax.set_ylabel("tokens kept")
    ax.set_title("top-p = 0.9: how many candidates for the character after each prefix")
    ax.legend()
    savefig(fig, "05_nucleus_size")

# %%
for name, kw in [("top-k 5", dict(top_k=5)), ("top-p 0.9", dict(top_p=0.9)), ("T=1.2, top-p 0.9", dict(
        temperature=1.2, top_p=0.9))]:
    kw = {"temperature": 1.0, **kw}
    print(f"--- {name}\n{prompt}{generate_text(model, tokenizer, prompt, n_new, seed=1, **kw)}\n")

# %% [markdown]
# ## 5. The KV cache
#
# Without a cache, each new token reruns the model over the whole context.
# With one, every attention layer keeps the keys and values it has already
# computed, and each step processes just the new token. Same tokens, far less
# work; the saving grows with the length of the generation.

# %%
start = np.array([tokenizer.encode("Return")])
n = 40 if FAST else config.block_size - start.shape[1]  # stay inside the context window
timings = {}
for use_cache in (True, False):
    t0 = time.perf_counter()
    out = generate(model, start, n, temperature=0.8, seed=0, use_kv_cache=use_cache)
    timings[use_cache] = (time.perf_counter() - t0, out)
assert np.array_equal(timings[True][1], timings[False][1]), "cached and uncached decoding must agree"
print(f"{n} tokens: KV cache {timings[True][0] * 1000:.0f} ms, recompute {timings[False][0] * 1000:.0f} ms "
      f"({timings[False][0] / timings[True][0]:.1f}x); identical tokens")
