"""``minitx tokenizer train`` / ``encode``: results, and one-line errors with exit code 2."""
import io
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from minitx.cli import main
from minitx.tokenizer import BPETokenizer

ROOT = Path(__file__).resolve().parent.parent
_rng = random.Random(0)
CORPUS = "the cat sat on the mat. the dog sat on the log. " * 40 + "Émile's café 🤖\n" + " ".join(
    "".join(_rng.choice("etaoinshrdlucmfw") for _ in range(_rng.randint(2, 8))) for _ in range(3000)
)


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(CORPUS, encoding="utf-8")
    return path


@pytest.fixture
def model(tmp_path, corpus):
    out = tmp_path / "tok.model"
    assert main(["tokenizer", "train", "--input", str(corpus), "--vocab-size", "300", "--output", str(out), "--quiet"]) == 0
    return out


def test_train_writes_model_and_listing(model):
    assert model.read_text(encoding="utf-8").startswith("minitx-bpe 1")
    assert Path(str(model) + ".vocab").exists()
    tok = BPETokenizer.load(model)
    assert tok.vocab_size == 300


def test_encode_ids_and_show(model, monkeypatch, capsys):
    tok = BPETokenizer.load(model)
    monkeypatch.setattr(sys, "stdin", io.StringIO("the cat sat"))
    assert main(["tokenizer", "encode", "--model", str(model)]) == 0
    assert capsys.readouterr().out.split() == [str(i) for i in tok.encode("the cat sat")]
    monkeypatch.setattr(sys, "stdin", io.StringIO("the cat sat"))
    assert main(["tokenizer", "encode", "--model", str(model), "--show"]) == 0
    assert capsys.readouterr().out.strip() == tok.show("the cat sat")


def test_train_with_special_tokens(tmp_path, corpus, monkeypatch, capsys):
    out = tmp_path / "s.model"
    argv = ["tokenizer", "train", "--input", str(corpus), "--vocab-size", "300", "--output", str(out), "--quiet"]
    assert main(argv + ["--special", "<|endoftext|>", "--pattern", "gpt2"]) == 0
    tok = BPETokenizer.load(out)
    assert tok.special_tokens == {"<|endoftext|>": 299}
    monkeypatch.setattr(sys, "stdin", io.StringIO("a<|endoftext|>"))
    assert main(["tokenizer", "encode", "--model", str(out), "--allowed-special", "all"]) == 0
    assert capsys.readouterr().out.split()[-1] == "299"
    monkeypatch.setattr(sys, "stdin", io.StringIO("a<|endoftext|>"))
    assert main(["tokenizer", "encode", "--model", str(out)]) == 2
    assert "special token" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--input", "{missing}", "--vocab-size", "300", "--output", "{out}"], "--input"),
        (["train", "--input", "{corpus}", "--vocab-size", "200", "--output", "{out}"], "--vocab-size: got 200"),
        (["train", "--input", "{corpus}", "--vocab-size", "256", "--output", "{out}", "--special", "<s>"], "at least 257"),
        (["train", "--input", "{corpus}", "--vocab-size", "300", "--output", "{out}", "--pattern", "(oops"], "pattern"),
        (["train", "--input", "{corpus}", "--vocab-size", "300", "--output", "{tmp}/no/such/dir/x.model"], "--output"),
        (["encode", "--model", "{missing}"], "--model"),
        (["encode", "--model", "{corrupt}"], "line"),
        (["encode", "--model", "{corpus}"], "not a minitx tokenizer file"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, corpus, model, argv, message, monkeypatch, capsys):
    corrupt = tmp_path / "corrupt.model"
    corrupt.write_text(model.read_text(encoding="utf-8").replace("merges ", "merges x"), encoding="utf-8")
    fill = dict(missing=tmp_path / "nope.txt", out=tmp_path / "o.model", corpus=corpus, corrupt=corrupt, tmp=tmp_path)
    argv = ["tokenizer"] + [a.format(**fill) for a in argv] + (["--quiet"] if argv[0] == "train" else [])
    monkeypatch.setattr(sys, "stdin", io.StringIO("hello"))
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("minitx tokenizer: error:") and message in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err


def test_failed_training_keeps_existing_model(tmp_path, model):
    before = model.read_bytes()
    assert main(["tokenizer", "train", "--input", str(tmp_path / "nope"), "--vocab-size", "300", "--output", str(model)]) == 2
    assert model.read_bytes() == before


def test_an_existing_model_is_replaced_only_when_told(tmp_path, corpus, model, capsys):
    before = model.read_bytes()
    argv = ["tokenizer", "train", "--input", str(corpus), "--vocab-size", "280", "--output", str(model), "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert model.read_bytes() == before
    assert main(argv + ["--overwrite"]) == 0
    assert BPETokenizer.load(model).vocab_size == 280


def test_subprocess_exit_code_and_no_traceback(tmp_path, model):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    bad = tmp_path / "bad.model"
    bad.write_text("minitx-bpe 1\npattern 12\n", encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "minitx", "tokenizer", "encode", "--model", str(bad)],
        input="hi", capture_output=True, text=True, env=env, timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.startswith("minitx tokenizer: error:")
    proc = subprocess.run(
        [sys.executable, "-m", "minitx", "tokenizer", "encode", "--model", str(model), "--show"],
        input="the cat", capture_output=True, text=True, env=env, timeout=60,
    )
    assert proc.returncode == 0 and proc.stdout.rstrip("\n").endswith("[ cat]")


def test_train_without_input_uses_the_embedded_corpus(tmp_path, capsys):
    out = tmp_path / "tok.model"
    assert main(["tokenizer", "train", "--vocab-size", "300", "--output", str(out), "--quiet"]) == 0
    assert out.is_file() and "trained" in capsys.readouterr().err


def test_a_short_vocabulary_says_why_it_stopped(tmp_path, capsys):
    text = tmp_path / "small.txt"
    text.write_text("abcdefgh ijklmnop", encoding="utf-8")
    out = tmp_path / "tok.model"
    assert main(["tokenizer", "train", "--input", str(text), "--vocab-size", "4096", "--output", str(out),
                 "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "stopped at" in err and "of the 4096 asked for" in err and "occurs twice" in err
