"""Checkpoints on disk: round trip, atomic replacement, and one-line errors."""
import json
import os

import numpy as np
import pytest

from minitx.nn.module import Parameter
from minitx.optim import AdamW
from minitx.train import checkpoint as ckpt_mod
from minitx.train.checkpoint import (
    FORMAT_VERSION,
    META_FILE,
    MODEL_FILE,
    OPTIM_FILE,
    load_checkpoint,
    save_checkpoint,
)


def make_state(seed):
    rng = np.random.default_rng(seed)
    model = {"wte.weight": rng.standard_normal((16, 8)).astype(np.float32),
             "ln_f.bias": rng.standard_normal(8).astype(np.float32),
             "pos.ids": np.arange(4, dtype=np.int64)}
    optim = {"wte.weight.exp_avg": rng.standard_normal((16, 8)).astype(np.float32)}
    gen = np.random.default_rng(seed)
    gen.random(3)
    meta = {"step": seed, "config": {"n_layer": 2, "n_embd": 8, "dropout": 0.0},
            "tokenizer": {"type": "char", "chars": "abc\n"},
            "rng": gen.bit_generator.state, "loss": np.float32(1.5)}
    return model, optim, meta


def assert_same(loaded, saved):
    model, optim, meta = loaded
    assert sorted(model) == sorted(saved[0]) and sorted(optim) == sorted(saved[1])
    for k in saved[0]:
        assert model[k].dtype == saved[0][k].dtype
        np.testing.assert_array_equal(model[k], saved[0][k])
    for k in saved[1]:
        np.testing.assert_array_equal(optim[k], saved[1][k])
    assert meta["step"] == saved[2]["step"]


def test_round_trip(tmp_path):
    saved = make_state(1)
    d = save_checkpoint(tmp_path / "ckpt", model_state=saved[0], optim_arrays=saved[1], meta=saved[2])
    assert sorted(os.listdir(d)) == sorted([MODEL_FILE, OPTIM_FILE, META_FILE])
    assert sorted(os.listdir(tmp_path)) == ["ckpt"]  # no temporary folders left behind
    loaded = load_checkpoint(d)
    assert_same(loaded, saved)
    meta = loaded[2]
    assert meta["config"] == saved[2]["config"] and meta["tokenizer"] == saved[2]["tokenizer"]
    assert meta["loss"] == 1.5  # a NumPy scalar became a JSON number
    assert "format_version" not in meta and "files" not in meta
    doc = json.loads((d / META_FILE).read_text())
    assert doc["format_version"] == FORMAT_VERSION
    assert doc["files"][MODEL_FILE]["bytes"] == (d / MODEL_FILE).stat().st_size


def test_rng_state_with_128_bit_ints_survives(tmp_path):
    rng = np.random.default_rng(2**100 + 7)
    rng.integers(0, 10, size=5)
    state = rng.bit_generator.state
    assert state["state"]["state"] > 2**64  # really a big integer
    save_checkpoint(tmp_path / "c", model_state={}, optim_arrays={}, meta={"rng": state})
    restored = np.random.default_rng(0)
    restored.bit_generator.state = load_checkpoint(tmp_path / "c")[2]["rng"]
    np.testing.assert_array_equal(restored.random(10), rng.random(10))


def test_optimizer_state_round_trips_through_a_checkpoint(tmp_path):
    rng = np.random.default_rng(0)
    params = [("w", Parameter(rng.standard_normal((4, 3)).astype(np.float32))),
              ("b", Parameter(np.zeros(3, np.float32)))]
    opt = AdamW(params, weight_decay=0.1)
    for _, p in params:
        p.grad[...] = 0.5
    opt.step()
    arrays, ometa = opt.state_dict()
    save_checkpoint(tmp_path / "c", model_state={n: p.data for n, p in params},
                    optim_arrays=arrays, meta={"optim": ometa})
    model, optim_arrays, meta = load_checkpoint(tmp_path / "c")
    opt2 = AdamW([(n, Parameter(model[n].copy())) for n, _ in params], weight_decay=0.1)
    opt2.load_state_dict(optim_arrays, meta["optim"])
    assert opt2.step_count == 1
    np.testing.assert_array_equal(opt2.state["w"]["exp_avg_sq"], opt.state["w"]["exp_avg_sq"])


