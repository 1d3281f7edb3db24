"""Byte-level BPE: training (fast == textbook), encoding, decoding, save/load, errors."""
import os
from pathlib import Path

import numpy as np
import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from minitx.tokenizer import (
    GPT2_SPLIT_PATTERN,
    GPT4_SPLIT_PATTERN,
    BPETables,
    BPETokenizer,
    CharTokenizer,
    bpe_chunk,
    fast,
    merge_pair,
    split_text,
    train_incremental,
    train_reference,
)

SAMPLE = (
    "The quick brown fox jumps over the lazy dog. The dog didn't care; it's lazy!\n"
    "def f(x):\n    return x ** 2  # squares 12345 and 678\n\n"
    "Zwölf Boxkämpfer jagen Viktor quer über den großen Sylter Deich. 東京は日本の首都です。 🤖🚀 "
) * 6

_tok_cache = {}


def trained(vocab_size=400, pattern=GPT4_SPLIT_PATTERN, specials=None):
    key = (vocab_size, pattern, tuple(specials or ()))
    if key not in _tok_cache:
        _tok_cache[key] = BPETokenizer().train(SAMPLE, vocab_size, pattern=pattern, special_tokens=specials)
    return _tok_cache[key]


def test_worked_example_from_the_docstring():
    tok = BPETokenizer(pattern=r"[\s\S]+").train("aaabdaaabac", 259, pattern=r"[\s\S]+")
    assert tok.merges == {(97, 97): 256, (97, 98): 257, (256, 257): 258}
    assert tok.encode("aaabdaaabac") == [258, 100, 258, 97, 99]


def test_merge_pair_leftmost():
    assert merge_pair([1, 2, 3, 1, 2], (1, 2), 4) == [4, 3, 4]
    assert merge_pair([7, 7, 7], (7, 7), 8) == [8, 7]


