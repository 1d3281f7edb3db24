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
# # Lesson 08: translation with an encoder-decoder
#
# The source language is English-like; the target language, "Tolan", has
# its own words, gendered articles, adjectives *after* the noun (in reverse
# order) and the verb at the *end*:
#
#     the big red dog sees a small cat
#     lo kan rojo grando una mira pequena vide
#
# Copying cannot work and neither can word-by-word translation in order: the
# decoder must find, for each word it writes, the source word it translates:
# that is what **cross-attention** does, and we will plot it. Then we compare
# greedy decoding with **beam search**.

# %%
import numpy as np

from minitx.beam import beam_search_seq2seq
from minitx.datasets import corpus_bleu, make_translation
from minitx.tasks import Translator
from minitx.train.config import TrainConfig
from minitx.tutorial import FAST, plt, savefig

data = make_translation(n_train=4000 if FAST else 20000, n_val=200, n_test=40 if FAST else 1000, seed=0)
for src, tgt in data["train"][:5]:
    print(f"{src:55s} -> {tgt}")

# %% [markdown]
# ## Baselines: copying, and word-by-word
#
# BLEU counts matching 1- to 4-grams against the reference (0-100). Copying
# the source shares no words with Tolan. A word-by-word dictionary (built
# from the generator's own lexicon, so it is the *best possible* monotone
# translation, with masculine singular forms) gets the words but not their
# order or agreement.

# %%
from minitx.datasets.translation import ADJECTIVES, NOUNS, PREPOSITIONS, VERBS  # noqa: E402

lexicon = {"the": "lo", "a": "un", "some": "unos", **PREPOSITIONS}
lexicon.update({n: s for n, (s, _) in NOUNS.items()})
lexicon.update({n + "s": s + "i" for n, (s, _) in NOUNS.items()})
lexicon.update({a: s + "o" for a, s in ADJECTIVES.items()})
lexicon.update({form: s + "e" for forms, s in VERBS.items() for form in forms})
refs = [t for _, t in data["test"]]
copy = [s for s, _ in data["test"]]
word_by_word = [" ".join(lexicon.get(w, w) for w in s.split()) for s, _ in data["test"]]
print(f"copy BLEU {corpus_bleu(copy, refs):.1f};  word-by-word BLEU {corpus_bleu(word_by_word, refs):.1f}")

# %% [markdown]
# ## Train the encoder-decoder
#
# `s2s-small`: 2 encoder and 2 decoder layers, 4 heads, d_model 64; teacher
# forcing with label smoothing 0.1. FAST mode (CI) trains for seconds only;
# `minitx train-translator` (see `benchmarks/tasks.md`) trains for minutes.

# %%
config = TrainConfig(max_iters=60 if FAST else 2000, eval_interval=60 if FAST else 500, batch_size=32 if FAST else 64,
                     lr=2e-3 if FAST else 1e-3, min_lr=1e-4, warmup_iters=30 if FAST else 100, beta2=0.98,
                     weight_decay=0.01, label_smoothing=0.1, seed=0)
tr = Translator.fit(data["train"], data["val"], config, preset="s2s-small",
                    eval_sentences=10 if FAST else 200, progress=True)
greedy = tr.evaluate(data["test"])
print(f"test BLEU, greedy: {greedy['bleu']:.1f} (exact sentences: {greedy['exact']:.2f})")

# %% [markdown]
# ## Greedy versus beam search
#
# Greedy takes the most likely word at each step. Beam search keeps the 4
# best partial translations and ranks finished ones by
# `sum log p / length ** length_penalty`. On a task this regular the two
# mostly agree once the model is well trained; the scores show where beam
# search found a more probable translation.

# %%
beam = tr.evaluate(data["test"], beam=4)
print(f"test BLEU, beam 4: {beam['bleu']:.1f} (exact sentences: {beam['exact']:.2f})")
for src, ref in data["test"][:2 if FAST else 4]:
    g, b = tr.translate([src])[0], tr.translate([src], beam=4)[0]
    print(f"src    {src}\nref    {ref}\ngreedy {g}\nbeam   {b}\n")

src_ids = tr.encode_sources([data["test"][0][0]])
for h in beam_search_seq2seq(tr.model, src_ids, beam_size=4)[0]:
    print(f"{h.score:8.3f}  {' '.join(tr.tgt_vocab.decode(h.tokens))}")

# %% [markdown]
# ## Cross-attention: the alignment
#
# Feed the model its own translation with teacher forcing and read the
# cross-attention weights of the last decoder layer, averaged over heads:
# row = target word being predicted, column = source word. With enough
# training the adjectives light up in reverse order, and the verb (last in
# Tolan) looks back at the English verb in the middle.

# %%
src_text = "the big red dog sees a small cat"
out_text = tr.translate([src_text])[0]
src_ids = tr.encode_sources([src_text])
tgt = tr.encode_targets([out_text])
tgt_in = np.concatenate([[[tr.model.config.bos_id]], tgt[:, :-1]], axis=1)
tr.model.eval()
tr.model.forward(src_ids, tgt_in)
weights = tr.model.cross_attention_weights()[-1][0].mean(axis=0)  # (T, S)
print(src_text, "->", out_text)
rows = out_text.split() + ["<eos>"]
if plt():
    fig, ax = plt().subplots(figsize=(6, 5))
    ax.imshow(weights[: len(rows)], cmap="viridis")
    ax.set_xticks(range(len(src_text.split())), src_text.split(), rotation=45)
    ax.set_yticks(range(len(rows)), rows)
    ax.set_title("cross-attention (last decoder layer, mean over heads)")
    savefig(fig, "08_cross_attention")
print("most attended source word for each target word:")
for word, row in zip(rows, weights):
    print(f"  {word:10s} <- {src_text.split()[int(row.argmax())]}")
