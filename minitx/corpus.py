"""Text to train on: the default corpus that ships with Python, and ``--data FILE``.

Why the standard library?
-------------------------
A course that starts with "first download this data set" breaks the day the
URL dies (it happened to the Annotated Transformer). Every Python
installation already carries megabytes of carefully written English: the
docstrings of its standard library. :func:`default_corpus` collects them, so
``minitx train`` works offline, on a fresh machine, with nothing to download.

How it is extracted (deterministically)
---------------------------------------
* The modules: every top-level ``*.py`` file in the standard library folder
  (``sysconfig.get_paths()["stdlib"]``), in sorted order, then every ``*.py``
  file inside a fixed list of packages (:data:`PACKAGES`: ``asyncio``,
  ``email``, ``json``, ``logging``, ...), folders and files in sorted order;
  test folders are skipped, and so is ``_sysconfigdata*`` (build settings,
  which differ per machine).
* The text: each file is *parsed* with :mod:`ast` (never imported, so no
  module code runs), and the docstrings of the module, its classes and its
  functions are collected in source order, cleaned with
  :func:`inspect.cleandoc` (common indentation removed) and joined with
  blank lines.

The result (about 1.3 MiB on CPython 3.11) is identical on every run of the
same Python. Different Python versions ship slightly different docstrings
(and drop or add modules), so the corpus, and a character vocabulary built on
it, can differ a little between versions: a checkpoint records its tokenizer,
so this never breaks loading a trained model.

Caching
-------
Parsing ~500 files takes a second or two, so the text is cached in
``$MINITX_CACHE`` if set, else ``$XDG_CACHE_HOME/minitx``, else
``~/.cache/minitx``, under a name that includes the corpus format and the
exact Python build. The file starts with a header line holding the SHA-256 of
the text; a cache file that is truncated or altered fails that check and is
rebuilt. The cache is written atomically (a temporary file in the same
folder, flushed to disk, then renamed over the target), so a crash never
leaves a half-written cache behind. If the folder cannot be written the text
is still returned, just not cached.

Example::

    >>> from minitx.corpus import default_corpus
    >>> text = default_corpus()
    >>> len(text) > 1_000_000
    True
"""
from __future__ import annotations

import ast
import hashlib
import os
import sys
import sysconfig
import warnings
from pathlib import Path

from .fileio import atomic_write_bytes

__all__ = ["PACKAGES", "CORPUS_VERSION", "default_corpus", "build_corpus", "cache_dir",
           "cache_path", "load_text"]

#: Bump when the extraction changes, so old caches are not reused.
CORPUS_VERSION = 1

#: Standard-library packages whose docstrings join the top-level modules'.
PACKAGES = (
    "asyncio", "collections", "concurrent", "email", "html", "http", "importlib",
    "json", "logging", "multiprocessing", "unittest", "urllib", "wsgiref", "xml",
    "xmlrpc",
)

_SKIP_DIRS = {"test", "tests", "idle_test", "__pycache__"}
_SKIP_PREFIXES = ("_sysconfigdata",)  # generated per build: not the same everywhere
_HEADER = b"minitx-corpus"

# Nodes that can carry a docstring, and the statement-level nodes we descend
# into to find them (expressions cannot contain a def or class, except lambdas,
# which have no docstrings: skipping them makes the walk much cheaper).
_DOC_NODES = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
_DESCEND = (ast.stmt, ast.excepthandler, ast.match_case)


# ---------------------------------------------------------------------------
# building the corpus
# ---------------------------------------------------------------------------
def _stdlib_dir() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def _source_files(root: Path) -> list[Path]:
    """The files the corpus is made of, in their fixed order."""
    files = sorted(
        p for p in root.glob("*.py") if not p.name.startswith(_SKIP_PREFIXES)
    )
    for package in PACKAGES:
        top = root / package
        if not top.is_dir():
            continue  # a package removed in this Python version
        for folder, subdirs, names in os.walk(top):
            subdirs[:] = sorted(d for d in subdirs if d not in _SKIP_DIRS)  # walk order
            files.extend(Path(folder) / n for n in sorted(names) if n.endswith(".py"))
    return files


def _docstrings(source: bytes) -> list[str]:
    """Docstrings of a module, its classes and functions, in source order."""
    try:
        tree = ast.parse(source)  # bytes: honours a ``# coding:`` line
    except (SyntaxError, ValueError):
        return []
    docs, stack = [], [tree]
    while stack:  # depth first, children in source order
        node = stack.pop()
        if isinstance(node, _DOC_NODES):
            doc = ast.get_docstring(node, clean=True)  # cleandoc: dedented, stripped
            if doc:
                docs.append(doc)
        children = [c for c in ast.iter_child_nodes(node) if isinstance(c, _DESCEND)]
        stack.extend(reversed(children))
    return docs


