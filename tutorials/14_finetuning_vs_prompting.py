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
# # Lesson 14: prompt first, then fine-tune, then evaluate again
#
# The project lifecycle of a language-model application:
#
# 1. **pick a base model** (here: a small GPT pretrained on the embedded
#    corpus of standard-library docstrings, as in lesson 4, with plain
#    text about the tasks' world mixed in: reviews, news, stories, a Tolan
#    phrasebook, commented Python; `minitx.datasets.world`);
# 2. **try prompting**: ask it zero-shot, then few-shot (lesson 11);
# 3. **fine-tune** when prompting is not enough: show it instruction /
#    response pairs, with the prompt masked out of the loss;
# 4. **evaluate again**, on held-out instructions, and check what the
#    tuning cost: the parameters it touched, and what the model forgot.
#
# Five tasks the course names: sentiment, naming people and places (NER),
# summarising a dialogue, translating into a toy language, writing a
# Python expression for a small data task (checked by *running* it).

# %%
import copy

import numpy as np

from minitx.bench import finetune as bench
from minitx.datasets import instructions as inst
from minitx.train.data import PaddedRows
from minitx.tutorial import FAST, output_dir, plt, savefig

budget = bench.FAST if FAST else bench.FULL
seed = 0
data = inst.make_instructions(budget.n_instructions, budget.n_instruction_test, seed=seed)
for task in inst.TASKS:
    ex = data["train"][task][0]
    print(f"--- {task} ({inst.METRICS[task]})\n{inst.prompt_for(ex).text}{inst.response_text(ex)}")

# %% [markdown]
# ## 1. The base model
#
# Pretrained on the corpus and the world text, never in the instruction
# layout and never a held-out input, with a byte-level BPE of that text
# (cached under
# `.cache/finetune` by the bench, keyed by its settings, so the lesson and
# the bench share it; the first run trains it).

# %%
corpus = bench.corpus_data(budget, seed, instructions=data)
tokenizer = corpus.tokenizer
cache = output_dir() / "finetune-cache" if FAST else ".cache/finetune"
base, info = bench.base_model(budget, seed, cache, corpus)
print(f"base GPT: {base.num_parameters():,} parameters, val loss {info['val_loss']:.3f} "
      f"({'cached' if info['cached'] else 'trained now'}, {info['seconds']:.0f} s of pretraining)")

# %% [markdown]
# ## 2. Prompting first
#
# Zero-shot: the instruction and the query. Few-shot: solved examples of
# the same task before the query, as many as fit the context window. A
# base model has read reviews and Tolan phrases, but never an instruction
# followed by its answer; whether examples in the prompt are enough to show
# it the format is exactly what we measure.

# %%
scores = {}
for shots, name in ((0, "prompt-0shot"), (budget.shots, "prompt-kshot")):
    scores[name] = bench.task_scores(base, tokenizer, data["test"], data["train"], shots=shots, seed=seed)
    print(name, {t: round(s, 3) for t, (s, _) in scores[name].items()})
ex = data["test"]["sentiment"][0]
prompt = inst.prompt_for(ex, data["train"]["sentiment"][:2])
print("\nwhat the base model writes after a 2-shot prompt:")
print(prompt.text + bench.greedy_answer(base, tokenizer, tokenizer.encode(prompt.text), 30))

# %% [markdown]
# ## 3. Fine-tuning, with the prompt masked out of the loss
#
# Each training row is the zero-shot prompt followed by the response. The
# targets of the prompt's tokens are -100, which the cross-entropy ignores
# (`ignore_index`), so the model is taught to *answer*, not to predict the
# instruction text it will always be given:

# %%
ids, targets = inst.tuning_sequence(data["train"]["translate"][0], tokenizer)
print(repr(tokenizer.decode(ids)))
print("learned:", repr(tokenizer.decode([t for t in targets if t != -100])))
mixed = [ex for task in inst.TASKS for ex in data["train"][task]]
x, y, lengths = inst.tuning_arrays(mixed, tokenizer, budget.block_size)
rows = PaddedRows((x, lengths), (y, lengths))
print(f"{len(x)} rows, {int((y != -100).sum()):,} of {int(lengths.sum()):,} tokens are targets")

# %% [markdown]
# Full fine-tuning trains every weight, through the one `Trainer`, on
# both cores (two data-parallel replicas; each one's share of the batch is
# weighted by its unmasked targets, so the step is the one-process step):

# %%
tuned = copy.deepcopy(base)
probe = x[:32, : lengths[:32].max()], y[:32, : lengths[:32].max()]  # 32 tuning rows, their loss printed below
stats = bench.train(tuned, rows, bench.train_config(budget.tune_iters, budget.tune_batch, budget.lr_full, seed),
                    evaluate=lambda: bench.tuning_loss(tuned, *probe), threads=2)
print(f"tuned in {stats['seconds']:.0f} s, final tuning loss {stats['train_loss']:.3f}")

# %% [markdown]
# ## 4. Evaluate again
#
# The same held-out instructions, zero-shot. Then what the tuning cost:
# the validation loss on the base corpus, before and after (forgetting).

# %%
scores["full"] = bench.task_scores(tuned, tokenizer, data["test"], data["train"], shots=0, seed=seed)
print("full", {t: round(s, 3) for t, (s, _) in scores["full"].items()})
before = bench.corpus_val_loss(base, corpus, budget.forgetting_batches, seed=seed)
after = bench.corpus_val_loss(tuned, corpus, budget.forgetting_batches, seed=seed)
print(f"corpus val loss: base {before:.3f}, after fine-tuning {after:.3f} ({after - before:+.3f}; a rise is forgetting)")
for task in ("summarise", "python"):
    ex = data["test"][task][0]
    p = tokenizer.encode(inst.prompt_for(ex).text)
    print(f"\n{inst.prompt_for(ex).text}\n  tuned model: {bench.greedy_answer(tuned, tokenizer, p, 60)!r}"
          f"\n  reference:   {ex.output!r}")

# %%
if plt():
    fig, ax = plt().subplots(figsize=(8, 3.5))
    width = 0.27
    for i, name in enumerate(scores):
        ax.bar(np.arange(len(inst.TASKS)) + (i - 1) * width, [scores[name][t][0] for t in inst.TASKS], width,
               label=name)
    ax.set_xticks(range(len(inst.TASKS)), inst.TASKS)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("score on held-out instructions")
    ax.legend()
    ax.set_title("Prompting the base model, then fine-tuning it")
    savefig(fig, "14_lifecycle")

# %% [markdown]
# ## What to take away
#
# * Prompting costs nothing and is the right first try; a small base model
#   that never saw the task's format gets close to nothing from it.
# * Fine-tuning on a few hundred examples per task teaches the format and
#   the skill; the masked loss spends every gradient on the answers.
# * It is not free: full fine-tuning moves every weight, and the model gets
#   worse at the text it was pretrained on. Lesson 15 trains a few percent
#   of the parameters instead (LoRA) and measures both again.
