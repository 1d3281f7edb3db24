"""Input validation shared by every layer.

A learner who passes a wrong shape should read *which* argument was wrong,
what it was and what was expected, not a broadcasting error from deep inside
NumPy. These helpers raise ``ValueError`` with exactly that sentence.
"""
from __future__ import annotations

import numpy as np

from ..backend import array_module


def _shape(x) -> tuple:
    return tuple(getattr(x, "shape", ()))


def check_array(name: str, x, *, ndim=None, min_ndim=None, last_dim=None, kind: str = "f") -> None:
    """Check ``x`` is an array of the right kind, rank and last dimension.

    ``kind`` is a string of NumPy dtype kinds that are accepted: ``"f"``
    (floating), ``"iu"`` (integer indices), ``"b"`` (boolean masks).
    """
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise ValueError(f"{name}: got {type(x).__name__}, expected an array")
    if x.dtype.kind not in kind:
        want = {"f": "a floating dtype", "iu": "an integer dtype", "b": "dtype bool"}.get(kind, f"dtype kind in {kind!r}")
        raise ValueError(f"{name}: got dtype {x.dtype}, expected {want}")
    if ndim is not None and x.ndim not in (ndim if isinstance(ndim, tuple) else (ndim,)):
        raise ValueError(f"{name}: got shape {_shape(x)} ({x.ndim}-D), expected {ndim}-D")
    if min_ndim is not None and x.ndim < min_ndim:
        raise ValueError(f"{name}: got shape {_shape(x)}, expected at least {min_ndim} dimensions")
    if last_dim is not None and (x.ndim == 0 or x.shape[-1] != last_dim):
        raise ValueError(f"{name}: got shape {_shape(x)}, expected last dimension {last_dim}")


def check_mask(name: str, mask, expected_shape: tuple) -> None:
    """Masks are boolean and exactly ``expected_shape`` (no silent broadcasting)."""
    check_array(name, mask, kind="b")
    if _shape(mask) != tuple(expected_shape):
        raise ValueError(f"{name}: got shape {_shape(mask)}, expected {tuple(expected_shape)}")


class NonFiniteError(ValueError):
    """An activation holds NaN or Inf.

    A subclass of ``ValueError`` (a bad input is a value error), with a type
    of its own so that the trainer can tell a diverging run from a wrong
    argument without reading the message.
    """


def check_finite_rows(name: str, row_stat) -> None:
    """Raise if a per-row statistic (a mean or a max) is NaN or infinite.

    Layers compute such a statistic anyway, and one NaN or Inf anywhere in a
    row makes it non-finite, so this catches bad inputs almost for free.
    """
    xp = array_module(row_stat)
    if not bool(xp.isfinite(row_stat).all()):
        raise NonFiniteError(f"{name}: contains NaN or Inf, expected finite values")


def check_positive_int(name: str, value) -> None:
    """An ``int`` (or NumPy integer) >= 1; ``True`` is not accepted as 1."""
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name}: got {value!r}, expected a positive integer")


def check_probability(name: str, value, *, inclusive_one: bool = False) -> None:
    hi_ok = value <= 1 if inclusive_one else value < 1
    if not (isinstance(value, (int, float)) and 0 <= value and hi_ok):
        raise ValueError(f"{name}: got {value!r}, expected a number in [0, 1{']' if inclusive_one else ')'}")