@pytest.mark.parametrize("pattern", [GPT2_SPLIT_PATTERN, GPT4_SPLIT_PATTERN])
def test_incremental_training_equals_textbook(pattern):
    text = SAMPLE[: len(SAMPLE) // 2]
    fast = BPETokenizer().train(text, 420, pattern=pattern)
    slow = BPETokenizer().train(text, 420, pattern=pattern, algorithm="reference")
    assert fast.merges == slow.merges
    assert 100 < len(fast.merges) <= 420 - 256


@settings(max_examples=40, deadline=None)
@given(st.lists(st.text(alphabet="abc ", min_size=1, max_size=12), min_size=1, max_size=30), st.integers(1, 30))
def test_incremental_equals_textbook_on_random_corpora(words, num_merges):
    """Ties and overlapping pairs ('aaa') are where a fast trainer usually goes wrong."""
    chunks = [w.encode() for w in words]
    counts = {}
    for c in chunks:
        counts[c] = counts.get(c, 0) + 1
    assert train_incremental(counts, num_merges) == train_reference(chunks, num_merges)


def test_training_stops_when_no_pairs_left():
    tok = BPETokenizer().train("ab ab ab", 1000)
    assert len(tok.merges) < 1000 - 256
    assert tok.decode(tok.encode("ab ab")) == "ab ab"


def test_fast_encode_equals_reference_encode():
    tok = trained()
    text = SAMPLE + "unseen words: flibbertigibbet 9876543210 \r\n\t\t  end"
    assert tok.encode(text) == tok.encode_reference(text)
    assert tok.encode(text) == tok.encode(text)  # second time: all from the cache


def test_split_patterns():
    assert split_text("Hello world's 12345!!") == ["Hello", " world", "'s", " ", "123", "45", "!!"]
    assert split_text("Hello world's 12345!!", GPT2_SPLIT_PATTERN) == ["Hello", " world", "'s", " 12345", "!!"]
    with pytest.raises(ValueError, match="pattern"):
        BPETokenizer(pattern="(unclosed")


def test_leading_space_makes_a_different_token():
    tok = trained()
    assert tok.encode(" dog") != tok.encode("dog")
    assert tok.show(" dog") == "[ dog]"


def test_vocab_and_lookups():
    tok = trained(300)
    assert tok.vocab_size == 300
    assert tok.id_to_bytes(ord("a")) == b"a"
    for pair, new in tok.merges.items():
        assert tok.id_to_bytes(new) == tok.id_to_bytes(pair[0]) + tok.id_to_bytes(pair[1])
        assert tok.bytes_to_id(tok.id_to_bytes(new)) == new
    with pytest.raises(ValueError, match="not in this vocabulary"):
        tok.id_to_bytes(10**6)
    assert len(tok.merge_history()) == 300 - 256


def test_vocab_size_too_small():
    with pytest.raises(ValueError, match="vocab_size: got 257, expected an integer >= 258"):
        BPETokenizer().train("abc", 257, special_tokens=["<|endoftext|>", "<|pad|>"])


# -- special tokens -----------------------------------------------------------------
def test_special_tokens_policies():
    tok = trained(300, specials=["<|endoftext|>", "<|pad|>"])
    eot, pad = tok.special_tokens["<|endoftext|>"], tok.special_tokens["<|pad|>"]
    assert (eot, pad) == (298, 299) and tok.vocab_size == 300
    text = "hello<|endoftext|>world<|pad|>"
    with pytest.raises(ValueError, match="special token '<\\|endoftext\\|>' at position 5"):
        tok.encode(text)
    ids = tok.encode(text, allowed_special="all")
    assert eot in ids and pad in ids and tok.decode(ids) == text
    ordinary = tok.encode(text, allowed_special="none")
    assert eot not in ordinary and tok.decode(ordinary) == text
    with pytest.raises(ValueError, match="<\\|pad\\|>"):
        tok.encode(text, allowed_special={"<|endoftext|>"})
    assert tok.encode("x<|pad|>", allowed_special={"<|pad|>"})[-1] == pad
    assert tok.encode(text, allowed_special="all") == tok.encode_reference(text, allowed_special="all")
    with pytest.raises(ValueError, match="allowed_special"):
        tok.encode("x", allowed_special="some")
    with pytest.raises(ValueError, match="not special tokens"):
        tok.encode("x", allowed_special={"<|nope|>"})


# -- decoding errors ----------------------------------------------------------------
def test_lone_surrogate_is_a_clear_value_error():
    tok = trained(300)
    with pytest.raises(ValueError, match="lone surrogate .* position 3"):
        tok.encode("abc\ud800def")


def test_decode_invalid_utf8_and_unknown_ids():
    tok = trained(300)
    euro = list("€".encode())  # 3 bytes; ids 0..255 are the bytes
    assert tok.decode(euro[:2]) == "\ufffd"  # default: replace
    assert tok.decode(euro[:2], errors="backslashreplace") == "\\xe2\\x82"
    with pytest.raises(UnicodeDecodeError):
        tok.decode(euro[:2], errors="strict")
    with pytest.raises(ValueError, match="unknown token id 5000 at position 1"):
        tok.decode([65, 5000])


# -- properties ---------------------------------------------------------------------
text_strategy = st.text(st.characters(blacklist_categories=("Cs",)), max_size=200)


@settings(max_examples=150, deadline=None)
@given(text_strategy)
def test_roundtrip_arbitrary_unicode(s):
    tok = trained()
    assert tok.decode(tok.encode(s, allowed_special="none")) == s
    assert tok.encode(s, allowed_special="none") == tok.encode_reference(s, allowed_special="none")


@settings(max_examples=50, deadline=None)
@given(st.lists(text_strategy, max_size=8), st.integers(0, 8))
def test_batch_split_invariance(texts, cut):
    tok = trained()
    whole = tok.encode_batch(texts, allowed_special="none")
    assert whole == tok.encode_batch(texts[:cut], "none") + tok.encode_batch(texts[cut:], "none")
    assert whole == [tok.encode(t, allowed_special="none") for t in texts]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(text_strategy, st.just("<|endoftext|>")), max_size=4).map("".join))
def test_saved_and_loaded_encodes_identically(s):
    tok = trained(specials=["<|endoftext|>"])
    loaded = _saved_copy(tok)
    assert loaded.encode(s, "all") == tok.encode(s, "all")


_saved = {}


def _saved_copy(tok):
    if id(tok) not in _saved:
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            tok.save(Path(d) / "tok.model")
            _saved[id(tok)] = BPETokenizer.load(Path(d) / "tok.model")
    return _saved[id(tok)]


