"""The machinery behind every mapping table: Hugging Face tensors <-> minitx parameters.

Each architecture's page (``gpt2.py``, ``bert.py``, ``bart.py``, ``t5.py``)
holds a table of rows ``(minitx name, Hugging Face name(s), how)``, with
``{l}`` standing for the layer number. ``how`` is one of

* ``SAME``: copy as is;
* ``T``: transpose. PyTorch's ``nn.Linear`` stores ``(out, in)``; minitx
  computes ``x @ W`` with ``W`` of shape ``(in, out)``;
* ``ROW``: a ``(1, n)`` buffer that minitx keeps as ``(n,)`` (BART's
  ``final_logits_bias``).

``how`` may also be an object with ``to_minitx(array)`` and
``to_hf(array)`` methods, for a rearrangement that needs the config (BLOOM's
per-head query/key/value layout: :class:`PerHeadQKV`).

A row with several Hugging Face names *fuses* them: each is mapped by
``how``, then they are concatenated along the last axis. Hugging Face BERT,
BART, T5 and Llama keep separate query, key and value projections; minitx
runs one ``qkv`` matmul, so ``(query, key, value)`` become the three column
blocks of ``qkv.weight``. Saving splits them again: into equal parts, or at
the widths :func:`export_state` is given (grouped-query attention, whose
key and value blocks are narrower than the query block).

Loading checks every shape against the model built from ``config.json`` and
refuses leftover tensors it does not understand, so a checkpoint that does
not match its config fails loudly instead of computing something else.
"""
from __future__ import annotations

import re

import numpy as np

from .folder import PretrainedError

SAME, T, ROW = "same", "transpose", "row"


def expand(table, n_layers: dict[str, int]):
    """Rows with ``{l}`` repeated for every layer. ``n_layers``: per name prefix, e.g. ``{"": 12}``.

    A row may be ``(minitx, hf, how, group)``: ``group`` picks which layer count applies
    (encoder and decoder stacks may differ in depth).
    """
    out = []
    for row in table:
        mx, hf, how = row[:3]
        group = row[3] if len(row) > 3 else ""
        if "{l}" not in mx:
            out.append((mx, hf, how))
            continue
        for layer in range(n_layers[group]):
            names = tuple(h.format(l=layer) for h in hf) if isinstance(hf, tuple) else hf.format(l=layer)
            out.append((mx.format(l=layer), names, how))
    return out


class PerHeadQKV:
    """BLOOM's fused ``query_key_value`` <-> minitx's ``qkv``, both ways.

    BLOOM (Megatron) orders the ``3D`` output features head by head,
    ``(n_heads, 3, head_size)``: head 0's query, key, value, then head 1's...
    minitx's ``qkv`` columns are ``(3, n_heads, head_size)``: all queries,
    then all keys, then all values. The weight is also ``nn.Linear``'s
    ``(out, in)``, transposed to minitx's ``(in, out)``; a bias ``(3D,)`` is
    reordered the same way.
    """

    DESCRIPTION = "per-head q,k,v -> q|k|v blocks (weight transposed)"

    def __init__(self, n_heads: int):
        self.n_heads = n_heads

    def to_minitx(self, array):
        H = self.n_heads
        rest = array.shape[1:]  # (D,) for the weight, () for the bias
        hs = array.shape[0] // (3 * H)
        out = array.reshape(H, 3, hs, *rest).swapaxes(0, 1).reshape(3 * H * hs, *rest)  # (H, 3, hs) -> (3, H, hs)
        return out.T if out.ndim == 2 else out  # (3D, D) -> (D, 3D)

    def to_hf(self, array):
        H = self.n_heads
        a = array.T if array.ndim == 2 else array  # (D, 3D) -> (3D, D)
        rest = a.shape[1:]
        hs = a.shape[0] // (3 * H)
        return a.reshape(3, H, hs, *rest).swapaxes(0, 1).reshape(3 * H * hs, *rest)  # (3, H, hs) -> (H, 3, hs)

    def __str__(self):
        return self.DESCRIPTION


def _to_minitx(array, how):
    if not isinstance(how, str):
        return how.to_minitx(array)
    if how == SAME:
        return array
    if how == T:
        return array.T
    if how == ROW:
        return array.reshape(-1)
    raise ValueError(f"mapping: unknown transform {how!r}")


