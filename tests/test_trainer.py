"""The training loop: loss goes down, resume is bit-identical, NaN stops cleanly, any model trains."""
import json

import numpy as np
import pytest

from minitx.models import GPT, GPTConfig
from minitx.tokenizer import CharTokenizer
from minitx.train.checkpoint import load_checkpoint
from minitx.train.config import TrainConfig, TrainingDiverged
from minitx.train.data import LMDataset
from minitx.train.lm import gpt_meta, load_model, read_checkpoint
from minitx.train.parallel import DataParallel, make_replica
from minitx.train.trainer import Trainer

TEXT = "the quick brown fox jumps over the lazy dog. " * 40 + "pack my box with five dozen liquor jugs. " * 40


def setup(out_dir, *, dropout=0.1, threads=1, **train_kw):
    tok = CharTokenizer().train(TEXT)
    cfg = GPTConfig(vocab_size=tok.vocab_size, block_size=8, n_layer=2, n_head=2, n_embd=16, dropout=dropout)
    ds = LMDataset(TEXT, tok, block_size=cfg.block_size)
    tc = TrainConfig(**{**dict(batch_size=4, max_iters=12, eval_interval=4, eval_iters=2, warmup_iters=3,
                                lr=3e-3, min_lr=3e-4, grad_accum=2, seed=5), **train_kw})
    model = GPT(cfg, seed=tc.seed)
    wrapped = DataParallel(model, threads=threads, seed=tc.seed) if threads > 1 else model
    trainer = Trainer(wrapped, ds, tc, out_dir, meta=gpt_meta(model, tok), progress=False, log=None)
    trainer.tokenizer, trainer.dataset = tok, ds
    return trainer


def params(trainer):
    return {n: p.data.copy() for n, p in trainer.model.named_parameters()}


def close(trainer):
    if isinstance(trainer.model, DataParallel):
        trainer.model.close()


def test_loss_goes_down_and_files_are_written(tmp_path):
    trainer = setup(tmp_path, dropout=0.0, max_iters=40, eval_interval=20, lr=1e-2)
    history = trainer.train()
    assert [r["iter"] for r in history] == [0, 20, 40]
    assert history[-1]["train_loss"] < history[0]["train_loss"] - 0.5
    lines = [json.loads(s) for s in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert lines == history
    assert set(lines[0]) == {"iter", "train_loss", "val_loss", "lr", "tokens_per_sec"}
    assert (tmp_path / "ckpt" / "model.safetensors").is_file()
    assert read_checkpoint(tmp_path)[2]["iter"] == 40  # the run folder is accepted as well as its ckpt/
    pytest.importorskip("matplotlib")
    assert (tmp_path / "loss.png").is_file()


def test_evaluation_lines_go_to_log_even_under_a_progress_bar(tmp_path, capsys):
    """With a bar, the eval lines still reach ``log`` alone: never stdout behind the caller's back (--json)."""
    trainer = setup(tmp_path, max_iters=8, eval_interval=4)
    lines = []
    trainer.progress, trainer.log = True, lines.append
    trainer.train()
    out = capsys.readouterr().out
    assert len(lines) == 3 and all("val" in line for line in lines), lines
    assert out == ""
    quiet = setup(tmp_path / "quiet", max_iters=4, eval_interval=4)
    quiet.progress, quiet.log = True, lambda message: None
    quiet.train()
    assert capsys.readouterr().out == ""


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
    close(part)
    resumed = setup(tmp_path / "part", threads=threads)  # a new model with different weights until resume
    resumed.resume(tmp_path / "part" / "ckpt")
    assert resumed.iter == 8
    resumed.train()
    close(full), close(resumed)
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
    x, y = one.dataset.get_batch("train", 4, np.random.default_rng(0))
    for t in (one, two):
        t.model.zero_grad()
    loss1, _ = one.model.loss(x, y)
    one.model.backward_loss(1.0)
    loss2, _ = two.model.loss(x, y)
    two.model.backward_loss(1.0)
    assert abs(loss1 - loss2) < 1e-5
    for (name, p), (_, q) in zip(one.model.named_parameters(), two.model.named_parameters()):
        np.testing.assert_allclose(p.grad, q.grad, rtol=1e-4, atol=1e-6, err_msg=name)
    close(two)


def _uneven_batch(kind):
    """A model (float64) and a batch whose two halves count very different numbers of targets."""
    from minitx.models import EncoderConfig, EncoderTagger, Seq2Seq, Seq2SeqConfig

    rng = np.random.default_rng(0)
    x, y = rng.integers(2, 11, (4, 8)), rng.integers(2, 11, (4, 8))
    if kind == "gpt":  # a masked prompt: the first two rows count 2 targets, the last two 16
        y[:2, :7] = -100
        return (lambda: GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8), seed=0,
                            dtype=np.float64)), x, y
    if kind == "tagger":  # padded tags
        y[:2, 1:] = -100
        return (lambda: EncoderTagger(EncoderConfig(vocab_size=11, max_len=8, n_layer=1, n_head=2, d_model=8), 11,
                                      seed=0, dtype=np.float64)), x, y
    y[:2, 1:] = 0  # seq2seq: padded target sentences (pad_id 0)
    return (lambda: Seq2Seq(Seq2SeqConfig(src_vocab_size=11, tgt_vocab_size=11, max_len=8, n_enc_layer=1,
                                          n_dec_layer=1, n_head=2, d_model=8), seed=0, dtype=np.float64)), x, y


