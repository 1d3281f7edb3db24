"""The base GPT's world text: every kind, deterministic, never a held-out input, mixed evenly into the corpus."""
from __future__ import annotations

import re

import numpy as np

from minitx.datasets import instructions as inst
from minitx.datasets import world
from minitx.datasets.metrics import bio_spans
from minitx.datasets.ner import sentence


def source_of(doc: str) -> str:
    """The input a document was built from, read back from its text (the inverse of each generator)."""
    if doc.startswith("in tolan , "):
        return re.match(r'in tolan , " (.*) " is " .* " \.$', doc)[1]
    if doc.startswith("# "):
        return doc.split("\n")[0][2:]
    first = doc.split("\n")[0]
    if " . rated " in first:
        return first.split(" . rated ")[0]
    return first[:-2] if first.endswith(" .") else first  # news ends " .", a story's dialogue does not


def test_every_kind_in_equal_number_and_deterministic():
    docs = world.world_documents(40, seed=3)
    assert docs == world.world_documents(40, seed=3) and docs != world.world_documents(40, seed=4)
    counts = {k: 0 for k in world.KINDS}
    for d in docs:
        kind = ("phrases" if d.startswith("in tolan") else "code" if d.startswith("# ") else
                "review" if " . rated " in d else "story" if "\nso " in d else "news")
        counts[kind] += 1
    assert counts == {k: 40 for k in world.KINDS}
    assert len(set(docs)) > 150  # shuffled together, mostly distinct


def test_no_document_repeats_a_held_out_input():
    data = inst.make_instructions(200, 50, seed=0)
    held = {ex.input for examples in data["test"].values() for ex in examples}
    # without the exclusion some documents would be built from held-out inputs (so the check below can fail)
    assert any(source_of(d) in held for d in world.world_documents(2000, seed=0))
    docs = world.world_documents(2000, seed=0, held_out=held)
    assert len(docs) == 5 * 2000
    assert not any(source_of(d) in held for d in docs)


def test_news_tags_name_every_entity_in_order_with_its_kind():
    rng = np.random.default_rng(1)
    for _ in range(50):
        state = rng.bit_generator.state
        text, doc = world.news_document(rng)
        rng2 = np.random.default_rng()
        rng2.bit_generator.state = state
        tokens, tags = sentence(rng2)  # the same draw again
        assert text == " ".join(tokens)
        spans = sorted(bio_spans(tags), key=lambda s: s[1])
        if not spans:
            assert doc == text + " ."
            continue
        listed = doc.split("\ntags : ")[1].split(" , ")
        assert listed == [f"{' '.join(tokens[a:b])} ( {'person' if k == 'PER' else 'place'} )" for k, a, b in spans]


def test_phrases_are_the_translation_generator_s_pairs():
    from minitx.datasets.translation import ADJECTIVES, NOUNS  # noqa: PLC0415

    tolan_words = {s for s, _ in NOUNS.values()} | set(ADJECTIVES.values())
    for doc in world.world_documents(100, seed=0):
        if doc.startswith("in tolan"):
            en, tl = re.match(r'in tolan , " (.*) " is " (.*) " \.$', doc).groups()
            assert en.split()[0] in ("the", "a", "some")
            assert any(w.startswith(tuple(tolan_words)) for w in tl.split())


def test_mix_keeps_every_piece_and_both_sources_in_every_stretch():
    corpus = "\n\n".join(f"docstring paragraph {i}" for i in range(1000))
    docs = world.world_documents(100, seed=0)
    text = world.mix_corpus(corpus, docs, chunks=50)
    pieces = text.split("\n\n")
    assert sorted(pieces) == sorted(corpus.split("\n\n") + "\n\n".join(docs).split("\n\n"))
    tail = text[int(0.9 * len(text)):]  # what LMDataset's validation split takes
    assert "docstring paragraph" in tail and any(d in tail for d in docs)
    head = text[: int(0.1 * len(text))]
    assert "docstring paragraph" in head and any(d in head for d in docs)


def test_a_held_out_set_that_leaves_nothing_to_draw_is_an_error_naming_the_kind():
    import pytest  # noqa: PLC0415

    rng = np.random.default_rng(0)
    every_code_input = {world.code_document(rng)[0] for _ in range(20000)}  # the whole (small) space of code inputs
    with pytest.raises(ValueError, match="kind 'code': drew only 0 outside held_out, expected 3"):
        world.world_documents(3, seed=0, held_out=every_code_input)
