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
# 6. sample some text, and reload the model from its checkpoint;
# 7. split each batch over several replicas (data parallelism), prove that
#    the step is the same, and run it on threads and on MPI ranks.
#
# The text is the **embedded default corpus**: the docstrings of Python's
# standard library, which ship with every Python. Nothing to download.

# %%
import importlib.util
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import minitx
from minitx.corpus import default_corpus
from minitx.generate import generate_text
from minitx.models import GPT, GPTConfig
from minitx.optim import AdamW, clip_grad_norm, cosine_with_warmup
from minitx.tokenizer import CharTokenizer
from minitx.train.config import TrainConfig
from minitx.train.data import LMDataset
from minitx.train.lm import gpt_meta, load_model
from minitx.train.parallel import DataParallel
from minitx.train.trainer import Trainer
from minitx.tutorial import FAST, output_dir, plt, savefig

np.set_printoptions(precision=3, suppress=True, linewidth=110)

# %% [markdown]
# ## 1. Text -> ids -> (x, y) pairs
#
# A character-level tokenizer gives every distinct character an id. The
# whole corpus becomes one array; 90% for training, the last 10% for
# validation. A training example is a window of `block_size + 1` ids read
# twice: `x` is the window without its last id, `y` without its first, so
# position `t` of `y` is "the character after `x[:t+1]`". The dataset
# remembers its `block_size`, so `get_batch(split, batch_size, rng)` is all
# a trainer needs to ask (another `block_size=` can be passed per call).

# %%
text = default_corpus()
if FAST:
    text = text[:60_000]  # the test suite runs this lesson in seconds
tokenizer = CharTokenizer().train(text)
block_size = 16 if FAST else 64
data = LMDataset(text, tokenizer, block_size=block_size)
print(f"{len(text):,} characters, vocabulary of {tokenizer.vocab_size}:")
print(repr("".join(tokenizer.chars[:80])))
print(data)

x, y = data.get_batch("train", 2, np.random.default_rng(0))  # (2, T) each; rng third
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

x, y = data.get_batch("train", 8, np.random.default_rng(1))
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
# after each evaluation but the first (an untrained model at iteration 0 is
# not worth a file). The trainer knows nothing about GPTs: it needs a model
# with `loss`/`backward_loss` and a data source with `get_batch`. What makes
# the checkpoint a *GPT* checkpoint is its `meta`: `gpt_meta` records the
# kind, the model config and the tokenizer, which `load_model` reads back.
# Watch the validation loss: when it stops following the training loss
# down, the model has started to memorise.

