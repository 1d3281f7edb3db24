"""Small helpers shared by the tutorials in ``tutorials/``.

Every tutorial is one jupytext percent-format ``.py`` file: run it as a
script (``python tutorials/02_attention.py``), or open it as a notebook
(``jupytext --to notebook tutorials/02_attention.py``). The test suite runs
each one offline in *fast mode*, which shrinks models and loops so the whole
set finishes in seconds, and checks that it exits cleanly.

Conventions, so every lesson behaves the same:

* ``FAST`` is true when the environment sets ``MINITX_TUTORIAL_FAST=1``;
  a tutorial uses it to pick smaller sizes, never to skip a step.
* :func:`savefig` saves a matplotlib figure into :func:`output_dir`
  (``MINITX_TUTORIAL_OUT``, default ``tutorials/_output``) and closes it.
* :func:`plt` returns ``matplotlib.pyplot`` (headless backend) or ``None``
  when matplotlib is not installed; plotting cells are written as
  ``if plt(): ...`` (a call: ``plt`` itself is always truthy) so the lesson
  still runs without it.
"""
from __future__ import annotations

import os
from pathlib import Path

FAST: bool = os.environ.get("MINITX_TUTORIAL_FAST") == "1"


def output_dir() -> Path:
    """Where tutorials write their figures (created on first use)."""
    path = Path(os.environ.get("MINITX_TUTORIAL_OUT", Path(__file__).resolve().parent.parent / "tutorials" / "_output"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def plt():
    """``matplotlib.pyplot`` with a file-only backend, or ``None`` if not installed."""
    try:
        import matplotlib  # noqa: PLC0415 - optional extra

        matplotlib.use("Agg")
        import matplotlib.pyplot as pyplot  # noqa: PLC0415
    except ImportError:
        return None
    return pyplot


def savefig(fig, name: str) -> Path:
    """Save ``fig`` as ``<output_dir>/<name>.png``, close it and return the path."""
    path = output_dir() / f"{name}.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt().close(fig)
    print(f"saved {path}")
    return path
