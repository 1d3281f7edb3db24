"""Prompts from parts (minitx.prompt), the context-window policies, and the two commands that share them."""
import json

import numpy as np
import pytest

from minitx.cli import main
from minitx.prompt import (PromptTemplate, PromptTooLong, TEMPLATES, build_prompt, fit_prompt, load_prompt_spec,
                           load_template, parse_example)
from minitx.tokenizer.word import WordTokenizer
from minitx.datasets import icl

SENT = TEMPLATES["sentiment"]
TOK = icl.tokenizer()
EXAMPLES = [("great plot lovely.", "tiger"), ("dull cast boring.", "lemon"), ("warm music clever.", "tiger")]


class Chars:
    """One token per character (a tokenizer whose counts are easy to reason about)."""

    def encode(self, text):
        return [ord(c) for c in text]

    def decode(self, ids):
        return "".join(map(chr, ids))


def test_zero_one_few_shot_text():
    assert build_prompt(SENT, "superb film warm.").text == "Classify each review.\nReview: superb film warm. Sentiment:"
    one = build_prompt(SENT, "superb film warm.", EXAMPLES[:1])
    assert one.text == ("Classify each review.\nReview: great plot lovely. Sentiment: tiger\n"
                        "Review: superb film warm. Sentiment:")
    assert one.shots == 1 and build_prompt(SENT, "x", EXAMPLES).shots == 3
    assert build_prompt(SENT, "q", instruction="").text == "Review: q Sentiment:"
    assert build_prompt(SENT, "q", [{"input": "a", "output": "b"}], instruction="Do it.").text == \
        "Do it.\nReview: a Sentiment: b\nReview: q Sentiment:"


def test_templates_are_data(tmp_path):
    t = PromptTemplate(instruction="Sum.", input_label="In", output_indicator="=", example_format="{input} = {output}",
                       query_format="{input} =", separator=" | ", name="sums")
    assert PromptTemplate.from_dict(json.loads(json.dumps(t.to_dict()))) == t
    assert build_prompt(t, "3+3", [("1+1", "2")]).text == "Sum. | 1+1 = 2 | 3+3 ="
    path = tmp_path / "sums.json"
    path.write_text(json.dumps({k: v for k, v in t.to_dict().items() if k != "name"}))
    assert load_template(str(path)) == t and load_template(str(path)).name == "sums"
    assert load_template("qa") is TEMPLATES["qa"]


NAMING = PromptTemplate(instruction="Classify each review as {labels}.", input_label="Review:", output_indicator="",
                        example_format="{input_label} {input} {output}", query_format="{input_label} {input}")


def test_the_instruction_names_the_labels():
    p = build_prompt(NAMING, "film lovely", [("plot superb", "tiger")], labels=("lemon", "tiger"))
    assert p.text == "Classify each review as lemon or tiger.\nReview: plot superb tiger\nReview: film lovely"
    assert p.instruction == "Classify each review as lemon or tiger." and p.labels == ("lemon", "tiger")
    assert build_prompt(NAMING, "q", labels=["a", "b", "c"]).text.startswith("Classify each review as a or b or c.")
    own = build_prompt(NAMING, "q", labels=("x", "y"), instruction="Pick {labels}; {{braces}} stay.")
    assert own.text == "Pick x or y; {braces} stay.\nReview: q"
    semi = PromptTemplate(instruction="One of: {labels}.", label_join=", ")
    assert build_prompt(semi, "q", labels=("a", "b")).text.startswith("One of: a, b.")
    assert PromptTemplate.from_dict(json.loads(json.dumps(semi.to_dict()))) == semi  # label_join is data too
    words = WordTokenizer(icl.VOCAB)
    long = build_prompt(NAMING, "film lovely", [("plot superb", "tiger")] * 12, labels=("lemon", "tiger"))
    fitted = fit_prompt(long, words, 40, overflow="drop-examples")  # 9 + 12 * 6 + 4 tokens: 4 examples fit
    assert fitted.text.startswith("Classify each review as lemon or tiger.\n") and fitted.labels == ("lemon", "tiger")
    assert fitted.text == build_prompt(NAMING, "film lovely", [("plot superb", "tiger")] * 4,
                                       labels=("lemon", "tiger")).text and fitted.dropped_examples == 8


