"""Models built from :mod:`minitx.nn` layers: the three families of the transformer.

    gpt.py      decoder-only (GPT): causal blocks, tied head, KV cache
    encoder.py  encoder-only (BERT-style): classification, tagging, masked-LM
    seq2seq.py  encoder-decoder (the original Transformer / T5-style): translation
    rnn_lm.py   the baseline before them: an RNN / GRU language model
"""
from .encoder import (
           EncoderClassifier,
           EncoderConfig,
           EncoderMLM,
           EncoderTagger,
           TransformerEncoder,
)
from .gpt import GPT, PRESETS, GPTConfig
from .rnn_lm import RNNLM, RNNConfig
from .seq2seq import Seq2Seq, Seq2SeqConfig

__all__ = ["GPT", "GPTConfig", "PRESETS", "EncoderClassifier", "EncoderConfig", "EncoderMLM", "EncoderTagger",
           "TransformerEncoder", "Seq2Seq", "Seq2SeqConfig",
           "RNNLM", "RNNConfig"]
