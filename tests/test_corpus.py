"""The embedded default corpus (and its cache) and ``load_text`` for --data FILE."""
import hashlib
import os
import subprocess
import sys

import pytest

from minitx import corpus
from minitx.corpus import build_corpus, cache_path, default_corpus, load_text


@pytest.fixture(scope="module")
def built():
    return build_corpus()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MINITX_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_corpus_is_mostly_english_prose_of_a_useful_size(built):
    text = built
    assert 500_000 <= len(text) <= 5_000_000
    letters = sum(c.isalpha() or c.isspace() for c in text)
    assert letters / len(text) > 0.8
    for word in (" the ", " function ", " return"):
        assert word in text


def test_corpus_is_deterministic_across_processes(built):
    # another interpreter, another hash seed: the same text, byte for byte
    code = ("import hashlib; from minitx.corpus import build_corpus; "
            "print(hashlib.sha256(build_corpus().encode()).hexdigest())")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.stdout.strip() == hashlib.sha256(built.encode()).hexdigest()


def test_nothing_is_imported_or_executed(tmp_path):
    # a "stdlib" whose module would crash or write a file if it were imported
    (tmp_path / "boom.py").write_text(
        '"""Module doc."""\nopen("SIDE_EFFECT", "w")\nraise SystemExit(3)\n'
        'class A:\n    """Class doc."""\n    def f(self):\n        """Method doc."""\n',
        encoding="utf-8")
    (tmp_path / "broken.py").write_text("def (:\n", encoding="utf-8")  # skipped, not fatal
    text = build_corpus(tmp_path)
    assert text == "Module doc.\n\nClass doc.\n\nMethod doc.\n"
    assert not (tmp_path / "SIDE_EFFECT").exists()


def test_no_sources_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no Python sources with docstrings found under .*--data FILE"):
        build_corpus(tmp_path)


def test_default_corpus_is_cached_and_served_from_the_cache(built, cache, monkeypatch):
    monkeypatch.setattr(corpus, "build_corpus", lambda: built)
    assert default_corpus() == built
    path = cache_path()
    assert path.parent == cache and path.exists()
    assert not [p for p in cache.iterdir() if p.name.endswith(".tmp")]  # no temp files left

    def must_not_build():
        raise AssertionError("a valid cache must not be rebuilt")

    monkeypatch.setattr(corpus, "build_corpus", must_not_build)
    assert default_corpus() == built


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "empty"])
def test_corrupted_cache_is_rebuilt(built, cache, monkeypatch, damage):
    monkeypatch.setattr(corpus, "build_corpus", lambda: built)
    default_corpus()
    path = cache_path()
    raw = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(raw[: len(raw) // 2])
    elif damage == "flip":
        i = len(raw) - 10
        path.write_bytes(raw[:i] + bytes([raw[i] ^ 1]) + raw[i + 1:])
    elif damage == "garbage":
        path.write_bytes(b"\xff\xfe not a cache")
    else:
        path.write_bytes(b"")
    assert default_corpus() == built
    assert path.read_bytes() == raw  # and the cache is repaired


def test_cache_location_env_vars(tmp_path, monkeypatch):
    monkeypatch.delenv("MINITX_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert corpus.cache_dir() == tmp_path / "xdg" / "minitx"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert corpus.cache_dir() == tmp_path / "home" / ".cache" / "minitx"
    monkeypatch.setenv("MINITX_CACHE", str(tmp_path / "mine"))
    assert corpus.cache_dir() == tmp_path / "mine"


def test_unwritable_cache_still_returns_text(built, tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    monkeypatch.setenv("MINITX_CACHE", str(blocker / "sub"))  # cannot mkdir inside a file
    monkeypatch.setattr(corpus, "build_corpus", lambda: built)
    with pytest.warns(RuntimeWarning, match="could not write the cache"):
        assert default_corpus() == built


# ---- load_text ---------------------------------------------------------------
def test_load_text_reads_utf8(tmp_path):
    p = tmp_path / "t.txt"
    p.write_bytes("\ufeffhéllo\r\nwörld\n".encode("utf-8"))
    assert load_text(p) == "héllo\r\nwörld\n"  # BOM dropped, line endings kept
    assert load_text(str(p)) == "héllo\r\nwörld\n"


def test_load_text_errors(tmp_path):
    with pytest.raises(ValueError, match=r"data file '.*nope.txt' does not exist; expected"):
        load_text(tmp_path / "nope.txt")
    with pytest.raises(ValueError, match=r"is a directory; expected a UTF-8 text file"):
        load_text(tmp_path)
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty.txt' is empty \(0 bytes, no text\)"):
        load_text(empty)
    blank = tmp_path / "blank.txt"
    blank.write_bytes(b"  \n\n")
    with pytest.raises(ValueError, match=r"is empty"):
        load_text(blank)
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("café au lait".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1.txt' is not valid UTF-8 \(byte 0xe9 at offset 3\); "
                                         r"expected UTF-8 text"):
        load_text(latin1)