# -- save / load --------------------------------------------------------------------
def test_save_load_roundtrip_and_listing(tmp_path):
    tok = trained(320, specials=["<|endoftext|>"])
    path = tmp_path / "tok.model"
    tok.save(path)
    text = path.read_text(encoding="utf-8")
    assert text.startswith("minitx-bpe 1\n")
    listing = (tmp_path / "tok.model.vocab").read_text(encoding="utf-8")
    assert "(special)" in listing and "->" in listing
    loaded = BPETokenizer.load(path)
    assert loaded.merges == tok.merges and loaded.special_tokens == tok.special_tokens
    assert loaded.pattern == tok.pattern
    assert loaded.encode(SAMPLE) == tok.encode(SAMPLE)
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda t: "", "not a minitx tokenizer file"),
        (lambda t: t.replace("minitx-bpe 1", "minitx-bpe 9"), "version '9'"),
        (lambda t: t[: len(t) // 2], "ends early|line"),
        (lambda t: t.replace("\nmerges ", "\nmerged "), "expected merges"),
        (lambda t: t.replace("0 101 32", "0 101 x32") if "0 101 32" in t else t + "junk", "line"),
        (lambda t: t + "1 2 3 4\n", "expected end of file"),
        (lambda t: t.replace("bytes 0 1 2", "bytes 0 1 1"), "256 distinct"),
    ],
)
def test_corrupted_files_raise_value_error(tmp_path, damage, message):
    tok = trained(300)
    path = tmp_path / "tok.model"
    tok.save(path, vocab_listing=False)
    path.write_text(damage(path.read_text(encoding="utf-8")), encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        BPETokenizer.load(path)


def test_binary_garbage_file(tmp_path):
    path = tmp_path / "tok.model"
    path.write_bytes(b"\x80\x81\xff" * 10)
    with pytest.raises(ValueError, match="not UTF-8"):
        BPETokenizer.load(path)


def test_failed_save_keeps_the_old_file(tmp_path, monkeypatch):
    tok = trained(300)
    path = tmp_path / "tok.model"
    tok.save(path, vocab_listing=False)
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        trained(320).save(path, vocab_listing=False)
    assert path.read_bytes() == before
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_no_pickle_anywhere():
    root = Path(__file__).resolve().parent.parent / "minitx" / "tokenizer"
    for path in root.glob("*.py"):
        assert "import pickle" not in path.read_text(encoding="utf-8"), path


# -- character tokenizer --------------------------------------------------------------
def test_char_tokenizer(tmp_path):
    tok = CharTokenizer().train("hello world")
    assert tok.vocab_size == 8
    assert tok.decode(tok.encode("hello")) == "hello"
    assert tok.show("he") == "[h][e]"
    with pytest.raises(ValueError, match="'z' at position 1"):
        tok.encode("hz")
    with pytest.raises(ValueError, match="unknown token id 99"):
        tok.decode([99])
    tok.save(tmp_path / "c.model")
    assert CharTokenizer.load(tmp_path / "c.model").encode("world") == tok.encode("world")
    (tmp_path / "bad.model").write_text("nope\n")
    with pytest.raises(ValueError, match="not a minitx character tokenizer"):
        CharTokenizer.load(tmp_path / "bad.model")
    assert tok.encode_batch(["he", "lo"]) == [tok.encode("he"), tok.encode("lo")]


def test_progress_bar_and_pattern_names(capsys):
    tok = BPETokenizer().train(SAMPLE, 300, pattern="gpt2", progress=True)
    assert tok.pattern == GPT2_SPLIT_PATTERN
    assert "bpe merges" in capsys.readouterr().err
    assert "BPETokenizer(vocab_size=300" in repr(tok)


# -- the fast path == the reference ----------------------------------------------------
def whole_tokens(tok):
    """bytes -> id of every ordinary token (what the whole-token shortcut looks up)."""
    specials = set(tok.special_tokens.values())
    return {b: i for i, b in tok.vocab.items() if i not in specials}


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=40))
def test_fast_chunk_bpe_equals_reference(piece):
    tok = trained()
    expected = bpe_chunk(piece, tok.byte_ids, tok.ranks)
    assert fast.merge_loop([tok.byte_ids[b] for b in piece], tok.ranks) == expected
    assert tok.decode_bytes(expected) == piece


