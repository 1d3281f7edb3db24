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
# # Lesson 11: prompts, the context window, and learning from examples in the prompt
#
# A language model does one thing: it continues text. Everything else we
# make it do, answering, classifying, translating, is done by choosing the
# text it continues. In this lesson:
#
# 1. a **prompt** built from parts (instruction, examples, query, output
#    indicator), and its **completion**;
# 2. the **context window**: what happens when a prompt does not fit;
# 3. **zero-, one- and few-shot** prompts, on a task whose rule changes with
#    every prompt, so that only the examples can reveal it;
# 4. the same prompts given to GPTs of four sizes: few-shot ability grows
#    with scale (Brown et al., 2020), measured.

# %%
from pathlib import Path

import numpy as np

import minitx
from minitx.bench import icl as bench
from minitx.datasets import icl
from minitx.prompt import TEMPLATES, PromptTooLong, build_prompt, fit_prompt
from minitx.tutorial import FAST, output_dir, plt, savefig

# %% [markdown]
# ## 1. A prompt is built from parts
#
# The course's prompt: an **instruction**, a few solved **examples**, the
# **query**, and the **output indicator** after which the answer should come.
# A template says how the parts are worded and laid out, and it is plain
# data (strings and format strings), so changing the wording of a prompt,
# prompt engineering, is editing data:

# %%
template = TEMPLATES["sentiment"]
print(template.to_dict())
examples = [("great plot, lovely cast.", "positive"), ("dull and far too long.", "negative")]
for k in (0, 1, 2):
    print(f"--- {k}-shot ---")
    print(build_prompt(template, "a superb, warm film.", examples[:k]).text)

# %% [markdown]
# An instruction may also name the answers it expects, as people write
# "Classify each review as positive or negative.": the field `{labels}` in
# an instruction is filled from `labels=` (`--label` on the command line).
# Then even a zero-shot prompt says what the answer can be.

# %%
print(build_prompt(template, "a superb, warm film.", examples[:1],
                   instruction="Classify each review as {labels}.", labels=("positive", "negative")).text)

# %% [markdown]
# ## 2. Tokens and the context window
#
# The model never sees characters or words: it sees token ids, and at most
# `block_size` of them at once. `fit_prompt` encodes a prompt and checks it
# against the window. The models of this lesson use a word-level tokenizer
# (one word, one token) and a window of 63 tokens: the instruction and nine
# lines of the task below. The task's template, `review-label`, names the
# two candidate labels in its instruction, so it needs `labels=`.

# %%
tokenizer = icl.tokenizer()
window = icl.BLOCK_SIZE
task = TEMPLATES["review-label"]  # the layout the models below were trained on (see section 3)
lines = [("plot superb", "tiger"), ("cast dull", "lemon"), ("music warm", "tiger"), ("ending bland", "lemon")]
names = ("lemon", "tiger")  # the candidates, in the order the instruction lists them
prompt = build_prompt(task, "film lovely", lines, labels=names)
fitted = fit_prompt(prompt, tokenizer, window)
print(fitted.text)
print(f"\n{fitted.n_tokens} tokens of a {window}-token window")

# %% [markdown]
# Twelve examples do not fit. The default policy is to refuse, naming both
# counts: a silently shortened prompt is a prompt you did not write. The
# other two policies say what they removed: `drop-examples` drops the oldest
# examples, `truncate-left` keeps the last tokens (a sliding window: the
# instruction goes first).

# %%
long_prompt = build_prompt(task, "film lovely", lines * 3, labels=names)
try:
    fit_prompt(long_prompt, tokenizer, window)
except PromptTooLong as exc:
    print("error:", exc)
dropped = fit_prompt(long_prompt, tokenizer, window, overflow="drop-examples")
print(f"drop-examples: {dropped.dropped_examples} examples dropped, {dropped.n_tokens} tokens left")
cut = fit_prompt(long_prompt, tokenizer, window, overflow="truncate-left")
print(f"truncate-left: {cut.truncated_tokens} tokens cut; the prompt now starts {cut.text[:40]!r}")

# %% [markdown]
# The same mechanism is on the command line: `minitx prompt` shows a prompt,
# its token count and the window, and `minitx generate` takes the same flags:
#
#     minitx prompt --checkpoint .cache/icl/gpt-2x64-seed0-iters3000-listing1000-batch32 \
#         --template review-label --label lemon --label tiger \
#         --example "plot superb => tiger" --example "cast dull => lemon" --query "film lovely"
#     minitx generate --checkpoint .cache/icl/gpt-2x64-seed0-iters3000-listing1000-batch32 \
#         --template review-label --label lemon --label tiger \
#         --example "plot superb => tiger" --example "cast dull => lemon" --query "film lovely" \
#         --temperature 0 --max-new-tokens 1
#
# ## 3. A task that only the examples can explain
#
# In every training sequence of `minitx.datasets.icl` the two label words
# are drawn fresh: here positive reviews are labelled `tiger` and negative
# ones `lemon`, in the next sequence perhaps `violin` and `river`. The
# sentiment of a review is easy (its adjective comes from a positive or a
# negative list, and half the training rows say `positive`/`negative` so the
# model learns what sentiment is), but which *word* to answer is written
# nowhere in the weights. A zero-shot prompt cannot be answered better than
# a coin flip; with examples the model can read the mapping off the prompt.
#
# The answer is scored as in GPT-3's multiple-choice evaluations: the
# candidate label with the higher next-token logit wins, so chance is 1/2.
# Every prompt is also asked with its two label words swapped, so a model
# that ignores the examples scores exactly 0.5.
#
# **What "k-shot" counts.** Here, as in Brown et al., k is the number of
# examples in all. A 1-shot prompt then shows one label only, and half the
# time the query has the other sentiment: the right answer is a word the
# prompt never showed, and the model must reason by exclusion ("the label I
# saw is taken"). The bench also counts k *per label* (the few-shot
# classification convention, "2-way k-shot": a 1-shot prompt shows each
# label once), which separates reading the mapping from that exclusion.
#
# **Two instructions, one layout.** Every prompt is asked twice: once with
# the instruction that lists the two label words, `Classify each review as
# lemon or tiger.` (in an order drawn per prompt, so the list says *what*
# the labels are, never which is which), and once with `Classify each
# review as this or that.`, the same number of tokens, so every other
# token sits where it sat. Only the list differs, and only at k = 1 should
# it matter: there it names the label the single example did not show.
#
# The label follows the review's last word directly (the `review-label`
# template has no output indicator): then the token before each label is a
# word with a sentiment, which is what the attention heads of section 4 and
# lesson 12 match on.
#
# ## 4. The same prompts, four model sizes
#
# `python -m minitx.bench.icl` trains four GPTs (1 layer and 16 wide up to
# 2 layers and 64 wide: about 16x in parameters) on the same data with the
# same token budget, through the one `Trainer`, and caches them in
# `.cache/icl`. If the cache is there this cell only evaluates; otherwise it
# trains them (about eight minutes on two cores). In the test suite's fast
# mode it trains three tiny models for a few steps instead, in seconds: the
# plot is then flat at chance, but every step runs.

