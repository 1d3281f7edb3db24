"""The newcomer path: the README's commands, in order, as written, with small sizes.

``MINITX_MAIN_JOB_FAST=1`` shrinks the *defaults* of ``minitx train`` and the
task commands (iterations, generated data) and nothing else, so the same
steps run in seconds. The test reads the set-up commands and the "Use"
block from README.md itself: an example that stops working, or a README
edit that breaks one, fails here.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def code_blocks(section: str) -> list[str]:
    """The ``bash`` code blocks between heading ``section`` and the next heading of its level."""
    start = README.index(section)
    level = section.split(" ")[0]
    end = README.find("\n" + level + " ", start + len(section))
    body = README[start:end if end != -1 else None]
    return re.findall(r"```bash\n(.*?)```", body, flags=re.S)


def commands(block: str) -> list[str]:
    out = []
    for line in block.splitlines():
        line = re.sub(r"\s+#.*$", "", line).strip()  # a trailing comment is prose
        if line:
            out.append(line)
    return out


def test_setup_has_exactly_two_commands_a_main_job_and_the_tests():
    blocks = code_blocks("## Set up")
    assert len(blocks) == 2
    main_job, tests = (commands(b) for b in blocks)
    assert len(main_job) == 1 and main_job[0].endswith("&& minitx train")
    assert len(tests) == 1 and tests[0].endswith("python -m pytest -q")
    ci = (ROOT / ".ci" / "run").read_text()
    assert tests[0].split("&& ", 2)[-1] in ci  # CI runs the README's test command


@pytest.mark.skipif(shutil.which("minitx") is None, reason="the minitx command is not installed (pip install -e .)")
def test_main_job_then_every_use_example_runs_as_written(tmp_path):
    env = dict(os.environ, MINITX_MAIN_JOB_FAST="1", PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")

    def run(cmd):
        proc = subprocess.run(cmd, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
                              stdin=subprocess.DEVNULL)
        assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        return proc

    main_job = commands(code_blocks("## Set up")[0])[0].split("&& ")[-1]  # the install is the venv's already
    printed = run(main_job + " --no-progress").stdout
    assert "--- sample" in printed and (tmp_path / "out" / "ckpt").is_dir()
    use = commands(code_blocks("## Use")[0])
    assert len(use) >= 6
    for cmd in use:
        run(cmd)
    for hint in re.findall(r"# then: (minitx .*)$", code_blocks("## Use")[0], flags=re.M):
        run(hint)  # the follow-up a comment suggests must work too