def test_overwrite_replaces_the_old_checkpoint(tmp_path):
    d = tmp_path / "ckpt"
    save_checkpoint(d, model_state=make_state(1)[0], optim_arrays=make_state(1)[1], meta=make_state(1)[2])
    new = make_state(2)
    save_checkpoint(d, model_state=new[0], optim_arrays=new[1], meta=new[2])
    assert_same(load_checkpoint(d), new)
    assert sorted(os.listdir(tmp_path)) == ["ckpt"]


# ---- a failure at any point leaves the previous checkpoint intact ----------------
@pytest.fixture
def good(tmp_path):
    saved = make_state(1)
    d = save_checkpoint(tmp_path / "ckpt", model_state=saved[0], optim_arrays=saved[1], meta=saved[2])
    return d, saved


def test_safetensors_writer_failing_leaves_old_checkpoint(good, monkeypatch):
    d, saved = good

    def boom(arrays):
        raise RuntimeError("simulated safetensors failure")

    monkeypatch.setattr(ckpt_mod.safetensors_numpy, "save", boom)
    new = make_state(2)
    with pytest.raises(RuntimeError, match="simulated"):
        save_checkpoint(d, model_state=new[0], optim_arrays=new[1], meta=new[2])
    assert_same(load_checkpoint(d), saved)


