"""PyTorch parity: every minitx layer, and whole encoder and decoder blocks,
against PyTorch (CPU) with identical weights, in float32.

For each case we build the minitx module from a seeded RNG, copy its weights
into the PyTorch reference (transposing where the layouts differ: minitx
``Linear.weight`` is ``(in, out)``, ``torch.nn.Linear.weight`` is
``(out, in)``), run both forward passes on the same random input, then run
both backward passes with the same random upstream gradient ``G``
(``out.backward(G)`` in torch) and compare:

* the outputs (and attention weights, where a layer returns them);
* the gradients with respect to every input;
* the gradient of **every** parameter, matched by its minitx name (a test
  fails if a minitx parameter has no torch counterpart, so nothing is skipped
  silently).

The error measure, per tensor, is the relative error of the whole tensor::

    rel_err(ours, ref) = max |ours - ref| / max(max |ref|, tiny)

(``tiny`` = the smallest normal float32, so an all-zero reference demands an
all-zero result). The tolerance is 1e-5 everywhere: float32 rounding of these
small problems sits around 1e-7..1e-6. Every minitx output and gradient must
also *be* float32 (no silent upcast).

Mapping of names, minitx -> torch:

* ``MultiHeadAttention`` -> ``nn.MultiheadAttention(batch_first=True)``:
  ``qkv.weight`` (d, 3d) laid out [q | k | v] is ``in_proj_weight.T``;
  for cross-attention ``in_proj_weight = cat(q.weight.T, kv.weight.T)``;
  ``proj`` is ``out_proj``. Masks: both sides use True = blocked.
* ``EncoderBlock`` / GPT-style ``DecoderBlock(cross_attention=False)`` ->
  ``nn.TransformerEncoderLayer``; ``DecoderBlock`` -> ``nn.TransformerDecoderLayer``
  (dropout 0, ``norm_first`` matching): ``norm_attn/norm_cross/norm_ff`` are
  ``norm1/norm2/norm3`` (encoder: ``norm1/norm2``), ``attn`` is ``self_attn``,
  ``cross_attn`` is ``multihead_attn``, ``ff.fc``/``ff.proj`` are
  ``linear1``/``linear2``. torch's ``activation="gelu"`` is the *exact* GELU,
  i.e. minitx ``"gelu_exact"``; minitx's ``"gelu"`` (tanh, GPT-2) is torch's
  ``F.gelu(approximate="tanh")`` passed as a callable.

Known, deliberate difference (not tested here): a cross-entropy whose targets
are all ``ignore_index`` is 0 in minitx and NaN in torch; an attention row
whose keys are all masked is uniform in minitx and NaN in torch. Every case
below keeps at least one valid target and one visible key per query.

Dropout is random, so train-mode dropout is compared with the *same mask*:
the mask is read off the minitx output, and the torch reference
(``x * mask / (1 - p)``, and torch's own ``native_dropout_backward``) is
built from it; the keep fraction and the 1/(1-p) scale are also checked
against ``torch.nn.functional.dropout``.

torch is a test-only dependency: without it this module is skipped.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from minitx.nn import (
    GELU,
    Activation,
    DecoderBlock,
    Dropout,
    Embedding,
    EncoderBlock,
    FeedForward,
    LayerNorm,
    LearnedPositionalEmbedding,
    Linear,
    MultiHeadAttention,
    ReLU,
    SinusoidalPositionalEncoding,
    causal_mask,
    cross_entropy_backward,
    cross_entropy_forward,
    log_softmax_backward,
    log_softmax_forward,
    scaled_dot_product_attention_backward,
    scaled_dot_product_attention_forward,
    sinusoidal_table,
    softmax_backward,
    softmax_forward,
)

torch = pytest.importorskip("torch", reason="PyTorch parity tests need torch (pip install torch==2.13.0)")

from torch_reference import (  # noqa: E402 - after the skip: these helpers only make sense with torch
    load_into_torch,
    map_decoder_layer,
    map_encoder_layer,
    map_ff,
    map_layernorm,
    map_linear,
    map_mha,
    rel_err,
    to_np,
    torch_grads,
)
F = torch.nn.functional
torch.set_num_threads(2)

TOL = 1e-5
F32 = np.float32


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------
#: Below this, a reference gradient is zero in exact arithmetic and what torch returns is its rounding noise
#: (a query that can attend to one key only gets dq = 0: its softmax row is constant). Inputs here are O(1).
ZERO = 1e-6


def check(what: str, ours, ref, tol: float = TOL) -> None:
    if isinstance(ours, (np.ndarray, np.generic)):
        assert ours.dtype == F32, f"{what}: minitx returned dtype {ours.dtype}, expected float32"
    if 0 < np.max(np.abs(to_np(ref))) < ZERO:  # relative to noise means nothing: compare absolutely
        diff = float(np.max(np.abs(np.asarray(to_np(ours), np.float64) - np.asarray(to_np(ref), np.float64))))
        assert diff <= ZERO, f"{what}: the gradient is zero up to rounding, but minitx differs by {diff:.3g}"
        return
    err = rel_err(ours, ref)
    assert err <= tol, f"{what}: relative error {err:.3g} > {tol:g}  (max|minitx - torch| / max|torch|)"


def tt(a, grad: bool = False):
    """A torch tensor holding a copy of ``a`` (float32 stays float32)."""
    return torch.tensor(np.array(a), requires_grad=grad)


def randn(rng, *shape, scale: float = 1.0):
    return (rng.standard_normal(shape) * scale).astype(F32)


def perturb_layernorms(module, rng) -> None:
    """LayerNorms start at gamma=1, beta=0; make them non-trivial so their gradients are tested."""
    for name, p in module.named_parameters():
        parts = name.split(".")
        if isinstance(module, LayerNorm) or parts[-2].startswith("norm"):
            noise = rng.standard_normal(p.shape)
            p.data[...] = 1.0 + 0.3 * noise if parts[-1] == "weight" else 0.2 * noise


def padding_mask(rng, B: int, T: int):
    """``(B, T)`` bool, True = padding, right-padded; every row keeps at least one token."""
    lengths = rng.integers(1, T + 1, size=B)
    lengths[0] = T  # one full-length sequence, as in a real batch
    return np.arange(T)[None, :] >= lengths[:, None]


def check_param_grads(module, wmap, what: str) -> None:
    ref = torch_grads(wmap)
    for name, p in module.named_parameters():
        check(f"{what} d{name}", p.grad, ref[name])


def gelu_tanh_torch(x):
    return F.gelu(x, approximate="tanh")


def torch_act(name: str):
    """The torch activation for a minitx activation name (torch's "gelu" is the exact erf form)."""
    return {"relu": F.relu, "gelu_exact": F.gelu, "gelu": gelu_tanh_torch, "gelu_tanh": gelu_tanh_torch}[name]


# --------------------------------------------------------------------------
# Linear
# --------------------------------------------------------------------------
@pytest.mark.parametrize("lead, n_in, n_out, bias", [
    ((2, 5), 8, 16, True),
    ((1, 1), 3, 7, True),     # T = 1
    ((3, 7), 13, 1, True),    # primes, one output
    ((11,), 5, 2, False),     # 2-D input, no bias
    ((2, 3, 4), 6, 5, True),  # extra leading axis
])
def test_linear(lead, n_in, n_out, bias):
    rng = np.random.default_rng(0)
    lin = Linear(n_in, n_out, bias, rng=rng)
    ref = torch.nn.Linear(n_in, n_out, bias=bias)
    wmap = map_linear("", ref)
    load_into_torch(lin, wmap)
    x, G = randn(rng, *lead, n_in), randn(rng, *lead, n_out)
    xt = tt(x, grad=True)
    out, out_t = lin(x), ref(xt)
    check("Linear out", out, out_t)
    dx = lin.backward(G)
    out_t.backward(tt(G))
    check("Linear dx", dx, xt.grad)
    check_param_grads(lin, wmap, "Linear")


# --------------------------------------------------------------------------
# Embedding
# --------------------------------------------------------------------------
@pytest.mark.parametrize("V, D, shape", [(11, 6, (3, 7)), (5, 1, (1, 1)), (17, 13, (2, 19)), (2, 4, (9,))])
def test_embedding_repeated_ids(V, D, shape):
    rng = np.random.default_rng(1)
    emb = Embedding(V, D, rng=rng)
    ref = torch.nn.Embedding(V, D)
    wmap = {"weight": (ref.weight, False, None)}
    load_into_torch(emb, wmap)
    ids = rng.integers(0, min(V, 4), size=shape)  # a few ids, so they repeat
    ids.reshape(-1)[0] = ids.reshape(-1)[-1]  # at least one repeat when there are two positions
    G = randn(rng, *shape, D)
    out, out_t = emb(ids), ref(torch.from_numpy(ids))
    check("Embedding out", out, out_t)
    assert emb.backward(G) is None
    out_t.backward(tt(G))
    check_param_grads(emb, wmap, "Embedding")


# --------------------------------------------------------------------------
# LayerNorm
# --------------------------------------------------------------------------
# (no D = 1: there dx is exactly 0, and torch returns rounding noise of ~1e-5 that no relative measure can judge)
@pytest.mark.parametrize("shape", [(2, 5, 8), (1, 1, 13), (3, 17), (4, 3), (2, 3, 64)])
@pytest.mark.parametrize("eps", [1e-5, 1e-6])
def test_layernorm(shape, eps):
    rng = np.random.default_rng(2)
    ln = LayerNorm(shape[-1], eps)
    perturb_layernorms(ln, rng)
    ref = torch.nn.LayerNorm(shape[-1], eps=eps)
    wmap = map_layernorm("", ref)
    load_into_torch(ln, wmap)
    x = (3.0 + 2.0 * rng.standard_normal(shape)).astype(F32)  # off-centre, not unit scale
    G = randn(rng, *shape)
    xt = tt(x, grad=True)
    out, out_t = ln(x), ref(xt)
    check("LayerNorm out", out, out_t)
    dx = ln.backward(G)
    out_t.backward(tt(G))
    check("LayerNorm dx", dx, xt.grad)
    check_param_grads(ln, wmap, "LayerNorm")


# --------------------------------------------------------------------------
# Activations
# --------------------------------------------------------------------------
ACTIVATIONS = {
    "relu": (lambda: ReLU(), F.relu),
    "Activation('relu')": (lambda: Activation("relu"), F.relu),
    "gelu_tanh": (lambda: GELU("tanh"), gelu_tanh_torch),
    "Activation('gelu')": (lambda: Activation("gelu"), gelu_tanh_torch),
    "gelu_exact": (lambda: GELU("none"), lambda x: F.gelu(x, approximate="none")),
    "Activation('gelu_exact')": (lambda: Activation("gelu_exact"), F.gelu),
}


@pytest.mark.parametrize("name", list(ACTIVATIONS))
@pytest.mark.parametrize("shape", [(2, 3, 7), (1, 1, 1), (5, 13)])
def test_activations(name, shape):
    rng = np.random.default_rng(3)
    make, fn = ACTIVATIONS[name]
    act = make()
    x = randn(rng, *shape, scale=3.0)  # covers the tails and the bend near 0
    G = randn(rng, *shape)
    xt = tt(x, grad=True)
    out, out_t = act(x), fn(xt)
    check(f"{name} out", out, out_t)
    dx = act.backward(G)
    out_t.backward(tt(G))
    check(f"{name} dx", dx, xt.grad)


# --------------------------------------------------------------------------
# softmax, log-softmax, cross-entropy
# --------------------------------------------------------------------------
@pytest.mark.parametrize("shape, scale", [((2, 3, 7), 1.0), ((1, 1), 1.0), ((4, 13), 30.0), ((5, 1), 1.0),
                                          ((3, 2, 31), 5.0)])
def test_softmax_and_log_softmax(shape, scale):
    rng = np.random.default_rng(4)
    x, G = randn(rng, *shape, scale=scale), randn(rng, *shape)  # scale 30: exp() would overflow unshifted
    for what, fwd, bwd, tfn in [("softmax", softmax_forward, softmax_backward, torch.softmax),
                                ("log_softmax", log_softmax_forward, log_softmax_backward, torch.log_softmax)]:
        xt = tt(x, grad=True)
        out, cache = fwd(x)
        out_t = tfn(xt, dim=-1)
        check(f"{what} out", out, out_t)
        out_t.backward(tt(G))
        check(f"{what} dx", bwd(G, cache), xt.grad)


@pytest.mark.parametrize("lead, C", [((2, 5), 7), ((1, 1), 3), ((4, 3), 13), ((11,), 5), ((3, 2), 2)])
@pytest.mark.parametrize("ignore", ["none", "default", "class2"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1, 0.25])
def test_cross_entropy(lead, C, ignore, label_smoothing):
    rng = np.random.default_rng(5)
    logits = randn(rng, *lead, C, scale=2.0)
    targets = rng.integers(0, C, size=lead)
    ignore_index = {"none": -100, "default": -100, "class2": 2}[ignore]
    if ignore == "default":
        targets[rng.random(lead) < 0.3] = -100
    flat = targets.reshape(-1)
    if ignore == "class2" and C > 2:
        flat[::2] = 2  # class id 2 is the padding id here
    if np.all(flat == ignore_index):
        flat[0] = (ignore_index + 1) % C  # keep one valid target (all-ignored differs on purpose, see docstring)
    dloss = 0.7
    loss, cache = cross_entropy_forward(logits, targets, ignore_index=ignore_index, label_smoothing=label_smoothing)
    zt = tt(logits, grad=True)
    loss_t = F.cross_entropy(zt.reshape(-1, C), torch.from_numpy(targets.reshape(-1)), ignore_index=ignore_index,
                             label_smoothing=label_smoothing)
    check("cross_entropy loss", np.asarray(loss), loss_t)
    loss_t.backward(torch.tensor(dloss))
    check("cross_entropy dlogits", cross_entropy_backward(dloss, cache), zt.grad)


# --------------------------------------------------------------------------
# positional encodings
# --------------------------------------------------------------------------
def torch_sinusoidal_table(max_len: int, d: int):
    """The formula of Vaswani et al., in torch float64: PE[p, 2i] = sin(p / 10000^(2i/d)), PE[p, 2i+1] = cos(...)."""
    pos = torch.arange(max_len, dtype=torch.float64)[:, None]
    div = torch.exp(torch.arange(0, d, 2, dtype=torch.float64) * (-math.log(10000.0) / d))
    pe = torch.zeros(max_len, d, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div)[:, : d // 2]
    return pe


@pytest.mark.parametrize("max_len, d", [(64, 16), (4096, 512), (5, 7), (1, 1), (50, 2)])
def test_sinusoidal_table(max_len, d):
    table = sinusoidal_table(max_len, d)
    assert table.shape == (max_len, d)
    check("sinusoidal table", table, torch_sinusoidal_table(max_len, d))


@pytest.mark.parametrize("B, T, d, start", [(2, 5, 16, 0), (1, 1, 7, 3), (3, 13, 10, 17)])
def test_sinusoidal_module(B, T, d, start):
    rng = np.random.default_rng(6)
    pe = SinusoidalPositionalEncoding(d, max_len=64)
    x, G = randn(rng, B, T, d), randn(rng, B, T, d)
    xt = tt(x, grad=True)
    out_t = xt + torch_sinusoidal_table(64, d)[start:start + T].float()
    check("sinusoidal out", pe(x, start), out_t)
    out_t.backward(tt(G))
    check("sinusoidal dx", pe.backward(G), xt.grad)


@pytest.mark.parametrize("shape, start", [((2, 5, 16), 0), ((1, 1, 7), 3), ((3, 13, 11), 5), ((6, 4), 2)])
def test_learned_positions(shape, start):
    rng = np.random.default_rng(7)
    T, d, max_len = shape[-2], shape[-1], 32
    lpe = LearnedPositionalEmbedding(max_len, d, rng=rng)
    ref = torch.nn.Embedding(max_len, d)
    wmap = {"weight": (ref.weight, False, None)}
    load_into_torch(lpe, wmap)
    x, G = randn(rng, *shape), randn(rng, *shape)
    xt = tt(x, grad=True)
    out_t = xt + ref(torch.arange(start, start + T))
    check("learned positions out", lpe(x, start), out_t)
    dx = lpe.backward(G)
    out_t.backward(tt(G))
    check("learned positions dx", dx, xt.grad)
    check_param_grads(lpe, wmap, "LearnedPositionalEmbedding")


# --------------------------------------------------------------------------
# Dropout
# --------------------------------------------------------------------------
@pytest.mark.parametrize("p", [0.0, 0.1, 0.5])
def test_dropout_eval_is_identity(p):
    rng = np.random.default_rng(8)
    x, G = randn(rng, 3, 5, 7), randn(rng, 3, 5, 7)
    drop = Dropout(p, rng=np.random.default_rng(0)).eval()
    out_t = F.dropout(tt(x), p, training=False)
    out = drop(x)
    check("Dropout(eval) out", out, out_t)
    np.testing.assert_array_equal(out, x)
    np.testing.assert_array_equal(drop.backward(G), G)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_train_same_mask(p):
    rng = np.random.default_rng(9)
    shape = (64, 257)
    # no zeros in x, so a zero in the output means "dropped"
    x = (rng.uniform(0.5, 2.0, shape) * rng.choice([-1.0, 1.0], shape)).astype(F32)
    G = randn(rng, *shape)
    drop = Dropout(p, rng=np.random.default_rng(123))
    out = drop(x)
    assert out.dtype == F32
    keep = out != 0

    # statistics: keep fraction ~ 1 - p (5 sigma), survivors scaled by 1/(1-p), like torch's own dropout
    n = keep.size
    sigma = math.sqrt(p * (1 - p) / n)
    assert abs(keep.mean() - (1 - p)) < 5 * sigma, f"keep fraction {keep.mean():.4f}, expected {1 - p}"
    torch.manual_seed(0)
    t_out = F.dropout(torch.ones(n), p, training=True)
    t_keep = (t_out != 0).float().mean().item()
    assert abs(t_keep - (1 - p)) < 5 * sigma
    t_scale = t_out[t_out != 0].unique()
    assert t_scale.numel() == 1
    ours_scale = out[keep].astype(np.float64) / x[keep]
    check("Dropout survivors' scale vs torch F.dropout", ours_scale.astype(F32),
          np.full(ours_scale.shape, t_scale.item()))
    assert abs(t_scale.item() - 1 / (1 - p)) <= 1e-6 / (1 - p)

    # forward with the same mask, as a torch graph
    scale = 1.0 / (1.0 - p)
    keep_t = torch.from_numpy(keep)
    xt = tt(x, grad=True)
    out_t = xt * keep_t.float() * scale
    check("Dropout(train) out, same mask", out, out_t)
    # backward: must reuse exactly the forward's mask
    dx = drop.backward(G)
    out_t.backward(tt(G))
    check("Dropout(train) dx, same mask", dx, xt.grad)
    check("Dropout(train) dx vs aten.native_dropout_backward", dx,
          torch.ops.aten.native_dropout_backward(tt(G), keep_t, scale))
    np.testing.assert_array_equal(dx == 0, ~keep | (G == 0))

    # the same seed gives the same mask (reproducible training)
    np.testing.assert_array_equal(Dropout(p, rng=np.random.default_rng(123))(x), out)


# --------------------------------------------------------------------------
# scaled dot-product attention (functional)
# --------------------------------------------------------------------------
SDPA_SHAPES = [  # B, H, Tq, Tk, hs, hv
    (2, 3, 5, 5, 8, 8),
    (1, 1, 1, 1, 4, 4),     # one query, one key
    (2, 2, 7, 11, 5, 3),    # Tq != Tk, hs != hv
    (3, 1, 13, 2, 7, 7),
    (1, 2, 1, 9, 16, 16),   # one query (a decoding step)
]


def sdpa_mask(kind, rng, B, H, Tq, Tk):
    """``(minitx mask, torch kwargs)``; minitx and torch SDPA both use True = may attend."""
    if kind == "none":
        return None, {}
    if kind == "causal":
        return causal_mask(Tq, Tk), {"is_causal": True}
    shape = {"bool_2d": (Tq, Tk), "bool_4d": (B, H, Tq, Tk), "padding": (B, 1, 1, Tk)}[kind]
    m = rng.random(shape) < 0.6
    m[..., 0] = True  # every query sees at least one key
    return m, {"attn_mask": torch.from_numpy(m)}


@pytest.mark.parametrize("shape", SDPA_SHAPES)
@pytest.mark.parametrize("kind", ["none", "causal", "bool_2d", "bool_4d", "padding"])
def test_sdpa(shape, kind):
    rng = np.random.default_rng(10)
    B, H, Tq, Tk, hs, hv = shape
    q, k, v = randn(rng, B, H, Tq, hs), randn(rng, B, H, Tk, hs), randn(rng, B, H, Tk, hv)
    G = randn(rng, B, H, Tq, hv)
    mask, tkw = sdpa_mask(kind, rng, B, H, Tq, Tk)
    out, weights, cache = scaled_dot_product_attention_forward(q, k, v, mask)
    qt, kt, vt = tt(q, True), tt(k, True), tt(v, True)
    out_t = F.scaled_dot_product_attention(qt, kt, vt, **tkw)
    check("SDPA out", out, out_t)
    # the weights, from the definition: softmax of masked, scaled scores
    scores = (tt(q) @ tt(k).transpose(-1, -2)) / math.sqrt(hs)
    if mask is not None:
        scores = scores.masked_fill(~torch.from_numpy(np.broadcast_to(mask, scores.shape).copy()), float("-inf"))
    check("SDPA weights", weights, torch.softmax(scores, dim=-1))
    dq, dk, dv = scaled_dot_product_attention_backward(G, cache)
    out_t.backward(tt(G))
    check("SDPA dq", dq, qt.grad)
    check("SDPA dk", dk, kt.grad)
    check("SDPA dv", dv, vt.grad)


@pytest.mark.parametrize("p", [0.2, 0.5])
def test_sdpa_dropout_same_mask(p):
    """Attention dropout in training, against a torch graph that uses minitx's dropout mask.

    The mask is read off an output: with ``v`` = identity, ``out`` *is* the
    dropped-out weight matrix. A second call with the same seed and a random
    ``v`` must use the same mask, and is compared with torch.
    """
    rng = np.random.default_rng(11)
    B, H, Tq, Tk, hs = 2, 3, 7, 7, 8
    q, k, v, G = (randn(rng, B, H, T, hs) for T in (Tq, Tk, Tk, Tq))
    mask = causal_mask(Tq, Tk)
    eye = np.broadcast_to(np.eye(Tk, dtype=F32), (B, H, Tk, Tk)).copy()
    dropped, weights, _ = scaled_dot_product_attention_forward(q, k, eye, mask, p, np.random.default_rng(5), True)
    kept = dropped != 0  # (B, H, Tq, Tk); masked-out keys have weight 0 whatever the dropout
    allowed = np.broadcast_to(mask, kept.shape)
    frac = kept[allowed].mean()
    assert abs(frac - (1 - p)) < 5 * math.sqrt(p * (1 - p) / allowed.sum()), f"keep fraction {frac:.3f}"
    np.testing.assert_allclose(dropped[kept], weights[kept] / (1 - p), rtol=1e-6)

    out, weights2, cache = scaled_dot_product_attention_forward(q, k, v, mask, p, np.random.default_rng(5), True)
    np.testing.assert_array_equal(weights2, weights)
    qt, kt, vt = tt(q, True), tt(k, True), tt(v, True)
    scores_t = (qt @ kt.transpose(-1, -2)) / math.sqrt(hs)
    probs_t = torch.softmax(scores_t.masked_fill(~torch.from_numpy(mask), float("-inf")), dim=-1)
    check("SDPA(dropout) weights, before dropout", weights2, probs_t)
    out_t = (probs_t * torch.from_numpy(kept).float() / (1 - p)) @ vt
    check("SDPA(dropout) out, same mask", out, out_t)
    dq, dk, dv = scaled_dot_product_attention_backward(G, cache)
    out_t.backward(tt(G))
    check("SDPA(dropout) dq", dq, qt.grad)
    check("SDPA(dropout) dk", dk, kt.grad)
    check("SDPA(dropout) dv", dv, vt.grad)


# --------------------------------------------------------------------------
# multi-head attention vs nn.MultiheadAttention
# --------------------------------------------------------------------------
MHA_SHAPES = [  # B, Tq, Tk (cross only), d_model, n_heads
    (2, 5, 7, 16, 4),
    (1, 1, 1, 8, 2),     # T = 1
    (3, 7, 11, 12, 3),   # primes
    (2, 13, 3, 10, 1),   # one head
]
MHA_CASES = ["self", "self_padding", "self_attn_mask", "self_causal", "self_causal_padding_attn_mask",
             "self_no_bias", "cross", "cross_padding", "cross_attn_mask_no_bias"]


@pytest.mark.parametrize("shape", MHA_SHAPES)
@pytest.mark.parametrize("case", MHA_CASES)
def test_multi_head_attention(shape, case):
    rng = np.random.default_rng(12)
    B, Tq, S, d, H = shape
    cross, causal, bias = case.startswith("cross"), "causal" in case, "no_bias" not in case
    Tk = S if cross else Tq
    mha = MultiHeadAttention(d, H, cross=cross, causal=causal, bias=bias, rng=rng)
    ref = torch.nn.MultiheadAttention(d, H, bias=bias, batch_first=True)
    wmap = map_mha("", ref, cross, d)
    load_into_torch(mha, wmap)

    x, G = randn(rng, B, Tq, d), randn(rng, B, Tq, d)
    memory = randn(rng, B, Tk, d) if cross else None
    kpm = padding_mask(rng, B, Tk) if "padding" in case else None
    attn_mask = None
    if "attn_mask" in case:
        attn_mask = rng.random((Tq, Tk)) < 0.3  # True = blocked
        attn_mask[:, 0] = False  # key 0 stays visible to every query
    t_mask = attn_mask
    if causal:  # torch has no causal flag of its own here: the causal mask is an attn_mask (True = blocked)
        blocked = ~causal_mask(Tq, Tk)
        t_mask = blocked if t_mask is None else (t_mask | blocked)

    out, weights = mha(x, memory, key_padding_mask=kpm, attn_mask=attn_mask, return_weights=True)
    xt = tt(x, True)
    mt = tt(memory, True) if cross else xt
    out_t, w_t = ref(xt, mt, mt, key_padding_mask=None if kpm is None else torch.from_numpy(kpm),
                     attn_mask=None if t_mask is None else torch.from_numpy(t_mask),
                     need_weights=True, average_attn_weights=False)
    check(f"MHA[{case}] out", out, out_t)
    check(f"MHA[{case}] attention weights", weights, w_t)
    assert mha.attn_weights is weights

    d_in = mha.backward(G)
    out_t.backward(tt(G))
    if cross:
        dx, dmem = d_in
        check(f"MHA[{case}] dx", dx, xt.grad)
        check(f"MHA[{case}] dmemory", dmem, mt.grad)
    else:
        check(f"MHA[{case}] dx", d_in, xt.grad)
    check_param_grads(mha, wmap, f"MHA[{case}]")


# --------------------------------------------------------------------------
# feed-forward
# --------------------------------------------------------------------------
@pytest.mark.parametrize("activation", ["relu", "gelu", "gelu_exact"])
@pytest.mark.parametrize("lead, d, d_ff", [((2, 5), 16, 64), ((1, 1), 3, 5), ((3, 7), 13, 17)])
def test_feedforward(activation, lead, d, d_ff):
    rng = np.random.default_rng(13)
    ff = FeedForward(d, d_ff, activation=activation, rng=rng)
    fc, proj = torch.nn.Linear(d, d_ff), torch.nn.Linear(d_ff, d)
    act = torch_act(activation)
    wmap = map_ff("", fc, proj)
    load_into_torch(ff, wmap)
    x, G = randn(rng, *lead, d), randn(rng, *lead, d)
    xt = tt(x, True)
    out, out_t = ff(x), proj(act(fc(xt)))
    check("FeedForward out", out, out_t)
    dx = ff.backward(G)
    out_t.backward(tt(G))
    check("FeedForward dx", dx, xt.grad)
    check_param_grads(ff, wmap, "FeedForward")


# --------------------------------------------------------------------------
# blocks vs nn.TransformerEncoderLayer / nn.TransformerDecoderLayer
# --------------------------------------------------------------------------
BLOCK_SHAPES = [  # B, T, S (memory length), d_model, n_heads, d_ff
    (2, 5, 7, 16, 4, 32),
    (1, 1, 1, 8, 2, 8),      # T = S = 1
    (3, 7, 11, 12, 3, 13),   # primes
]
BLOCK_ACTIVATIONS = ["gelu_exact", "relu", "gelu"]  # "gelu" = tanh GELU (GPT-2)


@pytest.mark.parametrize("shape", BLOCK_SHAPES)
@pytest.mark.parametrize("activation", BLOCK_ACTIVATIONS)
@pytest.mark.parametrize("norm_first", [True, False], ids=["pre_norm", "post_norm"])
def test_encoder_block(shape, activation, norm_first):
    rng = np.random.default_rng(14)
    B, T, _, d, H, d_ff = shape
    block = EncoderBlock(d, H, d_ff, norm_first=norm_first, activation=activation, rng=rng)
    perturb_layernorms(block, rng)
    ref = torch.nn.TransformerEncoderLayer(d, H, d_ff, dropout=0.0, activation=torch_act(activation),
                                           batch_first=True, norm_first=norm_first)
    wmap = map_encoder_layer(ref, d)
    load_into_torch(block, wmap)
    x, G = randn(rng, B, T, d), randn(rng, B, T, d)
    kpm = padding_mask(rng, B, T)  # True = padding, as src_key_padding_mask
    xt = tt(x, True)
    out = block(x, key_padding_mask=kpm)
    out_t = ref(xt, src_key_padding_mask=torch.from_numpy(kpm))
    what = f"EncoderBlock({'pre' if norm_first else 'post'}-norm, {activation})"
    check(f"{what} out", out, out_t)
    dx = block.backward(G)
    out_t.backward(tt(G))
    check(f"{what} dx", dx, xt.grad)
    check_param_grads(block, wmap, what)


@pytest.mark.parametrize("shape", BLOCK_SHAPES)
@pytest.mark.parametrize("activation", BLOCK_ACTIVATIONS)
@pytest.mark.parametrize("norm_first", [True, False], ids=["pre_norm", "post_norm"])
def test_decoder_block_with_cross_attention(shape, activation, norm_first):
    rng = np.random.default_rng(15)
    B, T, S, d, H, d_ff = shape
    block = DecoderBlock(d, H, d_ff, cross_attention=True, norm_first=norm_first, activation=activation, rng=rng)
    perturb_layernorms(block, rng)
    ref = torch.nn.TransformerDecoderLayer(d, H, d_ff, dropout=0.0, activation=torch_act(activation),
                                           batch_first=True, norm_first=norm_first)
    wmap = map_decoder_layer(ref, d)
    load_into_torch(block, wmap)
    x, memory, G = randn(rng, B, T, d), randn(rng, B, S, d), randn(rng, B, T, d)
    tgt_kpm, mem_kpm = padding_mask(rng, B, T), padding_mask(rng, B, S)
    xt, mt = tt(x, True), tt(memory, True)
    out = block(x, memory, key_padding_mask=tgt_kpm, memory_key_padding_mask=mem_kpm)
    out_t = ref(xt, mt, tgt_mask=torch.from_numpy(~causal_mask(T)), tgt_is_causal=True,
                tgt_key_padding_mask=torch.from_numpy(tgt_kpm), memory_key_padding_mask=torch.from_numpy(mem_kpm))
    what = f"DecoderBlock({'pre' if norm_first else 'post'}-norm, {activation}, cross)"
    check(f"{what} out", out, out_t)
    dx, dmem = block.backward(G)
    out_t.backward(tt(G))
    check(f"{what} dx", dx, xt.grad)
    check(f"{what} dmemory", dmem, mt.grad)
    check_param_grads(block, wmap, what)


@pytest.mark.parametrize("shape", BLOCK_SHAPES)
@pytest.mark.parametrize("padded", [False, True], ids=["no_padding", "padding"])
@pytest.mark.parametrize("norm_first", [True, False], ids=["pre_norm", "post_norm"])
def test_gpt_decoder_block(shape, padded, norm_first):
    """Decoder-only (GPT-2) block: causal self-attention + tanh-GELU MLP, as a causal TransformerEncoderLayer."""
    rng = np.random.default_rng(16)
    B, T, _, d, H, d_ff = shape
    block = DecoderBlock(d, H, d_ff, cross_attention=False, norm_first=norm_first, activation="gelu", rng=rng)
    perturb_layernorms(block, rng)
    ref = torch.nn.TransformerEncoderLayer(d, H, d_ff, dropout=0.0, activation=torch_act("gelu"),
                                           batch_first=True, norm_first=norm_first)
    wmap = map_encoder_layer(ref, d)
    load_into_torch(block, wmap)
    x, G = randn(rng, B, T, d), randn(rng, B, T, d)
    kpm = padding_mask(rng, B, T) if padded else None
    xt = tt(x, True)
    out = block(x, key_padding_mask=kpm)
    out_t = ref(xt, src_mask=torch.from_numpy(~causal_mask(T)), is_causal=True,
                src_key_padding_mask=None if kpm is None else torch.from_numpy(kpm))
    what = f"GPT DecoderBlock({'pre' if norm_first else 'post'}-norm, padded={padded})"
    check(f"{what} out", out, out_t)
    dx = block.backward(G)
    out_t.backward(tt(G))
    check(f"{what} dx", dx, xt.grad)
    check_param_grads(block, wmap, what)
