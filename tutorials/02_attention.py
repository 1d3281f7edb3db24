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
# # Lesson 02: self-attention and multi-head attention, by hand
#
# Attention is the one idea that separates a transformer from the networks
# before it: **every position builds its new representation as a weighted
# average of every other position**, and the weights are computed from the
# data itself. In this lesson we compute it with nothing but NumPy, one line
# at a time, starting from a sentence of words:
#
# 1. words -> token ids -> embedding vectors;
# 2. add sinusoidal positions (attention is otherwise blind to order);
# 3. project to queries, keys and values;
# 4. scores, and why we divide them by $\sqrt{d_k}$;
# 5. softmax and the weighted sum;
# 6. masks: causal (no peeking at the future) and padding (ignore filler);
# 7. several heads at once, and heat maps of what each head looks at;
# 8. finally, `minitx.nn.MultiHeadAttention` with the same weights must give
#    the same numbers: the lesson stops with an error if it does not.
#
# Shape comments follow the picoGPT habit: `# (T, D) @ (D, d_k) -> (T, d_k)`.
# `T` is the sequence length, `D` is `d_model`, `H` the number of heads.

# %%
import numpy as np

from minitx.nn import MultiHeadAttention, causal_mask, sinusoidal_table
from minitx.tutorial import FAST, plt, savefig

np.set_printoptions(precision=3, suppress=True, linewidth=110)
rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. From words to vectors
#
# A model never sees words, only integers. Here the "tokenizer" is a toy: split
# on spaces and give each distinct word an id. Id 0 is reserved for `<pad>`,
# the filler that makes sentences of different lengths fit in one rectangular
# batch (we will need it in section 6).

# %%
sentence = "the cat sat on the mat"
tokens = sentence.split()
vocab = ["<pad>"] + sorted(set(tokens) | {"dog", "ran"})
token_to_id = {word: i for i, word in enumerate(vocab)}
ids = np.array([token_to_id[w] for w in tokens])  # (T,)
T = len(ids)
print("vocabulary:", token_to_id)
print("ids:", ids, " T =", T)

# %% [markdown]
# An **embedding table** is a matrix with one row per vocabulary entry. Looking
# up a token is indexing a row; that is the same as multiplying a one-hot
# vector by the table, which is why training can learn it like any other
# weight. The table is random here, exactly as at the start of training.

# %%
d_model = 16  # D: the width of every vector in the model
n_heads = 4  # H
d_k = d_model // n_heads  # size of each head's queries and keys (4)
V = len(vocab)

embedding_table = rng.standard_normal((V, d_model))  # (V, D), N(0, 1) like nn.Embedding
x_tok = embedding_table[ids]  # (V, D)[(T,)] -> (T, D)

one_hot = np.eye(V)[ids]  # (T, V)
assert np.allclose(one_hot @ embedding_table, x_tok)  # (T, V) @ (V, D) -> (T, D): the same lookup
print("x_tok", x_tok.shape)
print("rows 0 and 4 are both 'the', so they are identical:", np.array_equal(x_tok[0], x_tok[4]))

# %% [markdown]
# ## 2. Positions
#
# Look ahead to the attention formula: it compares every query with every key
# and sums values. Nothing in it knows *where* a token is; shuffle the
# sentence and every token gets the same output, shuffled. The two `the`s
# above are indistinguishable. So we add a **positional encoding** to each
# vector. The original transformer uses fixed sinusoids:
#
# $$PE[pos, 2i] = \sin\!\left(\frac{pos}{10000^{2i/D}}\right), \qquad
#   PE[pos, 2i+1] = \cos\!\left(\frac{pos}{10000^{2i/D}}\right)$$
#
# Each pair of channels is a clock turning at its own speed: the first pair
# turns one radian per position (a full turn every 6.3 positions), the last
# one so slowly that it takes thousands of positions to turn once. Because
# $\sin(a+b)$ and $\cos(a+b)$ are linear in $\sin a, \cos a$, the encoding of
# position $pos + k$ is a fixed rotation of the encoding of $pos$: "k steps
# to the left" is something a linear projection can learn to recognise.
#
# We build the table by hand and check it against `minitx.nn.sinusoidal_table`.

