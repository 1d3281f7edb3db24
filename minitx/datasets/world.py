"""The world the instruction tasks live in, as plain text a base model reads before any tuning.

A large language model can be instruction-tuned with a small low-rank
update because pretraining has already taught it the world: it has read
reviews, news, stories, other languages and code. Tuning then teaches the
*format* (read an instruction, write only the answer) far more than any new
knowledge. minitx's base GPT reads the embedded corpus (standard-library
docstrings) and, mixed in, this module's documents: the same world as the
five tasks of :mod:`.instructions`, written the way it would appear on the
web, never in the instruction layout (no ``Answer:``, no instruction line)::

    review    to be honest , the plot was lovely . rated 5 out of 5 .
    news      officials in oslo met maria lopez yesterday .
              tags : oslo ( place ) , maria lopez ( person )
    story     omar: shall we play chess in lima on friday? mei: yes, see you then.
              so omar and mei play chess in lima on friday.
    phrases   in tolan , " the red dog " is " lo kan rojo " .
              (and whole sentences, verb last: " the dog sees a cat " is ...)
    code      # the mean of column price
              value = sum(price) / len(price)

No document is built from a held-out instruction's input (``held_out``):
a test review, news sentence, dialogue or phrase is never a pretraining
document, so the tuned models are scored on inputs they have not read.
What the base does learn is the world's *knowledge* (Tolan's words, which
names are people, what a dialogue settles, how a mean is written), as a
real base model knows French or Python before it is tuned. That knowledge
overlaps the tests below the level of a whole input: a held-out noun
phrase ("the red dog") can occur inside a phrasebook *sentence*, as a
French phrase does inside French text.
"""
from __future__ import annotations

import numpy as np

from .instructions import COLUMNS, DATA_TASKS, summarise_example
from .ner import entity_mentions, sentence
from .reviews_heldout import TRAIN_WORDS, review
from .sentiment import choice
from .translation import noun_phrase, translate_sentence

KINDS = ("review", "news", "story", "phrases", "code")


def review_document(rng) -> tuple[str, str]:
    """``(input, document)``: a review of either polarity and the star rating its writer gave."""
    label = int(rng.integers(2))
    text = review(rng, label, TRAIN_WORDS)
    stars = (1, 2)[int(rng.integers(2))] if label == 0 else (4, 5)[int(rng.integers(2))]
    return text, f"{text} . rated {stars} out of 5 ."


def news_document(rng) -> tuple[str, str]:
    """``(input, document)``: one news sentence, and (as a news site files it) the tags naming who and where."""
    tokens, tags = sentence(rng)
    text = " ".join(tokens)
    filed = " , ".join(f"{name} ( {'person' if kind == 'PER' else 'place'} )"
                       for kind, name in entity_mentions(tokens, tags))
    return text, f"{text} .\ntags : {filed}" if filed else f"{text} ."


def story_document(rng) -> tuple[str, str]:
    """``(input, document)``: a dialogue that settles a plan, then the narrator says what was settled."""
    ex = summarise_example(rng)  # the summarise task's own dialogue generator
    return ex.input, f"{ex.input}\nso {ex.output}"


def phrase_document(rng) -> tuple[str, str]:
    """``(input, document)``: an English phrase or sentence with its Tolan, as a phrasebook gives it."""
    if rng.random() < 0.5:
        en, tl, _ = noun_phrase(rng, max_adjectives=2)
        en, tl = " ".join(en), " ".join(tl)
    else:
        en, tl = translate_sentence(rng)
    return en, f'in tolan , " {en} " is " {tl} " .'


def code_document(rng) -> tuple[str, str]:
    """``(input, document)``: a commented line of Python computing one of the data tasks."""
    c, d = (COLUMNS[i] for i in rng.choice(len(COLUMNS), 2, replace=False))
    what, expression = choice(rng, DATA_TASKS)
    what = what.format(c=c, d=d)
    return what, f"# {what}\nvalue = {expression.format(c=c, d=d)}"


GENERATORS = {"review": review_document, "news": news_document, "story": story_document,
              "phrases": phrase_document, "code": code_document}


def world_documents(n_per_kind: int, seed: int = 0, *, held_out=frozenset()) -> list[str]:
    """``n_per_kind`` documents of each kind, shuffled together; none whose input is in ``held_out``.

    ``held_out``: the inputs of the held-out instructions
    (``{ex.input for ex in ...}``); a drawn document with one of them is
    drawn again. Deterministic for a seed. Raises ValueError naming the
    kind when ``held_out`` leaves too few inputs to draw from.
    """
    rng = np.random.default_rng([seed, 41])
    docs = []
    for kind in KINDS:
        made = 0
        for _ in range(100 * n_per_kind + 100):  # far more inputs than needed; never loops forever
            if made == n_per_kind:
                break
            source, doc = GENERATORS[kind](rng)
            if source in held_out:
                continue
            docs.append(doc)
            made += 1
        if made < n_per_kind:
            raise ValueError(f"world documents of kind {kind!r}: drew only {made} outside held_out, "
                             f"expected {n_per_kind}")
    return [docs[i] for i in rng.permutation(len(docs))]


def mix_corpus(corpus: str, documents: list[str], *, chunks: int = 100) -> str:
    """The corpus and the documents interleaved in ``chunks`` slices each, so that any stretch (the
    last 10% a validation split takes, for one) holds both in the same proportion.

    The corpus is cut at paragraph breaks (never inside a docstring
    paragraph), the documents between documents; slices alternate, corpus
    first, joined by blank lines.
    """
    paragraphs = corpus.split("\n\n")
    cuts_c = np.linspace(0, len(paragraphs), chunks + 1).astype(int)
    cuts_d = np.linspace(0, len(documents), chunks + 1).astype(int)
    parts = []
    for i in range(chunks):
        parts.append("\n\n".join(paragraphs[cuts_c[i] : cuts_c[i + 1]]))
        parts.append("\n\n".join(documents[cuts_d[i] : cuts_d[i + 1]]))
    return "\n\n".join(p for p in parts if p)


__all__ = ["GENERATORS", "KINDS", "mix_corpus", "world_documents"]
