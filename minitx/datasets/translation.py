"""A toy translation task: English-like source, a target language that differs.

Source sentences follow English::

    the big red dog sees a small cat near the house

The target language ("Tolan") has its own words and three rules English
does not:

* **gender**: every noun is masculine or feminine; the article agrees
  (``lo``/``la`` for "the", ``un``/``una`` for "a"; plural ``los``/``las``,
  ``unos``/``unas``), and so does every adjective (``-o``/``-a``, plural
  ``-os``/``-as``);
* **adjectives after the noun**, in reverse order ("the big red dog" ->
  "lo kan rojo grando": red first, then big);
* **the verb at the end**, agreeing with the subject's number
  (``-e`` singular, ``-en`` plural): subject, object, prepositional phrase, verb.

So the example above becomes::

    lo kan rojo grando una mira pequena apud la domo vide
    (the dog red big   a   cat  small   near the house sees)

A model that copies or translates word by word in order gets the words but
not the order or agreement (low BLEU); cross-attention has to align each
target word with the right source word, which the translation tutorial
plots.
"""
from __future__ import annotations

import numpy as np

# English noun -> (Tolan stem, gender). Plural: English +s, Tolan +i.
NOUNS = {
    "dog": ("kan", "m"), "cat": ("mira", "f"), "house": ("domo", "f"), "bird": ("avo", "m"),
    "child": ("pueri", "m"), "woman": ("fema", "f"), "man": ("viro", "m"), "horse": ("kaval", "m"),
    "tree": ("arbo", "m"), "river": ("flum", "m"), "boat": ("nava", "f"), "book": ("libro", "m"),
    "teacher": ("doktor", "m"), "farmer": ("agri", "m"), "queen": ("rega", "f"), "king": ("rex", "m"),
    "city": ("urba", "f"), "garden": ("horto", "m"), "table": ("tabla", "f"), "apple": ("poma", "f"),
    "friend": ("amik", "m"), "sister": ("sora", "f"), "door": ("porta", "f"), "lamp": ("luma", "f"),
}
# adjective -> stem; agreement adds o / a / os / as
ADJECTIVES = {
    "big": "grand", "small": "pequen", "red": "roj", "old": "antik", "young": "nov", "happy": "felic",
    "black": "negr", "white": "blank", "tall": "alt", "quiet": "tranquil", "green": "verd", "strong": "fort",
    "sad": "trist", "fast": "rapid", "beautiful": "bel", "tired": "fatig",
}
# verb (3rd person singular, plural) -> stem; agreement adds e / en
VERBS = {
    ("sees", "see"): "vid", ("likes", "like"): "am", ("finds", "find"): "trov", ("follows", "follow"): "sekv",
    ("helps", "help"): "ajut", ("watches", "watch"): "spekt", ("carries", "carry"): "port",
    ("visits", "visit"): "vizit",
    ("paints", "paint"): "pikt", ("calls", "call"): "vok", ("hears", "hear"): "aud", ("knows", "know"): "kon",
}
PREPOSITIONS = {"near": "apud", "in": "en", "with": "kun", "under": "sub", "behind": "post"}
ARTICLES = {  # (definite?, gender, plural?) -> Tolan article
    (True, "m", False): "lo", (True, "f", False): "la", (True, "m", True): "los", (True, "f", True): "las",
    (False, "m", False): "un", (False, "f", False): "una", (False, "m", True): "unos", (False, "f", True): "unas",
}


def noun_phrase(rng, max_adjectives: int = 2):
    """Return ``(english_words, tolan_words, plural)`` for one noun phrase."""
    noun = list(NOUNS)[int(rng.integers(len(NOUNS)))]
    stem, gender = NOUNS[noun]
    plural = rng.random() < 0.3
    definite = rng.random() < 0.6
    n_adj = int(rng.integers(max_adjectives + 1))
    adjs = [list(ADJECTIVES)[i] for i in rng.choice(len(ADJECTIVES), n_adj, replace=False)]
    if plural:
        en_det = "the" if definite else "some"
    else:
        en_det = "the" if definite else "a"
    en = [en_det] + adjs + [noun + ("s" if plural else "")]
    suffix = {("m", False): "o", ("f", False): "a", ("m", True): "os", ("f", True): "as"}[(gender, plural)]
    tl = [ARTICLES[(definite, gender, plural)], stem + ("i" if plural else "")]
    tl += [ADJECTIVES[a] + suffix for a in reversed(adjs)]  # after the noun, reversed
    return en, tl, plural


def translate_sentence(rng):
    """One ``(source, target)`` pair: subject verb object [preposition noun-phrase]."""
    s_en, s_tl, s_plural = noun_phrase(rng)
    o_en, o_tl, _ = noun_phrase(rng)
    (v_sg, v_pl), v_stem = list(VERBS.items())[int(rng.integers(len(VERBS)))]
    en = s_en + [v_pl if s_plural else v_sg] + o_en
    tl = s_tl + o_tl
    if rng.random() < 0.4:
        prep = list(PREPOSITIONS)[int(rng.integers(len(PREPOSITIONS)))]
        p_en, p_tl, _ = noun_phrase(rng, max_adjectives=1)
        en += [prep] + p_en
        tl += [PREPOSITIONS[prep]] + p_tl
    tl.append(v_stem + ("en" if s_plural else "e"))  # the verb goes last
    return " ".join(en), " ".join(tl)


def make_translation(n_train: int = 20000, n_val: int = 500, n_test: int = 1000, seed: int = 0) -> dict:
    """``{"train"|"val"|"test": [(source, target), ...]}``; held-out sources never occur in train."""
    rng = np.random.default_rng(seed)
    out, seen = {}, set()
    for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        rows = []
        while len(rows) < n:
            src, tgt = translate_sentence(rng)
            if split != "train" and src in seen:
                continue
            seen.add(src)
            rows.append((src, tgt))
        out[split] = rows
    return out
