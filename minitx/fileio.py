"""Writing files so that a crash never leaves a half-written one behind.

The recipe: write to a temporary file *in the same folder* (so the final
rename never crosses a file system), flush and ``fsync`` it so the bytes are
on disk, then ``os.replace`` it over the destination. ``os.replace`` is
atomic on POSIX and Windows: a reader sees the old file or the new one,
never a mixture. If anything fails, the temporary file is removed and the
old file is untouched.

``tempfile.mkstemp`` creates its file private (mode ``0600``), which is
right for a temporary file but wrong for the result: a tokenizer or a
metrics file is meant to be shared like any file the user writes. So the
file is given the mode an ordinary ``open(path, "w")`` would have given it,
``0666`` less the process's umask, before it is renamed into place.

Checkpoints are folders, not single files; :mod:`minitx.train.checkpoint`
extends the same idea to a folder swap.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


def _umask() -> int:
    """The process's umask (reading it means setting it, so it is set straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Replace ``path`` by ``data`` atomically (see the module docstring)."""
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # what an ordinary write would have made, not mkstemp's 0600
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """UTF-8 text with ``\\n`` line endings, written atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))