@pytest.mark.parametrize("kind", ["gpt", "tagger", "seq2seq"])
def test_threads_weight_their_shares_by_counted_targets_not_rows(kind):
    """Rows with different numbers of counted targets (a masked prompt, padding): the step is one model's.

    Row weighting (the mean of the two shares' gradients) is off here by far
    more than the tolerance: checked first, so the test can fail.
    """
    make, x, y = _uneven_batch(kind)
    one, dp = make(), DataParallel(make(), threads=2)
    try:
        one.zero_grad()
        for s in (slice(0, 2), slice(2, 4)):
            one.loss(x[s], y[s])
            one.backward_loss(0.5)
        by_rows = [p.grad.copy() for p in one.parameters()]
        loss, _ = one.loss(x, y)
        one.zero_grad()
        one.backward_loss(1.0)
        assert max(np.abs(r - p.grad).max() for r, p in zip(by_rows, one.parameters())) > 1e-3
        dp.zero_grad()
        assert abs(dp.loss(x, y)[0] - loss) < 1e-12
        dp.backward_loss(1.0)
        for (name, p), (_, q) in zip(one.named_parameters(), dp.named_parameters()):
            np.testing.assert_allclose(q.grad, p.grad, rtol=1e-10, atol=1e-14, err_msg=name)
        assert dp.count_targets(x, y) == 18
    finally:
        dp.close()


def test_data_parallel_accumulates_like_one_model(tmp_path):
    """Two micro-batches through 2 threads leave the same summed gradient as through one model (grad_accum)."""
    one, two = setup(tmp_path / "1", dropout=0.0), setup(tmp_path / "2", dropout=0.0, threads=2)
    rng = np.random.default_rng(1)
    batches = [one.dataset.get_batch("train", 6, rng) for _ in range(2)]
    for t in (one, two):
        t.model.zero_grad()
        for x, y in batches:
            t.model.loss(x, y)
            t.model.backward_loss(0.5)
    for (name, p), (_, q) in zip(one.model.named_parameters(), two.model.named_parameters()):
        np.testing.assert_allclose(p.grad, q.grad, rtol=1e-4, atol=1e-6, err_msg=name)
    close(two)