# %%
max_len = 64 if FAST else 128
pos = np.arange(max_len)[:, None]  # (L, 1)
two_i = np.arange(0, d_model, 2)[None, :]  # (1, D/2): the "2i" in the formula
angles = pos / 10000 ** (two_i / d_model)  # (L, 1) / (1, D/2) -> (L, D/2)
pe = np.zeros((max_len, d_model))  # (L, D)
pe[:, 0::2] = np.sin(angles)  # even channels
pe[:, 1::2] = np.cos(angles)  # odd channels
np.testing.assert_allclose(pe, sinusoidal_table(max_len, d_model, dtype=np.float64), atol=1e-12)

x = x_tok + pe[:T]  # (T, D) + (T, D): the input to attention
print("after adding positions the two 'the's differ by", np.linalg.norm(x[0] - x[4]).round(3))

# %% [markdown]
# On the left, the table itself: fast stripes on the left channels, slow ones
# on the right. On the right, the dot product between the encodings of every
# pair of positions. Since $\sin a \sin b + \cos a \cos b = \cos(a - b)$, it
# equals $\sum_i \cos(\omega_i (p - q))$: it depends *only* on the offset
# $p - q$, peaks at 0 and broadly falls with distance, which is what lets
# attention tell near from far.

# %%
omega = 1.0 / 10000 ** (two_i / d_model)  # (1, D/2): the angular speed of each clock
offset = (pos - pos.T)[..., None]  # (L, L, 1): p - q
assert np.allclose(pe @ pe.T, np.cos(offset * omega).sum(axis=-1))  # (L, L): a function of p - q only