def build_corpus(root: str | os.PathLike | None = None) -> str:
    """Extract the corpus from the standard library sources (no cache involved).

    ``root`` defaults to this Python's standard library folder. Raises
    ValueError if no docstrings are found there (some minimal installations
    ship only compiled ``.pyc`` files): use ``--data FILE`` then.
    """
    root = Path(root) if root is not None else _stdlib_dir()
    docs = []
    for path in _source_files(root):
        try:
            docs.extend(_docstrings(path.read_bytes()))
        except OSError:
            continue
    if not docs:
        raise ValueError(
            f"default corpus: no Python sources with docstrings found under {str(root)!r}; "
            "expected the standard library's .py files (this installation may ship only "
            "bytecode): pass a text file with --data FILE instead"
        )
    return "\n\n".join(docs) + "\n"


# ---------------------------------------------------------------------------
# the cache
# ---------------------------------------------------------------------------
def cache_dir() -> Path:
    """``$MINITX_CACHE``, else ``$XDG_CACHE_HOME/minitx``, else ``~/.cache/minitx``."""
    if os.environ.get("MINITX_CACHE"):
        return Path(os.environ["MINITX_CACHE"])
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "minitx"
    return Path.home() / ".cache" / "minitx"


def cache_path() -> Path:
    """The cache file for this Python build and corpus version."""
    impl = sys.implementation.name
    version = ".".join(map(str, sys.version_info[:3]))
    build = hashlib.sha256(f"{sys.version}|{_stdlib_dir()}".encode()).hexdigest()[:10]
    return cache_dir() / f"corpus-v{CORPUS_VERSION}-{impl}{version}-{build}.txt"


def _read_cache(path: Path) -> str | None:
    """The cached text, or None if the file is missing, truncated or altered."""
    try:
        raw = path.read_bytes()
    except OSError:
        return None
    header, sep, body = raw.partition(b"\n")
    parts = header.split()
    if not sep or len(parts) != 2 or parts[0] != _HEADER:
        return None
    if parts[1] != hashlib.sha256(body).hexdigest().encode():
        return None
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _write_cache(path: Path, text: str) -> None:
    """Write the checksummed cache atomically (see :mod:`minitx.fileio`)."""
    body = text.encode("utf-8")
    atomic_write_bytes(path, _HEADER + b" " + hashlib.sha256(body).hexdigest().encode() + b"\n" + body)


def default_corpus(*, use_cache: bool = True) -> str:
    """The embedded default corpus: standard-library docstrings (see the module docs).

    Served from the cache when a valid one exists, otherwise built with
    :func:`build_corpus` and cached. Identical on every call for a given
    Python build.
    """
    path = cache_path() if use_cache else None
    if path is not None:
        text = _read_cache(path)
        if text is not None:
            return text
    text = build_corpus()
    if path is not None:
        try:
            _write_cache(path, text)
        except OSError as exc:
            warnings.warn(f"default corpus: could not write the cache {str(path)!r} ({exc}); "
                          "continuing without it", RuntimeWarning, stacklevel=2)
    return text


# ---------------------------------------------------------------------------
# --data FILE
# ---------------------------------------------------------------------------
def load_text(path: str | os.PathLike) -> str:
    """Read a UTF-8 text file for training, with errors that say what went wrong.

    The bytes are decoded as UTF-8 exactly (line endings are kept as they
    are); a leading byte-order mark, which some editors write, is dropped.
    Raises ValueError, naming the path, if the file is missing, is a folder,
    cannot be read, is empty (or only whitespace) or is not valid UTF-8.
    """
    p = Path(path)
    where = f"data file {str(p)!r}"
    if not p.exists():
        raise ValueError(f"{where} does not exist; expected the path of a UTF-8 text file")
    if p.is_dir():
        raise ValueError(f"{where} is a directory; expected a UTF-8 text file")
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ValueError(f"{where} cannot be read ({exc.strerror or exc}); "
                         "expected a readable UTF-8 text file") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"{where} is not valid UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
            "expected UTF-8 text (convert it first, e.g. `iconv -t UTF-8`)"
        ) from None
    text = text.removeprefix("\ufeff")
    if not text.strip():
        raise ValueError(f"{where} is empty ({len(raw)} bytes, no text); expected some UTF-8 text")
    return text