def test_replica_shares_weights_not_grads():
    model = GPT(GPTConfig(vocab_size=5, block_size=4, n_layer=1, n_head=1, n_embd=4, dropout=0.1), seed=0)
    replica = make_replica(model, seed=1)
    for (_, p), (_, q) in zip(model.named_parameters(), replica.named_parameters()):
        assert p.data is q.data and p.grad is not q.grad
    assert replica.rng is not model.rng
    assert replica.rng.bit_generator.state != model.rng.bit_generator.state
    # every dropout layer of the replica draws from the replica's one generator
    assert all(m.rng is replica.rng for m in replica._modules() if hasattr(m, "rng") and m is not replica)


def test_data_parallel_refuses_a_batch_smaller_than_its_replicas():
    model = GPT(GPTConfig(vocab_size=5, block_size=4, n_layer=1, n_head=1, n_embd=4), seed=0)
    dp = DataParallel(model, threads=2)
    try:
        with pytest.raises(ValueError, match="at least one per replica"):
            dp.loss(np.zeros((1, 4), dtype=np.int64), np.zeros((1, 4), dtype=np.int64))
    finally:
        dp.close()


def test_nan_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    trainer = setup(tmp_path)
    trainer.train(stop_at=4)
    before = {f.name: f.read_bytes() for f in (tmp_path / "ckpt").iterdir()}
    trainer.model.blocks[0].ff.proj.weight.data[0, 0] = np.nan  # something went badly wrong: a typed stop
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
    model, tok, meta = load_model(tmp_path)
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


def test_no_checkpoint_at_iteration_zero(tmp_path):
    """An untrained model is not saved: a re-run with --overwrite replaces nothing until it has trained."""
    trainer = setup(tmp_path, dropout=0.0)
    trainer.train(stop_at=0)
    assert not (tmp_path / "ckpt").exists()
    assert [r["iter"] for r in trainer.history] == [0]


def test_resume_refuses_another_architecture(tmp_path):
    trainer = setup(tmp_path, dropout=0.0)
    trainer.train(stop_at=4)
    tok = CharTokenizer().train(TEXT)
    other = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=8, n_layer=1, n_head=2, n_embd=16), seed=0)
    t2 = Trainer(other, trainer.dataset, trainer.config, tmp_path, meta=gpt_meta(other, tok), progress=False,
                 log=None)
    with pytest.raises(ValueError, match="config differs"):
        t2.resume(tmp_path / "ckpt")


def test_keep_best_and_custom_evaluation(tmp_path):
    """A task-style run: evaluate() gives metrics, best/ holds the best one, best_state its weights."""
    trainer = setup(tmp_path, dropout=0.0, max_iters=12, eval_interval=4, grad_accum=1)
    scores = iter([0.1, 0.5, 0.3, 0.4])
    trainer.evaluate_fn = lambda: {"score": next(scores)}
    trainer.keep_best = ("score", "max")
    history = trainer.train()
    assert [r["score"] for r in history] == [0.1, 0.5, 0.3, 0.4]
    assert "train_loss" in history[1] and "train_loss" not in history[0]
    assert load_checkpoint(tmp_path / "best")[2]["iter"] == 4  # the best score was at iteration 4
    assert load_checkpoint(tmp_path / "ckpt")[2]["iter"] == 12
    best_weights = load_checkpoint(tmp_path / "best")[0]
    for name, value in trainer.best_state.items():
        np.testing.assert_array_equal(value, best_weights[name])


