"""Training and evaluation for the encoder and encoder-decoder tasks.

    common.py      the training loop (AdamW, warmup + cosine, clipping, periodic
                   evaluation, metrics.jsonl, checkpoints), padding, task checkpoints
    classify.py    TextClassifier: sentence -> label (sentiment), accuracy
    tag.py         Tagger: one BIO tag per word (NER), entity-level F1
    translate.py   Translator: sentence -> sentence, greedy / sampling / beam, BLEU

Each task object bundles a model with the vocabularies and label set it was
trained with, and saves them together: weights in safetensors, everything
else in JSON (see :mod:`minitx.train.checkpoint`).
"""
from .classify import TextClassifier
from .common import load_task
from .tag import Tagger
from .translate import Translator

__all__ = ["Tagger", "TextClassifier", "Translator", "load_task"]