@pytest.mark.parametrize("kwargs, match", [
    ({"template": NAMING}, "labels: missing, expected the candidate answers"),
    ({"template": "sentiment", "labels": ("a", "b")}, "has no \\{labels\\} field"),
    ({"template": NAMING, "labels": ("a", "a")}, "expected two or more distinct"),
    ({"template": NAMING, "labels": ("a",)}, "expected two or more distinct"),
    ({"template": NAMING, "labels": "ab"}, "expected two or more distinct"),
    ({"template": "sentiment", "instruction": "Use {label}."}, "got fields \\['label'\\]"),
])
def test_bad_labels_are_named(kwargs, match):
    template = kwargs.pop("template")
    with pytest.raises(ValueError, match=match):
        build_prompt(template, "q", **kwargs)


@pytest.mark.parametrize("bad, match", [
    ({"instructions": "x"}, "unknown field 'instructions'"),
    ({"instruction": "Say {answer}."}, "instruction: got fields \\['answer'\\]"),
    ({"example_format": "{input}"}, "example_format: got fields \\['input'\\]"),
    ({"query_format": "{input} {output}"}, "query_format"),
    ({"query_format": "{input"}, "not a format string"),
    ({"separator": 3}, "separator: got int, expected str"),
])
def test_bad_templates(bad, match):
    with pytest.raises(ValueError, match=match):
        PromptTemplate.from_dict(bad)


def test_unknown_template_name():
    with pytest.raises(ValueError, match="unknown name, expected one of sentiment, review-label, qa, plain"):
        load_template("sentimnet")


def test_fit_within_window():
    p = fit_prompt(build_prompt(SENT, "superb film warm.", EXAMPLES), TOK, 95)
    assert p.ids == TOK.encode(p.text) and p.n_tokens == 5 + 3 * 10 + 8 and p.window == 95  # instruction, 3 lines, the query
    assert p.dropped_examples == 0 and p.truncated_tokens == 0


def test_overflow_error_names_both_counts():
    with pytest.raises(PromptTooLong, match="prompt: 43 tokens, but the context window holds 30; expected at most 30"):
        fit_prompt(build_prompt(SENT, "superb film warm.", EXAMPLES), TOK, 30)
    with pytest.raises(PromptTooLong, match="holds 40 \\(5 kept free"):
        fit_prompt(build_prompt(SENT, "superb film warm.", EXAMPLES), TOK, 40, reserve=5)


def test_overflow_drop_examples_drops_the_oldest():
    p = fit_prompt(build_prompt(SENT, "superb film warm.", EXAMPLES), TOK, 30, overflow="drop-examples")
    assert p.dropped_examples == 2 and p.examples == EXAMPLES[2:]  # 43 tokens, 10 per example: the first two go
    assert p.text == build_prompt(SENT, "superb film warm.", EXAMPLES[2:]).text and p.n_tokens == 23
    with pytest.raises(PromptTooLong, match="still 13 with all 3 examples dropped"):
        fit_prompt(build_prompt(SENT, "superb film warm.", EXAMPLES), TOK, 12, overflow="drop-examples")
    with pytest.raises(PromptTooLong, match="plain text has no examples"):
        fit_prompt("abcdef", Chars(), 3, overflow="drop-examples")


def test_overflow_truncate_left_keeps_the_last_tokens():
    p = fit_prompt(build_prompt(SENT, "superb film warm.", EXAMPLES), TOK, 30, overflow="truncate-left")
    full = TOK.encode(build_prompt(SENT, "superb film warm.", EXAMPLES).text)
    assert p.ids == full[-30:] and p.truncated_tokens == 13 and p.text == TOK.decode(full[-30:])
    assert fit_prompt("abcdef", Chars(), 4, overflow="truncate-left").text == "cdef"


