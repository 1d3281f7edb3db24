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
# # Lesson 13: RNN against attention, or why transformers won
#
# Before the transformer, language models were **recurrent**: they read a
# sentence one word at a time and kept everything they had read in one
# vector, the hidden state `h`. To predict the next word after
#
# > I deposited the cash, had a long talk with an old friend, and then went to the **bank** ...
#
# the model needs "cash", which it read a dozen words earlier. An RNN has
# to have *carried* that word in `h` through every word in between. A
# transformer has no such bottleneck: at "bank" its attention can *look
# back* at every earlier word and pick out "cash" directly.
#
# This lesson measures that difference:
#
# 1. the recurrence, and why it is a loop over time;
# 2. the "bank" sentence with hand-built weights: a fading hidden state
#    against an attention look-up (a picture of the mechanism, not a
#    trained result);
# 3. the recall task, on which a vanilla RNN, a GRU and a GPT of about the
#    same size are trained with the same data and token budget;
# 4. accuracy against distance, the lesson's main plot;
# 5. inside the trained models: how much the answer depends on the fact, and where the GPT looks;
# 6. speed: tokens per second, and what "parallel over time" means.
#
# Everything runs offline on a CPU. In fast mode (the test suite) the models
# are tiny and the numbers mean nothing; the full run takes several minutes
# and its figures are recorded in `benchmarks/rnn.md`.

# %%
import numpy as np

from minitx.bench.rnn import RecallBenchSettings, check_target, format_tables, run
from minitx.datasets.recall import RecallTask
from minitx.nn import RNN, MultiHeadAttention
from minitx.tutorial import FAST, plt, savefig

np.set_printoptions(precision=3, suppress=True, linewidth=110)

# %% [markdown]
# ## 1. The recurrence is a loop over time
#
# A vanilla RNN applies one function at every step,
#
# $$h_t = \tanh(x_t W_{ih} + b_{ih} + h_{t-1} W_{hh} + b_{hh}),$$
#
# exactly `torch.nn.RNN`'s. Because $h_t$ needs $h_{t-1}$, the $T$ steps of a
# sentence cannot be computed at once: `minitx.nn.rnn` runs a Python loop
# over time (and nowhere else: the batch and the hidden units are whole
# matrix operations, and the input projections of all steps are one product
# before the loop). Here is the layer against a loop written out by hand:

# %%
rng = np.random.default_rng(0)
layer = RNN(3, 4, rng=rng, dtype=np.float64)
x = rng.standard_normal((2, 5, 3))  # (B, T, I)
out, h_T = layer(x)  # (B, T, H), (B, H)

h = np.zeros((2, 4))  # (B, H)
by_hand = []
for t in range(5):
    h = np.tanh(x[:, t] @ layer.weight_ih.data + layer.bias_ih.data + h @ layer.weight_hh.data + layer.bias_hh.data)
    by_hand.append(h)
assert np.allclose(np.stack(by_hand, axis=1), out) and np.allclose(h, h_T)
print("the layer equals the loop; h_T is the last output:", h_T[0])

# %% [markdown]
# Training runs that loop backwards too (backpropagation through time): the
# gradient reaching step $t - N$ has been multiplied by
# $W_{hh}^\top \mathrm{diag}(1 - h^2)$ $N$ times. Those products shrink
# geometrically, so what happened far back barely changes the weights, and a
# vanilla RNN learns long dependencies badly. The GRU adds gates,
#
# $$z_t = \sigma(\dots),\qquad h_t = (1 - z_t)\, n_t + z_t\, h_{t-1},$$
#
# so where $z_t \approx 1$ the state (and its gradient) passes through
# almost unchanged. Both layers are gradient-checked and equal to PyTorch's
# in `tests/test_rnn.py`.
#
# ## 2. The "bank" sentence, with hand-built weights
#
# Take two sentences that differ in one word, far before "bank":
#
# - "i sat by the **river** , ... , and looked at the bank"
# - "i deposited all the **cash** , ... , and walked to the bank"
#
# The "..." is a run of N unrelated words. At "bank" the model should know
# which bank is meant. We hand-build the smallest models that could know it.
#
# **The RNN.** One hidden unit is the "sense" unit: "river" writes +1 into
# it, "cash" writes -1, and it keeps a fraction `w = 0.8` of itself at every
# step. A trained vanilla RNN must be contractive like this (|w| < 1), or
# its state would blow up over long inputs. Every other word writes a little
# noise into the same unit, since in a real RNN all words share the one
# state. What is left of the sense at "bank" after N words?

# %%
words_between = np.arange(0, 31)
w, noise = 0.8, 0.15
n_sentences = 200 if FAST else 2000
rng = np.random.default_rng(1)


