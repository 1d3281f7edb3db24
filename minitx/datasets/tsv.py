"""Tab-separated files: one example per line, the format the task CLIs read.

    classification   label<TAB>text                 positive<TAB>not bad at all
    tagging          tokens<TAB>tags (space-sep.)   jordan visited paris<TAB>B-PER O B-LOC
    translation      source<TAB>target              the red cat sleeps<TAB>la mira roja dorme

Blank lines are skipped. Any other line without exactly the expected number
of fields is an error that names the file and the line: a silently dropped
line would quietly change the data.
"""
from __future__ import annotations

import os
from pathlib import Path


def read_tsv(path: str | os.PathLike, n_fields: int = 2) -> list[tuple[str, ...]]:
    """Return a list of ``n_fields``-tuples of stripped strings; raise ``ValueError`` on malformed lines."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"TSV file {str(path)!r}: not found, expected an existing file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"TSV file {str(path)!r}: not UTF-8 ({exc.reason} at byte {exc.start}), "
                         "expected UTF-8 text") from None
    rows = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != n_fields:
            raise ValueError(f"{path}:{lineno}: got {len(fields)} tab-separated field(s), expected {n_fields}")
        fields = tuple(f.strip() for f in fields)
        if any(not f for f in fields):
            raise ValueError(f"{path}:{lineno}: empty field, expected {n_fields} non-empty fields")
        rows.append(fields)
    if not rows:
        raise ValueError(f"TSV file {str(path)!r}: no examples, expected at least one line")
    return rows


def write_tsv(path: str | os.PathLike, rows) -> None:
    """Write tuples of strings, one per line; tabs or newlines inside a field are an error."""
    lines = []
    for row in rows:
        for f in row:
            if "\t" in f or "\n" in f:
                raise ValueError(f"write_tsv: field {f!r} contains a tab or newline, expected plain text")
        lines.append("\t".join(row))
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")
