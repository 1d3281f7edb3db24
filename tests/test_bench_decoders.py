"""The decoder comparison bench (``python -m minitx.bench.decoders``): its rows, and the measurements under them.

The fast run's numbers are those of models trained for a few iterations,
so these tests check what must hold whatever the training did: the
parameter counts match, the learned-position model refuses a window past
its table while RoPE and ALiBi give a loss at every length, the KV caches
hold what the formula says, and decoding with a cache gives the tokens of
decoding without one.
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import math

import numpy as np
import pytest

from minitx.bench import decoders
from minitx.models import GPT, GPTConfig


def plot_available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True



@pytest.fixture(scope="module")
def fast_rows(tmp_path_factory):
    plot = tmp_path_factory.mktemp("decoders") / "decoders.png"
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        assert decoders.main(["--fast", "--json", "--plot", str(plot)]) == 0
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    return rows, plot


def test_fast_run_has_a_row_of_each_kind_per_model(fast_rows):
    rows, plot = fast_rows
    settings = decoders.DecoderBenchSettings.fast()
    models = [r for r in rows if r["kind"] == "model"]
    assert [r["model"] for r in models] == list(decoders.FAMILIES)
    ext = [r for r in rows if r["kind"] == "extrapolation"]
    assert sorted((r["model"], r["factor"]) for r in ext) == sorted(
        (m, f) for m in decoders.FAMILIES for f in settings.factors)
    kv = [r for r in rows if r["kind"] == "kv_cache"]
    assert sorted(r["n_kv_head"] for r in kv) == [1, 2, 4]
    assert plot.is_file() or not plot_available()
    for r in models:
        assert r["tokens"] == settings.tokens
        assert r["curve"][0][0] == 0 and r["curve"][-1][0] == settings.iters
        assert all(math.isfinite(v) for _, v in r["curve"])


def test_parameter_counts_match_the_reference(fast_rows):
    rows, _ = fast_rows
    models = {r["model"]: r for r in rows if r["kind"] == "model"}
    ref = models[decoders.REFERENCE]["n_params"]
    for r in models.values():
        assert abs(r["n_params"] - ref) / ref <= decoders.MATCH_TOLERANCE, r
        assert r["params_vs_reference"] == round((r["n_params"] - ref) / ref, 4)


@pytest.mark.parametrize("n_embd,n_head,n_layer", [(32, 4, 2), (48, 4, 3), (24, 2, 1)])
def test_matched_config_lands_within_tolerance_at_other_sizes(n_embd, n_head, n_layer):
    s = dataclasses.replace(decoders.DecoderBenchSettings.fast(), n_embd=n_embd, n_head=n_head, n_layer=n_layer,
                            block_size=32)
    families = [name for name in decoders.FAMILIES if (decoders.FAMILIES[name].get("n_kv_head") or 1) <= n_head]
    target = GPT(decoders.base_config(s, 65, decoders.REFERENCE)).num_parameters()
    for name in families:
        n = GPT(decoders.matched_config(s, 65, name, target)).num_parameters()
        assert abs(n - target) / target <= decoders.MATCH_TOLERANCE, (name, n, target)


def test_learned_positions_refuse_past_the_table_and_rope_alibi_do_not(fast_rows):
    rows, _ = fast_rows
    ext = [r for r in rows if r["kind"] == "extrapolation"]
    for r in ext:
        if r["positions"] == "learned" and r["factor"] > 1:
            assert r["loss"] is None and r["loss_past_trained"] is None
            assert "block_size" in r["error"] and str(r["context"]) in r["error"]
        else:
            assert "error" not in r and math.isfinite(r["loss"])
            assert len(r["by_position"]) == r["context"]
            assert r["loss"] == pytest.approx(np.mean(r["by_position"]), abs=1e-3)
            if r["factor"] > 1:
                past = np.mean(r["by_position"][r["trained_context"]:])
                assert r["loss_past_trained"] == pytest.approx(past, abs=1e-3)


def test_kv_cache_bytes_are_measured_and_follow_the_kv_heads(fast_rows):
    rows, _ = fast_rows
    kv = {r["n_kv_head"]: r for r in rows if r["kind"] == "kv_cache"}
    block = decoders.DecoderBenchSettings.fast().block_size
    for r in kv.values():
        assert r["tokens_cached"] == block
        assert r["bytes_per_token"] == r["formula_bytes_per_token"] == r["nbytes"] / block
        assert r["cache_matches_recompute"] is True
        assert r["allocated_nbytes"] >= r["nbytes"]
    assert kv[4]["nbytes"] == 2 * kv[2]["nbytes"] == 4 * kv[1]["nbytes"]


@pytest.mark.parametrize("positions", ["learned", "rope", "alibi"])
def test_loss_by_position_averages_to_the_models_own_loss(positions):
    """The bench's per-position loss, averaged, is ``model.loss`` on the same windows (another seed and size)."""
    model = GPT(GPTConfig(vocab_size=13, block_size=12, n_layer=2, n_head=2, n_embd=16, positions=positions), seed=3)
    ids = np.random.default_rng(5).integers(0, 13, size=4 * 12 + 1)
    by_pos = decoders.loss_by_position(model, ids, 12, batch_rows=3)  # batches of 3 rows: the chunking is tested too
    x, y = ids[:-1].reshape(4, 12), ids[1:].reshape(4, 12)
    assert by_pos.shape == (12,)
    assert by_pos.mean() == pytest.approx(model.loss(x, y)[0], rel=1e-5)


def test_without_tiny_shakespeare_the_embedded_corpus_is_used_and_named(monkeypatch):
    import minitx.bench

    monkeypatch.setattr(minitx.bench, "shakespeare_path", lambda: None)
    text, what = decoders.load_text(None, 5000)
    assert len(text) == 5000 and "embedded corpus" in what and "not found" in what