def sense_at_bank(sign: float, n_between: int, rng) -> np.ndarray:
    """The sense unit at "bank" for ``n_sentences`` sentences: tanh recurrence from the context word on."""
    h = np.tanh(np.full(n_sentences, sign))  # (S,) the context word: +1 river, -1 cash
    for _ in range(n_between + 1):  # the words in between, then "bank"
        h = np.tanh(w * h + noise * rng.standard_normal(n_sentences))  # (S,)
    return h


rnn_sense_accuracy = []
for n in words_between:
    river, cash = sense_at_bank(+1, n, rng), sense_at_bank(-1, n, rng)
    rnn_sense_accuracy.append(0.5 * ((river > 0).mean() + (cash < 0).mean()))  # read the sign at "bank"
print("hand-built RNN, share of sentences whose sign at 'bank' still tells river from cash:")
print({int(n): round(float(a), 3) for n, a in zip(words_between[::5], rnn_sense_accuracy[::5])})

# %% [markdown]
# **The attention head.** At "bank" the query asks "which earlier word is a
# *sense word*?". The keys of "river" and "cash" answer with a large score
# (here 6), every other word with 0. The softmax puts its weight on the
# context word wherever it stands, and the value vector copies its sense
# over: nothing has to survive the words in between. Only the number of
# competing words enters, through the softmax's denominator, and no
# distance at all (this head has no position term).

# %%
def attention_weight_on_context(n_between: int, score: float = 6.0) -> float:
    n_other = 5 + n_between + 6  # "i sat by the ," + the words in between + ", and looked at the bank" (bank sees itself)
    return float(np.exp(score) / (np.exp(score) + n_other))  # softmax weight on the one sense word


attn_weight = [attention_weight_on_context(int(n)) for n in words_between]
print("hand-built attention: weight on 'river'/'cash' at 'bank'", [round(a, 3) for a in attn_weight[::5]])

# %% [markdown]
# The same look-up as a real `MultiHeadAttention` layer: one head whose
# query at "bank" and whose key at the context word are set by hand, run on
# the actual sentence (with 10 words in between). The figure shows the
# attention row of "bank" for both sentences, beside the RNN's fading sense.

# %%
between = ["and", "then", "after", "a", "long", "talk", "with", "an", "old", "friend"]
sentences = {
    "river": ["i", "sat", "by", "the", "river", ","] + between + [",", "and", "looked", "at", "the", "bank"],
    "cash": ["i", "deposited", "all", "the", "cash", ","] + between + [",", "and", "walked", "to", "the", "bank"],
}
vocab = sorted({word for s in sentences.values() for word in s})
D = 4  # dimensions: 0 "is a sense word", 1 the sense (+1 river, -1 cash), 2 "is bank", 3 unused
emb = np.zeros((len(vocab), D))
emb[vocab.index("river"), :2] = [1.0, 1.0]
emb[vocab.index("cash"), :2] = [1.0, -1.0]
emb[vocab.index("bank"), 2] = 1.0
mha = MultiHeadAttention(D, 1, causal=True, bias=False, dtype=np.float64)
W = np.zeros((D, 3 * D))  # qkv: [q | k | v]
W[2, 0] = 12.0  # q: "bank" asks along dimension 0 (scores are divided by sqrt(D) = 2: score 6)
W[0, D + 0] = 1.0  # k: sense words answer along dimension 0
W[1, 2 * D + 1] = 1.0  # v: carry the sense
mha.qkv.weight.data[...] = W
mha.proj.weight.data[...] = np.eye(D)
rows, senses = {}, {}
for name, words in sentences.items():
    x = emb[[vocab.index(word) for word in words]][None]  # (1, T, D)
    y, weights = mha(x, return_weights=True)  # (1, T, D), (1, 1, T, T)
    rows[name], senses[name] = weights[0, 0, -1], float(y[0, -1, 1])
    print(f"{name:>5}: attention of 'bank' on {name!r} = {weights[0, 0, -1, words.index(name)]:.3f}, "
          f"sense read at 'bank' = {senses[name]:+.3f}")
assert senses["river"] > 0.9 and senses["cash"] < -0.9