def test_blas_limit_is_restored_whatever_the_order_of_release():
    """Two wrappers hold the process-wide BLAS limit; released in either order, the original comes back."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from minitx.train.parallel import limit_blas_threads

    def blas_threads():
        return [lib["num_threads"] for lib in threadpoolctl.threadpool_info() if lib["user_api"] == "blas"]

    before = blas_threads()
    for order in ((0, 1), (1, 0)):
        holds = [limit_blas_threads(1), limit_blas_threads(1)]
        assert all(n == 1 for n in blas_threads())
        holds[order[0]].restore_original_limits()
        assert all(n == 1 for n in blas_threads())  # the other one still holds it
        holds[order[1]].restore_original_limits()
        assert blas_threads() == before


# --------------------------------------------------------------------------
# every model family through the one Trainer
# --------------------------------------------------------------------------
def _family(name):
    """``(model, batch source)`` for each family the Trainer trains, on data it can learn in a few steps."""
    from minitx.models.encoder import EncoderClassifier, EncoderConfig, EncoderMLM, EncoderTagger, mask_tokens
    from minitx.models.seq2seq import Seq2Seq, Seq2SeqConfig
    from minitx.train.data import PaddedRows

    rng = np.random.default_rng(0)
    ids = rng.integers(3, 12, size=(64, 8))  # (N, T) token ids; 0-2 are special
    lengths = np.full(64, 8)
    enc = EncoderConfig.from_preset("enc-test", vocab_size=12, pad_id=0, dropout=0.1)
    if name in ("gpt", "llama", "bloom"):  # one decoder, three configurations
        preset = {"gpt": "gpt-test", "llama": "llama-test", "bloom": "bloom-test"}[name]
        cfg = GPTConfig.from_preset(preset, vocab_size=12, block_size=8, n_layer=1, dropout=0.1)
        return GPT(cfg, seed=1), LMDataset.from_ids(np.tile(np.arange(3, 12), 60), vocab_size=12, block_size=8)
    if name == "classifier":  # label: is the first token even
        return EncoderClassifier(enc, 2, seed=1), PaddedRows((ids, lengths), (ids[:, 0] % 2, None))
    if name == "tagger":  # tag: each token's parity
        return EncoderTagger(enc, 2, seed=1), PaddedRows((ids, lengths), (ids % 2, lengths))
    if name == "mlm":
        def mask(batch, rng_):
            return mask_tokens(batch[0], rng_, mask_id=1, vocab_size=12, special_ids=(0, 1, 2), p=0.3)
        copies = np.tile(np.arange(3, 11), (64, 1))  # one fixed sentence: a hidden token is its position's
        return EncoderMLM(enc, seed=1), PaddedRows((copies, lengths), transform=mask)
    cfg = Seq2SeqConfig.from_preset("s2s-test", src_vocab_size=12, tgt_vocab_size=12, pad_id=0, bos_id=1, eos_id=2,
                                    dropout=0.1)
    tgt = np.concatenate([ids[:, ::-1], np.full((64, 1), 2)], axis=1)  # reverse the source, then <eos>
    return Seq2Seq(cfg, seed=1), PaddedRows((ids, lengths), (tgt, lengths + 1))


@pytest.mark.parametrize("family", ["gpt", "llama", "bloom", "classifier", "tagger", "mlm", "seq2seq"])
@pytest.mark.parametrize("threads", [1, 2])
def test_every_family_trains_and_resumes_bit_identically(tmp_path, family, threads):
    """Loss goes down, and a run stopped at 10 and resumed in a new trainer ends on the same bits."""
    def trainer(out):
        model, data = _family(family)
        model = DataParallel(model, threads=threads, seed=3) if threads > 1 else model
        config = TrainConfig(batch_size=16, max_iters=20, eval_interval=10, eval_iters=2, warmup_iters=2, lr=3e-3,
                             min_lr=3e-4, seed=3, label_smoothing=0.1 if family == "seq2seq" else 0.0)
        evaluate = None if family in ("gpt", "llama", "bloom") else (lambda: {"score": 0.0})
        return Trainer(model, data, config, out, evaluate=evaluate, meta={"kind": f"test-{family}"},
                       progress=False, log=None)

    full = trainer(tmp_path / "full")
    full.train()
    lm = family in ("gpt", "llama", "bloom")
    first = full.history[0]["train_loss"] if lm else full.history[1]["train_loss"]
    assert full.history[-1]["train_loss"] < first, full.history
    part = trainer(tmp_path / "part")
    part.train(stop_at=10)
    resumed = trainer(tmp_path / "part")
    resumed.resume(tmp_path / "part" / "ckpt")
    resumed.train()
    for (name, p), (_, q) in zip(full.model.named_parameters(), resumed.model.named_parameters()):
        assert np.array_equal(p.data, q.data), name
    for t in (full, part, resumed):
        close(t)