@pytest.mark.parametrize("kwargs, match", [
    ({"overflow": "drop"}, "overflow: got 'drop', expected one of error, drop-examples, truncate-left"),
    ({"window": 0}, "window: got 0"), ({"reserve": 95}, "reserve: got 95")])
def test_fit_bad_arguments(kwargs, match):
    args = {"window": 95, **kwargs}
    with pytest.raises(ValueError, match=match):
        fit_prompt("Review", TOK, args.pop("window"), **args)


def test_unknown_word_is_named():
    with pytest.raises(ValueError, match="word 'splendid' is not in"):
        fit_prompt(build_prompt(SENT, "splendid film warm."), TOK, 95)


def test_parse_example_and_spec(tmp_path):
    assert parse_example("great plot => tiger") == ("great plot", "tiger")
    assert parse_example("a => b => c") == ("a => b", "c")  # the last arrow separates
    with pytest.raises(ValueError, match="expected INPUT=>OUTPUT"):
        parse_example("no arrow")
    with pytest.raises(ValueError, match="non-empty"):
        parse_example("x =>")
    bad = tmp_path / "p.json"
    bad.write_text('{"query": "x", "shots": 2}')
    with pytest.raises(ValueError, match="expected an object with only"):
        load_prompt_spec(bad)


def test_word_tokenizer_round_trip_and_errors():
    text = "Classify each review.\nReview: great plot lovely. Sentiment: tiger\n"
    assert TOK.decode(TOK.encode(text)) == text
    with pytest.raises(ValueError, match="appears twice"):
        WordTokenizer(["a", "a"])
    with pytest.raises(ValueError, match="token id: got 999"):
        TOK.decode([999])


# --------------------------------------------------------------------------
# the commands
# --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def word_model(tmp_path_factory):
    """A tiny GPT over the ICL task's words (one step), saved as a Trainer checkpoint (what generate loads)."""
    from minitx.models import GPT, GPTConfig
    from minitx.train.config import TrainConfig
    from minitx.train.lm import gpt_meta
    from minitx.train.trainer import Trainer

    out = tmp_path_factory.mktemp("prompt") / "run"
    model = GPT(GPTConfig(vocab_size=len(icl.VOCAB), block_size=40, n_layer=1, n_head=2, n_embd=16), seed=0)
    data = icl.ICLData(40)
    Trainer(model, data, TrainConfig(batch_size=2, max_iters=1, eval_interval=1, eval_iters=1, warmup_iters=0),
            out, meta=gpt_meta(model, data.tokenizer), progress=False, log=lambda *a: None).train()
    return out


def run(argv, capsys):
    rc = main(argv)
    out = capsys.readouterr()
    return rc, out.out, out.err


SENTIMENT_ARGS = ["--template", "sentiment", "--example", "great plot lovely. => tiger",
                  "--example", "dull cast boring. => lemon", "--query", "superb film warm."]


def test_prompt_command_shows_prompt_count_and_window(word_model, capsys):
    rc, out, _ = run(["prompt", "--checkpoint", str(word_model), *SENTIMENT_ARGS], capsys)
    assert rc == 0
    assert build_prompt(SENT, "superb film warm.", EXAMPLES[:2]).text in out
    assert "33 tokens (WordTokenizer) of a 40-token context window (7 left for the completion)" in out
    rc, out, _ = run(["prompt", "--checkpoint", str(word_model), "--json", *SENTIMENT_ARGS], capsys)
    record = json.loads(out)
    assert rc == 0 and record["n_tokens"] == 33 and record["window"] == 40 and record["shots"] == 2
    assert record["ids"] == TOK.encode(record["prompt"])