@settings(max_examples=30, deadline=None)
@given(st.lists(st.sampled_from([b"a", b"ab", b" ", b"e", b"\xe7\x9a\x84", b"--"]), min_size=30, max_size=200))
def test_fast_chunk_bpe_equals_reference_on_long_chunks(parts):
    """Long chunks (past BATCH_MAX_LEN, so they take merge_loop) with many equal ranks: leftmost ties, stale heap entries."""
    tok = trained()
    piece = b"".join(parts)
    expected = bpe_chunk(piece, tok.byte_ids, tok.ranks)
    assert fast.merge_loop([tok.byte_ids[b] for b in piece], tok.ranks) == expected


_tables = {}


def pair_table(tok):
    if id(tok) not in _tables:
        _tables[id(tok)] = fast.PairTable(tok.ranks)
    return _tables[id(tok)]


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.binary(max_size=24), max_size=60),
    st.sampled_from([1, 4, 32]),
    st.sampled_from([3, 64]),
)
def test_batch_bpe_equals_reference(pieces, min_chunks, max_len):
    """All chunks at once in NumPy (and the Python finish, and the long-chunk route) == one by one."""
    tok = trained()
    byte_ids = np.array(tok.byte_ids, dtype=np.int64)
    got = fast.batch_bpe(pieces, byte_ids, pair_table(tok), tok.ranks, max_len=max_len, min_chunks=min_chunks)
    assert got == [bpe_chunk(p, tok.byte_ids, tok.ranks) for p in pieces]


def test_pair_table_equals_dict():
    tok = trained()
    table = pair_table(tok)
    rng = np.random.default_rng(0)
    known = np.array(list(tok.ranks), dtype=np.int64)  # (m, 2)
    noise = rng.integers(0, tok.vocab_size + 5, size=(5000, 2))  # mostly not merges
    pairs = np.concatenate([known, noise])
    rank, new = table.lookup(pairs[:, 0].copy(), pairs[:, 1].copy())
    for (a, b), r, n in zip(pairs.tolist(), rank.tolist(), new.tolist()):
        if (a, b) in tok.ranks:
            assert (r, n) == tok.ranks[(a, b)]
        else:
            assert r == fast.NO_RANK
    data = rng.integers(0, 256, size=3000).astype(np.uint8)  # the first round's pairs of byte tokens
    byte_ids = np.array(tok.byte_ids, dtype=np.int64)
    direct = table.lookup_bytes(data, byte_ids)
    hashed = table.lookup(byte_ids[data[:-1]], byte_ids[data[1:]])
    assert all(np.array_equal(x, y) for x, y in zip(direct, hashed))


@settings(max_examples=40, deadline=None)
@given(st.text(st.characters(blacklist_categories=("Cs",)), max_size=80), st.integers(1, 40))
def test_fast_training_equals_textbook_on_arbitrary_text(text, num_merges):
    """Both patterns' fast split, the chunk counting and the incremental trainer against the definition."""
    for pattern in (GPT2_SPLIT_PATTERN, GPT4_SPLIT_PATTERN):
        fast_tok = BPETokenizer().train(text, 256 + num_merges, pattern=pattern)
        slow_tok = BPETokenizer().train(text, 256 + num_merges, pattern=pattern, algorithm="reference")
        assert fast_tok.ranked_merges == slow_tok.ranked_merges


@settings(max_examples=60, deadline=None)
@given(st.lists(text_strategy, min_size=1, max_size=6))
def test_batched_encoder_equals_reference(texts):
    """The encoder with every new chunk sent through batch_bpe (batch_from=1), caches shared across texts."""
    for tok in (trained(), trained(pattern=GPT2_SPLIT_PATTERN)):
        enc = batched_twin(tok)
        for t in texts:
            assert enc.encode_ordinary(t) == tok.encode_reference(t, allowed_special="none")


_batched = {}


def batched_twin(tok):
    if id(tok) not in _batched:
        _batched[id(tok)] = fast.FastEncoder(tok.pattern, tok.byte_ids, tok.ranks, whole_tokens(tok), batch_from=1)
    return _batched[id(tok)]


