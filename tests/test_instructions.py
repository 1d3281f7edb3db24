"""The fine-tuning data: held-out-word reviews, instruction pairs, the masked tuning rows, the safe evaluator."""
from __future__ import annotations

import numpy as np
import pytest

from minitx.datasets import instructions as inst
from minitx.datasets.expressions import UnsafeExpression, evaluate, execution_match
from minitx.datasets.reviews_heldout import TEST_WORDS, TRAIN_WORDS, make_heldout_reviews
from minitx.datasets.sentiment import bag_of_words_baseline
from minitx.tokenizer import CharTokenizer


@pytest.mark.parametrize("seed", [0, 5])
def test_heldout_reviews_never_share_a_sentiment_word(seed):
    data = make_heldout_reviews(200, 20, 200, seed=seed)
    assert data == make_heldout_reviews(200, 20, 200, seed=seed) != make_heldout_reviews(200, 20, 200, seed=seed + 1)
    train_words = {w for text, _ in data["train"] for w in text.split()}
    test_words = {w for text, _ in data["test"] for w in text.split()}
    held = {w for ws in TEST_WORDS for w in ws}
    assert not train_words & held and test_words & held  # the synonyms occur only at test time
    assert not test_words & {w for ws in TRAIN_WORDS for w in ws}
    for split in ("train", "test"):
        labels = [y for _, y in data[split]]
        assert labels.count("positive") == labels.count("negative")
        # every review carries a sentiment word of its own label, never one of the other
        for text, y in data[split]:
            words, mine = set(text.split()), int(y == "positive")
            vocab = TRAIN_WORDS if split == "train" else TEST_WORDS
            assert words & set(vocab[mine]) and not words & set(vocab[1 - mine])
    # a bag of words learns the training words perfectly and knows none of the test words: near chance
    assert bag_of_words_baseline(data["train"], data["val"]) == 1.0
    assert 0.35 < bag_of_words_baseline(data["train"], data["test"]) < 0.65


def test_instructions_are_held_out_and_deterministic():
    data = inst.make_instructions(60, 20, seed=1)
    assert data == inst.make_instructions(60, 20, seed=1)
    for task in inst.TASKS:
        train, test = data["train"][task], data["test"][task]
        assert len(train) == 60 and len(test) == 20
        assert not {e.input for e in train} & {e.input for e in test}
        for ex in train + test:  # the reference answer scores 1 under the task's own metric
            assert inst.score(ex, " " + ex.output + inst.END + "garbage after the end") == 1.0
            assert inst.score(ex, " nonsense") == 0.0


def test_each_task_says_what_it_means():
    rng = np.random.default_rng(0)
    ner = [inst.ner_example(rng) for _ in range(200)]
    assert all(e.output.startswith("people: ") and "; places: " in e.output for e in ner)
    assert any("none" in e.output for e in ner)
    for e in ner:  # every named person occurs in the sentence
        for name in e.output.split(";")[0][len("people: "):].split(", "):
            assert name == "none" or name in e.input
    summaries = [inst.summarise_example(rng) for _ in range(200)]
    moved = [e for e in summaries if "busy, what about" in e.input]
    assert moved and all(e.output.endswith(e.input.split("what about ")[1].split("?")[0] + ".") for e in moved)
    py = [inst.python_example(rng) for _ in range(100)]
    assert all(isinstance(evaluate(e.output, e.table), (int, float)) for e in py)


def test_the_prompt_is_masked_out_of_the_loss():
    tok = CharTokenizer().train("".join(chr(c) for c in range(32, 127)) + "\n")
    ex = inst.Instruction("sentiment", "great plot", "positive")
    ids, targets = inst.tuning_sequence(ex, tok)
    text = inst.prompt_for(ex).text + " positive\n"
    assert tok.decode(ids) == text[:-1] and len(ids) == len(targets)
    learned = [t for t in targets if t != -100]
    assert tok.decode(learned) == " positive\n"  # only the response (and its END) is a target
    assert targets[: len(tok.encode(inst.prompt_for(ex).text)) - 1] == [-100] * (len(tok.encode(
        inst.prompt_for(ex).text)) - 1)
    x, y, lengths = inst.tuning_arrays([ex, inst.Instruction("sentiment", "dull", "negative")], tok, 200)
    assert x.shape == y.shape and (y[1, lengths[1]:] == -100).all() and lengths[0] == len(ids)
    with pytest.raises(ValueError, match="window"):
        inst.tuning_arrays([ex], tok, 10)


def test_the_evaluator_runs_only_the_whitelist():
    table = {"price": [3, 5, 10], "qty": [1, 2, 4]}
    assert evaluate("sum(price) / len(price)", table) == 6.0
    assert evaluate("max(price) - min(qty) * 2", table) == 8
    assert evaluate("sorted(qty)[-1]", table) == 4
    assert execution_match("sum(price) / len(qty)", "sum(price) / len(price)", table)  # same value counts
    assert not execution_match("sum(qty)", "sum(price)", table)
    for bad in ("__import__('os').system('true')", "price.append(1)", "open('x')", "[p for p in price]",
                "lambda: 1", "sum(price, start=0)", "globals()", "x", "True + 1", "(1).__class__"):
        with pytest.raises(UnsafeExpression):
            evaluate(bad, table)
        assert not execution_match(bad, "sum(price)", table)
    for nonsense in ("len(3)", "price + 1", "1 / 0", "sum(price", "sorted(price)", "qty[7]", "x" * 300):
        assert not execution_match(nonsense, "sum(price)", table)
    evaluate("price", table).append(99)
    assert table["price"] == [3, 5, 10]  # the table is never changed
