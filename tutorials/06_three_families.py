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
# # Lesson 06: the three families of the transformer, side by side
#
# BERT, GPT and the original Transformer (T5, BART) are built from **the same
# two blocks** in `minitx.nn`: an `EncoderBlock` (self-attention + MLP) and a
# `DecoderBlock` (causal self-attention, optionally cross-attention, + MLP).
# What makes them different families is only
#
# 1. **which mask** each attention uses, and
# 2. **which head** sits on top of the last hidden states.
#
# | family | example | attention | head | trained to |
# | --- | --- | --- | --- | --- |
# | encoder-only | BERT | bidirectional (padding mask only) | pool -> classes, or a tag per token | classify, tag, fill in masked words |
# | decoder-only | GPT | causal | next-token logits | continue text |
# | encoder-decoder | T5, BART | encoder: bidirectional; decoder: causal + cross | next-token logits | map a sequence to another |
#
# We build one tiny model of each family, print what they share, and draw
# their masks.

# %%
import numpy as np

from minitx.models import GPT, GPTConfig
from minitx.models.encoder import EncoderClassifier, EncoderConfig
from minitx.models.seq2seq import Seq2Seq, Seq2SeqConfig
from minitx.nn import causal_mask
from minitx.tutorial import FAST, plt, savefig

V, D, H, L = 20, 32, 4, 2  # vocabulary, d_model, heads, layers: the same for all three
bert = EncoderClassifier(EncoderConfig(vocab_size=V, max_len=16, n_layer=L, n_head=H, d_model=D), n_classes=2)
gpt = GPT(GPTConfig(vocab_size=V, block_size=16, n_layer=L, n_head=H, n_embd=D))
t5 = Seq2Seq(Seq2SeqConfig(src_vocab_size=V, tgt_vocab_size=V, max_len=16, n_enc_layer=L, n_dec_layer=L,
                           n_head=H, d_model=D))

stacks = {"encoder-only": [bert.encoder.blocks], "decoder-only": [gpt.blocks],
          "encoder-decoder": [t5.encoder.blocks, t5.dec_blocks]}
for (name, model), blocks in zip((("encoder-only", bert), ("decoder-only", gpt), ("encoder-decoder", t5)),
                                 stacks.values()):
    kinds = [f"{len(b)} x {type(b[0]).__name__}" + ("(cross)" if getattr(b[0], "has_cross", False) else "")
             for b in blocks]
    print(f"{name:16s} {model.num_parameters():7d} parameters; blocks: {', '.join(kinds)}")

# %% [markdown]
# The encoder-decoder has about twice the blocks (an encoder *and* a decoder),
# and its decoder blocks carry an extra cross-attention. Parameter names show
# the shared structure: the same `attn.qkv`, `ff.fc`, `norm_attn` inside
# every block, in every family.

# %%
for name, model in (("bert", bert), ("gpt", gpt), ("t5", t5)):
    names = [n for n, _ in model.named_parameters()]
    print(name, [n for n in names if ".0." in n][:6], "...")

# %% [markdown]
# ## The masks are the difference
#
# A batch of two sentences of lengths 5 and 3, padded to 5 (`0` = `<pad>`).
# True in these pictures means "may attend".
#
# * **Encoder** (BERT, and the encoder half of T5): every real token sees
#   every real token, left and right; nobody sees padding.
# * **Decoder-only** (GPT): token t sees tokens 0..t only, the causal
#   triangle, so the model can be trained to predict token t+1 at every
#   position at once without cheating.
# * **Cross-attention** (T5's decoder): each target position sees every real
#   *source* token; the causal rule applies only to the target's own
#   self-attention.

# %%
src = np.array([[3, 7, 4, 9, 5], [6, 8, 2, 0, 0]])
pad = src == 0  # (B, S) True = padding
encoder_allowed = ~pad[1][None, :] & ~pad[1][:, None]  # (S, S) for the shorter sentence
gpt_allowed = causal_mask(5)  # (T, T)
T_tgt = 4
cross_allowed = np.broadcast_to(~pad[1][None, :], (T_tgt, 5))  # (T_tgt, S)

if plt():
    fig, axes = plt().subplots(1, 3, figsize=(11, 3.4))
    for ax, m, title in zip(axes, (encoder_allowed, gpt_allowed, cross_allowed),
                            ("encoder: bidirectional + padding", "GPT: causal", "decoder cross-attention")):
        ax.imshow(m, cmap="Greens", vmin=0, vmax=1)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("key position")
        ax.set_ylabel("query position")
    savefig(fig, "06_masks")

# %% [markdown]
# ## The heads are the other difference
#
# Running each model on the same token ids shows what each family *outputs*:
# one vector of class logits per sentence, a next-token distribution per
# position, and a next-target-token distribution per target position.

# %%
print("BERT classifier:", bert.forward(src).shape, "   (B, n_classes)")
print("GPT:            ", gpt.forward(src).shape, " (B, T, V)")
tgt_in = np.array([[1, 4, 4, 9], [1, 6, 0, 0]])
print("encoder-decoder:", t5.forward(src, tgt_in).shape, " (B, T_tgt, V)")

# %% [markdown]
# A property the padding mask buys: the shorter sentence gets the same
# prediction alone as it gets padded inside the batch.

# %%
alone = bert.forward(src[1:2, :3])
padded = bert.forward(src)[1:2]
print("alone", alone, "in batch", padded)
assert np.allclose(alone, padded, atol=1e-5)

# %% [markdown]
# And the causal mask buys GPT's key property: changing a *later* token does
# not change the logits at earlier positions (for BERT it does).

# %%
changed = src.copy()
changed[0, 4] = 11
assert np.allclose(gpt.forward(src)[0, :4], gpt.forward(changed)[0, :4], atol=1e-6)
h1, h2 = bert.encoder(src)[0, 0], bert.encoder(changed)[0, 0]
print("GPT position 0 unchanged; BERT position 0 moved by", float(np.abs(h1 - h2).max()))
assert not np.allclose(h1, h2)

# %% [markdown]
# Lessons 07 and 08 train the two families GPT did not cover: an encoder that
# classifies sentiment, and an encoder-decoder that translates.
print("FAST mode:", FAST)