def test_cache_stays_bounded_and_exact():
    tok = trained()
    enc = fast.FastEncoder(tok.pattern, tok.byte_ids, tok.ranks, whole_tokens(tok), max_entries=50)
    rng = __import__("random").Random(1)
    for _ in range(30):
        text = " ".join("".join(rng.choice("abcdefgh") for _ in range(rng.randint(1, 9))) for _ in range(40))
        assert enc.encode_ordinary(text) == tok.encode_reference(text, allowed_special="none")
        assert enc.cached_chunks <= 50 + 40  # emptied once past the bound; one text's new chunks on top


def test_failed_encode_leaves_no_placeholder_in_the_cache():
    tok = BPETokenizer().train(SAMPLE, 300)
    with pytest.raises(ValueError, match="surrogate"):
        tok.encode("fresh words here \ud800 and more")
    assert all(isinstance(i, int) for ids in tok._fast.cache.values() for i in ids)
    assert tok.encode("fresh words here") == tok.encode_reference("fresh words here")


# -- the fast split == the regex split ------------------------------------------------------
# Pieces of text chosen to stress the split and the cuts around characters beyond U+FFFF:
# runs of spaces, spaces after other whitespace (never a safe cut), CRLF, contractions,
# digit runs, Unicode letters and whitespace, punctuation, astral letters and symbols.
ATOMS = [
    " ", " ", " ", "  ", "   ", "\n", "\r\n", "\r", "\t", "\x0b", "\x0c", "\x1c", "\x85", "\xa0", "\u2003", "\u3000",
    "a", "Z", "word", "The", "é", "東京", "🤖", "𝔘𝔫", "𐐀", "'s", "'LL", "'ve", "'ſ", "'", "1", "12345", "٣", "𝟙𝟚", ".",
    ",", "!?", "_x", "$", "...", "-", "\"",
]
adversarial_text = st.lists(st.sampled_from(ATOMS), max_size=40).map("".join)
_greedy = {}


def merges_across_chunks(pattern):
    """A tokenizer whose merges were learnt *without* a split pattern (so they cross chunk
    boundaries: ``" 1"``, ``"d."``, ``"\\n "``), used with ``pattern``: any mistake in
    where the encoder cuts chunks then shows up in the ids."""
    if pattern not in _greedy:
        rng = __import__("random").Random(0)
        text = SAMPLE + "".join(rng.choice(ATOMS) for _ in range(4000))
        learnt = BPETokenizer(pattern=r"[\s\S]+").train(text, 700)
        _greedy[pattern] = BPETokenizer.from_tables(BPETables.make(pattern, learnt.byte_ids, learnt.ranked_merges))
    return _greedy[pattern]


@pytest.mark.parametrize("pattern", [GPT2_SPLIT_PATTERN, GPT4_SPLIT_PATTERN])
@settings(max_examples=300, deadline=None)
@given(text=st.one_of(adversarial_text, st.text(st.characters(blacklist_categories=("Cs",)), max_size=60)))
def test_fast_split_equals_regex(pattern, text):
    assert fast.Splitter(pattern).split(text) == split_text(text, pattern)
    for tok in (trained(pattern=pattern), merges_across_chunks(pattern)):  # shared: caches fill up across examples
        ids = tok.encode_ordinary(text)
        assert ids == tok.encode_reference(text, allowed_special="none")
        assert tok.encode_ordinary(text) == ids  # again, all from the cache


@pytest.mark.parametrize("pattern", [GPT2_SPLIT_PATTERN, GPT4_SPLIT_PATTERN])
@settings(max_examples=200, deadline=None)
@given(
    text=st.one_of(adversarial_text, st.text(st.characters(blacklist_categories=("Cs",)), max_size=60)),
    block_chars=st.integers(1, 12),
)
def test_blocks_cut_where_the_chunks_do_not_change(pattern, text, block_chars):
    """The encoder's blocks, made tiny so that nearly every exact cut is used: the chunks and ids are unchanged."""
    tok = merges_across_chunks(pattern)
    whole = whole_tokens(tok) if tok.whole_token_shortcut else None
    enc = fast.FastEncoder(tok.pattern, tok.byte_ids, tok.ranks, whole, batch_from=1, block_chars=block_chars)
    blocks = list(enc.blocks(text))
    assert "".join(blocks) == text and all(blocks)
    assert [chunk for block in blocks for chunk in split_text(block, pattern)] == split_text(text, pattern)
    assert enc.encode_ordinary(text) == tok.encode_reference(text, allowed_special="none")


