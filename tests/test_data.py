"""Language-modelling datasets: encoding, the train/val split and random batches."""
import json

import numpy as np
import pytest

from minitx.train.data import LMDataset, get_batch


class TinyCharTokenizer:
    """Test double with the tokenizer interface (encode, decode, vocab_size)."""

    def __init__(self, text):
        self.chars = sorted(set(text))
        self.stoi = {c: i for i, c in enumerate(self.chars)}
        self.vocab_size = len(self.chars)

    def encode(self, text):
        return [self.stoi[c] for c in text]

    def decode(self, ids):
        return "".join(self.chars[int(i)] for i in ids)


TEXT = "".join(f"line {i}: the quick brown fox jumps over the lazy dog.\n" for i in range(50))


@pytest.fixture
def ds():
    return LMDataset(TEXT, TinyCharTokenizer(TEXT))


def test_encode_once_and_split_90_10(ds):
    tok = ds.tokenizer
    n = len(TEXT)
    assert len(ds) == n
    assert len(ds.train) == int(n * 0.9) and len(ds.val) == n - int(n * 0.9)
    assert ds.train.dtype == np.uint16
    assert tok.decode(ds.train) + tok.decode(ds.val) == TEXT  # contiguous, in order


def test_val_fraction_is_configurable():
    ds = LMDataset(TEXT, TinyCharTokenizer(TEXT), val_fraction=0.25)
    assert len(ds.train) == int(len(TEXT) * 0.75)


def test_batch_shapes_dtypes_and_shift(ds):
    rng = np.random.default_rng(0)
    x, y = ds.get_batch("train", 8, rng, block_size=16)
    assert x.shape == y.shape == (8, 16)
    assert x.dtype == y.dtype == np.int64
    np.testing.assert_array_equal(x[:, 1:], y[:, :-1])  # y is x shifted by one
    # every row is a real window of the train split, and y's last token follows it
    train = ds.train.astype(np.int64)
    for row_x, row_y in zip(x, y):
        starts = [i for i in range(len(train) - 16) if (train[i:i + 16] == row_x).all()]
        assert starts and any((train[s + 1:s + 17] == row_y).all() for s in starts)


def test_batches_are_seedable_and_resumable_from_rng_state(ds):
    a = np.random.default_rng(123)
    b = np.random.default_rng(123)
    for _ in range(3):
        xa, ya = ds.get_batch("train", 4, a, block_size=8)
        xb, yb = ds.get_batch("train", 4, b, block_size=8)
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    # the generator state survives JSON (its 128-bit ints included) and resumes exactly
    state = json.loads(json.dumps(a.bit_generator.state))
    expected = ds.get_batch("val", 4, a, block_size=8)
    resumed = np.random.default_rng(999)
    resumed.bit_generator.state = state
    got = ds.get_batch("val", 4, resumed, block_size=8)
    np.testing.assert_array_equal(expected[0], got[0])


def test_offsets_cover_the_whole_split_including_the_last_token():
    data = np.arange(11, dtype=np.uint16)  # block 10: exactly one window
    x, y = get_batch(data, 3, 10, np.random.default_rng(0))
    np.testing.assert_array_equal(x, np.tile(np.arange(10), (3, 1)))
    np.testing.assert_array_equal(y, np.tile(np.arange(1, 11), (3, 1)))
    data = np.arange(20, dtype=np.uint16)
    x, y = get_batch(data, 2000, 4, np.random.default_rng(1))
    assert set(x[:, 0].tolist()) == set(range(16))  # every start 0..n-T-1 is drawn


def test_large_vocab_uses_int32():
    ds = LMDataset.from_ids([0, 70000, 5, 100_000] * 10, vocab_size=100_277)
    assert ds.train.dtype == np.int32
    x, _ = ds.get_batch("train", 2, np.random.default_rng(0), block_size=3)
    assert x.max() <= 100_000


def test_too_short_for_one_block_is_a_clear_error(ds):
    n_val = len(ds.val)
    with pytest.raises(ValueError, match=rf"the val split has {n_val} tokens .*expected at least "
                                         rf"block_size \+ 1 = {n_val + 1}"):
        ds.check_block_size(n_val)
    with pytest.raises(ValueError, match=rf"the val split has {n_val} tokens, expected at least"):
        ds.get_batch("val", 2, np.random.default_rng(0), block_size=n_val)
    ds.check_block_size(n_val - 1)  # fits exactly
    ds.get_batch("val", 2, np.random.default_rng(0), block_size=n_val - 1)
    short = LMDataset("abcde", TinyCharTokenizer("abcde"))
    with pytest.raises(ValueError, match=r"the train split has 4 tokens"):
        short.check_block_size(8)
    no_val = LMDataset(TEXT, TinyCharTokenizer(TEXT), val_fraction=0.0)
    with pytest.raises(ValueError, match=r"the val split has 0 tokens"):
        no_val.get_batch("val", 1, np.random.default_rng(0), block_size=4)


@pytest.mark.parametrize("call,match", [
    (lambda ds: ds.get_batch("test", 2, np.random.default_rng(0), block_size=4),
     r"split='test', expected one of \('train', 'val'\)"),
    (lambda ds: ds.get_batch("train", 0, np.random.default_rng(0), block_size=4), r"batch_size=0, expected an integer >= 1"),
    (lambda ds: ds.get_batch("train", 2, np.random.default_rng(0), block_size=2.5), r"block_size=2.5"),
    (lambda ds: ds.get_batch("train", 2, 42, block_size=4), r"rng=42, expected a numpy.random.Generator"),
    (lambda ds: LMDataset(TEXT, ds.tokenizer, val_fraction=1.0), r"val_fraction=1.0, expected a number in \[0, 1\)"),
    (lambda ds: LMDataset("", ds.tokenizer), r"expected a non-empty 1-D sequence"),
    (lambda ds: LMDataset(TEXT, object()), r"tokenizer: got object without an encode\(\) method"),
    (lambda ds: LMDataset.from_ids([0, 5, 9], vocab_size=5), r"range \[0, 9\], expected ids in \[0, vocab_size=5\)"),
    (lambda ds: LMDataset.from_ids([0, 1], vocab_size=0), r"vocab_size=0"),
])
def test_bad_arguments(ds, call, match):
    with pytest.raises(ValueError, match=match):
        call(ds)


def test_with_the_real_tokenizers():
    from minitx.tokenizer.bpe import BPETokenizer
    from minitx.tokenizer.char import CharTokenizer

    for tok in (CharTokenizer().train(TEXT), BPETokenizer().train(TEXT, vocab_size=300)):
        ds = LMDataset(TEXT, tok)
        assert ds.vocab_size == tok.vocab_size and ds.train.dtype == np.uint16
        x, y = ds.get_batch("train", 2, np.random.default_rng(0), block_size=8)
        assert x.shape == y.shape == (2, 8)
        assert tok.decode(ds.train.tolist() + ds.val.tolist()) == TEXT