@pytest.mark.parametrize("fail_on", [MODEL_FILE, OPTIM_FILE, META_FILE])
def test_crash_mid_file_write_leaves_old_checkpoint(good, monkeypatch, fail_on):
    d, saved = good
    real_write = ckpt_mod._write_file

    def half_then_crash(path, data):
        if path.name == fail_on:
            with open(path, "wb") as f:
                f.write(data[: len(data) // 2])  # a partial file, then the "crash"
            raise OSError(28, "No space left on device")
        real_write(path, data)

    monkeypatch.setattr(ckpt_mod, "_write_file", half_then_crash)
    new = make_state(2)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(d, model_state=new[0], optim_arrays=new[1], meta=new[2])
    assert_same(load_checkpoint(d), saved)
    assert sorted(os.listdir(d.parent)) == ["ckpt"]  # the temporary folder was removed
    monkeypatch.undo()
    save_checkpoint(d, model_state=new[0], optim_arrays=new[1], meta=new[2])  # next save works
    assert_same(load_checkpoint(d), new)


def test_crash_between_the_two_renames_is_recovered(good, monkeypatch):
    d, saved = good
    real_replace = os.replace
    calls = []

    def replace(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:  # after ckpt -> .ckpt.old, before .ckpt.tmp -> ckpt
            raise KeyboardInterrupt("killed")
        real_replace(src, dst)

    monkeypatch.setattr(ckpt_mod.os, "replace", replace)
    new = make_state(2)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(d, model_state=new[0], optim_arrays=new[1], meta=new[2])
    monkeypatch.undo()
    assert_same(load_checkpoint(d), saved)  # the old one was put back


def test_hard_crash_between_renames_old_copy_still_loads(good):
    # simulate a process killed after step 4: only .ckpt.old exists
    d, saved = good
    os.replace(d, d.parent / ".ckpt.old")
    assert_same(load_checkpoint(d), saved)
    new = make_state(2)
    save_checkpoint(d, model_state=new[0], optim_arrays=new[1], meta=new[2])  # recovers, then saves
    assert_same(load_checkpoint(d), new)
    assert sorted(os.listdir(d.parent)) == ["ckpt"]


def test_bad_meta_fails_before_touching_disk(good):
    d, saved = good
    with pytest.raises(ValueError, match=r"meta: Out of range float values .*expected JSON types"):
        save_checkpoint(d, model_state={}, optim_arrays={}, meta={"loss": float("nan")})
    with pytest.raises(ValueError, match=r"meta: value of type ndarray is not JSON-able"):
        save_checkpoint(d, model_state={}, optim_arrays={}, meta={"x": np.zeros(2)})
    with pytest.raises(ValueError, match=r"model_state\['w'\]: got list, expected an array"):
        save_checkpoint(d, model_state={"w": [1, 2]}, optim_arrays={}, meta={})
    assert_same(load_checkpoint(d), saved)


# ---- one-line errors on load ------------------------------------------------------
def one_line_error(d):
    with pytest.raises(ValueError) as info:
        load_checkpoint(d)
    msg = str(info.value)
    assert "\n" not in msg and str(d) in msg
    return msg


def test_missing_folder_and_missing_files(good, tmp_path):
    d, _ = good
    assert "does not exist; expected the --out folder of a minitx training command" in one_line_error(tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    assert "is not a folder" in one_line_error(tmp_path / "file")
    for name in (MODEL_FILE, OPTIM_FILE, META_FILE):
        data = (d / name).read_bytes()
        (d / name).unlink()
        assert f"is missing {name}" in one_line_error(d)
        (d / name).write_bytes(data)


@pytest.mark.parametrize("name", [MODEL_FILE, OPTIM_FILE])
def test_truncated_safetensors(good, name):
    d, _ = good
    size = (d / name).stat().st_size
    with open(d / name, "r+b") as f:
        f.truncate(size - 7)  # really cut the file on disk
    assert f"{name} is truncated ({size - 7} bytes, expected {size})" in one_line_error(d)


def test_corrupted_safetensors(good):
    d, _ = good
    raw = bytearray((d / MODEL_FILE).read_bytes())
    raw[-3] ^= 0xFF  # one flipped byte inside the weights
    (d / MODEL_FILE).write_bytes(bytes(raw))
    assert f"{MODEL_FILE} is corrupted" in one_line_error(d)


def test_truncated_safetensors_without_checksums_is_still_caught(good):
    # a hand-made checkpoint.json without the "files" record: safetensors itself objects
    d, _ = good
    doc = json.loads((d / META_FILE).read_text())
    del doc["files"]
    (d / META_FILE).write_text(json.dumps(doc))
    with open(d / OPTIM_FILE, "r+b") as f:
        f.truncate(20)
    assert f"{OPTIM_FILE} is not a valid safetensors file" in one_line_error(d)


def test_json_that_does_not_parse(good):
    d, _ = good
    text = (d / META_FILE).read_text()
    (d / META_FILE).write_text(text[: len(text) // 2])  # truncated JSON
    assert f"{META_FILE} does not parse (line" in one_line_error(d)
    (d / META_FILE).write_bytes(b"\xff\xfe")
    assert "is not UTF-8" in one_line_error(d)
    (d / META_FILE).write_text("[1, 2]")
    assert "holds a list, expected a JSON object" in one_line_error(d)


@pytest.mark.parametrize("version", [FORMAT_VERSION + 1, None, "1"])
def test_incompatible_format_version(good, version):
    d, _ = good
    doc = json.loads((d / META_FILE).read_text())
    if version is None:
        del doc["format_version"]
    else:
        doc["format_version"] = version
    (d / META_FILE).write_text(json.dumps(doc))
    msg = one_line_error(d)
    assert f"format_version={version!r}, expected {FORMAT_VERSION}" in msg
    assert "incompatible minitx version" in msg


@pytest.mark.skipif(os.name == "nt", reason="POSIX file modes")
@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_written_files_follow_the_umask(tmp_path, umask):
    """Checkpoints, tokenizer files and metrics are ordinary files: mode 0666 less the umask, not mkstemp's 0600."""
    from minitx.fileio import atomic_write_text
    from minitx.tokenizer import CharTokenizer

    old = os.umask(umask)
    try:
        save_checkpoint(tmp_path / "ckpt", model_state={"w": np.ones(2, np.float32)}, optim_arrays={}, meta={})
        atomic_write_text(tmp_path / "metrics.jsonl", "{}\n")
        CharTokenizer().train("abc").save(tmp_path / "chars.json")
    finally:
        os.umask(old)
    files = [*(tmp_path / "ckpt").iterdir(), tmp_path / "metrics.jsonl", tmp_path / "chars.json"]
    for f in files:
        assert (f.stat().st_mode & 0o777) == 0o666 & ~umask, (f.name, oct(f.stat().st_mode & 0o777))
