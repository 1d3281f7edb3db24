"""Tokenizers: text <-> integer ids.

* :class:`BPETokenizer`: byte-level byte-pair encoding, trained here or loaded
  from tiktoken (``cl100k_base``) or Hugging Face (``tokenizer.json``) and
  encoding token for token like them.
* :class:`CharTokenizer`: one id per character, for the classic small demos.
* :data:`GPT2_SPLIT_PATTERN`, :data:`GPT4_SPLIT_PATTERN`: the regexes that cut
  text into chunks before BPE.

The modules, in reading order: ``patterns`` (the split), ``bpe`` (the
reference algorithms and the tokenizer), ``fast`` (the fast path, equal to the
reference), ``tables`` (the data and its file formats), ``formats``
(tokenizer-level load/save), ``char``.

Quick tour::

    from minitx.tokenizer import BPETokenizer
    tok = BPETokenizer().train(text, vocab_size=512)
    ids = tok.encode("hello world")
    tok.show("hello world")          # '[hello][ world]'
    tok.save("tok.model"); BPETokenizer.load("tok.model")
"""
from .bpe import BPETokenizer, best_pair, bpe_chunk, get_pair_counts, merge_pair, render_token, train_reference
from .char import CharTokenizer
from .fast import train_incremental
from .patterns import GPT2_SPLIT_PATTERN, GPT4_SPLIT_PATTERN, split_text
from .tables import BPETables

__all__ = [
    "BPETables",
    "BPETokenizer",
    "CharTokenizer",
    "GPT2_SPLIT_PATTERN",
    "GPT4_SPLIT_PATTERN",
    "best_pair",
    "bpe_chunk",
    "get_pair_counts",
    "merge_pair",
    "render_token",
    "split_text",
    "train_incremental",
    "train_reference",
]