if plt():
    pyplot = plt()
    fig, (ax0, ax1) = pyplot.subplots(1, 2, figsize=(12, 4.4), layout="constrained")
    im = ax0.imshow(pe, aspect="auto", cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
    ax0.set_xlabel("channel (even = sin, odd = cos)")
    ax0.set_ylabel("position")
    ax0.set_title(f"sinusoidal positional encoding, D = {d_model}")
    fig.colorbar(im, ax=ax0, label="value")
    sim = pe @ pe.T  # (L, D) @ (D, L) -> (L, L)
    im = ax1.imshow(sim, cmap="viridis", interpolation="nearest")
    ax1.set_xlabel("position q")
    ax1.set_ylabel("position p")
    ax1.set_title("PE[p] . PE[q]: similarity depends on |p - q|")
    fig.colorbar(im, ax=ax1, label="dot product")
    savefig(fig, "02_positional_encoding")

# %% [markdown]
# ## 3. Queries, keys and values (one head)
#
# Each position plays three roles, each with its own learned projection:
#
# * a **query** $q_t$: what am I looking for?
# * a **key** $k_s$: what do I contain, as seen by someone searching?
# * a **value** $v_s$: what do I hand over if I am chosen?
#
# Separate keys and values let a token be *found* for one reason and
# *contribute* something else. We start with one head of size $d_k = 4$.
# (Weights are drawn at the usual initial scale, $1/\sqrt{D}$.)

# %%
W_q = rng.standard_normal((d_model, d_k)) / np.sqrt(d_model)  # (D, d_k)
W_k = rng.standard_normal((d_model, d_k)) / np.sqrt(d_model)  # (D, d_k)
W_v = rng.standard_normal((d_model, d_k)) / np.sqrt(d_model)  # (D, d_k)

q = x @ W_q  # (T, D) @ (D, d_k) -> (T, d_k)
k = x @ W_k  # (T, D) @ (D, d_k) -> (T, d_k)
v = x @ W_v  # (T, D) @ (D, d_k) -> (T, d_k)
print("q", q.shape, " k", k.shape, " v", v.shape)

# %% [markdown]
# ## 4. Scores, and why we divide by $\sqrt{d_k}$
#
# How well does query $t$ match key $s$? Their dot product. All pairs at once
# is one matrix product:
#
# $$S = \frac{Q K^\top}{\sqrt{d_k}} \in \mathbb{R}^{T \times T}$$
#
# Why the $\sqrt{d_k}$? If the entries of $q$ and $k$ are independent with
# mean 0 and variance 1, then $q \cdot k = \sum_{i=1}^{d_k} q_i k_i$ is a sum
# of $d_k$ terms of variance 1, so its **variance is $d_k$** and its typical
# size $\sqrt{d_k}$. Dividing by $\sqrt{d_k}$ brings the variance back to 1
# whatever the head size. Let us measure it rather than believe it.

# %%
n_pairs = 2_000 if FAST else 20_000
head_sizes = [4, 16, 64, 256, 1024]
raw_var, scaled_var = [], []
for dk in head_sizes:
    qs = rng.standard_normal((n_pairs, dk))  # (N, dk)
    ks = rng.standard_normal((n_pairs, dk))  # (N, dk)
    dots = (qs * ks).sum(axis=1)  # (N,): one dot product per pair
    raw_var.append(dots.var())
    scaled_var.append((dots / np.sqrt(dk)).var())
    print(f"d_k = {dk:5d}   var(q.k) = {raw_var[-1]:8.1f}   var(q.k / sqrt(d_k)) = {scaled_var[-1]:.3f}")

# %% [markdown]
# Why does a large variance hurt? The softmax that follows turns scores into
# weights with $e^{s}$. With scores of size $\pm 30$, the largest one wins by a
# factor of $e^{10}$ or more: the softmax **saturates** to a one-hot vector.
# Two problems follow. The head can only copy one position instead of
# blending several, and, worse, the gradient of a saturated softmax is
# almost zero (lesson 03 shows its Jacobian is $\mathrm{diag}(p) - p p^\top$,
# which vanishes when $p$ is one-hot), so the head stops learning.
# Below: the average largest weight in a row of 16 scores, and the entropy of
# the row (uniform over 16 keys = $\ln 16 \approx 2.77$ nats; one-hot = 0).

# %%
def softmax(s):
    """``[..., n] -> [..., n]``: subtract the row max (changes nothing, avoids overflow), exponentiate, normalise."""
    e = np.exp(s - s.max(axis=-1, keepdims=True))  # (..., n)
    return e / e.sum(axis=-1, keepdims=True)  # (..., n)


n_rows, n_keys = (200, 16) if FAST else (2000, 16)
max_w = {"unscaled": [], "scaled": []}
entropy = {"unscaled": [], "scaled": []}
for dk in head_sizes:
    qs = rng.standard_normal((n_rows, 1, dk))  # (R, 1, dk): one query per row
    ks = rng.standard_normal((n_rows, n_keys, dk))  # (R, n, dk): n keys per row
    dots = (qs * ks).sum(axis=-1)  # (R, n)
    for name, s in (("unscaled", dots), ("scaled", dots / np.sqrt(dk))):
        p = softmax(s)  # (R, n)
        max_w[name].append(p.max(axis=-1).mean())
        entropy[name].append(-(p * np.log(p + 1e-30)).sum(axis=-1).mean())
for i, dk in enumerate(head_sizes):
    print(f"d_k = {dk:5d}   mean max weight: unscaled {max_w['unscaled'][i]:.3f}, scaled {max_w['scaled'][i]:.3f}")

# %%
if plt():
    pyplot = plt()
    fig, axes = pyplot.subplots(1, 3, figsize=(14, 3.8))
    axes[0].loglog(head_sizes, raw_var, "o-", label="q . k")
    axes[0].loglog(head_sizes, scaled_var, "s-", label="q . k / sqrt(d_k)")
    axes[0].loglog(head_sizes, head_sizes, "k:", label="d_k (theory)")
    axes[0].set_xlabel("head size d_k")
    axes[0].set_ylabel("variance of the score")
    axes[0].set_title("score variance grows like d_k")
    axes[0].legend()
    for ax, stat, ylabel in ((axes[1], max_w, "mean of the largest weight"), (axes[2], entropy, "entropy (nats)")):
        ax.semilogx(head_sizes, stat["unscaled"], "o-", label="unscaled")
        ax.semilogx(head_sizes, stat["scaled"], "s-", label="scaled by 1/sqrt(d_k)")
        ax.set_xlabel("head size d_k")
        ax.set_ylabel(ylabel)
    axes[1].axhline(1 / n_keys, color="k", ls=":", lw=1, label="uniform")
    axes[1].set_title(f"softmax over {n_keys} keys saturates without scaling")
    axes[2].axhline(np.log(n_keys), color="k", ls=":", lw=1, label="uniform")
    axes[2].set_title("entropy: uniform (dotted) to one-hot (0)")
    axes[1].legend()
    axes[2].legend()
    fig.tight_layout()
    savefig(fig, "02_why_scale")

# %% [markdown]
# ## 5. Softmax and the weighted sum
#
# Each row of scores becomes a probability distribution over keys,
#
# $$P_{ts} = \frac{e^{S_{ts}}}{\sum_{s'} e^{S_{ts'}}}, \qquad \text{out}_t = \sum_s P_{ts}\, v_s,
#   \qquad \text{i.e. } \text{out} = P V.$$
#
# The output of position $t$ is a blend of values, weighted by how well $t$'s
# query matched each key.

# %%
scores = q @ k.T / np.sqrt(d_k)  # (T, d_k) @ (d_k, T) -> (T, T)
P = softmax(scores)  # (T, T), each row sums to 1
out = P @ v  # (T, T) @ (T, d_k) -> (T, d_k)
assert np.allclose(P.sum(axis=-1), 1.0)
print("attention weights (row = query, column = key):")
print(P)
print("out", out.shape)

# %% [markdown]
# ## 6. Masks
#
# A mask says which (query, key) pairs are allowed. We apply it *before* the
# softmax, by replacing forbidden scores with $-\infty$: $e^{-\infty} = 0$, so
# they get exactly zero weight and the remaining weights still sum to 1.
#
# * **Causal mask.** A language model predicts token $t+1$ from tokens
#   $\le t$. If position $t$ could attend to $t+1$ during training, it would
#   simply read the answer. The mask allows key $s$ for query $t$ only when
#   $s \le t$: a lower-triangular matrix.
# * **Padding mask.** To batch sentences of different lengths we pad the
#   short ones with `<pad>`. Those positions are not words, so no query may
#   attend to them: the pad *columns* are masked, for every query.
#
# Our batch has two sentences; the second is padded to the length of the first.
# In this lesson a mask is **True where attention is allowed**.

# %%
sentence_b = "the dog ran".split()
ids_b = np.array([token_to_id[w] for w in sentence_b] + [token_to_id["<pad>"]] * (T - len(sentence_b)))
batch_ids = np.stack([ids, ids_b])  # (B, T) = (2, 6)
batch_tokens = [tokens, sentence_b + ["<pad>"] * (T - len(sentence_b))]
B = batch_ids.shape[0]

causal = np.tril(np.ones((T, T), dtype=bool))  # (T, T): key s allowed for query t iff s <= t
assert np.array_equal(causal, causal_mask(T))  # minitx's helper uses the same convention
not_pad = batch_ids != token_to_id["<pad>"]  # (B, T): True for real tokens
padding = np.broadcast_to(not_pad[:, None, :], (B, T, T))  # (B, 1, T) -> (B, T, T): same columns for every query
print("batch ids:\n", batch_ids)
print("causal mask:\n", causal.astype(int))
print("padding mask of sentence 2 (rows = queries, columns = keys):\n", padding[1].astype(int))

# %% [markdown]
# Why not $-\infty$ everywhere? If *every* key of a row is masked, the row
# becomes $e^{-\infty} / \sum e^{-\infty} = 0/0 = $ NaN, and a NaN spreads
# through every later layer. minitx therefore uses the most negative *finite*
# number instead: the weights of masked keys are still exactly 0, and an
# all-masked row becomes uniform rather than NaN.

# %%
with np.errstate(invalid="ignore"):
    e = np.exp(np.full(3, -np.inf) - np.max(np.full(3, -np.inf)))  # (3,): -inf - (-inf) = NaN
    print("all-masked row with -inf:        ", e / e.sum())
print("all-masked row with finfo.min:   ", softmax(np.full(3, np.finfo(np.float64).min)))


# %%
def token_axes(ax, row_labels, col_labels):
    """Label a (query x key) image with the tokens."""
    ax.set_xticks(range(len(col_labels)), col_labels, rotation=45, ha="right")
    ax.set_yticks(range(len(row_labels)), row_labels)
    ax.set_xlabel("key (attended to)")
    ax.set_ylabel("query (attending)")


if plt():
    pyplot = plt()
    fig, axes = pyplot.subplots(1, 3, figsize=(13, 4.2))
    panels = (
        (causal, tokens, "causal mask (sentence 1)"),
        (padding[1], batch_tokens[1], "padding mask (sentence 2)"),
        (causal & padding[1], batch_tokens[1], "causal AND padding (sentence 2)"),
    )
    for ax, (mask, labels, title) in zip(axes, panels):
        ax.imshow(mask, cmap="Greys_r", vmin=0, vmax=1, interpolation="nearest")
        token_axes(ax, labels, labels)
        ax.set_title(title)
    fig.suptitle("masks: white = may attend, black = blocked", y=1.02)
    fig.tight_layout()
    savefig(fig, "02_masks")

# %% [markdown]
# ## 7. Multi-head attention, by hand
#
# One head produces one distribution per query, so it can follow one kind of
# relation at a time. **Multi-head attention** runs $H$ small heads in
# parallel, each in its own $d_k = D/H$-dimensional subspace, then
# concatenates their outputs and mixes them with an output projection $W_o$:
#
# $$\text{head}_h = \mathrm{softmax}\!\left(\frac{Q_h K_h^\top}{\sqrt{d_k}} + M\right) V_h, \qquad
#   \text{MHA}(x) = [\text{head}_1; \dots; \text{head}_H]\, W_o + b_o$$
#
# where $M$ is 0 where allowed and $-\infty$ where masked. The cost is the
# same as one head of size $D$. We lay the weights out as minitx does: one
# fused matrix `W_qkv` of shape `(D, 3D)` (one matmul instead of three) whose
# columns are `[Q | K | V]`, and inside each, head $h$ owns columns
# `h*d_k : (h+1)*d_k`.

# %%
std = 1.0 / np.sqrt(d_model)
W_qkv = rng.standard_normal((d_model, 3 * d_model)) * std  # (D, 3D)
b_qkv = rng.standard_normal(3 * d_model) * 0.1  # (3D,)
W_o = rng.standard_normal((d_model, d_model)) * std  # (D, D)
b_o = rng.standard_normal(d_model) * 0.1  # (D,)

x_batch = embedding_table[batch_ids] + pe[:T]  # (B, T, D) + (T, D) -> (B, T, D)


def multi_head_attention_by_hand(x, allowed=None):
    """``x [B, T, D] -> (out [B, T, D], weights [B, H, T, T])``.

    ``allowed``: bool, broadcastable to ``[B, H, T, T]``, True where a query may attend.
    """
    B, T, D = x.shape
    qkv = x @ W_qkv + b_qkv  # (B, T, D) @ (D, 3D) -> (B, T, 3D)
    q, k, v = qkv[..., :D], qkv[..., D:2 * D], qkv[..., 2 * D:]  # 3 x (B, T, D)
    q = q.reshape(B, T, n_heads, d_k).transpose(0, 2, 1, 3)  # (B, T, H, d_k) -> (B, H, T, d_k)
    k = k.reshape(B, T, n_heads, d_k).transpose(0, 2, 1, 3)  # (B, H, T, d_k)
    v = v.reshape(B, T, n_heads, d_k).transpose(0, 2, 1, 3)  # (B, H, T, d_k)
    scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(d_k)  # (B, H, T, d_k) @ (B, H, d_k, T) -> (B, H, T, T)
    if allowed is not None:
        scores = np.where(allowed, scores, -np.inf)  # (B, H, T, T): blocked pairs get -inf
    weights = softmax(scores)  # (B, H, T, T)
    heads = weights @ v  # (B, H, T, T) @ (B, H, T, d_k) -> (B, H, T, d_k)
    concat = heads.transpose(0, 2, 1, 3).reshape(B, T, D)  # (B, T, H, d_k) -> (B, T, D)
    out = concat @ W_o + b_o  # (B, T, D) @ (D, D) -> (B, T, D)
    return out, weights


out_plain, w_plain = multi_head_attention_by_hand(x_batch)
out_causal, w_causal = multi_head_attention_by_hand(x_batch, causal)  # (T, T) broadcasts over B, H
out_pad, w_pad = multi_head_attention_by_hand(x_batch, not_pad[:, None, None, :])  # (B, 1, 1, T)
print("out", out_plain.shape, " weights", w_plain.shape)
print("largest weight given to a <pad> key:", w_pad[1][..., ~not_pad[1]].max())
print("largest weight given to a future key:", w_causal[..., ~causal].max())

# %% [markdown]
# ### What each head looks at
#
# Rows are queries, columns are keys, each row sums to 1. These heads are
# untrained, so their patterns come only from the random embeddings and the
# positions. Still, several things are visible: the two `the` queries (same
# embedding, different positions) often produce similar rows; the causal
# rows are confined to the lower triangle, so the first token can only look
# at itself (weight 1); and the `<pad>` columns are empty. The `<pad>`
# *rows* are not empty: a padding mask hides pad tokens as keys, but pad
# positions still compute an output. It is meaningless and harmless, because
# the loss ignores those positions.

# %%
if plt():
    pyplot = plt()
    cases = (
        ("unmasked", w_plain[0], tokens),
        ("causal", w_causal[0], tokens),
        ("padded", w_pad[1], batch_tokens[1]),
    )
    fig, axes = pyplot.subplots(len(cases), n_heads, figsize=(3.3 * n_heads + 1.5, 3.3 * len(cases)),
                                layout="constrained")
    for row, (case, weights, labels) in enumerate(cases):
        for h in range(n_heads):
            ax = axes[row, h]
            im = ax.imshow(weights[h], cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
            token_axes(ax, labels, labels)
            ax.set_title(f"{case}: head {h}")
            if h:
                ax.set_ylabel("")
    fig.colorbar(im, ax=axes, shrink=0.5, label="attention weight (each row sums to 1)")
    savefig(fig, "02_attention_heads")

# %% [markdown]
# ## 8. The same numbers from `minitx.nn.MultiHeadAttention`
#
# The library version is the code above, organised: a fused `qkv` Linear
# (weight `(D, 3D)`, laid out exactly like our `W_qkv`), the heads split and
# merged by reshapes, `scaled_dot_product_attention_forward` in the middle,
# and a `proj` Linear. We copy our weights in and demand agreement to
# floating-point precision, in float64.
#
# One convention to watch: `MultiHeadAttention` follows PyTorch's
# `nn.MultiheadAttention`, where `key_padding_mask` and `attn_mask` are **True
# where attention is blocked**, the opposite of the "allowed" masks above.
# Hence the `~`.

# %%
mha = MultiHeadAttention(d_model, n_heads, dtype=np.float64)
mha_causal = MultiHeadAttention(d_model, n_heads, causal=True, dtype=np.float64)
for module in (mha, mha_causal):
    module.qkv.weight.data[...] = W_qkv
    module.qkv.bias.data[...] = b_qkv
    module.proj.weight.data[...] = W_o
    module.proj.bias.data[...] = b_o
print(dict((name, p.shape) for name, p in mha.named_parameters()))

checks = (  # (name, module, keyword arguments, by-hand output, by-hand weights)
    ("unmasked", mha, {}, out_plain, w_plain),
    ("causal=True", mha_causal, {}, out_causal, w_causal),
    ("attn_mask", mha, {"attn_mask": ~causal}, out_causal, w_causal),
    ("key_padding_mask", mha, {"key_padding_mask": ~not_pad}, out_pad, w_pad),
)
for name, module, kwargs, hand_out, hand_weights in checks:
    lib_out = module(x_batch, **kwargs)  # (B, T, D); module.attn_weights is now (B, H, T, T)
    np.testing.assert_allclose(lib_out, hand_out, rtol=1e-10, atol=1e-12, err_msg=f"{name}: outputs differ")
    np.testing.assert_allclose(module.attn_weights, hand_weights, rtol=1e-10, atol=1e-12,
                               err_msg=f"{name}: attention weights differ")
    print(f"{name:17s} matches: max |difference| in output {np.abs(lib_out - hand_out).max():.1e}")

# %% [markdown]
# The differences are zero or at the last bit: the library performs the same
# float64 operations in the same order. Training runs in float32, minitx's
# default dtype, which keeps about 7 significant digits; the same comparison
# then agrees to roughly $10^{-6}$ relative, and that is rounding, not a bug.

# %%
mha32 = MultiHeadAttention(d_model, n_heads, dtype=np.float32)
mha32.load_state_dict({"qkv.weight": W_qkv, "qkv.bias": b_qkv, "proj.weight": W_o, "proj.bias": b_o})
out32 = mha32(x_batch.astype(np.float32), key_padding_mask=~not_pad)  # (B, T, D) float32
assert out32.dtype == np.float32
np.testing.assert_allclose(out32, out_pad, rtol=1e-4, atol=1e-5)
print(f"float32 module vs float64 by hand: max |difference| {np.abs(out32 - out_pad).max():.1e}")

# %% [markdown]
# After each call the module keeps its attention weights, `[B, H, Tq, Tk]`, in
# `attn_weights` (or returns them with `return_weights=True`): that is what you
# plot when inspecting a trained model. Here is head 0 for the padded
# sentence, straight from the library, with the `<pad>` columns at zero.

# %%
_, lib_weights = mha(x_batch, key_padding_mask=~not_pad, return_weights=True)
print("attn_weights", lib_weights.shape)
print(lib_weights[1, 0])

# %% [markdown]
# ## Summary
#
# * Embedding = row lookup; positions are *added* because attention itself is
#   order-blind.
# * $Q = xW_q$, $K = xW_k$, $V = xW_v$; scores $QK^\top/\sqrt{d_k}$; the
#   scaling keeps score variance near 1 so the softmax neither saturates nor
#   kills its own gradient.
# * Masks act before the softmax; blocked pairs get weight exactly 0.
# * Multi-head = the same computation in $H$ subspaces, concatenated and
#   re-mixed by $W_o$.
#
# Next, lesson 03 derives the backward pass of this computation (and of
# LayerNorm) by hand, and proves it right with finite differences.