def _to_hf(array, how, shape):
    if not isinstance(how, str):
        return how.to_hf(array)
    if how == SAME:
        return array
    if how == T:
        return array.T
    if how == ROW:
        return array.reshape(shape)
    raise ValueError(f"mapping: unknown transform {how!r}")


def load_state(rows, tensors: dict, params: dict, source: str) -> dict:
    """``rows`` (expanded), HF ``tensors`` -> a minitx state dict, every shape checked against ``params``."""
    state = {}
    for mx, hf, how in rows:
        names = hf if isinstance(hf, tuple) else (hf,)
        for name in names:
            if name not in tensors:
                raise PretrainedError(f"{source}: tensor {name} missing (needed for minitx {mx})")
        parts = [_to_minitx(tensors[name], how) for name in names]
        value = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=-1)
        if mx not in params:
            raise PretrainedError(f"{source}: mapping names minitx parameter {mx}, which the model does not have")
        want = tuple(params[mx].shape)
        if tuple(value.shape) != want:
            shapes = ", ".join(f"{n} {tuple(tensors[n].shape)}" for n in names)
            raise PretrainedError(f"{source}: tensor {shapes} does not fit minitx {mx} {want} "
                                  "(the weights do not match config.json)")
        state[mx] = value
    return state


def export_state(rows, state: dict, widths: dict | None = None) -> dict:
    """The inverse of :func:`load_state`: minitx arrays -> Hugging Face tensors (fused rows split).

    ``widths``: per minitx name, the column widths of its fused parts when
    they differ (``{"blocks.0.attn.qkv.weight": [D, D_kv, D_kv], ...}``);
    other fused rows are split into equal parts.
    """
    widths = widths or {}
    out = {}
    for mx, hf, how in rows:
        value = np.asarray(state[mx])
        names = hf if isinstance(hf, tuple) else (hf,)
        if mx in widths:
            parts = np.split(value, np.cumsum(widths[mx])[:-1], axis=-1)  # at the boundaries between the widths
        else:
            parts = np.split(value, len(names), axis=-1) if len(names) > 1 else [value]
        for name, part in zip(names, parts):
            shape = (1, part.shape[-1]) if how == ROW else None
            out[name] = np.ascontiguousarray(_to_hf(part, how, shape), dtype=np.float32)
    return out


def check_leftovers(tensors: dict, used: set, ignore: tuple[str, ...], source: str) -> dict:
    """Tensors nobody mapped: those matching an ``ignore`` regex are dropped, any other is an error."""
    left = {n: v for n, v in tensors.items() if n not in used and not any(re.fullmatch(p, n) for p in ignore)}
    if left:
        names = sorted(left)
        raise PretrainedError(f"{source}: unexpected tensors {names[:4]}{'...' if len(names) > 4 else ''} "
                              "(not part of this architecture as minitx maps it)")
    return left


def used_names(rows) -> set:
    used = set()
    for _, hf, _ in rows:
        used.update(hf if isinstance(hf, tuple) else (hf,))
    return used


def strip_prefix(tensors: dict, prefix: str) -> dict:
    """Names without ``prefix`` (``transformer.``, ``bert.``, ``model.``) when the checkpoint has one."""
    if prefix and any(n.startswith(prefix) for n in tensors):
        return {n[len(prefix):] if n.startswith(prefix) else n: v for n, v in tensors.items()}
    return dict(tensors)


def normalise_names(tensors: dict) -> dict:
    """Old TensorFlow-converted checkpoints call LayerNorm's parameters gamma/beta."""
    out = {}
    for n, v in tensors.items():
        n = re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", n)
        n = re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", n)
        out[n] = v
    return out


def format_table(table) -> str:
    """The table as aligned text, for reading (``python -m minitx.pretrained gpt2`` prints it)."""
    lines = []
    for row in table:
        mx, hf, how = row[:3]
        hf_text = " + ".join(hf) if isinstance(hf, tuple) else hf
        lines.append(f"{mx:<42} {hf_text:<70} {how}")  # how: a name, or a PerHeadQKV's description
    return "\n".join(lines)


__all__ = ["PerHeadQKV", "ROW", "SAME", "T", "check_leftovers", "expand", "export_state", "format_table", "load_state",
           "normalise_names", "strip_prefix", "used_names"]
