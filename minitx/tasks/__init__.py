"""Training and evaluation for the encoder and encoder-decoder tasks.

    common.py      padding, training through the one Trainer (best model by the
                   task's metric), task checkpoints
    classify.py    TextClassifier: sentence -> label (sentiment), accuracy
    tag.py         Tagger: one BIO tag per word (NER), entity-level F1
    translate.py   Translator: sentence -> sentence, greedy / sampling / beam, BLEU

Each task object bundles a model with the vocabularies and label set it was
trained with, and saves them together: weights in safetensors, everything
else in JSON (see :mod:`minitx.train.checkpoint`).
"""
from .classify import TextClassifier
from .common import read_task
from .tag import Tagger
from .translate import Translator

TASKS = {"classify": TextClassifier, "tag": Tagger, "translate": Translator}


def load_task(path):
    """Any task checkpoint (a run folder or a checkpoint folder) as its task object."""
    _, meta, _ = read_task(path)
    return TASKS[meta["task"]].load(path)


__all__ = ["TASKS", "Tagger", "TextClassifier", "Translator", "load_task"]
