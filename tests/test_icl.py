"""The ICL task family, the head mask, induction-head scores and the ICL bench's structure (fast)."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minitx.datasets import icl
from minitx.gradcheck import gradcheck_module
from minitx.interpret import ablate_heads, prefix_matching_scores, repeated_random_tokens, set_head_mask
from minitx.models import GPT, GPTConfig
from minitx.nn import MultiHeadAttention
from minitx.prompt import build_prompt

ROOT = Path(__file__).resolve().parent.parent


def test_training_rows_are_the_prompts_with_answers():
    """A row decodes to the review-label template's text, every label agrees with its review's sentiment,
    each sequence uses two label words of its own (or, in the named rows, positive/negative), and a
    listing row's instruction names exactly its two labels (in either order)."""
    data = icl.ICLData(listed_share=0.5)
    seq, listed = data.rows(np.random.default_rng(0), 60)
    tok = data.tokenizer
    named = 0
    for row, lists in zip(seq, listed):
        text = tok.decode(row)
        lines = text.split("\n")
        pairs = []
        for line in lines[1:-1]:
            review, label = line[len("Review: "):].rsplit(" ", 1)
            pairs.append((review, label))
        mapping = {}
        for review, label in pairs:
            positive = review.split()[1] in icl.POSITIVE
            assert positive or review.split()[1] in icl.NEGATIVE
            assert mapping.setdefault(positive, label) == label  # one label per sentiment in a sequence
        assert len(set(mapping.values())) == len(mapping)  # the two labels differ
        if lists:
            first, second = lines[0][len("Classify each review as "):-1].split(" or ")
            assert set(mapping.values()) <= {first, second} and first != second
            prompt = build_prompt(icl.TEMPLATE, pairs[-1][0], pairs[:-1], labels=(first, second))
        else:
            assert lines[0] == icl.PLAIN_INSTRUCTION
            prompt = build_prompt(icl.TEMPLATE, pairs[-1][0], pairs[:-1], instruction=icl.PLAIN_INSTRUCTION)
        assert text.startswith(prompt.text)  # the prompt API's layout
        if set(mapping.values()) <= {"positive", "negative"}:
            named += 1
            assert mapping.get(True, "positive") == "positive"
        else:
            assert set(mapping.values()) <= set(icl.LABEL_WORDS)
    assert 15 < named < 45 and 15 < listed.sum() < 45  # about half the rows name the sentiment, half list
    orders = {tok.decode(r[:9]).split(" as ")[1].split(" or ")[0] in ("positive",) for r in seq[listed]
              if "positive" in tok.decode(r[:9])}
    assert orders == {True, False}  # named rows list "positive or negative" and "negative or positive"
    assert not icl.ICLData().rows(np.random.default_rng(0), 20)[1].any()  # no listing rows by default
    labels = seq[:, [icl.label_position(i) for i in range(9)]]
    assert len({tuple(sorted(set(r))) for r in labels}) > 10  # label pairs change between sequences
    x, y = data.get_batch("train", 4, np.random.default_rng(1))
    assert x.shape == y.shape == (4, icl.BLOCK_SIZE)
    answers = data.answer_mask()
    assert (y[:, ~answers] == icl.IGNORE).all() and (x[:, 1:][:, answers[:-1]] == y[:, :-1][:, answers[:-1]]).all()
    assert answers.sum() == 9  # the labels of the nine lines the window holds
    full = icl.ICLData(answers_only=False).get_batch("train", 4, np.random.default_rng(1))
    assert (full[0][:, 1:] == full[1][:, :-1]).all()  # plain next-token targets
    v1 = data.get_batch("val", 4, np.random.default_rng(1))[0]
    assert not np.array_equal(v1, x)  # validation draws from its own stream
    with pytest.raises(ValueError, match="listed_share: got 1.5"):
        icl.ICLData(listed_share=1.5)


