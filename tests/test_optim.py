"""Optimizers, schedule and clipping: checked step by step against PyTorch."""
import math

import numpy as np
import pytest

from minitx.nn.module import Parameter
from minitx.optim import (
    SGD,
    AdamW,
    clip_grad_norm,
    cosine_with_warmup,
    split_decay_groups,
)

torch = pytest.importorskip("torch", reason="PyTorch parity tests need torch (test-only dependency)")

# A toy "model": two matrices (decay) and two vectors (no decay).
SHAPES = {"wte.weight": (7, 5), "proj.weight": (5, 3), "proj.bias": (3,), "ln.weight": (5,)}
N_STEPS = 6


def make_params(dtype, seed=0):
    rng = np.random.default_rng(seed)
    return [(name, Parameter(rng.standard_normal(shape).astype(dtype))) for name, shape in SHAPES.items()]


def grad_sequence(dtype, seed=1):
    rng = np.random.default_rng(seed)
    return [{name: rng.standard_normal(shape).astype(dtype) for name, shape in SHAPES.items()}
            for _ in range(N_STEPS)]


def torch_params(named):
    return {name: torch.tensor(p.data.copy(), requires_grad=True) for name, p in named}


def torch_groups(tparams, weight_decay):
    # the 2-D-only decay rule, written as torch parameter groups
    return [
        {"params": [t for t in tparams.values() if t.ndim >= 2], "weight_decay": weight_decay},
        {"params": [t for t in tparams.values() if t.ndim < 2], "weight_decay": 0.0},
    ]


def max_rel_err(a, b):
    return float(np.max(np.abs(a - b) / (np.abs(b) + 1e-12)))


def run_parity(make_ours, make_torch, dtype, tol):
    named = make_params(dtype)
    tparams = torch_params(named)
    ours, theirs = make_ours(named), make_torch(tparams)
    for grads in grad_sequence(dtype):
        for name, p in named:
            p.grad[...] = grads[name]
            tparams[name].grad = torch.tensor(grads[name])
        ours.step()
        theirs.step()
    for name, p in named:
        assert p.data.dtype == dtype, f"{name} was upcast to {p.data.dtype}"
        assert max_rel_err(p.data, tparams[name].detach().numpy()) <= tol, name


@pytest.mark.parametrize("dtype,tol", [(np.float32, 1e-5), (np.float64, 1e-12)])
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_adamw_matches_torch(dtype, tol, weight_decay):
    kw = dict(lr=1e-2, betas=(0.9, 0.95), eps=1e-8)
    run_parity(
        lambda named: AdamW(named, weight_decay=weight_decay, **kw),
        lambda tp: torch.optim.AdamW(torch_groups(tp, weight_decay), **kw),
        dtype, tol,
    )


@pytest.mark.parametrize("dtype,tol", [(np.float32, 1e-5), (np.float64, 1e-12)])
@pytest.mark.parametrize("momentum,nesterov,weight_decay",
                         [(0.0, False, 0.0), (0.9, False, 0.0), (0.9, False, 0.05), (0.9, True, 0.05)])
def test_sgd_matches_torch(dtype, tol, momentum, nesterov, weight_decay):
    kw = dict(lr=0.05, momentum=momentum, nesterov=nesterov)
    run_parity(
        lambda named: SGD(named, weight_decay=weight_decay, **kw),
        lambda tp: torch.optim.SGD(torch_groups(tp, weight_decay), **kw),
        dtype, tol,
    )


def test_decay_rule_is_explicit_and_vectors_never_decay():
    named = make_params(np.float32)
    groups = split_decay_groups(named, 0.1)
    assert [g["name"] for g in groups] == ["decay", "no_decay"]
    assert [n for n, _ in groups[0]["params"]] == ["wte.weight", "proj.weight"]
    assert [n for n, _ in groups[1]["params"]] == ["proj.bias", "ln.weight"]
    assert groups[1]["weight_decay"] == 0.0
    # zero gradient: AdamW moves only the decayed parameters, by exactly (1 - lr*wd)
    before = {n: p.data.copy() for n, p in named}
    opt = AdamW(named, lr=0.1, weight_decay=0.5)
    opt.step()
    d = dict(named)
    np.testing.assert_array_equal(d["proj.bias"].data, before["proj.bias"])
    np.testing.assert_allclose(d["wte.weight"].data, before["wte.weight"] * np.float32(0.95), rtol=1e-7)


