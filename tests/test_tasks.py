"""Task training loops and the task CLI: tiny runs that must learn something,
checkpoints that load, and one-line errors (exit 2) for bad input."""
from __future__ import annotations

import json

import numpy as np
import pytest

from minitx import cli as minitx_cli
from minitx.datasets import make_ner, make_sentiment, make_translation, write_tsv
from minitx.tasks import Tagger, TextClassifier, Translator, load_task
from minitx.train.config import TrainConfig

QUIET = dict(progress=False, log=lambda s: None)


def cfg(iters, eval_interval=None, **kw):
    return TrainConfig(max_iters=iters, eval_interval=eval_interval or iters, batch_size=kw.pop("batch_size", 32), lr=3e-3,
                       min_lr=3e-4, warmup_iters=5, weight_decay=0.0, beta2=0.98, seed=0, **kw)


def test_classifier_learns_saves_and_loads(tmp_path):
    data = make_sentiment(400, 100, 100, seed=1)
    # a trivial sub-task first: single clauses without negation are learnable in a few dozen steps
    easy = [(t, y) for t, y in data["train"] if "," not in t and " not " not in t and " never " not in t
            and " and " not in t]
    clf = TextClassifier.fit(easy, easy[:50], cfg(60), preset="enc-test", out_dir=tmp_path, **QUIET)
    assert clf.evaluate(easy[:50])["accuracy"] >= 0.9
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["iter"] == 60
    again = load_task(tmp_path)  # the run folder: its best/ model
    assert isinstance(again, TextClassifier)
    np.testing.assert_array_equal(again.predict_proba([t for t, _ in easy[:20]]),
                                  clf.predict_proba([t for t, _ in easy[:20]]))


def test_tagger_learns(tmp_path):
    data = make_ner(300, 60, 60, seed=2)
    tagger = Tagger.fit(data["train"], data["val"], cfg(60), preset="enc-test", out_dir=tmp_path, **QUIET)
    assert tagger.evaluate(data["val"])["f1"] > 0.3
    assert Tagger.load(tmp_path).predict([["maria", "visited", "paris"]])[0][0] in tagger.tags.labels


def test_translator_learns_and_decodes_every_way(tmp_path):
    data = make_translation(400, 40, 40, seed=3)
    tr = Translator.fit(data["train"], data["val"], cfg(80, 20, batch_size=32), preset="s2s-test",
                        max_len=24, out_dir=tmp_path, eval_sentences=20, **QUIET)
    assert tr.history[-1]["train_loss"] < tr.history[1]["train_loss"] - 0.5  # [0] is the untrained model
    src = [s for s, _ in data["test"][:4]]
    greedy, beam1 = tr.translate(src), tr.translate(src, beam=1)
    assert greedy == beam1
    assert len(tr.translate(src, beam=3)) == 4
    assert tr.translate(src, temperature=1.0, seed=0) == tr.translate(src, temperature=1.0, seed=0)
    assert Translator.load(tmp_path).translate(src) == greedy  # the run folder: its best/ model
    shared = Translator.fit(data["train"][:100], data["val"], cfg(2), preset="s2s-test", max_len=24,
                            share_embeddings=True, **QUIET)
    assert shared.src_vocab is shared.tgt_vocab


# ---------------------------------------------------------------- CLI
def run_cli(monkeypatch, argv):
    """Run through minitx's real entry point."""
    return minitx_cli.main(argv)


TINY = ["--preset", "enc-test", "--max-iters", "3", "--eval-interval", "3", "--batch-size", "8", "--no-progress"]


