"""Weight maps between minitx modules and PyTorch's, shared by the parity tests.

A *weight map* sends each minitx parameter name to
``(torch parameter, transpose?, row slice or None)``:

* minitx stores Linear weights ``(in, out)``, ``nn.Linear`` stores ``(out, in)``:
  ``transpose=True``;
* ``nn.MultiheadAttention`` keeps q, k and v in one ``in_proj_weight``
  ``(3d, d)``: minitx's self-attention ``qkv.weight`` is its transpose, and
  cross-attention's ``q`` / ``kv`` are its row slices ``[0, d)`` / ``[d, 3d)``;
* ``EncoderBlock`` is ``nn.TransformerEncoderLayer`` and ``DecoderBlock`` is
  ``nn.TransformerDecoderLayer``: ``norm_attn / norm_cross / norm_ff`` are
  ``norm1 / norm2 / norm3``, ``attn`` is ``self_attn``, ``cross_attn`` is
  ``multihead_attn``, ``ff.fc`` / ``ff.proj`` are ``linear1`` / ``linear2``.

:func:`load_into_torch` copies a minitx module's weights through a map;
:func:`torch_grads` reads the torch gradients back in minitx's layout.
:func:`rel_err` is the parity tests' one error measure. Only the callers import torch (after
``pytest.importorskip``).
"""
from __future__ import annotations

import numpy as np

_TINY = float(np.finfo(np.float32).tiny)


def to_np(t):
    """A torch tensor (detached, on the CPU) or anything array-like, as a NumPy array."""
    return t.detach().cpu().numpy() if hasattr(t, "detach") else np.asarray(t)


def rel_err(ours, ref) -> float:
    """``max|ours - ref| / max(max|ref|, tiny)`` over the whole tensor, in float64; shapes must agree."""
    a = np.asarray(to_np(ours), dtype=np.float64)
    b = np.asarray(to_np(ref), dtype=np.float64)
    assert a.shape == b.shape, f"shape mismatch: ours {a.shape}, reference {b.shape}"
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b))) / max(float(np.max(np.abs(b))), _TINY)


def map_linear(prefix, tlin):
    m = {f"{prefix}weight": (tlin.weight, True, None)}
    if tlin.bias is not None:
        m[f"{prefix}bias"] = (tlin.bias, False, None)
    return m


def map_layernorm(prefix, tln):
    return {f"{prefix}weight": (tln.weight, False, None), f"{prefix}bias": (tln.bias, False, None)}


def map_mha(prefix, tmha, cross: bool, d: int):
    w, b = tmha.in_proj_weight, tmha.in_proj_bias
    if cross:
        m = {f"{prefix}q.weight": (w, True, slice(0, d)), f"{prefix}kv.weight": (w, True, slice(d, 3 * d))}
        if b is not None:
            m.update({f"{prefix}q.bias": (b, False, slice(0, d)), f"{prefix}kv.bias": (b, False, slice(d, 3 * d))})
    else:
        m = {f"{prefix}qkv.weight": (w, True, None)}
        if b is not None:
            m[f"{prefix}qkv.bias"] = (b, False, None)
    m.update(map_linear(f"{prefix}proj.", tmha.out_proj))
    return m


def map_ff(prefix, fc, proj):
    return {**map_linear(f"{prefix}fc.", fc), **map_linear(f"{prefix}proj.", proj)}


def map_encoder_layer(layer, d):
    """``EncoderBlock`` (or a GPT-style ``DecoderBlock``) <-> ``nn.TransformerEncoderLayer``."""
    return {**map_layernorm("norm_attn.", layer.norm1), **map_mha("attn.", layer.self_attn, False, d),
            **map_layernorm("norm_ff.", layer.norm2), **map_ff("ff.", layer.linear1, layer.linear2)}


def map_decoder_layer(layer, d):
    """``DecoderBlock`` with cross-attention <-> ``nn.TransformerDecoderLayer``."""
    return {**map_layernorm("norm_attn.", layer.norm1), **map_mha("attn.", layer.self_attn, False, d),
            **map_layernorm("norm_cross.", layer.norm2), **map_mha("cross_attn.", layer.multihead_attn, True, d),
            **map_layernorm("norm_ff.", layer.norm3), **map_ff("ff.", layer.linear1, layer.linear2)}


def load_into_torch(module, wmap) -> None:
    """Copy every minitx parameter into its torch counterpart; the names must match one to one."""
    import torch  # noqa: PLC0415 - test-only, imported by callers that have it

    ours = dict(module.named_parameters())
    assert set(ours) == set(wmap), f"unmapped: minitx-only {set(ours) - set(wmap)}, map-only {set(wmap) - set(ours)}"
    with torch.no_grad():
        for name, (tp, transpose, rows) in wmap.items():
            value = torch.from_numpy(ours[name].data.T.copy() if transpose else ours[name].data.copy())
            target = tp if rows is None else tp[rows]
            assert tuple(target.shape) == tuple(value.shape), f"{name}: torch {tuple(target.shape)}, ours {value.shape}"
            target.copy_(value)


def torch_grads(wmap, prefix: str = "") -> dict:
    """``{prefix + minitx name: torch gradient as a NumPy array in minitx's layout}``."""
    out = {}
    for name, (tp, transpose, rows) in wmap.items():
        assert tp.grad is not None, f"torch parameter for {name} received no gradient"
        g = tp.grad if rows is None else tp.grad[rows]
        out[prefix + name] = (g.T if transpose else g).detach().numpy()
    return out
