"""minitx's Unigram (SentencePiece-style) tokenizer against Hugging Face's, on tokenizers trained here.

T5's tokenizer kind: Viterbi over piece scores, unknown characters fused into
one ``<unk>``, Metaspace pre-tokenisation. Three tokenizers with different
normalisers and pre-tokenisers; ids must be identical on a fixed list and
on Hypothesis-drawn text.
"""
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

pytest.importorskip("tokenizers", reason="Hugging Face tokenizers is the reference; pip install tokenizers")

import hf_folders as H  # noqa: E402

from minitx.tokenizer.unigram import UnigramTokenizer  # noqa: E402


def _trained(kind):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    specials = ["<pad>", "</s>", "<unk>"]
    if kind == "sentencepiece":
        return H.unigram(200, specials, "$A </s>")
    tok = Tokenizer(models.Unigram())
    if kind == "lower-first":
        tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
        tok.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="first")
        tok.decoder = decoders.Metaspace(prepend_scheme="first")
    else:  # whitespace split, then Metaspace, no normaliser
        tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace()])
        tok.decoder = decoders.Metaspace()
    tok.train_from_iterator([H.TEXT], trainers.UnigramTrainer(vocab_size=150, special_tokens=specials,
                                                              unk_token="<unk>", show_progress=False))
    return tok


KINDS = ["sentencepiece", "lower-first", "whitespace"]
PAIRS = {}


def pair(kind):
    if kind not in PAIRS:
        ref = _trained(kind)
        PAIRS[kind] = (UnigramTokenizer.from_spec(json.loads(ref.to_str())), ref)
    return PAIRS[kind]


FIXED = ["hello  world, Ünïcode!", " leading space", "x  y   z", "</s>hello<pad> there", "ＡＢＣ ① ﬁ ﬀ",
         "tabs\tand\nnewlines\r\n", "zero\u200bwidth\ufeffbom", "\x00\x01control\x07", "▁already▁marked",
         "北京 🤖 emoji", "", "   ", "the quick brown fox jumps over the lazy dog.", "\x1f", "\x1f</s>\x01"]


@pytest.mark.parametrize("kind", KINDS)
def test_fixed_list_matches_hugging_face(kind):
    mine, ref = pair(kind)
    specials = set(mine.special_tokens.values())
    for text in FIXED:
        ids = ref.encode(text, add_special_tokens=False).ids
        assert mine.encode(text) == ids, text
        assert mine.decode([i for i in ids if i not in specials]) == ref.decode(ids), text


ALPHABET = st.one_of(st.characters(min_codepoint=32, max_codepoint=126), st.sampled_from(list(" \t\n\u3000\u2581")),
                     st.characters(blacklist_categories=("Cs",)))
PIECES = st.lists(st.one_of(st.text(ALPHABET, max_size=8), st.sampled_from(["<pad>", "</s>", "  "])), max_size=5)


@pytest.mark.parametrize("kind", KINDS)
@given(text=PIECES.map("".join))
def test_random_text_matches_hugging_face(kind, text):
    mine, ref = pair(kind)
    assert mine.encode(text) == ref.encode(text, add_special_tokens=False).ids


def test_viterbi_prefers_the_higher_total_score():
    tok = UnigramTokenizer([("<unk>", 0.0), ("a", -1.0), ("b", -1.0), ("ab", -1.5), ("abc", -5.0), ("c", -1.0)],
                           unk_id=0)
    assert tok.segment("ab") == [3]  # -1.5 beats -1 + -1
    assert tok.segment("abc") == [3, 5]  # -2.5 beats -5
    assert tok.segment("axxb") == [1, 0, 2]  # two unknown characters, one <unk>


def test_precompiled_normaliser_is_refused():
    spec = json.loads(pair("sentencepiece")[1].to_str())
    spec["normalizer"] = {"type": "Precompiled", "precompiled_charsmap": "AAAA"}
    with pytest.raises(ValueError, match="normalizer 'Precompiled' is not supported"):
        UnigramTokenizer.from_spec(spec)