def test_update_is_in_place_and_grads_untouched():
    named = make_params(np.float32)
    refs = {n: p.data for n, p in named}
    grads = grad_sequence(np.float32)[0]
    for opt in (AdamW(named, weight_decay=0.1), SGD(named, momentum=0.9, weight_decay=0.1)):
        for n, p in named:
            p.grad[...] = grads[n]
        opt.step()
        for n, p in named:
            assert p.data is refs[n]
            np.testing.assert_array_equal(p.grad, grads[n])


def test_lr_is_settable_and_float64_scalar_does_not_upcast():
    named = make_params(np.float32)
    opt = AdamW(named)
    opt.lr = np.float64(3e-4)
    assert type(opt.lr) is float
    for _, p in named:
        p.grad[...] = 1.0
    opt.step()
    assert all(p.data.dtype == np.float32 for _, p in named)


@pytest.mark.parametrize("make", [
    lambda named: AdamW(named, lr=1e-2, weight_decay=0.1),
    lambda named: SGD(named, lr=1e-2, momentum=0.9, nesterov=True, weight_decay=0.1),
])
def test_state_round_trip_continues_bit_identically(make):
    grads = grad_sequence(np.float32)

    def set_grads(named, g):
        for n, p in named:
            p.grad[...] = g[n]

    # uninterrupted run
    named_a = make_params(np.float32)
    opt_a = make(named_a)
    for g in grads:
        set_grads(named_a, g)
        opt_a.step()

    # run 3 steps, save, rebuild everything fresh, load, run the rest
    named_b = make_params(np.float32)
    opt_b = make(named_b)
    for g in grads[:3]:
        set_grads(named_b, g)
        opt_b.step()
    arrays, meta = opt_b.state_dict()
    import json
    meta = json.loads(json.dumps(meta))  # meta must be JSON-able
    params_saved = {n: p.data.copy() for n, p in named_b}
    opt_b.step()  # a later step must not change the saved arrays
    named_c = make_params(np.float32, seed=99)
    for n, p in named_c:
        p.data[...] = params_saved[n]
    opt_c = make(named_c)
    opt_c.load_state_dict(arrays, meta)
    assert opt_c.step_count == 3
    for g in grads[3:]:
        set_grads(named_c, g)
        opt_c.step()
    for (n, pa), (_, pc) in zip(named_a, named_c):
        np.testing.assert_array_equal(pa.data, pc.data, err_msg=n)


def test_load_state_dict_rejects_mismatches_and_changes_nothing():
    named = make_params(np.float32)
    opt = AdamW(named)
    arrays, meta = opt.state_dict()
    with pytest.raises(ValueError, match="type='SGD', expected 'AdamW'"):
        opt.load_state_dict(arrays, {**meta, "type": "SGD"})
    bad = dict(arrays)
    bad["wte.weight.exp_avg"] = np.ones((2, 2), np.float32)
    with pytest.raises(ValueError, match=r"wte.weight.exp_avg has shape \(2, 2\), expected \(7, 5\)"):
        opt.load_state_dict(bad, meta)
    with pytest.raises(ValueError, match="missing"):
        opt.load_state_dict({}, meta)
    with pytest.raises(ValueError, match=r"betas\[1\]=1.5"):
        opt.load_state_dict({k: v + 1 for k, v in arrays.items()}, {**meta, "betas": [0.9, 1.5]})
    assert all(not b.any() for bs in opt.state.values() for b in bs.values())


# ---- bad arguments ----------------------------------------------------------
@pytest.mark.parametrize("kwargs,match", [
    ({"lr": -1.0}, r"AdamW: lr=-1.0, expected a finite number >= 0"),
    ({"lr": float("nan")}, r"lr=nan"),
    ({"betas": (1.0, 0.999)}, r"betas\[0\]=1.0, expected a number in \[0.0, 1.0\)"),
    ({"betas": (0.9, -0.1)}, r"betas\[1\]=-0.1"),
    ({"betas": 0.9}, r"betas=0.9, expected a pair"),
    ({"eps": -1e-8}, r"eps=-1e-08"),
    ({"weight_decay": -0.1}, r"weight_decay=-0.1, expected a finite number >= 0"),
])
def test_adamw_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AdamW(make_params(np.float32), **kwargs)


@pytest.mark.parametrize("kwargs,match", [
    ({"lr": -0.1}, r"SGD: lr=-0.1"),
    ({"momentum": 1.0}, r"SGD: momentum=1.0, expected a number in \[0.0, 1.0\)"),
    ({"momentum": -0.5}, r"momentum=-0.5"),
    ({"nesterov": True}, r"nesterov=True with momentum=0.0, expected momentum > 0"),
    ({"weight_decay": "x"}, r"weight_decay='x'"),
])
def test_sgd_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SGD(make_params(np.float32), **kwargs)