if plt():
    fig, axes = plt().subplots(1, 2, figsize=(13, 3.8), gridspec_kw={"width_ratios": [1.4, 1]})
    ax = axes[0]
    for offset, (name, words) in zip((-0.2, 0.2), sentences.items()):
        ax.bar(np.arange(len(words)) + offset, rows[name], width=0.4, label=f"'{name}' sentence")
    ax.set_xticks(range(len(sentences["river"])))
    ax.set_xticklabels([f"{a}/{b}" if a != b else a for a, b in
                        zip(sentences["river"], sentences["cash"])], rotation=70, fontsize=8)
    ax.set_ylabel("attention weight from 'bank'")
    ax.set_title("attention looks the context word up")
    ax.legend()
    ax = axes[1]
    ax.plot(words_between, rnn_sense_accuracy, "o-", label="hand-built RNN: sign of the sense unit")
    ax.plot(words_between, attn_weight, "s-", label="hand-built attention: weight on the context word")
    ax.axhline(0.5, color="grey", ls=":", label="chance")
    ax.set_xlabel("words between the context word and 'bank'")
    ax.set_ylabel("share told apart / attention weight")
    ax.set_ylim(0, 1.05)
    ax.set_title("the RNN's hidden state has to carry it")
    ax.legend(fontsize=8)
    fig.tight_layout()
    savefig(fig, "13_bank_sentence")

# %% [markdown]
# Be clear about what this shows: these are **weights we chose**, a picture
# of the two mechanisms. A trained RNN could learn a better memory than our
# `w = 0.8` unit, and a trained transformer has to learn its look-up. Whether
# they do is the next sections' question, answered by training.
#
# ## 3. The recall task
#
# `minitx.datasets.recall` generates the cleanest version of the bank
# problem. A sequence is a stream of *facts* ("key 3 has value 2", one token)
# and *queries* ("key 3?"): after a query the next token is that key's value,
# given by the key's latest fact N positions back. Every sequence draws its
# own values, so only the context can tell. The model must read a fact,
# keep it while other facts arrive, and answer when asked.

# %%
settings = RecallBenchSettings.fast() if FAST else RecallBenchSettings.full()
task = RecallTask(n_keys=settings.n_keys, n_values=settings.n_values, seq_len=settings.seq_len,
                  query_rate=settings.query_rate)
x, y = task.batch_at(min(6, task.max_distance), 1, np.random.default_rng(0))


def show(token: int) -> str:
    if token < task.n_facts:
        return f"k{task.key_of(token)}={task.value_of(token)}"
    return f"k{task.key_of(token)}?"


print(f"the last 16 of {task.seq_len} tokens: ... " + " ".join(show(int(t)) for t in x[0, -16:]))
print(f"answer after the last query: value {int(task.answer_of(y[0, -1]))} "
      f"(the fact 6 positions back); chance is 1/{task.n_values}")

# %% [markdown]
# ## 4. Three models, the same data, accuracy against distance
#
# `python -m minitx.bench.rnn` trains a vanilla RNN, a GRU and a 2-layer
# GPT of about 0.1M parameters each, with the same `TrainConfig` (hence the
# same batches) through the one `Trainer`, then measures accuracy on fresh
# sequences at each distance N. We call the same function here.

# %%
rows, models = run(settings, seed=0, log=print)
print(format_tables(rows))
if not FAST:
    print("target:", check_target(rows) or "met")

# %%
if plt():
    fig, ax = plt().subplots(figsize=(7, 4))
    for name, style, size in (("gpt", "s-", 10), ("rnn", "o-", 6), ("gru", "^--", 6)):  # the GRU drawn over the GPT
        points = [(r["distance"], r["accuracy"]) for r in rows if r.get("model") == name and "accuracy" in r]
        n_params = next(r["n_params"] for r in rows if r.get("model") == name and "n_params" in r)
        ax.plot(*zip(*points), style, markersize=size, label=f"{name} ({n_params:,} parameters)")
    ax.axhline(1 / settings.n_values, color="grey", ls=":", label="chance")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("distance N back to the fact (tokens)")
    ax.set_ylabel("recall accuracy")
    ax.set_ylim(0, 1.05)
    ax.set_title("recall by distance: RNN vs GRU vs attention")
    ax.legend()
    fig.tight_layout()
    savefig(fig, "13_accuracy_by_distance")

# %% [markdown]
# ## 5. Inside the trained models
#
# **How much does the fact still matter?** Take the logit of the correct
# answer at the final query and backpropagate it to the *input vectors* of
# the sequence (the embeddings fed to the first layer). The size of that
# gradient at the fact's position, relative to the size at the query's own
# position, says how strongly the answer still depends on the fact N steps
# back. For an RNN this is exactly the backpropagation-through-time product
# of section 1; for the GPT it flows through attention.
#
# **Where does the GPT look?** At the final query, the share of attention
# that the most attentive head puts on facts about the queried key (the
# latest one N back, and any earlier fact about the same key, which carries
# the same value).

# %%
from minitx.models.gpt import lm_head_backward


