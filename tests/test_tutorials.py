"""Every tutorial runs, offline, in fast mode, and exits cleanly.

The Annotated Transformer's notebook rotted because its CI only linted it;
minitx executes every lesson on every test run instead.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TUTORIALS = sorted((ROOT / "tutorials").glob("[0-9][0-9]_*.py"))


def test_there_are_tutorials():
    assert len(TUTORIALS) >= 2, "expected at least the attention and backprop lessons"


@pytest.mark.parametrize("path", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_tutorial_runs(path, tmp_path):
    env = dict(os.environ, MINITX_TUTORIAL_FAST="1", MINITX_TUTORIAL_OUT=str(tmp_path), MPLBACKEND="Agg")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(
        [sys.executable, str(path)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, f"{path.name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# ---") or first.startswith("# %%"), "tutorials are jupytext percent-format files"
