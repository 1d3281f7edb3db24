"""News-like sentences for named-entity tagging: find the people and the places.

Sentences come from templates such as ::

    {PER} visited {LOC} on monday
    police in {LOC} are searching for {PER}
    {PER} , the mayor of {LOC} , resigned on friday

with BIO tags (``B-PER`` begins a person, ``I-PER`` continues one, ``O`` is
outside every entity)::

    maria lopez visited port alder on monday
    B-PER I-PER O       B-LOC I-LOC O  O

Three things stop a lookup table from solving it:

* **ambiguous names**: "jordan", "florence", "austin", "georgia" ... are
  people in some sentences and places in others; only the context tells;
* **multi-word entities**: "new haven", "san mateo", "maria lopez": the
  tagger must get both boundaries right, which is what entity-level F1 checks;
* **unseen names**: a fifth of the names (drawn per seed) appear only in
  val/test; a word-level vocabulary maps them to ``<unk>``, so the tagger
  must infer the entity from the words around it.

Everything is lower case, so capitalisation is no shortcut either.
"""
from __future__ import annotations

import numpy as np

from .metrics import bio_spans

NER_TAGS = ("O", "B-PER", "I-PER", "B-LOC", "I-LOC")

FIRST = ("maria", "john", "aisha", "wei", "olga", "pedro", "fatima", "liam", "noor", "kenji", "sara", "david",
         "amara", "ivan", "lucia", "omar", "elena", "tom", "priya", "hugo", "nadia", "carlos", "mei", "anna")
LAST = ("lopez", "smith", "okafor", "chen", "petrova", "silva", "haddad", "murphy", "rahman", "tanaka", "berg",
        "cohen", "mensah", "ivanov", "rossi", "farouk", "novak", "baker", "sharma", "moreau", "kowalski", "reyes")
PLACES = ("paris", "cairo", "lima", "oslo", "nairobi", "delhi", "quito", "hanoi", "accra", "berlin", "dublin",
          "new haven", "port alder", "san mateo", "el paso", "lake city", "north bay", "cape verde",
          "santa rosa", "mount hope")
AMBIGUOUS = ("jordan", "florence", "austin", "georgia", "chad", "sydney", "victoria", "regina")  # people and places

TEMPLATES = (
    "{PER} visited {LOC} on monday",
    "{PER} said the talks in {LOC} went well",
    "officials in {LOC} met {PER} yesterday",
    "{PER} , the mayor of {LOC} , resigned on friday",
    "the storm hit {LOC} and {LOC} overnight",
    "{PER} and {PER} arrived in {LOC}",
    "reporters asked {PER} about the flood in {LOC}",
    "president {PER} flew from {LOC} to {LOC}",
    "{PER} was born in {LOC}",
    "a spokesman for {PER} declined to comment",
    "police in {LOC} are searching for {PER}",
    "{PER} , 45 , moved to {LOC} last year",
    "the company opened an office in {LOC}",
    "{PER} praised {PER} for the deal",
    "thousands marched through {LOC} on sunday",
    "{PER} will speak in {LOC} next week",
    "the minister met {PER} in {LOC}",
    "{PER} told reporters that {LOC} needs new roads",
    "trains between {LOC} and {LOC} were cancelled",
    "{PER} won the race",
)


def _person(rng, firsts, lasts) -> list[str]:
    r = rng.random()
    first = firsts[int(rng.integers(len(firsts)))] if r > 0.15 else AMBIGUOUS[int(rng.integers(len(AMBIGUOUS)))]
    last = lasts[int(rng.integers(len(lasts)))]
    if r < 0.15:  # an ambiguous first name, alone or with a surname
        return [first] if rng.random() < 0.5 else [first, last]
    return [first, last] if r < 0.8 else [last]


def _place(rng, places) -> list[str]:
    if rng.random() < 0.15:
        return [AMBIGUOUS[int(rng.integers(len(AMBIGUOUS)))]]
    return places[int(rng.integers(len(places)))].split()


def sentence(rng, firsts=FIRST, lasts=LAST, places=PLACES) -> tuple[list[str], list[str]]:
    """One templated sentence with its BIO tags: ``(tokens, tags)``, names drawn from the given pools."""
    template = TEMPLATES[int(rng.integers(len(TEMPLATES)))]
    tokens, tags = [], []
    for word in template.split():
        if word in ("{PER}", "{LOC}"):
            kind = word[1:-1]
            entity = _person(rng, firsts, lasts) if kind == "PER" else _place(rng, places)
            tokens += entity
            tags += [f"B-{kind}"] + [f"I-{kind}"] * (len(entity) - 1)
        else:
            tokens.append(word)
            tags.append("O")
    return tokens, tags


def entity_mentions(tokens, tags) -> list[tuple[str, str]]:
    """``[(kind, text), ...]``: the sentence's entities in order of appearance (``"PER"`` / ``"LOC"``).

    ``maria lopez visited oslo`` -> ``[("PER", "maria lopez"), ("LOC", "oslo")]``.
    """
    return [(kind, " ".join(tokens[a:b])) for kind, a, b in sorted(bio_spans(tags), key=lambda s: s[1])]


def _split_names(rng, names, held_out: float = 0.2):
    order = rng.permutation(len(names))
    k = int(round(len(names) * held_out))
    return tuple(names[i] for i in order[k:]), tuple(names)  # (train pool, evaluation pool = all)


def make_ner(n_train: int = 6000, n_val: int = 500, n_test: int = 1000, seed: int = 0) -> dict:
    """``{"train"|"val"|"test": [(tokens, tags), ...]}``; deterministic for a seed.

    Val/test draw from every name, train from 80% of them: the rest are
    unseen in training.
    """
    rng = np.random.default_rng(seed)
    pools = {}
    for key, names in (("first", FIRST), ("last", LAST), ("place", PLACES)):
        pools[key] = _split_names(rng, names)
    out = {}
    for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        which = 0 if split == "train" else 1
        out[split] = [sentence(rng, pools["first"][which], pools["last"][which], pools["place"][which])
                      for _ in range(n)]
    return out
