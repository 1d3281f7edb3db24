"""Checkpoints: weights and optimizer state in safetensors, everything else in JSON.

A checkpoint is a folder of three files::

    out/ckpt/
      model.safetensors    the model's parameters     {name: array}
      optim.safetensors    the optimizer's buffers    {"<param>.exp_avg": array, ...}
      checkpoint.json      format_version, config, tokenizer, step, RNG states,
                           optimizer scalars, ... and the size and SHA-256 of
                           the two safetensors files

Why this format?
----------------
* **safetensors, never pickle.** A pickle file can run arbitrary code when it
  is loaded; safetensors is a JSON header plus raw bytes, and loading it only
  ever creates arrays. It is also what Hugging Face checkpoints use.
* **JSON for the rest**, readable with any text editor. Numbers that do not fit
  a 64-bit float, such as the 128-bit state of NumPy's PCG64 generator
  (``rng.bit_generator.state``), survive because Python's :mod:`json` writes and
  reads integers of any size exactly. NaN and Infinity are refused: they are
  not JSON.
* **Checksums.** A file cut short by a full disk or a killed copy is caught by
  its size, a damaged one by its SHA-256, each with a one-line error, before
  any array is used.

Writing atomically
------------------
Training for hours and then losing the only checkpoint to a crash while
overwriting it is the failure this module exists to prevent. ``save_checkpoint``
never writes into the live folder ``ckpt``. The protocol, with ``ckpt`` in
folder ``out``:

1. Serialise everything in memory (both safetensors blobs and the JSON). Bad
   input (an array that is not an array, NaN in the metadata) fails here,
   before the disk is touched.
2. Recover from an earlier crash: if ``ckpt`` is missing but ``.ckpt.old``
   exists, a previous save died between steps 5 and 6: rename it back.
   A leftover ``.ckpt.tmp`` is deleted, a leftover ``.ckpt.old`` next to a
   good ``ckpt`` too.
3. Write the three files into the sibling folder ``out/.ckpt.tmp``, the JSON
   last; ``fsync`` each file, then the folder (the data is on disk, not just
   in the page cache).
4. If ``ckpt`` exists, rename it to ``.ckpt.old``.
5. Rename ``.ckpt.tmp`` to ``ckpt``; ``fsync`` ``out`` (the renames are on disk).
6. Delete ``.ckpt.old``.

A rename within one folder is atomic, so at every instant either ``ckpt`` or
``.ckpt.old`` is a complete, good checkpoint; if the process dies between
steps 4 and 5, :func:`load_checkpoint` finds ``.ckpt.old`` and the next save
moves it back (step 2). If anything raises during steps 3-5, the temporary
folder is removed and the previous checkpoint is left where it was (renamed
back if step 4 had already moved it). One writer
at a time is assumed (one trainer per output folder).

Example::

    save_checkpoint("out/ckpt", model_state=model.state_dict(),
                    optim_arrays=arrays, meta={"step": 500, "config": {...},
                                               "optim": optim_meta,
                                               "rng": rng.bit_generator.state})
    model_state, optim_arrays, meta = load_checkpoint("out/ckpt")
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
from safetensors import SafetensorError
from safetensors import numpy as safetensors_numpy

from ..backend import to_numpy

__all__ = ["BEST_DIR", "CKPT_DIR", "FORMAT_VERSION", "MODEL_FILE", "OPTIM_FILE", "META_FILE", "check_kind",
           "describe_kind", "load_checkpoint", "resolve_checkpoint", "run_checkpoint", "save_checkpoint"]

#: The layout version written into checkpoint.json. Bump it when the layout
#: changes in a way older code cannot read; load_checkpoint refuses others.
FORMAT_VERSION = 1

MODEL_FILE = "model.safetensors"
OPTIM_FILE = "optim.safetensors"
META_FILE = "checkpoint.json"
_FILES = (MODEL_FILE, OPTIM_FILE, META_FILE)
#: Keys save_checkpoint writes into the JSON itself (load_checkpoint removes them).
_RESERVED = ("format_version", "files")
#: A run folder (``--out``) holds the latest checkpoint, and the best one when a metric picks it.
CKPT_DIR = "ckpt"
BEST_DIR = "best"


# ---------------------------------------------------------------------------
# serialising (in memory, before any file is touched)
# ---------------------------------------------------------------------------
def _serialize_arrays(arrays: dict, what: str) -> bytes:
    """``{name: array}`` (NumPy or CuPy) -> safetensors bytes."""
    if not isinstance(arrays, dict):
        raise ValueError(f"{what}: got {type(arrays).__name__}, expected a dict of name -> array")
    host = {}
    for name, a in arrays.items():
        if not isinstance(name, str):
            raise ValueError(f"{what}: key {name!r} is a {type(name).__name__}, expected str")
        if not hasattr(a, "shape") or not hasattr(a, "dtype"):
            raise ValueError(f"{what}[{name!r}]: got {type(a).__name__}, expected an array")
        host[name] = np.ascontiguousarray(to_numpy(a))  # safetensors needs C order
    return safetensors_numpy.save(host)


def _json_default(value):
    """Let NumPy scalars (np.float32 losses, np.int64 steps) into the JSON."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"value of type {type(value).__name__} is not JSON-able")


