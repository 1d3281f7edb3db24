"""`minitx train` / `minitx generate` end to end, and every bad input of the issue's item 9:
one line on stderr, exit status 2, no traceback, and no good checkpoint overwritten."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from minitx.cli import main

ROOT = Path(__file__).resolve().parent.parent
TEXT = "the quick brown fox jumps over the lazy dog.\n" * 60
TINY = ["--n-layer", "1", "--n-head", "2", "--d-model", "16", "--block-size", "8", "--batch-size", "4",
        "--eval-iters", "1", "--sample-tokens", "0", "--no-progress"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny trained checkpoint (4 iterations) and its data file."""
    root = tmp_path_factory.mktemp("cli")
    data = root / "data.txt"
    data.write_text(TEXT, encoding="utf-8")
    rc = main(["train", "--data", str(data), "--out", str(root / "out"), "--max-iters", "4", "--eval-interval", "2",
               *TINY])
    assert rc == 0
    return root, data, root / "out" / "ckpt"


def snapshot(ckpt):
    return {f.name: f.read_bytes() for f in Path(ckpt).iterdir()}


def run_main(argv, capsys):
    rc = main(argv)
    err = capsys.readouterr().err
    return rc, err


def assert_one_line_error(rc, err, fragment):
    assert rc == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err and fragment in lines[0], lines[0]