def test_episodes_are_counterbalanced_and_fit_the_window():
    eps = icl.episodes(np.random.default_rng(0), 5, 8)
    assert len(eps) == 10
    for a, b in zip(eps[::2], eps[1::2]):
        assert a["candidates"] == b["candidates"][::-1] and a["answer"] != b["answer"]
        assert a["prompt"].query == b["prompt"].query and a["prompt"].shots == 8
        assert a["prompt"].instruction == b["prompt"].instruction == icl.PLAIN_INSTRUCTION
    n_tokens = len(icl.tokenizer().encode(eps[0]["prompt"].text))
    assert n_tokens == icl.BLOCK_SIZE - 2  # 8 examples: the window minus the answer and its newline
    one = icl.episodes(np.random.default_rng(0), 50, 1)
    assert all(e["prompt"].shots == 1 for e in one)
    assert any(e["prompt"].examples[0][1] != e["answer"] for e in one)  # one example in all: often the other label
    for e in icl.episodes(np.random.default_rng(0), 20, 4, per_label=True):  # k per label: each label 4 times
        assert sorted(out for _, out in e["prompt"].examples) == sorted(list(e["candidates"]) * 4)
    with pytest.raises(ValueError, match="shots: got 5"):
        icl.episodes(np.random.default_rng(0), 1, 5, per_label=True)
    with pytest.raises(ValueError, match="shots: got 9"):
        icl.episodes(np.random.default_rng(0), 1, 9)


def test_listing_episodes_name_both_labels_and_keep_the_reviews():
    """The listing instruction names the two candidates in one order for both assignments (so it cannot
    tell which is which), the order varies, and the reviews are the plain episodes' own."""
    listed = icl.episodes(np.random.default_rng(4), 40, 2, listed=True)
    plain = icl.episodes(np.random.default_rng(4), 40, 2)
    firsts = set()
    for a, b, c in zip(listed[::2], listed[1::2], plain[::2]):
        assert a["prompt"].instruction == b["prompt"].instruction  # the pair differs only in the examples' labels
        assert set(a["prompt"].labels) == set(a["candidates"]) and a["prompt"].labels == b["prompt"].labels
        firsts.add(a["prompt"].labels[0] == a["candidates"][0])
        assert a["prompt"].query == c["prompt"].query and [r for r, _ in a["prompt"].examples] == [
            r for r, _ in c["prompt"].examples]
        assert a["prompt"].text.split("\n", 1)[1] == c["prompt"].text.split("\n", 1)[1]
    assert firsts == {True, False}  # the positive label is named first in some prompts, second in others
    tok = icl.tokenizer()
    assert len(tok.encode(listed[0]["prompt"].text)) == len(tok.encode(plain[0]["prompt"].text))  # same layout


# --------------------------------------------------------------------------
# the head mask
# --------------------------------------------------------------------------
def test_head_mask_none_or_ones_changes_nothing():
    rng = np.random.default_rng(0)
    layer = MultiHeadAttention(12, 3, causal=True, rng=rng, dtype=np.float64)
    x = rng.standard_normal((2, 5, 12))
    base = layer.forward(x)
    layer.head_mask = np.ones(3)
    assert np.array_equal(layer.forward(x), base)


def test_masking_a_head_equals_zeroing_its_output():
    """Zeroing head h's output is the same as zeroing the rows of proj that read it."""
    rng = np.random.default_rng(1)
    layer = MultiHeadAttention(12, 3, causal=True, rng=rng, dtype=np.float64)
    x = rng.standard_normal((2, 5, 12))
    layer.head_mask = np.array([1.0, 0.0, 1.0])
    masked = layer.forward(x)
    layer.head_mask = None
    layer.proj.weight.data[4:8] = 0  # head 1's slice of the concatenated heads (head size 4)
    assert np.allclose(masked, layer.forward(x), atol=1e-13)
    assert not np.allclose(masked, MultiHeadAttention(12, 3, causal=True, rng=np.random.default_rng(1),
                                                      dtype=np.float64).forward(x))


def test_head_mask_backward_is_gradchecked():
    rng = np.random.default_rng(2)
    layer = MultiHeadAttention(8, 2, causal=True, rng=rng, dtype=np.float64)
    layer.head_mask = np.array([0.0, 0.7])
    result = gradcheck_module(layer, rng.standard_normal((2, 4, 8)))
    assert result.ok(1e-6), result
    q_of_head0 = layer.qkv.weight.grad[:, 0:4]  # head 0's query columns: no gradient through a zeroed head
    assert np.allclose(q_of_head0, 0)


def test_ablate_heads_restores_and_checks():
    model = GPT(GPTConfig(vocab_size=20, block_size=16, n_layer=2, n_head=2, n_embd=8), seed=0)
    idx = np.arange(10)[None] % 20
    base = model.forward(idx)
    with ablate_heads(model, [(1, 0)]):
        assert model.blocks[1].attn.head_mask.tolist() == [0.0, 1.0] and model.blocks[0].attn.head_mask is None
        assert not np.allclose(model.forward(idx), base)
    assert all(b.attn.head_mask is None for b in model.blocks)
    assert np.array_equal(model.forward(idx), base)
    with pytest.raises(ValueError, match="heads: got \\(2, 0\\)"):
        set_head_mask(model, [(2, 0)])


