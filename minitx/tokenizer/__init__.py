"""Tokenizers: text <-> integer ids.

* :class:`BPETokenizer`: byte-level byte-pair encoding, trained here or loaded
  from tiktoken (``cl100k_base``) or Hugging Face (``tokenizer.json``) and
  encoding token for token like them.
* :class:`CharTokenizer`: one id per character, for the classic small demos.
* :data:`GPT2_SPLIT_PATTERN`, :data:`GPT4_SPLIT_PATTERN`: the regexes that cut
  text into chunks before BPE.

Quick tour::

    from minitx.tokenizer import BPETokenizer
    tok = BPETokenizer().train(text, vocab_size=512)
    ids = tok.encode("hello world")
    tok.show("hello world")          # '[hello][ world]'
    tok.save("tok.model"); BPETokenizer.load("tok.model")
"""
from .bpe import BPETokenizer, get_pair_counts, merge_pair, render_token, train_incremental, train_reference
from .char import CharTokenizer
from .patterns import GPT2_SPLIT_PATTERN, GPT4_SPLIT_PATTERN, split_text

__all__ = [
    "BPETokenizer",
    "CharTokenizer",
    "GPT2_SPLIT_PATTERN",
    "GPT4_SPLIT_PATTERN",
    "get_pair_counts",
    "merge_pair",
    "render_token",
    "split_text",
    "train_incremental",
    "train_reference",
]