def _serialize_meta(meta: dict, files: dict) -> bytes:
    if not isinstance(meta, dict):
        raise ValueError(f"meta: got {type(meta).__name__}, expected a dict")
    doc = {"format_version": FORMAT_VERSION,
           **{k: v for k, v in meta.items() if k not in _RESERVED},
           "files": files}
    try:
        text = json.dumps(doc, indent=2, allow_nan=False, default=_json_default)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"meta: {exc}; expected JSON types only (dict, list, str, int, "
                         "finite float, bool, None); arrays belong in the safetensors files") from None
    return (text + "\n").encode("utf-8")


# ---------------------------------------------------------------------------
# writing files durably
# ---------------------------------------------------------------------------
def _write_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` and make sure it reached the disk."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    """Flush a folder's entries (new files, renames) to disk, where the OS allows it."""
    if os.name == "nt":  # Windows cannot open a folder for fsync
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _siblings(directory: Path) -> tuple[Path, Path]:
    return (directory.parent / f".{directory.name}.tmp",
            directory.parent / f".{directory.name}.old")


def save_checkpoint(directory: str | os.PathLike, *, model_state: dict, optim_arrays: dict,
                    meta: dict) -> Path:
    """Write a checkpoint folder atomically (see the module docs for the protocol).

    ``model_state`` and ``optim_arrays``: ``{name: array}`` (NumPy or CuPy).
    ``meta``: anything JSON-able: config, tokenizer description, step, RNG
    states, optimizer scalars... (``format_version`` and ``files`` are set
    here). Returns the checkpoint folder's path.
    """
    directory = Path(directory)
    tmp, old = _siblings(directory)

    # 1. everything in memory first: bad input never touches the disk
    blobs = {MODEL_FILE: _serialize_arrays(model_state, "model_state"),
             OPTIM_FILE: _serialize_arrays(optim_arrays, "optim_arrays")}
    files = {name: {"bytes": len(b), "sha256": hashlib.sha256(b).hexdigest()}
             for name, b in blobs.items()}
    blobs[META_FILE] = _serialize_meta(meta, files)  # written last

    # 2. clean up after an earlier crash
    directory.parent.mkdir(parents=True, exist_ok=True)
    if old.is_dir() and not directory.exists():
        os.replace(old, directory)  # the crash came between steps 4 and 5
    if old.exists():
        shutil.rmtree(old)
    if tmp.exists():
        shutil.rmtree(tmp)

    try:
        # 3. the new checkpoint, complete and on disk, beside the old one
        tmp.mkdir()
        for name, data in blobs.items():
            _write_file(tmp / name, data)
        _fsync_dir(tmp)
        # 4.-5. swap it in with two renames
        if directory.exists():
            os.replace(directory, old)
        os.replace(tmp, directory)
        _fsync_dir(directory.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.is_dir() and not directory.exists():
            try:
                os.replace(old, directory)  # failed between 4 and 5: put the old one back
            except OSError:
                pass  # load_checkpoint and the next save still find .ckpt.old
        raise
    # 6. the old checkpoint is no longer needed
    shutil.rmtree(old, ignore_errors=True)
    return directory


# ---------------------------------------------------------------------------
# loading, with one-line errors
# ---------------------------------------------------------------------------
def load_checkpoint(directory: str | os.PathLike) -> tuple[dict, dict, dict]:
    """Read a checkpoint folder: ``(model_state, optim_arrays, meta)``.

    Arrays come back as NumPy arrays; ``meta`` is the dict that was saved.
    Raises ValueError (one line, naming the folder and the file) if the folder
    or a file is missing, a safetensors file is truncated or corrupted,
    ``checkpoint.json`` does not parse, or the checkpoint was written with a
    different ``format_version``.
    """
    directory = Path(directory)
    where = f"checkpoint {str(directory)!r}"
    expected = (f"expected the --out folder of a minitx training command, or its ckpt/ ({', '.join(_FILES)})")
    if not directory.is_dir():
        _, old = _siblings(directory)
        if old.is_dir() and not directory.exists():
            directory = old  # a save died between its two renames: this is the good copy
        elif directory.exists():
            raise ValueError(f"{where} is not a folder; {expected}")
        else:
            raise ValueError(f"{where} does not exist; {expected}")
    for name in _FILES:
        if not (directory / name).is_file():
            raise ValueError(f"{where} is missing {name}; {expected}")

    # the JSON first: it says which version wrote the folder and what the files should be
    try:
        doc = json.loads((directory / META_FILE).read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ValueError(f"{where}: {META_FILE} is not UTF-8 text (byte offset {exc.start}); "
                         "expected the JSON a minitx training command writes") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where}: {META_FILE} does not parse (line {exc.lineno} column "
                         f"{exc.colno}: {exc.msg}); expected the JSON a minitx training command writes") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{where}: {META_FILE} holds a {type(doc).__name__}, expected a JSON object")
    version = doc.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(f"{where} has format_version={version!r}, expected {FORMAT_VERSION}: "
                         "it was written by an incompatible minitx version")

    arrays = [_load_arrays(directory, name, doc.get("files", {}).get(name), where)
              for name in (MODEL_FILE, OPTIM_FILE)]
    meta = {k: v for k, v in doc.items() if k not in _RESERVED}
    return arrays[0], arrays[1], meta


def _load_arrays(directory: Path, name: str, record, where: str) -> dict:
    raw = (directory / name).read_bytes()
    if isinstance(record, dict):
        n = record.get("bytes")
        if isinstance(n, int) and len(raw) != n:
            state = "truncated" if len(raw) < n else "longer than written"
            raise ValueError(f"{where}: {name} is {state} ({len(raw)} bytes, expected {n})")
        digest = record.get("sha256")
        if isinstance(digest, str) and hashlib.sha256(raw).hexdigest() != digest:
            raise ValueError(f"{where}: {name} is corrupted (its SHA-256 does not match "
                             f"{META_FILE}); expected the file as it was written")
    try:
        return safetensors_numpy.load(raw)
    except (SafetensorError, ValueError, TypeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"{where}: {name} is not a valid safetensors file ({reason}); "
                         "expected the complete file a minitx training command writes") from None


# ---------------------------------------------------------------------------
# run folders: what `--out DIR` holds, and what a command reading a model accepts
# ---------------------------------------------------------------------------
#: What wrote each kind of checkpoint, for messages a user can act on.
KIND_DESCRIPTIONS = {
    "minitx-gpt": "a GPT language model (written by minitx train)",
    ("minitx-task", "classify"): "a text classifier (written by minitx train-classifier)",
    ("minitx-task", "tag"): "a token tagger (written by minitx train-tagger)",
    ("minitx-task", "translate"): "a translator (written by minitx train-translator)",
    "minitx-finetune": "a fine-tuned model (written by minitx finetune)",
}


def describe_kind(meta: dict) -> str:
    """``"a translator (written by minitx train-translator)"`` for a checkpoint's metadata."""
    kind = meta.get("kind")
    text = KIND_DESCRIPTIONS.get((kind, meta.get("task"))) or KIND_DESCRIPTIONS.get(kind)
    return text or f"a checkpoint of kind {kind!r}"


def check_kind(directory, meta: dict, kind: str, task: str | None = None) -> None:
    """Raise a one-line ValueError naming what the checkpoint holds when it is not ``kind`` (``task``)."""
    if meta.get("kind") == kind and (task is None or meta.get("task") == task):
        return
    wanted = describe_kind({"kind": kind, "task": task})
    raise ValueError(f"checkpoint {str(directory)!r} holds {describe_kind(meta)}, expected {wanted}")


def run_checkpoint(out, name: str = CKPT_DIR) -> Path:
    """The checkpoint folder ``name`` of run folder ``out``."""
    return Path(out) / name


def holds_checkpoint(directory) -> bool:
    """A checkpoint folder, or the ``.NAME.old`` copy a save that died between its renames left."""
    directory = Path(directory)
    return (directory / META_FILE).is_file() or (_siblings(directory)[1] / META_FILE).is_file()


def resolve_checkpoint(path, *, prefer=(CKPT_DIR,)) -> Path:
    """The checkpoint folder meant by ``path``: the folder itself, or a run folder's ``ckpt``.

    Commands accept either ``out`` (what ``--out`` named) or ``out/ckpt``.
    ``prefer`` lists the run folder's checkpoints in the order to try (task
    commands prefer ``best``, the model the validation metric chose). A path
    that is neither comes back unchanged, for :func:`load_checkpoint` to
    report.
    """
    path = Path(path)
    if holds_checkpoint(path):
        return path
    for name in prefer:
        if holds_checkpoint(path / name):
            return path / name
    return path


def check_run_folder(out, *, resume: bool, overwrite: bool) -> None:
    """Refuse to start a new run in a folder that holds a trained one, unless told to.

    Raises ValueError (nothing is written) when ``out`` holds a checkpoint
    and neither ``resume`` nor ``overwrite`` is set; when ``resume`` is set
    and there is nothing to resume; or when both are set.
    """
    out = Path(out)
    if resume and overwrite:
        raise ValueError("--resume with --overwrite: expected one of them (continue the run, or replace it)")
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} is a file, expected a folder (or a path that does not exist yet)")
    found = [name for name in (CKPT_DIR, BEST_DIR) if holds_checkpoint(out / name)]
    if resume and CKPT_DIR not in found:
        raise ValueError(f"--resume: {str(out)!r} holds no checkpoint ({out / CKPT_DIR} is missing), "
                         "expected the --out folder of an earlier run")
    if found and not (resume or overwrite):
        raise ValueError(f"--out {str(out)!r} already holds a trained run ({out / found[0]}); expected --resume "
                         "to continue it or --overwrite to replace it (or another --out)")