def test_cli_classifier_roundtrip_on_tsv(tmp_path, monkeypatch, capsys):
    rows = [("positive", "great plot"), ("negative", "dull plot"), ("positive", "not bad at all"),
            ("negative", "not good")] * 5
    write_tsv(tmp_path / "train.tsv", rows)
    write_tsv(tmp_path / "test.tsv", rows[:4])
    out = tmp_path / "run"
    assert run_cli(monkeypatch, ["train-classifier", "--train", str(tmp_path / "train.tsv"), "--test",
                                 str(tmp_path / "test.tsv"), "--out", str(out), *TINY]) == 0
    assert "bag-of-words" in capsys.readouterr().out
    assert run_cli(monkeypatch, ["classify", "--checkpoint", str(out / "ckpt"), "great plot", "dull"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 2 and printed[0].split("\t")[0] in ("positive", "negative")


def test_cli_tagger_and_translator_on_generated_data(tmp_path, monkeypatch, capsys):
    assert run_cli(monkeypatch, ["train-tagger", "--n-train", "60", "--out", str(tmp_path / "ner"), *TINY]) == 0
    assert "test: f1" in capsys.readouterr().out
    assert run_cli(monkeypatch, ["tag", "--checkpoint", str(tmp_path / "ner" / "ckpt"), "maria visited paris"]) == 0
    assert capsys.readouterr().out.count("/") == 3
    tiny_s2s = ["--preset", "s2s-test", "--block-size", "24", "--max-iters", "3", "--eval-interval", "3",
                "--batch-size", "8", "--no-progress", "--eval-beam", "2"]
    assert run_cli(monkeypatch, ["train-translator", "--n-train", "60", "--out", str(tmp_path / "tr"),
                                 *tiny_s2s]) == 0
    assert "test (beam 2): bleu" in capsys.readouterr().out
    ckpt = str(tmp_path / "tr" / "ckpt")
    for extra in ([], ["--beam", "3"], ["--temperature", "0.8", "--top-k", "5", "--seed", "1"]):
        assert run_cli(monkeypatch, ["translate", "--checkpoint", ckpt, "the red cat sees a dog", *extra]) == 0


@pytest.mark.parametrize("case", ["unknown_label", "swapped_columns", "malformed", "empty_source", "tag_count", "bad_beam",
                                  "wrong_task", "missing_ckpt", "no_input"])
def test_cli_bad_input_is_one_line_exit_2(case, tmp_path, monkeypatch, capsys):
    good = tmp_path / "good.tsv"
    write_tsv(good, [("positive", "great plot"), ("negative", "dull plot")] * 3)
    bad = tmp_path / "bad.tsv"
    ckpt = tmp_path / "clf"
    if case in ("bad_beam", "wrong_task", "no_input"):
        assert run_cli(monkeypatch, ["train-classifier", "--train", str(good), "--out", str(ckpt), *TINY]) == 0
        capsys.readouterr()
    if case == "unknown_label":
        write_tsv(bad, [("postive", "great plot")])
        argv = ["train-classifier", "--train", str(good), "--val", str(bad), "--out", str(tmp_path / "o"), *TINY]
        expect = "unknown label 'postive'"
    elif case == "swapped_columns":
        write_tsv(bad, [(f"review number {i}", "positive") for i in range(10)])
        argv = ["train-classifier", "--train", str(bad), "--out", str(tmp_path / "o"), *TINY]
        expect = "is the file text<TAB>label?"
    elif case == "malformed":
        bad.write_text("positive\tgreat plot\njust one field\n")
        argv = ["train-classifier", "--train", str(bad), "--out", str(tmp_path / "o"), *TINY]
        expect = "bad.tsv:2: got 1 tab-separated field(s), expected 2"
    elif case == "empty_source":
        bad.write_text("the cat\tla mira\n \tlo kan\n")  # a blank source field
        argv = ["train-translator", "--train", str(bad), "--out", str(tmp_path / "o"), *TINY]
        expect = "bad.tsv:2: empty field"
    elif case == "tag_count":
        write_tsv(bad, [("maria visited paris", "B-PER O"), ("john left", "B-PER O")])
        argv = ["train-tagger", "--train", str(bad), "--out", str(tmp_path / "o"), *TINY]
        expect = "3 words but 2 tags"
    elif case == "bad_beam":
        argv = ["translate", "--checkpoint", str(ckpt / "ckpt"), "--beam", "-1", "hello"]
        expect = "--beam: got -1"
    elif case == "wrong_task":
        argv = ["translate", "--checkpoint", str(ckpt), "hello"]
        expect = "holds a text classifier (written by minitx train-classifier), expected a translator"
    elif case == "missing_ckpt":
        argv = ["classify", "--checkpoint", str(tmp_path / "nowhere"), "hello"]
        expect = "nowhere"
    else:
        argv = ["classify", "--checkpoint", str(ckpt / "ckpt")]
        expect = "no input: expected TEXT arguments or --input FILE"
    assert run_cli(monkeypatch, argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert expect in err, err


def test_translator_rejects_empty_source_sentence(tmp_path):
    data = make_translation(60, 10, 10, seed=4)
    tr = Translator.fit(data["train"], data["val"], cfg(1), preset="s2s-test", max_len=24, **QUIET)
    with pytest.raises(ValueError, match="source 2: empty source"):
        tr.translate(["the cat sees a dog", "   "])


def test_cli_task_run_folder_is_never_overwritten_silently(tmp_path, monkeypatch, capsys):
    """A second train-classifier into the same --out refuses and leaves every byte; --resume continues it."""
    good = tmp_path / "good.tsv"
    write_tsv(good, [("positive", "great plot"), ("negative", "dull plot")] * 6)
    out = tmp_path / "clf"
    assert run_cli(monkeypatch, ["train-classifier", "--train", str(good), "--out", str(out), *TINY]) == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert run_cli(monkeypatch, ["train-classifier", "--train", str(good), "--out", str(out), *TINY]) == 2
    err = capsys.readouterr().err
    assert "--resume" in err and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert before == {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    more = [a if a != "3" else "6" for a in TINY if a != "--preset" and a != "enc-test"]
    assert run_cli(monkeypatch, ["train-classifier", "--train", str(good), "--out", str(out), "--resume",
                                 *more]) == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in records] == [0, 3, 6]
    assert run_cli(monkeypatch, ["train-classifier", "--train", str(good), "--out", str(out), "--overwrite",
                                 *TINY]) == 0
    assert [json.loads(line)["iter"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [0, 3]


def test_cli_task_commands_say_what_they_train_and_what_to_try_next(tmp_path, monkeypatch, capsys):
    tiny_s2s = ["--preset", "s2s-test", "--block-size", "24", "--max-iters", "2", "--eval-interval", "2",
                "--batch-size", "8", "--no-progress", "--eval-beam", "0"]
    out = tmp_path / "tr"
    assert run_cli(monkeypatch, ["train-translator", "--n-train", "60", "--out", str(out), *tiny_s2s]) == 0
    printed = capsys.readouterr().out
    first = printed.splitlines()[0]
    assert first.startswith("train-translator: model s2s-test") and "Tolan, a made-up language" in first
    assert f"next: minitx translate --checkpoint {out}" in printed
    assert run_cli(monkeypatch, ["translate", "--checkpoint", str(out), "the red cat sees a zebra qwerty"]) == 0
    err = capsys.readouterr().err
    assert "2 word(s) the model never saw" in err and "qwerty, zebra" in err
