"""The recurrent layers (tanh RNN, GRU) and the RNN language model.

1. Backpropagation through time is gradient-checked in float64 (the
   project's checker, worst relative error <= 1e-6) for every input: x, h0,
   both weights and both biases, with an upstream gradient on *both*
   outputs (every h_t and the final state).
2. PyTorch parity in float32: ``torch.nn.RNN`` / ``torch.nn.GRU`` with the
   same weights give the same outputs, final states, input and state
   gradients and every parameter gradient (relative error <= 1e-5), through
   the explicit weight map ``W_minitx = W_torch.T``; a two-layer language
   model against torch's two-layer module. Skipped without torch.
3. The checks can fail: a GRU that puts ``b_hn`` outside the reset product
   (the other published GRU) is not torch's, and a backward pass that drops
   one term is caught by the checker.
4. The recall task and the RNN LM through the one Trainer.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minitx.datasets.recall import IGNORE, RecallTask, recall_accuracy
from minitx.gradcheck import gradcheck
from minitx.models import RNNLM, RNNConfig
from minitx.nn import rnn as rnn_mod
from minitx.nn.rnn import GRU, RNN, gru_backward, gru_forward, rnn_backward, rnn_forward
from torch_reference import rel_err

try:
    import torch
except ImportError:  # pragma: no cover - torch is a test-only peer
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch parity needs torch (pip install torch==2.13.0)")

TOL = 1e-6
PAIRS = {"rnn": (rnn_forward, rnn_backward, 1), "gru": (gru_forward, gru_backward, 3)}


def layer_inputs(rng, cell, B, T, I, H, scale=0.6):
    G = PAIRS[cell][2]
    return {"x": rng.standard_normal((B, T, I)), "h0": rng.standard_normal((B, H)) * 0.5,
            "W_ih": rng.standard_normal((I, G * H)) * scale, "W_hh": rng.standard_normal((H, G * H)) * scale,
            "b_ih": rng.standard_normal(G * H) * 0.3, "b_hh": rng.standard_normal(G * H) * 0.3}


def check_bptt(cell, inputs, seed, backward=None):
    """Gradient-check L = sum(out * G) + sum(h_T * G_T) w.r.t. every input of the functional pair."""
    forward, default_backward, _ = PAIRS[cell]
    backward = backward or default_backward
    (out, h_T), cache = forward(*inputs.values())
    rng = np.random.default_rng(seed + 1)
    G, G_T = rng.standard_normal(out.shape), rng.standard_normal(h_T.shape)
    grads = dict(zip(inputs, backward(G, G_T, cache)))

    def loss():
        (o, hT), _ = forward(*inputs.values())
        return float((o * G).sum() + (hT * G_T).sum())

    return gradcheck(loss, inputs, grads)


# ---------------------------------------------------------------- 1. gradient checks
@pytest.mark.parametrize("cell", ["rnn", "gru"])
@settings(max_examples=25, deadline=None)
@given(B=st.integers(1, 3), T=st.integers(1, 6), I=st.integers(1, 4), H=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_bptt_gradcheck(cell, B, T, I, H, seed):
    result = check_bptt(cell, layer_inputs(np.random.default_rng(seed), cell, B, T, I, H), seed)
    assert result.ok(TOL), str(result)


@pytest.mark.parametrize("cell", ["rnn", "gru"])
def test_long_sequence_gradcheck(cell):
    """T = 30: the gradient of h0 has travelled through 30 steps (and is small, not zero)."""
    inputs = layer_inputs(np.random.default_rng(3), cell, 2, 30, 3, 4)
    result = check_bptt(cell, inputs, 3)
    assert result.ok(TOL), str(result)


@pytest.mark.parametrize("cell", ["rnn", "gru"])
def test_language_model_gradcheck(cell):
    """The whole RNN LM (embedding, two layers, head, cross-entropy with ignored targets) in float64."""
    rng = np.random.default_rng(5)
    model = RNNLM(RNNConfig(vocab_size=7, n_embd=3, hidden_size=4, n_layer=2, cell=cell), seed=1, dtype=np.float64)
    idx = rng.integers(0, 7, size=(2, 5))
    targets = rng.integers(0, 7, size=(2, 5))
    targets[0, :2] = IGNORE
    model.zero_grad()
    model.loss(idx, targets)
    model.backward_loss()
    arrays = {name: p.data for name, p in model.named_parameters()}
    analytic = {name: p.grad.copy() for name, p in model.named_parameters()}
    result = gradcheck(lambda: model.loss(idx, targets)[0], arrays, analytic)
    assert result.ok(TOL), str(result)
    assert set(result.per_array) == {n for n, _ in model.named_parameters()}


# ---------------------------------------------------------------- 3. the checks can fail
def test_checker_catches_a_missing_bptt_term():
    """A GRU backward that forgets the direct path dh_{t-1} += g * z is wrong far beyond 1e-6."""

    def wrong_backward(dout, dh_T, cache):
        x, states, r, z, n, hn, W_ih, W_hh = cache
        bad = (x, states, r, np.zeros_like(z), n, hn, W_ih, W_hh)  # z = 0 drops every z-term
        return gru_backward(dout, dh_T, bad)

    inputs = layer_inputs(np.random.default_rng(0), "gru", 2, 4, 3, 3)
    assert not check_bptt("gru", inputs, 0, backward=wrong_backward).ok(TOL)


def test_gru_is_not_the_other_gru():
    """Putting r on h *before* W_hn (Cho et al.'s form) changes the outputs: the test below would see it."""
    rng = np.random.default_rng(1)
    p = layer_inputs(rng, "gru", 2, 5, 3, 4)
    (ours, _), _ = gru_forward(*p.values())
    H = 4
    h = p["h0"]
    other = []
    for t in range(5):
        gi = p["x"][:, t] @ p["W_ih"] + p["b_ih"]
        gh = h @ p["W_hh"] + p["b_hh"]
        r = rnn_mod.sigmoid(gi[:, :H] + gh[:, :H])
        z = rnn_mod.sigmoid(gi[:, H:2 * H] + gh[:, H:2 * H])
        n = np.tanh(gi[:, 2 * H:] + (r * h) @ p["W_hh"][:, 2 * H:] + p["b_hh"][2 * H:])
        h = (1 - z) * n + z * h
        other.append(h)
    assert np.abs(np.stack(other, 1) - ours).max() > 1e-3


# ---------------------------------------------------------------- 2. PyTorch parity
def torch_layer_map(tmod, layer: int = 0, prefix: str = "") -> dict:
    """minitx name -> (torch parameter, transpose?): ``W_minitx = W_torch.T``, biases as they are."""
    return {f"{prefix}weight_ih": (getattr(tmod, f"weight_ih_l{layer}"), True),
            f"{prefix}weight_hh": (getattr(tmod, f"weight_hh_l{layer}"), True),
            f"{prefix}bias_ih": (getattr(tmod, f"bias_ih_l{layer}"), False),
            f"{prefix}bias_hh": (getattr(tmod, f"bias_hh_l{layer}"), False)}


def load(module, wmap):
    ours = dict(module.named_parameters())
    assert set(ours) == set(wmap), f"unmapped parameters: {set(ours) ^ set(wmap)}"
    with torch.no_grad():
        for name, (tp, transpose) in wmap.items():
            tp.copy_(torch.from_numpy(ours[name].data.T.copy() if transpose else ours[name].data.copy()))


def check_grads(module, wmap, what):
    for name, p in module.named_parameters():
        tp, transpose = wmap[name]
        ref = tp.grad.numpy().T if transpose else tp.grad.numpy()
        assert p.grad.dtype == np.float32, f"{what} d{name}: dtype {p.grad.dtype}, expected float32"
        assert rel_err(p.grad, ref) <= 1e-5, f"{what} d{name}: relative error {rel_err(p.grad, ref):.3g}"


@needs_torch
@pytest.mark.parametrize("cell", ["rnn", "gru"])
@pytest.mark.parametrize("B, T, I, H, with_h0", [(2, 7, 3, 5, True), (1, 1, 4, 2, False), (3, 20, 6, 8, True)])
def test_layer_matches_torch(cell, B, T, I, H, with_h0):
    rng = np.random.default_rng(B * 100 + T)
    ours = (RNN if cell == "rnn" else GRU)(I, H, rng=rng)
    ref = (torch.nn.RNN if cell == "rnn" else torch.nn.GRU)(I, H, batch_first=True)
    wmap = torch_layer_map(ref)
    load(ours, wmap)
    x = rng.standard_normal((B, T, I)).astype(np.float32)
    h0 = rng.standard_normal((B, H)).astype(np.float32) if with_h0 else None
    G, G_T = (rng.standard_normal(s).astype(np.float32) for s in ((B, T, H), (B, H)))
    xt = torch.tensor(x, requires_grad=True)
    h0t = torch.tensor(h0[None] if with_h0 else np.zeros((1, B, H), np.float32), requires_grad=True)
    out_t, hn_t = ref(xt, h0t)  # (B, T, H), (1, B, H)
    ((out_t * torch.from_numpy(G)).sum() + (hn_t[0] * torch.from_numpy(G_T)).sum()).backward()
    out, h_T = ours(x, h0)
    dx, dh0 = ours.backward(G, G_T)
    for what, a, b in (("out", out, out_t), ("h_T", h_T, hn_t[0]), ("dx", dx, xt.grad), ("dh0", dh0, h0t.grad[0])):
        assert a.dtype == np.float32, f"{cell} {what}: dtype {a.dtype}"
        assert rel_err(a, b.detach().numpy()) <= 1e-5, f"{cell} {what}: relative error {rel_err(a, b.detach()):.3g}"
    check_grads(ours, wmap, cell)


@needs_torch
@pytest.mark.parametrize("cell", ["rnn", "gru"])
def test_language_model_matches_torch(cell):
    """RNNLM (2 layers) = nn.Embedding -> nn.RNN/GRU(num_layers=2) -> nn.Linear, loss and every gradient."""
    rng = np.random.default_rng(9)
    V, E, H = 11, 6, 8
    model = RNNLM(RNNConfig(vocab_size=V, n_embd=E, hidden_size=H, n_layer=2, cell=cell), seed=2)
    emb, head = torch.nn.Embedding(V, E), torch.nn.Linear(H, V)
    rec = (torch.nn.RNN if cell == "rnn" else torch.nn.GRU)(E, H, num_layers=2, batch_first=True)
    wmap = {"wte.weight": (emb.weight, False), "head.weight": (head.weight, True), "head.bias": (head.bias, False),
            **torch_layer_map(rec, 0, "layers.0."), **torch_layer_map(rec, 1, "layers.1.")}
    load(model, wmap)
    idx, targets = rng.integers(0, V, (3, 9)), rng.integers(0, V, (3, 9))
    targets[:, :4] = IGNORE
    loss, logits = model.loss(idx, targets)
    model.backward_loss()
    logits_t = head(rec(emb(torch.from_numpy(idx)))[0])
    loss_t = torch.nn.functional.cross_entropy(logits_t.reshape(-1, V), torch.from_numpy(targets).reshape(-1))
    loss_t.backward()
    assert rel_err(logits, logits_t.detach().numpy()) <= 1e-5
    assert abs(loss - loss_t.item()) <= 1e-5 * abs(loss_t.item())
    check_grads(model, wmap, f"{cell} LM")


# ---------------------------------------------------------------- errors
def test_errors_name_the_argument():
    layer = GRU(3, 4, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"GRU input: got shape \(2, 5, 2\), expected last dimension 3"):
        layer(np.zeros((2, 5, 2), np.float32))
    with pytest.raises(ValueError, match=r"GRU h0: got shape \(3, 4\), expected \(2, 4\)"):
        layer(np.zeros((2, 5, 3), np.float32), np.zeros((3, 4), np.float32))
    with pytest.raises(ValueError, match="RNNConfig cell: got 'lstm', expected one of"):
        RNNConfig(vocab_size=5, cell="lstm")
    with pytest.raises(ValueError, match=r"RecallTask distance: got 9, expected an integer in \[1, 8\]"):
        RecallTask(seq_len=9).batch_at(9, 1, np.random.default_rng(0))


# ---------------------------------------------------------------- 4. recall task, training
def test_recall_sequences():
    task = RecallTask(n_keys=5, n_values=3, seq_len=23)
    rng = np.random.default_rng(0)
    for d in (1, 2, 13, 22):
        x, y = task.batch_at(d, 200, rng)
        assert x.shape == y.shape == (200, 23)
        assert (x < task.first_answer).all(), "answers are targets only"
        assert (x[:, -1] >= task.first_query).all() and (x[:, -1 - d] < task.n_facts).all()
        assert (task.key_of(x[:, -1]) == task.key_of(x[:, -1 - d])).all(), "the query names the fact's key"
        assert not (task.key_of(x[:, -d:-1]) == task.key_of(x[:, -1:])).any(), "and nothing since"
        assert (task.answer_of(y[:, -1]) == task.value_of(x[:, -1 - d])).all() and (y[:, :-1] == IGNORE).all()
    x, y = task.get_batch("train", 300, rng)
    for b in range(300):  # every scored target is the value of the key's latest fact, and every answerable query is scored
        for t in range(task.seq_len):
            facts = [s for s in range(t) if x[b, s] < task.n_facts and task.key_of(x[b, s]) == task.key_of(x[b, t])]
            if x[b, t] >= task.first_query and facts:
                assert task.answer_of(y[b, t]) == task.value_of(x[b, facts[-1]])
            else:
                assert y[b, t] == IGNORE


def test_rnn_lm_trains_through_the_trainer():
    """A few seconds: the one Trainer trains a GRU LM and its recall at distance 2 is twice chance or better."""
    from minitx.train.config import TrainConfig
    from minitx.train.trainer import Trainer

    task = RecallTask(n_keys=3, n_values=4, seq_len=8)
    model = RNNLM(RNNConfig(task.vocab_size, n_embd=16, hidden_size=32, cell="gru"), seed=0)
    config = TrainConfig(batch_size=32, max_iters=150, lr=1e-2, min_lr=1e-3, warmup_iters=10, eval_interval=150,
                         eval_iters=4, weight_decay=0.0, seed=0)
    history = Trainer(model, task, config, None, progress=False, log=None).train()
    assert history[-1]["val_loss"] < 0.5 * history[0]["val_loss"]
    model.eval()
    assert recall_accuracy(model, task, 2, 200, np.random.default_rng(1)) > 0.5  # chance: 0.25


def test_bench_fast_prints_the_issue_rows(capsys):
    """``python -m minitx.bench.rnn --fast --json``: seconds, structure only (tiny models prove nothing)."""
    from minitx.bench import rnn as bench

    assert bench.main(["--fast", "--json", "--seed", "3"]) == 0
    import json

    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    settings = bench.RecallBenchSettings.fast()
    acc = [r for r in rows if "accuracy" in r]
    speed = [r for r in rows if "tokens_per_s" in r]
    assert all(set(r) == {"model", "n_params", "distance", "accuracy"} for r in acc)
    assert all(set(r) == {"model", "val_loss", "tokens_per_s"} for r in speed)
    assert {(r["model"], r["distance"]) for r in acc} == {(m, d) for m in bench.MODELS for d in settings.distances}
    assert [r["model"] for r in speed] == list(bench.MODELS)
    assert all(0 <= r["accuracy"] <= 1 and r["n_params"] > 0 for r in acc)
    assert all(r["val_loss"] > 0 and r["tokens_per_s"] > 0 for r in speed)


def test_target_check_can_fail():
    from minitx.bench.rnn import check_target

    def rows(gpt_far, rnn_far, rnn_near):
        return [{"model": "gpt", "distance": 2, "accuracy": 1.0}, {"model": "gpt", "distance": 64, "accuracy": gpt_far},
                {"model": "rnn", "distance": 2, "accuracy": rnn_near}, {"model": "rnn", "distance": 64, "accuracy": rnn_far}]

    assert check_target(rows(0.95, 0.3, 0.9)) == []
    assert len(check_target(rows(0.85, 0.3, 0.9))) == 1
    assert len(check_target(rows(0.95, 0.7, 0.9))) == 1
    assert len(check_target(rows(0.95, 0.3, 0.7))) == 1
