"""The array backend is chosen explicitly; the CLI has help everywhere and clean errors."""
import math
import subprocess
import sys

import numpy as np
import pytest

from minitx import backend
from minitx.cli import build_parser, main


def test_numpy_is_the_default_backend():
    assert backend.get_backend() == "numpy"
    assert backend.get_xp() is np
    assert backend.array_module(np.ones(2)) is np
    assert backend.DEFAULT_DTYPE == np.float32 and backend.CHECK_DTYPE == np.float64


def test_unknown_backend_is_named():
    with pytest.raises(ValueError, match=r"backend: got 'torch', expected one of \('numpy', 'cupy', 'kernels'\)"):
        backend.set_backend("torch")
    assert backend.get_backend() == "numpy"


def test_erf_matches_the_c_library_and_keeps_dtype():
    x = np.linspace(-4, 4, 101)
    np.testing.assert_array_equal(backend.erf(x), [math.erf(v) for v in x])
    assert backend.erf(x.astype(np.float32)).dtype == np.float32
    assert backend.erf(np.zeros((2, 3))).shape == (2, 3)


def subcommands():
    parser = build_parser()
    action = next(a for a in parser._subparsers._group_actions)  # noqa: SLF001 - argparse has no public accessor
    return sorted(action.choices)


def test_every_subcommand_has_help(capsys):
    names = subcommands()
    assert {"demo", "tokenizer"} <= set(names)
    for name in names:
        with pytest.raises(SystemExit) as exit_info:
            main([name, "--help"])
        assert exit_info.value.code == 0, name
        assert "usage: minitx" in capsys.readouterr().out


def test_unknown_flag_exits_2_without_traceback():
    proc = subprocess.run([sys.executable, "-m", "minitx", "demo", "--no-such-flag"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "unrecognized argument: --no-such-flag" in proc.stderr


def test_demo_verifies_its_backward_pass(capsys):
    assert main(["demo", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "backward pass verified" in out and "blocks.1.attn.qkv.weight" in out