# --------------------------------------------------------------------------
# the happy path
# --------------------------------------------------------------------------
def test_train_writes_checkpoint_metrics_and_prints_a_sample(tmp_path, capsys):
    data = tmp_path / "d.txt"
    data.write_text(TEXT, encoding="utf-8")
    rc = main(["train", "--data", str(data), "--out", str(tmp_path / "o"), "--max-iters", "2", "--eval-interval", "1",
               *TINY[:-3], "--sample-tokens", "20", "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0 and "--- sample" in out and "val loss" in out
    records = [json.loads(s) for s in (tmp_path / "o" / "metrics.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in records] == [0, 1, 2]


def test_generate_is_seedable_and_kv_cache_agrees(trained, capsys):
    _, _, ckpt = trained
    base = ["generate", "--checkpoint", str(ckpt), "--prompt", "the ", "--max-new-tokens", "30", "--seed", "3",
            "--top-k", "5", "--top-p", "0.9"]
    outs = []
    for extra in ([], [], ["--no-kv-cache"]):
        assert main(base + extra) == 0
        outs.append(capsys.readouterr().out)
    assert outs[0] == outs[1] == outs[2] and outs[0].startswith("the ")


def test_generate_beam_search(trained, capsys):
    """--beam 1 is greedy decoding; a wider beam prints beam_search_gpt's best continuation."""
    from minitx.beam import beam_search_gpt
    from minitx.train.lm import load_model

    _, _, ckpt = trained
    base = ["generate", "--checkpoint", str(ckpt), "--prompt", "the ", "--max-new-tokens", "4"]
    assert main(base + ["--temperature", "0"]) == 0
    greedy = capsys.readouterr().out
    assert main(base + ["--beam", "1"]) == 0
    assert capsys.readouterr().out == greedy
    assert main(base + ["--beam", "3"]) == 0
    beam3 = capsys.readouterr().out
    model, tokenizer, _ = load_model(ckpt)
    best = beam_search_gpt(model, [tokenizer.encode("the ")], beam_size=3, max_new_tokens=4)[0][0]
    assert beam3 == "the " + tokenizer.decode(best.tokens) + "\n"


def test_resume_continues_to_more_iterations(trained, tmp_path, capsys):
    root, data, ckpt = trained
    out = tmp_path / "o"
    import shutil
    shutil.copytree(ckpt.parent, out)
    assert main(["train", "--out", str(out), "--resume", "--max-iters", "6", "--sample-tokens", "0",
                 "--no-progress"]) == 0
    assert json.loads((out / "ckpt" / "checkpoint.json").read_text())["iter"] == 6


def test_resume_refuses_a_different_architecture(trained, capsys):
    _, _, ckpt = trained
    before = snapshot(ckpt)
    rc, err = run_main(["train", "--out", str(ckpt.parent), "--resume", "--n-layer", "3", "--no-progress"], capsys)
    assert_one_line_error(rc, err, "--n-layer 3")
    assert snapshot(ckpt) == before


# --------------------------------------------------------------------------
# bad input: train
# --------------------------------------------------------------------------
def bad_train_cases(root, data):
    empty = root / "empty.txt"
    empty.write_text("", encoding="utf-8")
    short = root / "short.txt"
    short.write_text("abc", encoding="utf-8")
    return [
        (["--data", str(root / "missing.txt")], "does not exist"),
        (["--data", str(empty)], "is empty"),
        (["--data", str(short)], "expected at least block_size + 1"),
        (["--data", str(data), "--preset", "gpt-huge"], "preset: got 'gpt-huge'"),
        (["--data", str(data), "--d-model", "30", "--n-head", "4"], "n_embd=30 with n_head=4"),
        (["--data", str(data), "--batch-size", "0"], "batch_size: got 0"),
        (["--data", str(data), "--lr", "-1"], "lr: got -1.0"),
        (["--data", str(data), "--dropout", "1.5"], "dropout"),
    ]


@pytest.mark.parametrize("case", range(8))
def test_bad_train_input(trained, case, capsys):
    """Each failing run points --out (with --overwrite) at the good checkpoint: it must survive byte for byte."""
    root, data, ckpt = trained
    argv, fragment = bad_train_cases(root, data)[case]
    before = snapshot(ckpt)
    rc, err = run_main(["train", *argv, "--out", str(ckpt.parent), "--overwrite", "--max-iters", "2",
                        "--no-progress"], capsys)
    assert_one_line_error(rc, err, fragment)
    assert snapshot(ckpt) == before


def test_resume_without_checkpoint(tmp_path, capsys):
    rc, err = run_main(["train", "--out", str(tmp_path / "none"), "--resume", "--no-progress"], capsys)
    assert_one_line_error(rc, err, "holds no checkpoint")


def test_a_second_train_into_a_trained_folder_refuses(trained, capsys):
    """The run folder is left byte-identical, metrics and plot included, and the message names both ways out."""
    root, data, ckpt = trained
    before = {p: p.read_bytes() for p in ckpt.parent.rglob("*") if p.is_file()}
    rc, err = run_main(["train", "--data", str(data), "--out", str(ckpt.parent), "--max-iters", "2", *TINY], capsys)
    assert_one_line_error(rc, err, "already holds a trained run")
    assert "--resume" in err and "--overwrite" in err
    assert {p: p.read_bytes() for p in ckpt.parent.rglob("*") if p.is_file()} == before
    rc, err = run_main(["train", "--out", str(ckpt.parent), "--resume", "--overwrite"], capsys)
    assert_one_line_error(rc, err, "expected one of them")


def test_overwrite_replaces_the_run_at_its_first_checkpoint(trained, tmp_path, capsys):
    import shutil

    root, data, ckpt = trained
    out = tmp_path / "o"
    shutil.copytree(ckpt.parent, out)
    assert main(["train", "--data", str(data), "--out", str(out), "--overwrite", "--max-iters", "3",
                 "--eval-interval", "3", "--seed", "9", *TINY]) == 0
    records = [json.loads(s) for s in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in records] == [0, 3]  # the old run's records are gone
    meta = json.loads((out / "ckpt" / "checkpoint.json").read_text())
    assert meta["iter"] == 3 and meta["train"]["seed"] == 9


def test_generate_accepts_the_run_folder(trained, capsys):
    _, _, ckpt = trained
    outs = []
    for folder in (ckpt.parent, ckpt):
        assert main(["generate", "--checkpoint", str(folder), "--prompt", "the ", "--max-new-tokens", "8",
                     "--temperature", "0"]) == 0
        outs.append(capsys.readouterr().out)
    assert outs[0] == outs[1]


def test_generate_names_a_checkpoint_of_another_kind(tmp_path, capsys):
    from minitx.datasets import make_sentiment
    from minitx.tasks import TextClassifier
    from minitx.train.config import TrainConfig

    data = make_sentiment(40, 10, 10)
    clf = TextClassifier.fit(data["train"], data["val"], TrainConfig(max_iters=1, eval_interval=1, batch_size=4),
                             preset="enc-test", out_dir=tmp_path / "clf", progress=False, log=None)
    assert clf is not None
    rc, err = run_main(["generate", "--checkpoint", str(tmp_path / "clf"), "--prompt", "the"], capsys)
    assert_one_line_error(rc, err, "holds a text classifier (written by minitx train-classifier), expected a GPT")


def test_ctrl_c_saves_the_last_iteration_and_resume_continues(tmp_path):
    """A real process, a real SIGINT: the iteration in flight finishes, is saved atomically, and resumes."""
    import signal
    import time

    data = tmp_path / "d.txt"
    data.write_text(TEXT * 20, encoding="utf-8")
    out = tmp_path / "o"
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    argv = [sys.executable, "-m", "minitx", "train", "--data", str(data), "--out", str(out), "--max-iters", "100000",
            "--eval-interval", "50000", "--threads", "1", *TINY[:-1]]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 60
        line = ""
        while "iter 0:" not in line and time.monotonic() < deadline:  # the first evaluation: training has begun
            line = proc.stdout.readline()
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "--resume" in err, err
    saved = json.loads((out / "ckpt" / "checkpoint.json").read_text())["iter"]
    assert saved > 0 and f"iteration {saved} saved" in err
    assert main(["train", "--out", str(out), "--resume", "--max-iters", str(saved + 2), "--sample-tokens", "0",
                 "--no-progress"]) == 0
    assert json.loads((out / "ckpt" / "checkpoint.json").read_text())["iter"] == saved + 2


# --------------------------------------------------------------------------
# bad input: generate
# --------------------------------------------------------------------------
@pytest.mark.parametrize("argv, fragment", [
    (["--prompt", "the ÿ"], "character 'ÿ'"),
    (["--temperature", "-1"], "temperature: got -1.0"),
    (["--top-p", "0"], "top_p: got 0.0"),
    (["--top-p", "1.5"], "top_p: got 1.5"),
    (["--top-k", "0"], "top_k: got 0"),
    (["--max-new-tokens", "-3"], "max_new_tokens: got -3"),
    (["--prompt", ""], "empty prompt"),
    (["--beam", "0"], "--beam: got 0, expected at least 1"),
    (["--beam", "2", "--stop", "x"], "--stop with --beam"),
    (["--beam", "2", "--max-new-tokens", "50"], "block_size"),
])
def test_bad_generate_input(trained, argv, fragment, capsys):
    _, _, ckpt = trained
    rc, err = run_main(["generate", "--checkpoint", str(ckpt), *argv], capsys)
    assert_one_line_error(rc, err, fragment)


def broken_copy(ckpt, tmp_path, how):
    import shutil
    bad = tmp_path / "bad"
    shutil.copytree(ckpt, bad)
    if how == "missing":
        (bad / "optim.safetensors").unlink()
    elif how == "truncated":
        raw = (bad / "model.safetensors").read_bytes()
        (bad / "model.safetensors").write_bytes(raw[: len(raw) // 2])
    elif how == "version":
        meta = json.loads((bad / "checkpoint.json").read_text())
        meta["format_version"] = 99
        (bad / "checkpoint.json").write_text(json.dumps(meta))
    elif how == "kind":
        meta = json.loads((bad / "checkpoint.json").read_text())
        meta["kind"] = "someone-else"
        (bad / "checkpoint.json").write_text(json.dumps(meta))
    elif how == "json":
        (bad / "checkpoint.json").write_text("{not json")
    return bad


@pytest.mark.parametrize("how, fragment", [
    ("missing", "missing optim.safetensors"),
    ("truncated", "truncated"),
    ("version", "format_version=99"),
    ("kind", "kind 'someone-else'"),
    ("json", "does not parse"),
])
def test_broken_checkpoint(trained, tmp_path, how, fragment, capsys):
    _, _, ckpt = trained
    bad = broken_copy(ckpt, tmp_path, how)
    rc, err = run_main(["generate", "--checkpoint", str(bad), "--prompt", "the"], capsys)
    assert_one_line_error(rc, err, fragment)
    # resuming from it fails the same way and leaves the folder as it was
    before = snapshot(bad)
    out = bad.parent
    bad.rename(out / "ckpt")
    rc, err = run_main(["train", "--out", str(out), "--resume", "--no-progress"], capsys)
    assert_one_line_error(rc, err, fragment)
    assert snapshot(out / "ckpt") == before


# --------------------------------------------------------------------------
# a few through a real process: what a user sees in a terminal
# --------------------------------------------------------------------------
@pytest.mark.parametrize("argv, fragment", [
    (["train", "--data", "/nonexistent/data.txt"], "minitx train: error: data file"),
    (["generate", "--checkpoint", "{ckpt}", "--top-p", "2"], "minitx generate: error: top_p"),
    (["generate", "--checkpoint", "{bad}"], "minitx generate: error: checkpoint"),
])
def test_subprocess_errors(trained, tmp_path, argv, fragment):
    _, _, ckpt = trained
    bad = broken_copy(ckpt, tmp_path, "truncated")
    argv = [a.format(ckpt=ckpt, bad=bad) for a in argv]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-m", "minitx", *argv], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and fragment in proc.stderr


def test_bpe_tokenizer_round_trip(tmp_path, capsys):
    data = tmp_path / "d.txt"
    data.write_text(TEXT, encoding="utf-8")
    out = tmp_path / "o"
    assert main(["train", "--data", str(data), "--tokenizer", "bpe", "--vocab-size", "270", "--out", str(out),
                 "--max-iters", "2", "--eval-interval", "2", *TINY]) == 0
    meta = json.loads((out / "ckpt" / "checkpoint.json").read_text())
    assert meta["tokenizer"]["type"] == "bpe" and meta["config"]["vocab_size"] == 270
    capsys.readouterr()
    assert main(["generate", "--checkpoint", str(out / "ckpt"), "--prompt", "the quick", "--max-new-tokens", "5",
                 "--seed", "0"]) == 0
    assert capsys.readouterr().out.startswith("the quick")


def test_vocab_size_needs_bpe(trained, capsys):
    _, data, _ = trained
    rc, err = run_main(["train", "--data", str(data), "--vocab-size", "300", "--out", "unused", "--no-progress"],
                       capsys)
    assert_one_line_error(rc, err, "--vocab-size")


def test_max_minutes_stops_at_a_checkpoint_that_resumes(tmp_path, capsys):
    data = tmp_path / "d.txt"
    data.write_text(TEXT, encoding="utf-8")
    out = tmp_path / "o"
    assert main(["train", "--data", str(data), "--out", str(out), "--max-iters", "100000", "--eval-interval", "50000",
                 "--max-minutes", "0.02", "--threads", "1", *TINY]) == 0
    printed = capsys.readouterr().out
    saved = json.loads((out / "ckpt" / "checkpoint.json").read_text())["iter"]
    assert 0 < saved < 100000 and f"iteration {saved} of 100000 saved" in printed and "--resume" in printed
    records = [json.loads(s) for s in (out / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["iter"] == saved
    rc, err = run_main(["train", "--data", str(data), "--out", str(tmp_path / "x"), "--max-minutes", "0"], capsys)
    assert_one_line_error(rc, err, "--max-minutes: got 0.0")


def test_interactive_answers_every_line_until_eof(trained, tmp_path):
    """Prompts on stdin, one a line: each answered (a bad one reported, the loop going on), then a clean exit."""
    _, _, ckpt = trained
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-m", "minitx", "generate", "--checkpoint", str(ckpt.parent),
                           "--interactive", "--temperature", "0", "--max-new-tokens", "5"],
                          input="the \nthe ÿ\nthe q\n", capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    answers = [line for line in proc.stdout.splitlines() if line]
    assert len(answers) == 2 and answers[0].startswith("the ") and answers[1].startswith("the q")
    assert "character 'ÿ'" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("preset", ["llama-test", "bloom-test"])
def test_llama_and_bloom_presets_train_generate_and_resume(tmp_path, capsys, preset):
    """The CLI's one decoder, configured by a preset: train, greedy --json equals model generation, resume."""
    from minitx.generate import generate
    from minitx.train.lm import load_model

    data = tmp_path / "d.txt"
    data.write_text(TEXT, encoding="utf-8")
    out = tmp_path / "o"
    assert main(["train", "--data", str(data), "--out", str(out), "--preset", preset, "--max-iters", "2",
                 "--eval-interval", "2", "--batch-size", "4", "--eval-iters", "1", "--sample-tokens", "0",
                 "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["generate", "--checkpoint", str(out), "--prompt", "the ", "--max-new-tokens", "6",
                 "--temperature", "0", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    model, tokenizer, _ = load_model(out / "ckpt")
    assert model.config.positions == ("rope" if preset.startswith("llama") else "alibi")
    ref = generate(model, [tokenizer.encode("the ")], 6, temperature=0)[0, 4:].tolist()
    assert got["completion_ids"] == ref
    assert main(["train", "--out", str(out), "--resume", "--max-iters", "3", "--sample-tokens", "0",
                 "--no-progress"]) == 0
    assert json.loads((out / "ckpt" / "checkpoint.json").read_text())["iter"] == 3
