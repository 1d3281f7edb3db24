"""Data parallelism over MPI ranks, through a real ``mpiexec``: 2 ranks follow 1 process's trajectory.

Each test starts ``mpiexec -n 2 python -m minitx train ...`` (the command a
user types) and compares with the same run in one process: the loss
records after 20 iterations agree within float32 reduction tolerance, and a
checkpoint written by 2 ranks resumes in 1 process and the reverse. The
communicator itself (all-reduce, broadcast, all-gather of JSON), and the
weighting of ranks whose rows count different numbers of targets (masked
prompts), are tested under ``mpiexec`` too. Without mpi4py or mpiexec (``pip install
minitx[mpi]``) the tests skip with the reason.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import importlib.util

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
MPIEXEC = shutil.which("mpiexec") or shutil.which("mpiexec", path=str(Path(sys.executable).parent))
pytestmark = [  # found, not imported: importing mpi4py.MPI here would make this test process an MPI singleton
    pytest.mark.skipif(importlib.util.find_spec("mpi4py") is None,
                       reason="mpi4py is not installed (pip install minitx[mpi])"),
    pytest.mark.skipif(MPIEXEC is None, reason="mpiexec is not on PATH (pip install minitx[mpi])"),
]

TEXT = "the quick brown fox jumps over the lazy dog. pack my box with five dozen liquor jugs.\n" * 80
# a constant learning rate (no warmup, min_lr = lr): a run stopped at 10 and resumed to 20 takes the same
# steps as an unbroken run to 20, whose cosine would otherwise be stretched over a different length
TINY = ["--n-layer", "2", "--n-head", "2", "--d-model", "32", "--block-size", "16", "--batch-size", "8",
        "--eval-iters", "2", "--eval-interval", "10", "--warmup-iters", "0", "--lr", "3e-3", "--min-lr", "3e-3",
        "--sample-tokens", "0", "--no-progress", "--threads", "1"]


def env():
    e = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "OMPI_", "PMIX_", "MPI_"))}
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    return e


def run(argv, ranks: int, timeout=300):
    cmd = [sys.executable, "-m", "minitx", *argv]
    if ranks > 1:
        cmd = [MPIEXEC, "-n", str(ranks), *cmd]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env(), timeout=timeout, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def records(out):
    return [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]


def assert_same_trajectory(a, b):
    assert [r["iter"] for r in a] == [r["iter"] for r in b]
    for ra, rb in zip(a, b):
        for key in ("train_loss", "val_loss"):
            assert abs(ra[key] - rb[key]) < 1e-4 * max(1.0, abs(rb[key])), (ra["iter"], key, ra[key], rb[key])


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("mpi") / "data.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


def test_two_ranks_follow_one_process(data, tmp_path):
    one = tmp_path / "one"
    two = tmp_path / "two"
    run(["train", "--data", str(data), "--out", str(one), "--max-iters", "20", *TINY], ranks=1)
    proc = run(["train", "--data", str(data), "--out", str(two), "--max-iters", "20", *TINY], ranks=2)
    assert_same_trajectory(records(two), records(one))
    # rank 0 alone talks: the start-up line and the final line appear once
    assert proc.stdout.count("done: iteration 20") == 1 and proc.stdout.count("2 MPI ranks") == 1
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())


def test_checkpoints_move_between_rank_counts(data, tmp_path):
    """2 ranks to 10 -> 1 process to 20, and 1 process to 10 -> 2 ranks to 20: both equal an unbroken run."""
    whole = tmp_path / "whole"
    run(["train", "--data", str(data), "--out", str(whole), "--max-iters", "20", *TINY], ranks=1)
    for first, second in ((2, 1), (1, 2)):
        out = tmp_path / f"{first}to{second}"
        run(["train", "--data", str(data), "--out", str(out), "--max-iters", "10", *TINY], ranks=first)
        run(["train", "--out", str(out), "--resume", "--max-iters", "20", *TINY], ranks=second)
        assert_same_trajectory(records(out), records(whole))


COLLECTIVES = r'''
import json
import sys

import numpy as np
from minitx.train.parallel import default_communicator
comm = default_communicator()
buf = np.arange(4, dtype=np.float32) + comm.rank
comm.allreduce_sum(buf)
got = {"rank": comm.rank, "size": comm.size, "sum": buf.tolist(), "any": comm.any(comm.rank == 1),
       "none": comm.any(False), "gathered": comm.allgather_json({"r": comm.rank, "big": 2 ** 100 + comm.rank})}
b = np.full(3, float(comm.rank))
comm.broadcast(b)
got["bcast"] = b.tolist()
with open(f"{sys.argv[1]}/rank{comm.rank}.json", "w") as f:
    json.dump(got, f)
'''


def run_script(text: str, tmp_path) -> None:
    """``mpiexec -n 2 python SCRIPT tmp_path`` for a script given as text; it writes its results under tmp_path."""
    script = tmp_path / "script.py"
    script.write_text(text)
    proc = subprocess.run([MPIEXEC, "-n", "2", sys.executable, str(script), str(tmp_path)], capture_output=True,
                          text=True, env=env(), timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr


def test_communicator_collectives(tmp_path):
    run_script(COLLECTIVES, tmp_path)
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["rank"] for r in results] == [0, 1]
    for r in results:
        assert r["size"] == 2 and r["sum"] == [1.0, 3.0, 5.0, 7.0]
        assert r["any"] is True and r["none"] is False
        assert r["gathered"] == [{"r": 0, "big": 2 ** 100}, {"r": 1, "big": 2 ** 100 + 1}]  # exact big integers
        assert r["bcast"] == [0.0, 0.0, 0.0]


MASKED = r'''
import sys

import numpy as np
from minitx.models import GPT, GPTConfig
from minitx.train.parallel import DataParallel, default_communicator

rng = np.random.default_rng(0)
x, y = rng.integers(0, 11, (4, 8)), rng.integers(0, 11, (4, 8))
y[:2, :7] = -100  # rank 0's rows count 2 targets, rank 1's 16
dp = DataParallel(GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8), seed=0,
                      dtype=np.float64), comm=default_communicator())
dp.zero_grad()
loss, _ = dp.loss(x, y)
dp.backward_loss(1.0)
if dp.is_main_process:
    np.savez(f"{sys.argv[1]}/grads.npz", x=x, y=y, loss=np.array(loss),
             **{"grad." + n: p.grad for n, p in dp.named_parameters()})
'''


def test_two_ranks_weight_masked_rows_by_counted_targets(tmp_path):
    """Rank 0 holds rows with 2 counted targets, rank 1 rows with 16: the all-reduced step is one process's."""
    from minitx.models import GPT, GPTConfig

    run_script(MASKED, tmp_path)
    with np.load(tmp_path / "grads.npz", allow_pickle=False) as got:
        one = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8), seed=0, dtype=np.float64)
        one.zero_grad()
        loss, _ = one.loss(got["x"], got["y"])  # the batch the ranks shared, in one process
        one.backward_loss(1.0)
        assert abs(float(got["loss"]) - loss) < 1e-12
        for name, p in one.named_parameters():
            np.testing.assert_allclose(got["grad." + name], p.grad, rtol=1e-10, atol=1e-14, err_msg=name)
