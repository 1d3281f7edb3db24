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
# # Lesson 04: training a GPT, step by step
#
# Everything so far was one layer at a time. Here the layers become a
# language model, and the model learns. We will:
#
# 1. turn text into a long array of token ids, and cut training examples out of it;
# 2. build a small GPT and check that its first loss is what theory predicts;
# 3. take one training step by hand: forward, loss, backward, clip, AdamW;
# 4. look at the learning-rate schedule (warmup, then cosine decay);
# 5. run the real loop (`minitx.train.Trainer`) and plot the loss curve;
# 6. sample some text, and reload the model from its checkpoint.
#
# The text is the **embedded default corpus**: the docstrings of Python's
# standard library, which ship with every Python. Nothing to download.

# %%
import time

import numpy as np

from minitx.corpus import default_corpus
from minitx.generate import generate_text
from minitx.models import GPT, GPTConfig
from minitx.optim import AdamW, clip_grad_norm, cosine_with_warmup
from minitx.tokenizer import CharTokenizer
from minitx.train.data import LMDataset
from minitx.train.trainer import TrainConfig, Trainer, load_model
from minitx.tutorial import FAST, output_dir, plt, savefig

np.set_printoptions(precision=3, suppress=True, linewidth=110)

# %% [markdown]
# ## 1. Text -> ids -> (x, y) pairs
#
# A character-level tokenizer gives every distinct character an id. The
# whole corpus becomes one array; 90% for training, the last 10% for
# validation. A training example is a window of `block_size + 1` ids read
# twice: `x` is the window without its last id, `y` without its first, so
# position `t` of `y` is "the character after `x[:t+1]`".

# %%
text = default_corpus()
if FAST:
    text = text[:60_000]  # the test suite runs this lesson in seconds
tokenizer = CharTokenizer().train(text)
data = LMDataset(text, tokenizer)
print(f"{len(text):,} characters, vocabulary of {tokenizer.vocab_size}:")
print(repr("".join(tokenizer.chars[:80])))
print(data)

block_size = 16 if FAST else 64
x, y = data.get_batch("train", batch_size=2, block_size=block_size, rng=np.random.default_rng(0))  # (2, T) each
print("x[0]:", repr(tokenizer.decode(x[0].tolist())))
print("y[0]:", repr(tokenizer.decode(y[0].tolist())), " <- the same text, one character later")

# %% [markdown]
# ## 2. The model, and the loss it starts with
#
# `GPTConfig` fixes the shape; named presets give common sizes. The model is
# token embedding + learned positions, `n_layer` pre-norm decoder blocks, a
# final LayerNorm, and an output head that *is* the token embedding
# (weight tying). Before training, its weights are small and random, so it
# predicts a nearly uniform distribution over the `V` characters: the loss
# should be close to $-\ln(1/V) = \ln V$.

# %%
if FAST:
    config = GPTConfig(vocab_size=tokenizer.vocab_size, block_size=block_size, n_layer=2, n_head=2, n_embd=32)
else:
    config = GPTConfig.from_preset("gpt-micro", vocab_size=tokenizer.vocab_size, block_size=block_size)
model = GPT(config, seed=0)
print(config)
for name, p in list(model.named_parameters())[:8]:
    print(f"  {name:32s} {str(p.shape):>12s}")
print(f"  ... {model.num_parameters():,} parameters in all")

x, y = data.get_batch("train", 8, block_size, np.random.default_rng(1))
loss, logits = model.loss(x, y)  # (B, T) ids -> (B, T, V) logits -> scalar
print(f"initial loss {loss:.3f}   ln(V) = {np.log(tokenizer.vocab_size):.3f}")

# %% [markdown]
# ## 3. One training step, by hand
#
# `model.loss` ran the forward pass and the cross-entropy; `backward_loss`
# runs every layer's backward pass in reverse order, adding each gradient
# into its parameter's `.grad`. Clipping rescales all gradients together if
# their global norm is large; AdamW then moves each weight. Repeating the
# step on *the same* batch should drive its loss down quickly (the model can
# memorise 8 short windows): the simplest possible check that the whole
# machine is wired correctly.