# --------------------------------------------------------------------------
# prefix-matching scores
# --------------------------------------------------------------------------
def test_repeated_random_tokens():
    idx = repeated_random_tokens(np.random.default_rng(0), 3, 6, 20, exclude=[0, 1])
    assert idx.shape == (3, 12) and (idx[:, :6] == idx[:, 6:]).all() and idx.min() >= 2
    assert all(len(set(r[:6])) == 6 for r in idx)


def test_prefix_matching_score_finds_a_planted_induction_pattern(monkeypatch):
    """Head (1, 0) attends exactly to the token after the earlier occurrence, head (0, 1) to itself."""
    import minitx.interpret as interp

    L, n = 5, 2
    T = 2 * L

    def fake_maps(model, idx):
        w = np.zeros((n, 2, T, T))
        w[:, :, np.arange(T), np.arange(T)] = 1.0  # everybody attends to itself...
        layer1 = w.copy()
        q = np.arange(L, T)
        layer1[:, 0, q, :] = 0
        layer1[:, 0, q, q - L + 1] = 1.0  # ...but the planted induction head
        return [w, layer1]

    monkeypatch.setattr(interp, "attention_maps", fake_maps)
    model = GPT(GPTConfig(vocab_size=20, block_size=T, n_layer=2, n_head=2, n_embd=8), seed=0)
    scores = prefix_matching_scores(model, n_seq=n, seq_len=L)
    assert scores.shape == (2, 2) and scores[1, 0] == 1.0 and scores[0, 1] == 0.0 and scores[1, 1] == 0.0


def test_prefix_matching_scores_of_a_real_model_are_attention_shares():
    model = GPT(GPTConfig(vocab_size=30, block_size=20, n_layer=2, n_head=2, n_embd=8), seed=0)
    s = prefix_matching_scores(model, n_seq=4)
    assert s.shape == (2, 2) and (s >= 0).all() and (s <= 1).all()
    with pytest.raises(ValueError, match="seq_len: got 11"):
        prefix_matching_scores(model, seq_len=11)


