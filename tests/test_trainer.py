"""The training loop: loss goes down, resume is bit-identical, NaN stops cleanly."""
import json

import numpy as np
import pytest

from minitx.models import GPT, GPTConfig
from minitx.tokenizer import CharTokenizer
from minitx.train.checkpoint import load_checkpoint
from minitx.train.data import LMDataset
from minitx.train.trainer import (TrainConfig, Trainer, TrainingDiverged, load_model, make_replica, read_checkpoint)

TEXT = "the quick brown fox jumps over the lazy dog. " * 40 + "pack my box with five dozen liquor jugs. " * 40


def setup(out_dir, *, dropout=0.1, threads=1, **train_kw):
    tok = CharTokenizer().train(TEXT)
    ds = LMDataset(TEXT, tok)
    cfg = GPTConfig(vocab_size=tok.vocab_size, block_size=8, n_layer=2, n_head=2, n_embd=16, dropout=dropout)
    tc = TrainConfig(**{**dict(batch_size=4, max_iters=12, eval_interval=4, eval_iters=2, warmup_iters=3,
                                lr=3e-3, min_lr=3e-4, grad_accum=2, seed=5, threads=threads), **train_kw})
    model = GPT(cfg, seed=tc.seed)
    return Trainer(model, ds, tc, out_dir, progress=False, log=None)


def params(trainer):
    return {n: p.data.copy() for n, p in trainer.model.named_parameters()}


def test_loss_goes_down_and_files_are_written(tmp_path):
    trainer = setup(tmp_path, dropout=0.0, max_iters=40, eval_interval=20, lr=1e-2)
    history = trainer.train()
    assert [r["iter"] for r in history] == [0, 20, 40]
    assert history[-1]["train_loss"] < history[0]["train_loss"] - 0.5
    lines = [json.loads(s) for s in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert lines == history
    assert set(lines[0]) == {"iter", "train_loss", "val_loss", "lr", "tokens_per_sec"}
    assert (tmp_path / "ckpt" / "model.safetensors").is_file()
    pytest.importorskip("matplotlib")
    assert (tmp_path / "loss.png").is_file()


def test_same_seed_same_run(tmp_path):
    a, b = setup(tmp_path / "a"), setup(tmp_path / "b")
    a.train(stop_at=4)
    b.train(stop_at=4)
    for name, value in params(a).items():
        assert np.array_equal(value, params(b)[name]), name


@pytest.mark.parametrize("threads", [1, 2])
def test_resume_is_bit_identical(tmp_path, threads):
    """Stop after the checkpoint at iteration 8, load it in a fresh process-like setup, finish: same bits."""
    full = setup(tmp_path / "full", threads=threads)
    full.train()
    part = setup(tmp_path / "part", threads=threads)
    part.train(stop_at=8)
    part.close()
    resumed = setup(tmp_path / "part", threads=threads)  # a new model with different weights until resume
    resumed.resume(*read_checkpoint(tmp_path / "part" / "ckpt"))
    assert resumed.iter == 8
    resumed.train()
    for name, value in params(full).items():
        assert np.array_equal(value, params(resumed)[name]), name
    _, optim_full, _ = load_checkpoint(tmp_path / "full" / "ckpt")
    _, optim_resumed, _ = load_checkpoint(tmp_path / "part" / "ckpt")
    for key in optim_full:
        assert np.array_equal(optim_full[key], optim_resumed[key]), key

    def losses(path):
        return [(r["iter"], r["train_loss"], r["val_loss"]) for r in map(json.loads, path.read_text().splitlines())]

    assert losses(tmp_path / "full" / "metrics.jsonl") == losses(tmp_path / "part" / "metrics.jsonl")


def test_two_threads_compute_the_same_gradient(tmp_path):
    one, two = setup(tmp_path / "1", dropout=0.0), setup(tmp_path / "2", dropout=0.0, threads=2)
    x, y = one.dataset.get_batch("train", 4, 8, np.random.default_rng(0))
    for t in (one, two):
        t.model.zero_grad()
    loss1 = one._forward_backward(x, y, 1.0)
    loss2 = two._forward_backward(x, y, 1.0)
    assert abs(loss1 - loss2) < 1e-5
    for (name, p), (_, q) in zip(one.model.named_parameters(), two.model.named_parameters()):
        np.testing.assert_allclose(p.grad, q.grad, rtol=1e-4, atol=1e-6, err_msg=name)


def test_replica_shares_weights_not_grads():
    model = GPT(GPTConfig(vocab_size=5, block_size=4, n_layer=1, n_head=1, n_embd=4), seed=0)
    replica = make_replica(model)
    for (_, p), (_, q) in zip(model.named_parameters(), replica.named_parameters()):
        assert p.data is q.data and p.grad is not q.grad


def test_nan_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    trainer = setup(tmp_path)
    trainer.train(stop_at=4)
    before = {f.name: f.read_bytes() for f in (tmp_path / "ckpt").iterdir()}
    trainer.model.blocks[0].ff.proj.weight.data[0, 0] = np.nan  # something went badly wrong
    with pytest.raises(TrainingDiverged, match="iteration 4.*last good checkpoint"):
        trainer.train()
    after = {f.name: f.read_bytes() for f in (tmp_path / "ckpt").iterdir()}
    assert before == after
    assert read_checkpoint(tmp_path / "ckpt")[2]["iter"] == 4


def test_inf_loss_is_caught_too(tmp_path):
    trainer = setup(tmp_path, dropout=0.0)
    trainer.train(stop_at=4)
    trainer.model.wte.weight.data *= 1e30  # logits overflow
    with pytest.raises(TrainingDiverged):
        trainer.train()
    assert read_checkpoint(tmp_path / "ckpt")[2]["iter"] == 4


def test_load_model_round_trip(tmp_path):
    trainer = setup(tmp_path, dropout=0.0)
    trainer.train(stop_at=4)
    model, tok, meta = load_model(tmp_path / "ckpt")
    assert tok.chars == trainer.tokenizer.chars and meta["iter"] == 4 and not model.training
    x = np.array([tok.encode("the quic")])
    trainer.model.eval()
    np.testing.assert_array_equal(model.forward(x), trainer.model.forward(x))


@pytest.mark.parametrize("kwargs, fragment", [
    (dict(batch_size=0), "batch_size"), (dict(lr=-1.0), "lr"), (dict(beta2=1.0), "beta2"),
    (dict(min_lr=1.0, lr=0.1), "min_lr"), (dict(grad_accum=0), "grad_accum"),
])
def test_bad_train_config(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        TrainConfig(**kwargs)