def test_generate_feeds_the_prompt_the_prompt_command_shows(word_model, capsys, tmp_path):
    rc, out, _ = run(["prompt", "--checkpoint", str(word_model), "--json", *SENTIMENT_ARGS], capsys)
    ids = json.loads(out)["ids"]
    gen = ["generate", "--checkpoint", str(word_model), "--json", "--temperature", "0", "--max-new-tokens", "2"]
    rc, out, err = run(gen + SENTIMENT_ARGS, capsys)
    assert rc == 0, err
    assert json.loads(out)["prompt_ids"] == ids
    spec = tmp_path / "p.json"  # the same prompt as data
    spec.write_text(json.dumps({"template": "sentiment", "examples": [list(e) for e in EXAMPLES[:2]],
                                "query": "superb film warm."}))
    rc, out, err = run(gen + ["--prompt-file", str(spec)], capsys)
    assert rc == 0 and json.loads(out)["prompt_ids"] == ids


def test_prompt_command_names_the_labels(capsys, tmp_path):
    parts = ["--template", "review-label", "--instruction", NAMING.instruction, "--label", "lemon", "--label", "tiger",
             "--example", "plot superb => tiger", "--query", "film lovely"]
    rc, out, _ = run(["prompt", "--window", "200", "--json", *parts], capsys)
    record = json.loads(out)
    assert rc == 0 and record["prompt"] == build_prompt(NAMING, "film lovely", [("plot superb", "tiger")],
                                                        labels=("lemon", "tiger")).text
    spec = tmp_path / "p.json"
    spec.write_text(json.dumps({"template": NAMING.to_dict(), "labels": ["lemon", "tiger"],
                                "examples": [["plot superb", "tiger"]], "query": "film lovely"}))
    rc, out, _ = run(["prompt", "--window", "200", "--json", "--prompt-file", str(spec)], capsys)
    assert rc == 0 and json.loads(out)["ids"] == record["ids"]


def test_generate_overflow_policies(word_model, capsys):
    four = EXAMPLES + [("weak pace stale.", "lemon")]  # 53 tokens in a 40-token window
    parts = ["--template", "sentiment", *[a for e in four for a in ("--example", f"{e[0]} => {e[1]}")],
             "--query", "superb film warm."]
    gen = ["generate", "--checkpoint", str(word_model), "--json", "--temperature", "0", "--max-new-tokens", "1"]
    rc, _, err = run(gen + parts, capsys)
    assert rc == 2 and err.count("\n") == 1
    assert "prompt: 53 tokens, but the context window holds 40; expected at most 40" in err
    rc, out, err = run(gen + parts + ["--overflow", "drop-examples"], capsys)
    assert rc == 0 and json.loads(out)["prompt_ids"] == TOK.encode(build_prompt(SENT, "superb film warm.",
                                                                                four[2:]).text)
    rc, out, err = run(gen + parts + ["--overflow", "truncate-left"], capsys)
    assert rc == 0 and len(json.loads(out)["prompt_ids"]) == 40
    rc, _, err = run(gen + ["--prompt", "Review: awful", "--query", "x"], capsys)
    assert rc == 2 and "--prompt with --query" in err


@pytest.mark.parametrize("argv, match", [
    (["prompt", "--window", "20", "--template", "qa", "--example", "2+2 => 4", "--query", "3+3"],
     "prompt: 43 tokens, but the context window holds 20"),
    (["prompt", "--window", "40", "--example", "2+2", "--query", "3+3"], "expected INPUT=>OUTPUT"),
    (["prompt", "--window", "40", "--template", "nope", "--query", "3"], "template 'nope': unknown name"),
    (["prompt", "--window", "40", "--template", "missing.json", "--query", "3"], "no such file"),
    (["prompt", "--window", "40", "--example", "a => b"], "--query: missing"),
    (["prompt", "--template", "qa", "--query", "3"], "--window: missing"),
    (["prompt", "--window", "40", "--prompt", "hi", "--query", "3"], "--prompt with --query"),
    (["prompt", "--window", "0", "--prompt", "hi"], "--window: got 0"),
    (["prompt", "--window", "9", "--prompt-file", "nowhere.txt"], "cannot read it"),
])
def test_bad_input_is_one_line_exit_2(argv, match, capsys):
    rc, _, err = run(argv, capsys)
    assert rc == 2 and match in err and err.count("\n") == 1, err