# %%
opt = AdamW(model.named_parameters(), lr=3e-3, betas=(0.9, 0.99), weight_decay=0.1)
print(opt)
for step in range(5 if FAST else 20):
    model.zero_grad()
    loss, _ = model.loss(x, y)
    model.backward_loss()  # dL/dtheta added into every p.grad
    norm = clip_grad_norm(model.parameters(), 1.0)
    opt.step()
    if step % (1 if FAST else 4) == 0:
        print(f"step {step:2d}: loss {loss:.3f}  grad norm {norm:.2f}")

# %% [markdown]
# ## 4. The learning-rate schedule
#
# Adam's running averages are unreliable in the first steps, so the learning
# rate *warms up* linearly; then it decays along a cosine to `min_lr`, so the
# last steps make small, careful adjustments. (nanoGPT's recipe.)

# %%
max_iters = 40 if FAST else 600
schedule = [cosine_with_warmup(it, lr=1e-3, min_lr=1e-4, warmup_iters=max_iters // 10, max_iters=max_iters)
            for it in range(max_iters + 1)]
print(f"lr at 0, warmup end, middle, end: {schedule[0]:.1e}, {max(schedule):.1e}, "
      f"{schedule[max_iters // 2]:.1e}, {schedule[-1]:.1e}")
if plt():
    fig, ax = plt().subplots(figsize=(6, 2.5))
    ax.plot(schedule)
    ax.set_xlabel("iteration")
    ax.set_ylabel("learning rate")
    ax.set_title("linear warmup, cosine decay")
    savefig(fig, "04_lr_schedule")

# %% [markdown]
# ## 5. The real loop
#
# `Trainer` is section 3 in a loop, plus bookkeeping: a fresh random batch
# each step, the schedule, periodic evaluation on held-out text, a line in
# `metrics.jsonl` per evaluation, and a checkpoint (safetensors + JSON)
# after each evaluation. Watch the validation loss: when it stops following
# the training loss down, the model has started to memorise.

# %%
model = GPT(config, seed=0)
train_config = TrainConfig(batch_size=12, max_iters=max_iters, lr=1e-3, min_lr=1e-4, warmup_iters=max_iters // 10,
                           beta2=0.99, eval_interval=max_iters // 4, eval_iters=4 if FAST else 10, seed=0)
out = output_dir() / "04_run"
trainer = Trainer(model, data, train_config, out, progress=False)
t0 = time.perf_counter()
history = trainer.train()
print(f"{max_iters} iterations in {time.perf_counter() - t0:.1f} s; files: {sorted(p.name for p in out.iterdir())}")

# %%
if plt():
    fig, ax = plt().subplots(figsize=(6, 3.5))
    its = [r["iter"] for r in history]
    ax.plot(its, [r["train_loss"] for r in history], "o-", label="train")
    ax.plot(its, [r["val_loss"] for r in history], "o-", label="validation")
    ax.axhline(np.log(tokenizer.vocab_size), color="gray", ls=":", label="ln V (uniform guess)")
    ax.set_xlabel("iteration")
    ax.set_ylabel("cross-entropy")
    ax.legend()
    savefig(fig, "04_loss_curve")

# %% [markdown]
# ## 6. What has it learned? And the checkpoint
#
# Sampling is the next lesson's subject; here we just ask for some text at
# temperature 0.8. After a few hundred iterations a character model has
# learned spelling, spacing and common words; after thousands, phrases.
#
# The checkpoint holds everything needed to continue or to generate: the
# weights, the config and the tokenizer (as JSON, never pickle). Reloading it
# gives exactly the same predictions.

# %%
prompt = "Return the "
print(prompt + generate_text(model, tokenizer, prompt, 60 if FAST else 200, temperature=0.8, seed=0))

reloaded, tok2, meta = load_model(out / "ckpt")
ids = np.array([tokenizer.encode(prompt)])
model.eval()
assert np.array_equal(reloaded.forward(ids), model.forward(ids)), "the checkpoint must reproduce the model"
print(f"reloaded the checkpoint from iteration {meta['iter']}: identical logits")