def test_bad_parameter_lists():
    with pytest.raises(ValueError, match="named_parameters is empty"):
        AdamW([])
    p = Parameter(np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="expected \\(name, Parameter\\) pairs"):
        AdamW([p])
    with pytest.raises(ValueError, match="listed twice"):
        AdamW([("a", p), ("b", p)])
    with pytest.raises(ValueError, match="expected a floating-point dtype"):
        SGD([("ids", Parameter(np.zeros(3, np.int64)))])
    opt = AdamW([("a", p)])
    with pytest.raises(ValueError, match="lr=-3"):
        opt.lr = -3


# ---- schedule ------------------------------------------------------------------
def test_cosine_with_warmup_key_points():
    kw = dict(lr=1e-3, min_lr=1e-4, warmup_iters=100, max_iters=2000)
    assert cosine_with_warmup(0, **kw) == pytest.approx(1e-3 / 101)
    assert cosine_with_warmup(50, **kw) == pytest.approx(1e-3 * 51 / 101)
    assert cosine_with_warmup(99, **kw) == pytest.approx(1e-3 * 100 / 101)
    assert cosine_with_warmup(100, **kw) == pytest.approx(1e-3)       # warmup end: the peak
    assert cosine_with_warmup(1050, **kw) == pytest.approx(5.5e-4)    # halfway down
    assert cosine_with_warmup(2000, **kw) == pytest.approx(1e-4)
    assert cosine_with_warmup(5000, **kw) == 1e-4                     # beyond: the floor
    values = [cosine_with_warmup(i, **kw) for i in range(100, 2001)]
    assert all(a >= b for a, b in zip(values, values[1:]))           # monotone decay
    # the nanoGPT formula, written independently
    it = 700
    ratio = (it - 100) / 1900
    assert cosine_with_warmup(it, **kw) == pytest.approx(1e-4 + 0.5 * (1 + math.cos(math.pi * ratio)) * 9e-4)
    # no warmup, warmup to the end
    assert cosine_with_warmup(0, lr=1.0, min_lr=0.0, warmup_iters=0, max_iters=10) == 1.0
    assert cosine_with_warmup(10, lr=1.0, min_lr=0.0, warmup_iters=10, max_iters=10) == 0.0


@pytest.mark.parametrize("kwargs,match", [
    ({"it": -1}, r"it=-1, expected an integer >= 0"),
    ({"it": 1.5}, r"it=1.5"),
    ({"lr": -1.0}, r"lr=-1.0"),
    ({"min_lr": 2e-3}, r"min_lr=0.002, expected a number in \[0.0, 0.001\]"),
    ({"warmup_iters": -5}, r"warmup_iters=-5"),
    ({"max_iters": 50}, r"max_iters=50, expected an integer >= 100"),
])
def test_cosine_with_warmup_bad_arguments(kwargs, match):
    args = dict(it=0, lr=1e-3, min_lr=1e-4, warmup_iters=100, max_iters=2000)
    args.update(kwargs)
    it = args.pop("it")
    with pytest.raises(ValueError, match=match):
        cosine_with_warmup(it, **args)


# ---- clipping ------------------------------------------------------------------
@pytest.mark.parametrize("max_norm", [0.5, 1.0, 1e6])
def test_clip_grad_norm_matches_torch(max_norm):
    named = make_params(np.float32)
    grads = grad_sequence(np.float32)[0]
    tensors = []
    for n, p in named:
        p.grad[...] = grads[n]
        t = torch.zeros(p.data.shape, requires_grad=True)
        t.grad = torch.tensor(grads[n])
        tensors.append(t)
    total = clip_grad_norm([p for _, p in named], max_norm)
    t_total = torch.nn.utils.clip_grad_norm_(tensors, max_norm)
    assert isinstance(total, float)
    assert total == pytest.approx(float(t_total), rel=1e-6)
    for (n, p), t in zip(named, tensors):
        assert p.grad.dtype == np.float32
        assert max_rel_err(p.grad, t.grad.numpy()) <= 1e-6, n
    new_norm = math.sqrt(sum(float(np.sum(p.grad.astype(np.float64) ** 2)) for _, p in named))
    assert new_norm <= max_norm * (1 + 1e-6)


def test_clip_grad_norm_nonfinite_and_bad_max_norm():
    p = Parameter(np.zeros(3, np.float32))
    p.grad[...] = [1.0, np.inf, 0.0]
    assert clip_grad_norm([p], 1.0) == math.inf
    with pytest.raises(ValueError, match=r"max_norm=0, expected a finite number > 0"):
        clip_grad_norm([p], 0)