# %%
cache = output_dir() / "11_icl_cache" if FAST else Path(minitx.__file__).resolve().parent.parent / ".cache" / "icl"
result = bench.run(seed=0, fast=FAST, cache=cache)
print("\n\n".join(bench.format_table(result).split("\n\n")[:3]))

# %%
if plt():
    fig, axes = plt().subplots(1, 2, figsize=(10, 3.8), sharey=True)
    sizes = list(dict.fromkeys(r["model"] for r in result["rows"]))
    for ax, kind, title in zip(axes, bench.PROMPTS, ("instruction lists the labels", "'as this or that'")):
        for name in sizes:
            rows = [r for r in result["rows"] if r["model"] == name and r["prompt"] == kind]
            ax.plot([r["k"] for r in rows], [r["accuracy"] for r in rows], "o-",
                    label=f"{name} ({rows[0]['n_params']:,} params)")
        ax.axhline(bench.CHANCE, color="gray", ls="--", lw=1, label="chance")
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xticks(bench.SHOTS, [str(k) for k in bench.SHOTS])
        ax.set_xlabel("examples in the prompt (k)")
        ax.set_ylim(0.3, 1.02)
        ax.set_title(f"in-context learning by size: {title}", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy")
    axes[0].legend(fontsize=8)
    savefig(fig, "11_icl_accuracy")

# %% [markdown]
# What to look for (the figures measured on two cores are in
# `benchmarks/icl.md`): at k = 0 every model is at chance, as it must be,
# with either instruction; with examples the two-layer models climb, and
# with eight the largest answers almost always right, while the one-layer
# model stays near chance.
#
# At k = 1 the instruction decides. Without the list ("as this or that")
# the models sit at or *below* chance: with a single example, half the
# queries have the other sentiment, the right label never appeared, and
# they copy the one label they saw (right only when the sentiments agree).
# With the list, the largest model is right almost every time: the list
# names the other label, and the example settles which is which. That is
# prompt engineering in one number: the same model, the same examples, one
# more clause in the instruction. Shown one example of *each* label (the
# per-label table), the two-layer models are nearly perfect under either
# instruction: reading a mapping off the prompt is the skill they learned.
#
# How they were taught to use the list is a lesson of its own (the
# docstring of `bench.Budget`). Mixed into training from the first step,
# listing rows teach nothing: answering one of the two listed words at
# random already brings the loss to ln 2, and from there no small step of
# gradient descent rewards reading the examples, so every k stays at
# chance. Trained first on plain rows (3000 steps, where the matching
# circuit forms) and only then on half listing rows (1000 steps, a sixth
# of the learning rate), the same models use both: a curriculum.
#
# The circuit forms in a sudden transition, and now and then a run never
# reaches it: the loss sits on a plateau where `positive`/`negative` rows
# are right and fresh labels are a coin flip. That is plain to see right
# after phase 1, so the bench checks (an 8-shot probe on fresh prompts of
# the training distribution, never the evaluation prompts) and starts
# phase 1 again from a new initialisation when it finds the plateau, at
# most three times. The `tries` column says how many each model needed;
# the one-layer model uses all four and still cannot.
# A single attention layer can look at the earlier labels, but it cannot
# first tie each label to the review before it and then match that review
# against the query: that takes two layers working in sequence, which is
# the subject of lesson 12.
#
# ## 5. One prompt, one completion
#
# Finally the largest model answers one prompt, greedily, through the same
# `generate_text` that `minitx generate` uses.

# %%
from minitx.generate import generate_text  # noqa: E402

largest, _ = bench.train_or_load((bench.FAST_SIZES if FAST else bench.SIZES)[-1], bench.FAST if FAST else bench.FULL,
                                 0, cache)
for k in (0, 1, 2, 4):  # the lines alternate tiger (positive) and lemon (negative)
    for how, extra in (("listed", {"labels": names}), ("plain ", {"instruction": icl.PLAIN_INSTRUCTION})):
        p = fit_prompt(build_prompt(task, "film lovely", lines[:k], **extra), tokenizer, window)
        completion = generate_text(largest, tokenizer, p.text, 1, temperature=0)
        print(f"{k}-shot, {how}: ...{p.text.splitlines()[-1]!r} -> {completion.strip()!r}")
