"""The end-to-end training benchmark (minitx.bench.train_cli) runs and reports what it promises.

A toy configuration (2 iterations, 32 wide, block 32, batch 4, one round) on a
small generated text: this checks the script's plumbing and output, not
speed. The contestants run this checkout's minitx (``python -m minitx`` with
the repository first on PYTHONPATH), whatever is installed.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from minitx.bench import train_cli

ROOT = Path(__file__).resolve().parents[1]
needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                                 reason="PyTorch is not installed (the benchmark's peer needs it)")


def _run(tmp_path, *extra):
    data = tmp_path / "text.txt"
    data.write_text("First Citizen:\nBefore we proceed any further, hear me speak.\n" * 400, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    cmd = [sys.executable, "-m", "minitx.bench.train_cli", "--data", str(data), "--minitx",
           f"{sys.executable} -m minitx", "--n-layer", "1", "--n-head", "2", "--d-model", "32", "--block-size", "32",
           "--batch-size", "4", "--max-iters", "2", "--eval-iters", "1", "--warmup-iters", "1", "--rounds", "1",
           "--settle", "0", "--no-warmup", *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:] + proc.stdout[-2000:]
    return proc.stdout


@needs_torch
def test_json_report(tmp_path):
    lines = [json.loads(line) for line in _run(tmp_path, "--json").splitlines()]
    by_type = {}
    for obj in lines:
        by_type.setdefault(obj["type"], []).append(obj)
    meta = by_type["meta"][0]
    for key in ("date", "cpu", "cpu_count", "python", "numpy", "torch", "mpi4py", "commit", "blas_env", "config",
                "data", "minitx_flags", "commands", "loadavg_start"):
        assert key in meta, key
    assert "OPENBLAS_CORETYPE" in meta["blas_env"]
    assert meta["minitx_flags"]["d_model"] in ("--d-model", "--n-embd")
    runs = {r["contestant"]: r for r in by_type["run"]}
    assert {"peer", "minitx_threads"} <= set(runs)
    for r in runs.values():
        assert r["rc"] == 0 and r["wall_s"] > 0 and r["log_tokens_per_s"] > 0 and "others_cores" in r
    ratios = {r["name"]: r for r in by_type["ratio"]}
    vs_peer = ratios["minitx_vs_peer"]
    assert vs_peer["target"] == 1.1 and len(vs_peer["rounds"]) == 1
    assert vs_peer["min"] <= vs_peer["median"] <= vs_peer["max"]
    assert vs_peer["median"] == pytest.approx(runs["peer"]["wall_s"] / runs["minitx_threads"]["wall_s"])
    # MPI is measured, or skipped with a reason
    skipped = {s["contestant"]: s["reason"] for s in by_type.get("skipped", [])}
    assert ("mpi_vs_threads" in ratios) != ("minitx_mpi" in skipped)
    if "minitx_mpi" in skipped:
        assert skipped["minitx_mpi"]
    splits = {s["contestant"]: s for s in by_type["split"]}
    for name in runs:
        s = splits[name]
        assert s["train_loop_s"] + s["other_s"] == pytest.approx(s["wall_s"])
        assert 0 < s["train_loop_share"] <= 1.5
    assert by_type["end"][0]["loadavg_end"] is None or len(by_type["end"][0]["loadavg_end"]) == 3


def test_flag_table_and_rate_parsing():
    # the flag table's concepts, and the tokens/s figure each program prints last
    assert train_cli.MINITX_FLAGS["d_model"]["names"][0] == "--d-model"
    text = "iter 0: train loss 4.19, 0 tokens/s\niter 150: train loss 2.49, 13,795 tokens/s\n"
    assert float(train_cli.RATE.findall(text)[-1].replace(",", "")) == 13795
    assert train_cli.ranks_quiet("a\nb\n\n") and not train_cli.ranks_quiet("a\nb\na\n")


def test_text_report_without_peer_or_mpi(tmp_path):
    out = _run(tmp_path, "--skip-peer", "--skip-mpi")
    assert "minitx train, 2 threads" in out and "where the time goes" in out
    assert "minitx_vs_peer              skipped: --skip-peer" in out
    assert "mpi_vs_threads              skipped: --skip-mpi" in out