def input_gradient(model, x, answers) -> np.ndarray:
    """d(answer logit at the last position) / d(input vectors): ``(B, T, E)``, by the models' own backward passes."""
    logits = model.forward(x)  # (B, T, V)
    dlogits = np.zeros_like(logits)  # (B, T, V)
    dlogits[np.arange(len(x)), -1, answers] = 1.0
    if hasattr(model, "layers"):  # RNNLM: head, then each recurrent layer backwards through time
        dx = model.head.backward(dlogits)  # (B, T, H)
        for layer in reversed(list(model.layers)):
            dx, _ = layer.backward(dx)  # (B, T, I)
        return dx
    dh, _ = lm_head_backward(dlogits, model.head_cache)  # GPT: (B, T, D)
    dx = model.ln_f.backward(dh)
    for block in reversed(list(model.blocks)):
        dx = block.backward(dx)  # (B, T, D)
    return dx


def influence(model, task, distance: int, rng, n: int = 100) -> float:
    """Mean ||gradient at the fact|| / ||gradient at the query|| for queries ``distance`` back."""
    x, y = task.batch_at(distance, n, rng)
    g = np.linalg.norm(input_gradient(model, x, y[:, -1]), axis=-1)  # (B, T)
    model.zero_grad()  # the backward passes above added into the weights' gradients: clear them
    return float((g[:, -1 - distance] / g[:, -1]).mean())


def attention_on_key(gpt, task, distance: int, rng, n: int = 100) -> float:
    """Attention share of the last query on facts about its key, in the head (any layer) that looks most."""
    x, _ = task.batch_at(distance, n, rng)
    gpt.forward(x)
    same_key = (x < task.n_facts) & (task.key_of(x) == task.key_of(x[:, -1:]))  # (B, T) facts about the key
    best = 0.0
    for block in gpt.blocks:
        weights = block.attn.attn_weights[:, :, -1]  # (B, H, T): the last query's row in every head
        best = max(best, float((weights * same_key[:, None]).sum(axis=-1).mean(axis=0).max()))
    return best


grads = {name: [influence(models[name], task, d, np.random.default_rng(3)) for d in settings.distances]
         for name in ("rnn", "gru", "gpt")}
attn = {d: attention_on_key(models["gpt"], task, d, np.random.default_rng(4)) for d in settings.distances}
for name, values in grads.items():
    print(f"{name}: gradient at the fact / at the query, by distance:",
          {d: round(v, 4) for d, v in zip(settings.distances, values)})
print("gpt: attention on facts about the queried key:", {d: round(a, 3) for d, a in attn.items()})

if plt():
    fig, axes = plt().subplots(1, 2, figsize=(12, 3.8))
    for name, style in (("rnn", "o-"), ("gru", "^-"), ("gpt", "s-")):
        axes[0].plot(settings.distances, grads[name], style, label=name)
    axes[0].set_xscale("log", base=2)
    axes[0].set_yscale("log")
    axes[0].set_xlabel("distance N back to the fact")
    axes[0].set_ylabel("|d answer / d fact| / |d answer / d query|")
    axes[0].set_title("how much the answer still depends on the fact")
    axes[0].legend()
    axes[1].plot(list(attn), list(attn.values()), "s-", color="C2")
    axes[1].set_xscale("log", base=2)
    axes[1].set_ylim(0, 1.05)
    axes[1].set_xlabel("distance N back to the fact")
    axes[1].set_ylabel("attention on facts about the key")
    axes[1].set_title("the GPT looks it up (most attentive head)")
    fig.tight_layout()
    savefig(fig, "13_inside")

# %% [markdown]
# What the full run shows (seed 0, recorded in `benchmarks/rnn.md`; fast
# mode's tiny models print other numbers): the GPT's most attentive head puts
# 98-100% of the query's attention on facts about the queried key at every
# distance from 2 to 64, and the answer's gradient at the fact stays as large
# as at the query itself. The vanilla RNN's gradient at the fact falls from
# about half of the query's at N=2 to a sixteenth at N=64: the geometric
# shrinking of section 1, measured. The GRU's ratio is no larger than the
# RNN's, yet it recalls perfectly: the size of one gradient is not the whole
# story. Its gates keep the value in a form the head can still read, which
# this single number does not show.
#
# ## 6. Speed: parallel over time
#
# The bench also reports training tokens per second. Read it with care: at
# this size all three models are small matrix products plus Python overhead,
# so the tokens/s figures are of the same order. What differs is the
# *shape* of the work: a GPT layer processes all T positions of a sequence in
# one product (`(B*T, D) @ (D, 3D)`), so a longer context is more work but
# not more *steps*; the RNN takes T dependent steps of `(B, H) @ (H, H)`,
# which no amount of hardware can run side by side. On a GPU, where one big
# product costs about as much as one small one, that is the difference that
# made transformers trainable on whole books.

# %%
for r in rows:
    if "tokens_per_s" in r:
        print(f"{r['model']}: val loss {r['val_loss']:.4f}, {r['tokens_per_s']:,.0f} training tokens/s")