# --------------------------------------------------------------------------
# the bench, fast
# --------------------------------------------------------------------------
def test_icl_bench_fast_structure(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "minitx.bench.icl", "--fast", "--json", "--seed", "3",
                           "--cache", str(tmp_path / "cache"), "--threads", "2"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    rows = [r for r in lines if "k" in r and "ablation" not in r]
    assert len(rows) == 3 * 5 * 2 and {r["k"] for r in rows} == {0, 1, 2, 4, 8}
    assert {r["prompt"] for r in rows} == {"listed", "plain"}
    for r in rows:
        assert set(r) == {"model", "n_params", "k", "accuracy", "chance", "n_eval", "prompt"}
        assert r["chance"] == 0.5 and r["n_eval"] == 40 and 0 <= r["accuracy"] <= 1
        if r["k"] == 0:  # counterbalanced: a model without examples answers both label orders alike
            assert r["accuracy"] == 0.5
    params = [r["n_params"] for r in rows if r["k"] == 0 and r["prompt"] == "listed"]
    assert params == sorted(params) and params[-1] >= 10 * params[0]
    per_label = [r for r in lines if "k_per_label" in r]
    assert len(per_label) == 3 * 3 * 2 and {r["k_per_label"] for r in per_label} == {1, 2, 4}
    ablation = [r for r in lines if "ablation" in r]
    assert {r["ablation"] for r in ablation} == {"none", "induction", "control"}
    assert len(lines[-1]["induction_heads"]) >= 1
    assert lines[-1]["tries"] == {r["model"]: 2 for r in rows}  # too small to learn: each restarted once
    assert proc.stderr.count("phase 1 again from a new initialisation") == 3
    assert len(list((tmp_path / "cache").iterdir())) == 3  # one checkpoint folder per size
    again = subprocess.run([sys.executable, "-m", "minitx.bench.icl", "--fast", "--json", "--seed", "3",
                            "--cache", str(tmp_path / "cache")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert [json.loads(x) for x in again.stdout.splitlines()][:-1] == lines[:-1]  # cached models, same figures
    assert "trained" not in again.stderr


def test_a_try_that_passes_the_probe_is_trained_as_without_restarts_and_one_that_fails_restarts(tmp_path):
    import dataclasses  # noqa: PLC0415

    from minitx.bench import icl as bench  # noqa: PLC0415

    size = bench.Size("gpt-1x8", 1, 1, 8)
    plain = dataclasses.replace(bench.FAST, max_iters=6, listing_iters=2, max_restarts=0)
    lenient = dataclasses.replace(plain, max_restarts=2, restart_below=0.0)  # every try passes
    strict = dataclasses.replace(plain, max_restarts=1, restart_below=1.01)  # no try passes
    logs = []
    runs = {name: bench.train_or_load(size, b, 4, tmp_path / name, threads=1, log=logs.append)
            for name, b in (("plain", plain), ("lenient", lenient), ("strict", strict))}
    weights = {name: m.state_dict() for name, (m, _) in runs.items()}
    assert all(np.array_equal(weights["plain"][k], weights["lenient"][k]) for k in weights["plain"])
    assert not all(np.array_equal(weights["plain"][k], weights["strict"][k]) for k in weights["plain"])
    assert [runs[n][1]["tries"] for n in ("plain", "lenient", "strict")] == [1, 1, 2]
    assert len(runs["strict"][1]["probe_accuracies"]) == 2 and len(runs["strict"][1]["phase_val_losses"]) == 2
    assert sum("phase 1 again" in line for line in logs) == 1
    again, info = bench.train_or_load(size, strict, 4, tmp_path / "strict", threads=1, log=logs.append)
    assert info["cached"] and info["tries"] == 2  # read back from the checkpoint


def test_power_law_fit_recovers_a_known_exponent():
    from minitx.bench.scaling import fit_power_law

    n = np.array([1e3, 1e4, 1e5, 1e6])
    fit = fit_power_law(n, 7.0 * n ** -0.08)
    assert abs(fit["alpha"] - 0.08) < 1e-9 and abs(fit["a"] - 7.0) < 1e-6 and fit["r2"] > 0.999999


def test_scaling_bench_fast(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "minitx.bench.scaling", "--fast", "--json", "--cache",
                           str(tmp_path / "c"), "--plot", str(tmp_path / "law.png")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    rows, fit = lines[:-1], lines[-1]["fit"]
    assert len(rows) >= 4 and all(set(r) == {"model", "n_params", "n_non_embedding", "val_loss", "tokens"}
                                  for r in rows)
    assert len({r["tokens"] for r in rows}) == 1  # the same token budget for every size
    sizes = [r["n_non_embedding"] for r in rows]
    assert sizes == sorted(sizes) and sizes[-1] >= 4 * sizes[0]
    assert np.isfinite(fit["alpha"]) and 0 <= fit["r2"] <= 1
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return
    assert (tmp_path / "law.png").stat().st_size > 0


def test_matching_scores_see_both_kinds_of_matching_head(monkeypatch):
    """Planted heads: one blind to sentiment (every label alike) scores 0; one that looks only at the labels of
    the query's sentiment, and one that looks only at the newlines after the *other* sentiment's labels,
    score 1 each (the score drops the sign)."""
    import minitx.interpret as interp
    from minitx.bench import icl as bench

    eps = icl.episodes(np.random.default_rng(5), 200, 8)  # many prompts: both sentiments equally often
    ids, _, _ = bench.encode_episodes(eps, icl.tokenizer(), icl.BLOCK_SIZE)
    B, T = ids.shape
    same = icl.matching_label_positions(eps, T)  # (B, T)
    labels = np.zeros_like(same)
    labels[:, [icl.label_position(j) for j in range(8)]] = True
    both = (same.sum(1) > 0) & ((labels & ~same).sum(1) > 0)  # prompts with examples of both sentiments
    ids, same, labels, eps = ids[both], same[both], labels[both], [e for e, b in zip(eps, both) if b]
    B = len(ids)

    def rows(mask):  # attention of the last position spread evenly over ``mask``
        w = np.zeros((B, T, T))
        w[:, -1] = mask / mask.sum(axis=1, keepdims=True)
        return w

    def fake_maps(model, idx):
        layer0 = np.stack([rows(labels), rows(labels)], axis=1)  # (B, 2, T, T) blind to sentiment
        layer1 = np.stack([rows(same), rows(np.roll(labels & ~same, 1, axis=1))], axis=1)
        return [layer0, layer1]

    monkeypatch.setattr(interp, "attention_maps", fake_maps)
    model = GPT(GPTConfig(vocab_size=len(icl.VOCAB), block_size=icl.BLOCK_SIZE, n_layer=2, n_head=2, n_embd=8))
    scores = bench.matching_scores(model, ids, eps)
    assert scores.shape == (2, 2)
    assert np.allclose(scores[0], 0, atol=0.05)  # a blind head: only the sampling of the sentiments shows
    assert np.allclose(scores[1], 1.0)