# %%
model = GPT(config, seed=0)
train_config = TrainConfig(batch_size=12, max_iters=max_iters, lr=1e-3, min_lr=1e-4, warmup_iters=max_iters // 10,
                           beta2=0.99, eval_interval=max_iters // 4, eval_iters=4 if FAST else 10, seed=0)
out = output_dir() / "04_run"
trainer = Trainer(model, data, train_config, out, meta=gpt_meta(model, tokenizer), progress=True)
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

# %% [markdown]
# ## 7. Data parallelism: one step, many replicas
#
# A step costs time in proportion to its batch, and a batch splits cleanly
# into rows. *Data parallelism* gives every replica (a thread, a process, a
# machine) a complete copy of the model and a share of each batch. Each
# replica runs forward and backward on its own rows; the gradients are then
# **summed across the replicas** (an *all-reduce*: afterwards every replica
# holds the same sum), and every replica takes the same optimizer step, so
# the copies never drift apart.
#
# Why a plain sum is the right answer: the loss of a batch of $n$ rows is a
# mean over its rows (here every row is one window of $T$ predictions), so
# if replica $r$ holds $n_r$ of the rows, with mean loss $L_r$ over them,
#
# $$L = \frac{1}{n}\sum_{i=1}^{n} \ell_i = \sum_r \frac{n_r}{n}\, L_r
# \qquad\Longrightarrow\qquad
# \nabla L = \sum_r \frac{n_r}{n}\, \nabla L_r ,$$
#
# because the gradient is linear. Each replica scales its backward pass by
# its share $n_r/n$ (the `scale` argument of `backward_loss`); the
# all-reduce then adds, and the sum *is* the gradient of the whole batch's
# mean loss. Shares need not be equal (a batch of 12 over 5 replicas), as
# long as each is weighted by its own fraction; averaging the replicas'
# gradients with equal weights would silently over-weight the small shares.
#
# Before trusting any machinery, the identity by hand: a small GPT in
# float64, one batch of 6 rows, cut unevenly into 2 + 4.

# %%
model64 = GPT(config, seed=0, dtype=np.float64)
x, y = data.get_batch("train", 6, np.random.default_rng(2))  # (6, T): the global batch

model64.zero_grad()
loss_full, _ = model64.loss(x, y)  # mean over all 6 x T predictions
model64.backward_loss()
grad_full = {name: p.grad.copy() for name, p in model64.named_parameters()}

shards = [slice(0, 2), slice(2, 6)]  # two replicas with shares 2/6 and 4/6
grad_sum = {name: np.zeros_like(g) for name, g in grad_full.items()}
loss_sum = 0.0
for rows in shards:
    share = (rows.stop - rows.start) / len(x)
    model64.zero_grad()  # this replica's gradients hold only its own rows
    loss_r, _ = model64.loss(x[rows], y[rows])  # (n_r, T) -> scalar L_r
    model64.backward_loss(share)  # adds d(share * L_r)/dtheta into every p.grad
    loss_sum += share * loss_r
    for name, p in model64.named_parameters():  # the all-reduce is this sum
        grad_sum[name] += p.grad

scale = max(np.abs(g).max() for g in grad_full.values())
worst = max(np.abs(grad_sum[name] - grad_full[name]).max() for name in grad_full)
print(f"loss of the whole batch     {loss_full:.15f}")
print(f"share-weighted shard losses {loss_sum:.15f}")
print(f"largest gradient entry {scale:.2e}; largest difference between the two gradients {worst:.1e}")
for name in grad_full:
    np.testing.assert_allclose(grad_sum[name], grad_full[name], rtol=1e-10, atol=1e-13 * scale, err_msg=name)
print("sum over replicas of (share x replica gradient) == gradient of the whole batch, for every parameter")

# %% [markdown]
# Why a tolerance and not `==`: the two sides add the same numbers *in a
# different order*. The whole batch sums its $6T$ token losses, and each
# weight gradient's $x^\top \delta$ over its rows, in one pass; the shards
# sum 2 rows and 4 rows separately and then add the two partial sums.
# Floating-point addition is not associative ($(a+b)+c$ and $a+(b+c)$ can
# differ in the last bit), so the results agree to float64's rounding,
# about $10^{-16}$ of the largest gradient entry, not bit for bit.
# `rtol=1e-10` leaves room for that and still catches any real mistake (a
# forgotten share weight is an error of a factor 2 or 3/2). The small
# `atol` is there for entries whose true value is zero: the bias of the key
# projection adds the same amount $q_i \cdot b_k$ to every score of a row,
# which softmax ignores, so its gradient is 0 up to rounding noise, where
# no relative tolerance can work.
#
# ### Threads and MPI ranks
#
# `DataParallel` is that loop, packaged. It wraps a model and offers the
# model's own interface (`loss`, `backward_loss`, `zero_grad`,
# `named_parameters`, `train`/`eval`, `state_dict`), so the `Trainer` trains
# it like any model and never knows how many replicas there are. Replicas
# come in two kinds, and can be combined (ranks x threads):
#
# | | threads: `DataParallel(model, threads=2)` | MPI ranks: `mpiexec -n 2 minitx train ...` |
# | --- | --- | --- |
# | replicas live in | one Python process | one process per rank, on one machine or several |
# | the weights | one set of arrays, *shared* (read by every replica, written only by the optimizer, between steps) | a copy per rank; rank 0's are broadcast at the start, and every rank takes the same step |
# | gradients, backward caches | each replica its own | each rank its own |
# | the all-reduce | a sum in memory, itself split over the threads | one `MPI_Allreduce` of all gradients packed into one flat buffer |
# | why it runs in parallel | NumPy releases the GIL inside its kernels, so two threads keep two cores busy; BLAS is held at one thread per replica (`threadpoolctl`), or the replicas' BLAS threads would fight over the same cores | separate processes share nothing |
# | who writes and prints | the one process | rank 0 alone (checkpoints, `metrics.jsonl`, the plot, every line of output) |
#
# In both, `batch_size` is the *global* batch: every rank draws the same
# batch (same seed, same generator) and keeps its own contiguous rows,
# which it splits again over its threads. So the replicas change how fast a
# step is computed, never which step is taken: one training step through
# two threads must give the same gradient and the same weights as the plain
# model, up to float32 rounding. Below, the same model trains for a few
# steps both ways, from the same seed, on the same batches.

# %%
def train_steps(threads: int, steps: int):
    """Train a fresh copy of the lesson's model; returns ((gradient, weights) after step 1, losses, seconds per step)."""
    model = GPT(config, seed=0)
    replicas = DataParallel(model, threads=threads) if threads > 1 else model
    cfg = TrainConfig(batch_size=12, max_iters=steps, lr=1e-3, warmup_iters=0, seed=0)
    trainer = Trainer(replicas, data, cfg, None, progress=False, log=None)  # in memory: no folder, no output
    first, losses, seconds = None, [], []
    try:
        for _ in range(steps):
            t0 = time.perf_counter()
            loss, _ = trainer.train_step()  # batch, forward, backward, all-reduce, clip, AdamW
            seconds.append(time.perf_counter() - t0)
            losses.append(loss)
            if first is None:  # p.grad still holds the step's (summed, clipped) gradient
                first = ({name: p.grad.copy() for name, p in model.named_parameters()},
                         {name: p.data.copy() for name, p in model.named_parameters()})
    finally:
        if threads > 1:
            replicas.close()  # stop the threads, give BLAS its threads back
    return first, losses, seconds


steps = 10 if FAST else 40
runs = {threads: train_steps(threads, steps) for threads in (1, 2)}
(grad1, weights1), (grad2, weights2) = runs[1][0], runs[2][0]
scale = max(np.abs(g).max() for g in grad1.values())
print(f"gradient: largest entry {scale:.2e}, plain vs 2 threads differ by at most "
      f"{max(np.abs(grad2[k] - grad1[k]).max() for k in grad1):.1e}")
for name in grad1:
    np.testing.assert_allclose(grad2[name], grad1[name], rtol=1e-4, atol=1e-5 * scale, err_msg=name)

start = {name: p.data.copy() for name, p in GPT(config, seed=0).named_parameters()}
moved = max(np.abs(weights1[k] - start[k]).max() for k in start)
gaps = np.concatenate([np.abs(weights2[k] - weights1[k]).ravel() for k in start])
print(f"weights: one AdamW step moved them by up to {moved:.1e}; plain vs 2 threads differ by at most "
      f"{gaps.max():.1e} ({100 * gaps.max() / moved:.2f}% of the step), and by more than 1e-6 in "
      f"{int((gaps > 1e-6).sum())} of {gaps.size:,} entries")
for name in start:
    np.testing.assert_allclose(weights2[name], weights1[name], rtol=0, atol=0.02 * moved, err_msg=name)
print(f"losses over {steps} steps, largest difference: {np.abs(np.subtract(runs[1][1], runs[2][1])).max():.1e}")
ms = {threads: 1000 * float(np.median(r[2][1:])) for threads, r in runs.items()}  # step 0 warms caches up
print(f"median step time: plain model {ms[1]:.1f} ms, 2 data-parallel threads {ms[2]:.1f} ms")

# %% [markdown]
# The tolerances. float32 carries about 7 significant digits (the gap
# between 1.0 and the next float32 is $1.2\times10^{-7}$), and two threads
# add each gradient's terms in a different order, so the two gradients
# differ by about $10^{-7}$ of their largest entry; `atol=1e-5 * scale`
# allows for that with room to spare. The weights need a second thought.
# AdamW's first step moves a weight by $\mathrm{lr}\cdot g/(|g| +
# \epsilon)$ with $\epsilon = 10^{-8}$: about the full learning rate,
# $\pm 10^{-3}$, for any gradient entry well above $\epsilon$, and a
# rounding difference there changes nothing. But for the few entries whose
# gradient is itself of order $\epsilon$ (near zero), Adam's division by
# $|g|$ magnifies a $10^{-9}$ rounding difference in $g$ into a visible
# difference in the step. So almost every weight agrees to float32
# rounding and a handful differ by more (the cell above prints how many,
# and the largest gap as a share of the step); the check allows 2% of the
# step: far tighter than any real bug (a missing share weight changes the
# step everywhere).
#
# Whether two threads are *faster* is a different question, with a less
# tidy answer. The plain model is one replica that lets BLAS split each
# matmul over the cores; `DataParallel` splits the batch instead and gives
# each replica one BLAS thread, so the two cores work on independent rows
# with no hand-off inside a matmul (and the element-wise NumPy work, which
# BLAS threads never helped, now runs on both cores too). The figures
# measured side by side on a quiet 2-core machine (4 layers, 128 wide,
# block 128, batch 16) are in `benchmarks/gpt.md`, and the command a user
# types in `benchmarks/train_cli.md`. The times printed above
# are a few steps of this lesson's model on whatever else this machine is
# doing at the moment (tiny matmuls split over busy cores can be very
# erratic): an illustration, not a benchmark.

# %%
if plt():
    fig, (ax_loss, ax_time) = plt().subplots(1, 2, figsize=(10, 3.5))
    for threads, style, label in ((1, "o-", "plain model"), (2, "x--", "DataParallel, 2 threads")):
        ax_loss.plot(runs[threads][1], style, label=label)
        ax_time.plot(np.arange(1, steps), 1000 * np.array(runs[threads][2][1:]), style, label=label)
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("training loss")
    ax_loss.set_title("the same steps (the curves overlap)")
    ax_loss.legend()
    ax_time.set_xlabel("step")
    ax_time.set_ylabel("ms per step")
    ax_time.set_title("time per step (after the first)")
    ax_time.set_ylim(bottom=0)
    ax_time.legend()
    savefig(fig, "04_data_parallel")

# %% [markdown]
# ### The same step across processes: `mpiexec`
#
# Threads stop at the edge of one machine. Across processes, and machines,
# the replicas are MPI ranks: `mpiexec -n 2` starts the same command twice,
# each process learns its rank, and `minitx train` wraps its model in
# `DataParallel(model, comm=MPICommunicator())`. Nothing else changes: the
# same seed gives every rank the same batches, each computes its rows, an
# `Allreduce` sums the gradients, rank 0 writes the run folder. With
# `pip install ".[mpi]"` (mpi4py and the MPICH wheel, which brings
# `mpiexec`), the cell below trains two steps in one process and two steps
# on two ranks, through the command line, and compares the checkpoints
# (with the tolerance of the threads above: 2% of an AdamW step); without
# them it says so and moves on. Several machines, hostfiles, resuming
# across rank counts, and what Ctrl-C does: `docs/distributed.md`.

# %%
mpiexec = shutil.which("mpiexec")
if mpiexec is None or importlib.util.find_spec("mpi4py") is None:
    print('mpi4py or mpiexec is not installed (pip install ".[mpi]"): skipping the two-process run')
else:
    corpus_file = output_dir() / "04_corpus.txt"
    corpus_file.write_text(text[:20_000], encoding="utf-8")
    flags = ["--data", str(corpus_file), "--n-layer", "2", "--n-head", "2", "--d-model", "32", "--block-size", "16",
             "--batch-size", "8", "--max-iters", "2", "--lr", "1e-3", "--warmup-iters", "0", "--eval-interval", "2",
             "--eval-iters", "1", "--threads", "1", "--sample-tokens", "0", "--no-progress", "--overwrite"]
    env = dict(os.environ, PYTHONPATH=str(Path(minitx.__file__).resolve().parent.parent))  # this lesson's minitx
    launchers = {"1 process": [], "2 MPI ranks": [mpiexec, "-n", "2"]}
    weights = {}
    for label, launcher in launchers.items():
        run_dir = output_dir() / f"04_run_{label.split()[0]}"
        command = [*launcher, sys.executable, "-m", "minitx", "train", *flags, "--out", str(run_dir)]
        proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, f"{' '.join(command)}\nexit status {proc.returncode}:\n{proc.stderr[-3000:]}"
        print(f"{label}: {proc.stdout.splitlines()[0]}")  # rank 0 prints, the other ranks stay silent
        weights[label] = load_model(run_dir)[0].state_dict()
    one, two = weights.values()
    print(f"largest weight difference, 1 process vs 2 ranks: "
          f"{max(float(np.abs(one[k] - two[k]).max()) for k in one):.1e}")
    for k in one:
        np.testing.assert_allclose(two[k], one[k], rtol=0, atol=0.02 * 1e-3, err_msg=k)  # 2% of a step of lr 1e-3
    print("two processes took the same two steps as one")
