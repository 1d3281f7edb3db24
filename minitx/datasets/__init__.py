"""Datasets minitx generates itself: deterministic, seeded, no download.

Each generator builds sentences from a small grammar, so the data is
reproducible bit for bit from a seed, needs no network, and is *designed* so
that shortcuts fail:

    sentiment.py     reviews with negation, intensifiers and contrast
                     ("not bad at all", "great acting, but a dull plot"):
                     counting positive and negative words is not enough
    ner.py           news-like sentences with people and places, some names
                     ambiguous ("jordan" the person, "jordan" the place) and
                     some seen only at test time: context must decide
    translation.py   an English-like source and a target language with its
                     own words, gendered articles, adjectives after the noun
                     and the verb at the end: copying fails, words must be
                     aligned and reordered
    reviews_heldout.py  reviews whose test set uses only sentiment words
                     never seen in training (synonyms held out): only a
                     pretrained model can know that "splendid" means "great"
    instructions.py  instruction/response pairs of five kinds (sentiment,
                     NER, summarising a dialogue, translating, a Python
                     expression), prompts and the masked tuning rows

Shared pieces:

    vocab.py         word-level vocabulary with special tokens; label sets
    tsv.py           reading and writing the tab-separated files the CLI uses
    metrics.py       accuracy, entity-level F1 (BIO spans), corpus BLEU
    expressions.py   running a model's Python expression safely (an ast
                     whitelist, never eval): execution match
"""
from .metrics import accuracy, bio_spans, corpus_bleu, entity_f1
from .ner import NER_TAGS, make_ner
from .sentiment import SENTIMENT_LABELS, bag_of_words_baseline, make_sentiment
from .translation import make_translation
from .tsv import read_tsv, write_tsv
from .vocab import LabelSet, Vocab

__all__ = ["LabelSet", "NER_TAGS", "SENTIMENT_LABELS", "Vocab", "accuracy", "bag_of_words_baseline", "bio_spans",
           "corpus_bleu", "entity_f1", "make_ner", "make_sentiment", "make_translation", "read_tsv", "write_tsv"]