def test_blocks_are_cut_before_a_space_after_non_whitespace():
    text = "ab cd  ef\n gh\t ij kl"
    tiny = fast.FastEncoder(GPT4_SPLIT_PATTERN, range(256), {}, None, block_chars=1)
    assert list(tiny.blocks(text)) == ["ab", " cd", "  ef\n gh\t ij", " kl"]
    assert list(trained()._fast.blocks(text)) == [text]  # shorter than one block


@pytest.mark.parametrize("pattern", [GPT2_SPLIT_PATTERN, GPT4_SPLIT_PATTERN])
def test_fast_split_on_every_bmp_character(pattern):
    """Every BMP character in several contexts (alone, after a space, a letter, a digit, an
    apostrophe, before a newline, doubled): the re classes equal regex's \\p{L}, \\p{N}, \\s."""
    chars = [chr(c) for c in range(0x10000) if not 0xD800 <= c <= 0xDFFF]
    text = "".join(f"{c} {c}a{c}1{c}'{c}\n{c}{c}  " for c in chars)
    assert fast.Splitter(pattern).split(text) == split_text(text, pattern)
    assert fast.bmp_pattern(pattern).findall(text) == split_text(text, pattern)


@pytest.mark.parametrize("pattern", [GPT2_SPLIT_PATTERN, GPT4_SPLIT_PATTERN])
@pytest.mark.parametrize(
    "text",
    [
        "", " ", "  ", " " * 50, "a", " a", "  a", "a ", "a  ", "a b", "a  b", "a   b c", "a\n b", "a\n\n  b",
        "a \n b", "a\t b", "a\x1c b", "a\xa0 b", "a\u3000  b", " \n ", "x  y  z  ", "\n    return x\n    pass\n",
        "end.  Next", "it's  12  3", "a " * 30 + " " * 5 + "b", "a 1 b", "x 12345", "x 12345 y", "go 2day", "é 東京 x",
        "🤖", " 🤖", "🤖 ", "a🤖b", "x  🤖  y", "𝔘𝔫𝔦 code 𝟙𝟚3 🤖\n 🤖", "no space🤖at all🤖", "'𝔰 'ſ 'S",
    ],
)
def test_split_edge_cases(pattern, text):
    assert fast.Splitter(pattern).split(text) == split_text(text, pattern)
    for tok in (trained(pattern=pattern), merges_across_chunks(pattern)):
        for _ in range(2):  # cold-ish, then from the caches
            assert tok.encode_ordinary(text) == tok.encode_reference(text, allowed_special="none")


def test_str_isspace_covers_the_patterns_whitespace():
    """Safe cuts use ``str.isspace``; it must accept every character the patterns' ``\\s`` does (all of Unicode)."""
    every_char = "".join(map(chr, range(0xD800))) + "".join(map(chr, range(0xE000, 0x110000)))
    assert all(c.isspace() for c in regex.findall(r"\s", every_char))


def test_custom_pattern_uses_regex():
    assert fast.bmp_pattern(r"\p{L}+|\P{L}+") is None
    assert fast.Splitter(r"\p{L}+|\P{L}+").split("héllo, 東京!") == ["héllo", ", ", "東京", "!"]


# -- structure ---------------------------------------------------------------------------
def test_tokenizer_modules_import_one_way():
    """tables <- bpe <- formats, fast <- bpe: no import cycle, and formats/tables read no private attributes."""
    import ast

    root = Path(__file__).resolve().parent.parent / "minitx" / "tokenizer"
    graph = {}
    for path in root.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        deps = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                deps.add(node.module or "")
                deps.update(a.name for a in node.names if not node.module)
        graph[path.stem] = {d.split(".")[0] for d in deps} - {""}

    def reaches(start, goal, seen=()):
        return any(d == goal or (d not in seen and reaches(d, goal, seen + (d,))) for d in graph.get(start, ()))

    for module in graph:
        assert not reaches(module, module), f"import cycle through {module}: {graph}"
    assert "bpe" not in graph["tables"] and "bpe" not in graph["fast"]
    for name in ("formats", "tables"):
        assert not regex.search(r"\btok\._", (root / f"{name}.py").read_text(encoding="utf-8")), name
