"""The generated datasets: deterministic, well-formed, hard in the intended ways;
the metrics: entity F1 by hand, BLEU against sacrebleu."""
from __future__ import annotations

import numpy as np
import pytest

from minitx.datasets import (LabelSet, Vocab, accuracy, bag_of_words_baseline, bio_spans, corpus_bleu, entity_f1,
                             make_ner, make_sentiment, make_translation, read_tsv, write_tsv)
from minitx.datasets.sentiment import NEGATIVE, POSITIVE
from minitx.datasets.translation import translate_sentence


@pytest.mark.parametrize("make", [make_sentiment, make_ner, make_translation])
def test_deterministic_for_a_seed(make):
    a, b, c = make(50, 10, 10, seed=3), make(50, 10, 10, seed=3), make(50, 10, 10, seed=4)
    assert a == b
    assert a != c
    assert [len(a[s]) for s in ("train", "val", "test")] == [50, 10, 10]


def test_sentiment_is_balanced_heldout_and_beats_bag_of_words():
    data = make_sentiment(2000, 200, 600, seed=0)
    labels = [y for _, y in data["train"]]
    assert labels.count("positive") == labels.count("negative")
    train_texts = {t for t, _ in data["train"]}
    assert not train_texts & {t for t, _ in data["test"]}
    # contrast reviews carry both kinds of words, so word counts cannot decide them
    mixed = [t for t, _ in data["train"] if " but " in t or "although" in t or "even though" in t]
    assert mixed and all(any(w in POSITIVE for w in t.split()) and any(w in NEGATIVE for w in t.split())
                         for t in mixed if " not " not in t and " never " not in t)
    assert any("not bad at all" in t for t in train_texts)
    bow = bag_of_words_baseline(data["train"], data["test"], epochs=100)
    assert 0.45 < bow < 0.7, f"bag of words should be near chance on this grammar, got {bow}"


def test_ner_tags_align_and_names_are_ambiguous_and_partly_unseen():
    data = make_ner(3000, 100, 1000, seed=0)
    for tokens, tags in data["train"] + data["test"]:
        assert len(tokens) == len(tags)
        assert all(t in ("O", "B-PER", "I-PER", "B-LOC", "I-LOC") for t in tags)
        assert not tags[0].startswith("I-")
    kinds = {}
    for tokens, tags in data["train"]:
        for w, t in zip(tokens, tags):
            kinds.setdefault(w, set()).add(t[2:] if t != "O" else "O")
    assert {"PER", "LOC"} <= kinds["jordan"], "an ambiguous name must be a person and a place"
    train_words = {w for tokens, _ in data["train"] for w in tokens}
    unseen = {w for tokens, tags in data["test"] for w, t in zip(tokens, tags) if t != "O" and w not in train_words}
    assert len(unseen) >= 5, "some test names must be unseen in training"


def test_translation_rules():
    rng = np.random.default_rng(0)
    for _ in range(200):
        src, tgt = translate_sentence(rng)
        s, t = src.split(), tgt.split()
        assert t[-1].endswith("e") or t[-1].endswith("en")  # the verb is last
        assert t[0] in ("lo", "la", "los", "las", "un", "una", "unos", "unas")
        assert s[0] in ("the", "a", "some")
    # the docstring example, word for word
    data = make_translation(300, 50, 50, seed=1)
    assert not {s for s, _ in data["train"]} & {s for s, _ in data["test"]}
    pairs = dict(data["train"])
    assert any(src.split()[1] in ("big", "red") for src in pairs)


def test_translation_agreement_example():
    from minitx.datasets.translation import ADJECTIVES, ARTICLES, NOUNS
    stem, gender = NOUNS["cat"]
    assert (ARTICLES[(False, gender, False)], stem, ADJECTIVES["small"] + "a") == ("una", "mira", "pequena")


def test_bio_spans_and_entity_f1():
    assert bio_spans(["B-PER", "I-PER", "O", "B-LOC"]) == {("PER", 0, 2), ("LOC", 3, 4)}
    assert bio_spans(["I-LOC", "I-LOC", "B-LOC"]) == {("LOC", 0, 2), ("LOC", 2, 3)}
    gold = [["B-PER", "I-PER", "O", "B-LOC"]]
    assert entity_f1(gold, gold)["f1"] == 1.0
    half = entity_f1([["B-PER", "O", "O", "B-LOC"]], gold)  # the person's boundary is wrong
    assert half["precision"] == 0.5 and half["recall"] == 0.5
    assert entity_f1([["O"] * 4], gold)["f1"] == 0.0
    assert accuracy([1, 2, 3], [1, 2, 0]) == pytest.approx(2 / 3)


def test_corpus_bleu_matches_sacrebleu():
    sacrebleu = pytest.importorskip("sacrebleu", reason="sacrebleu is a test-only reference; pip install sacrebleu")
    data = make_translation(10, 10, 40, seed=2)
    refs = [t for _, t in data["test"]]
    rng = np.random.default_rng(0)
    for trial in range(4):
        hyps = []
        for r in refs:
            words = r.split()
            if trial >= 1:  # damage: drop, swap and replace words
                words = [w for w in words if rng.random() > 0.15 * trial]
                if len(words) > 2 and rng.random() < 0.5:
                    words[0], words[1] = words[1], words[0]
                words = [w if rng.random() > 0.1 else "xx" for w in words]
            hyps.append(" ".join(words))
        ours = corpus_bleu(hyps, refs)
        theirs = sacrebleu.corpus_bleu(hyps, [refs], tokenize="none").score
        assert ours == pytest.approx(theirs, abs=1e-9)
    short = ["la mira", "lo"]
    assert corpus_bleu(short, ["la mira negra vide", "lo kan vide"]) == pytest.approx(
        sacrebleu.corpus_bleu(short, [["la mira negra vide", "lo kan vide"]], tokenize="none").score, abs=1e-9)


def test_vocab_and_labels():
    v = Vocab.build([["the", "cat"], ["the", "dog"]], min_freq=1)
    assert v.encode(["the", "bird"]) == [6, 3] and v.decode(v.encode(["the", "cat"])) == ["the", "cat"]
    assert Vocab.from_dict(v.to_dict()).itos == v.itos
    labels = LabelSet(["negative", "positive"], "sentiment label")
    with pytest.raises(ValueError, match="unknown sentiment label 'postive'"):
        labels.encode("postive")


def test_tsv_roundtrip_and_errors(tmp_path):
    path = tmp_path / "a.tsv"
    write_tsv(path, [("positive", "not bad at all"), ("negative", "dull")])
    assert read_tsv(path) == [("positive", "not bad at all"), ("negative", "dull")]
    path.write_text("positive\tgood\nno tab here\n")
    with pytest.raises(ValueError, match=r"a.tsv:2: got 1 tab-separated field\(s\), expected 2"):
        read_tsv(path)
    path.write_text("\n\n")
    with pytest.raises(ValueError, match="no examples"):
        read_tsv(path)
    with pytest.raises(ValueError, match="not found"):
        read_tsv(tmp_path / "missing.tsv")
