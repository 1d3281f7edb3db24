"""Saving what fine-tuning learned, without the model it learned it on.

A LoRA run changes only the adapters (and a new head, when there is one):
a few hundred kilobytes against the base model's hundreds of megabytes. So
the adapter is saved alone, in a folder of two files::

    adapter/
      adapter.safetensors   every trainable parameter:  {"blocks.0.attn.qkv.A": (in, r), ...B, "wte.A": (V, r),
                            ...B, head.*, norms when they trained}
      adapter.json          format, the base (a path or a name), its fingerprint,
                            rank, alpha, the wrapped modules and each one's rank,
                            the SHA-256 of the tensors

and loaded onto the base later::

    model = apply(...)                          # the base, as it was loaded
    load_adapter(model, "adapter")              # wraps the same modules, checks the base, loads A and B

The base must be the one the adapter was trained on: ``adapter.json``
carries a SHA-256 over the base's frozen weights (names, shapes and values),
and :func:`load_adapter` refuses a model whose weights hash differently,
before anything is changed.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from safetensors import SafetensorError
from safetensors import numpy as safetensors_numpy

from ..backend import array_module, to_numpy
from ..fileio import atomic_write_bytes, atomic_write_text
from ..nn.embedding import Embedding
from ..nn.linear import Linear
from .lora import lora_class, lora_layers, module_ranks, reapply_lora

ADAPTER_FILE = "adapter.safetensors"
ADAPTER_META = "adapter.json"
ADAPTER_FORMAT = "minitx-lora-adapter"
ADAPTER_VERSION = 1


def is_adapter(folder) -> bool:
    """Whether ``folder`` holds an adapter written by :func:`save_adapter`."""
    return (Path(folder) / ADAPTER_META).is_file()


def _lora_names(modules) -> set[str]:
    return {f"{name}.{ab}" for name in modules for ab in ("A", "B")}


def adapter_parameters(model) -> dict:
    """``{name: Parameter}`` that an adapter holds: every LoRA ``A``/``B`` and every other trainable parameter."""
    lora_names = _lora_names(name for name, _ in lora_layers(model))
    return {name: p for name, p in model.named_parameters() if name in lora_names or p.requires_grad}


def base_fingerprint(model, exclude=()) -> str:
    """SHA-256 over the names, shapes and float32 values of every parameter not in ``exclude``.

    The values are hashed as float32 so that a base loaded in float64 for
    a gradient check still matches the one that was trained in float32.
    """
    h = hashlib.sha256()
    for name, p in model.named_parameters():
        if name in exclude:
            continue
        data = np.ascontiguousarray(to_numpy(p.data), dtype=np.float32)
        h.update(f"{name}{tuple(data.shape)}".encode())
        h.update(data.tobytes())
    return h.hexdigest()


def save_adapter(model, folder, *, base: str, overwrite: bool = False, meta: dict | None = None) -> Path:
    """Write ``adapter.safetensors`` and ``adapter.json`` into ``folder``; returns the folder.

    ``base`` names the base model (the checkpoint or Hugging Face folder it
    was loaded from), for the reader and for ``minitx generate/classify/embed
    --adapter``; ``meta``: more JSON for ``adapter.json`` (``minitx
    finetune`` records the task and a new head's label set). LoRA layers
    must be unmerged (a merged W no longer is the base's). An existing adapter is only replaced with ``overwrite=True``.
    Each file is written atomically, the tensors first and the JSON (which
    holds their checksum) last.
    """
    folder = Path(folder)
    settings = getattr(model, "lora_settings", None)
    layers = lora_layers(model)
    if not layers or not settings:
        raise ValueError(f"save_adapter: the {type(model).__name__} has no LoRA layers, expected a model "
                         "apply_lora was called on")
    if any(layer.merged for _, layer in layers):
        raise ValueError("save_adapter: the LoRA layers are merged, expected unmerge_lora(model) first (a merged "
                         "weight is no longer the base's)")
    if not isinstance(base, str) or not base:
        raise ValueError(f"save_adapter base: got {base!r}, expected the base model's path or name")
    if is_adapter(folder) and not overwrite:
        raise ValueError(f"adapter folder {str(folder)!r} already holds an adapter; expected overwrite=True "
                         "(--overwrite) to replace it, or another folder")
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"adapter folder {str(folder)!r} is a file, expected a folder")
    params = adapter_parameters(model)
    blob = safetensors_numpy.save({n: np.ascontiguousarray(to_numpy(p.data)) for n, p in params.items()})
    doc = {
        **(meta or {}),
        "format": ADAPTER_FORMAT,
        "format_version": ADAPTER_VERSION,
        "base": base,
        "base_fingerprint": base_fingerprint(model, exclude=params),
        "model": type(model).__name__,
        "rank": settings["rank"],
        "alpha": settings["alpha"],
        "seed": settings["seed"],
        "train_norms": bool(settings.get("train_norms", False)),
        "modules": [name for name, _ in layers],
        "ranks": {name: layer.rank for name, layer in layers},  # per module (its alpha: alpha * its rank / rank)
        "extra_parameters": [n for n in params if n not in _lora_names(name for name, _ in layers)],
        "tensors": {"bytes": len(blob), "sha256": hashlib.sha256(blob).hexdigest()},
    }
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(folder / ADAPTER_FILE, blob)
    atomic_write_text(folder / ADAPTER_META, json.dumps(doc, indent=2) + "\n")
    return folder


def read_adapter(folder) -> tuple[dict, dict]:
    """``(meta, tensors)`` of an adapter folder, checked; one-line ValueError naming the file otherwise."""
    folder = Path(folder)
    where = f"adapter {str(folder)!r}"
    expected = f"expected a folder written by save_adapter / minitx finetune --method lora ({ADAPTER_META}, " \
               f"{ADAPTER_FILE})"
    for name in (ADAPTER_META, ADAPTER_FILE):
        if not (folder / name).is_file():
            raise ValueError(f"{where} is missing {name}; {expected}")
    try:
        meta = json.loads((folder / ADAPTER_META).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{where}: {ADAPTER_META} does not parse ({exc}); {expected}") from None
    if not isinstance(meta, dict) or meta.get("format") != ADAPTER_FORMAT:
        raise ValueError(f"{where}: {ADAPTER_META} is not a minitx adapter; {expected}")
    if meta.get("format_version") != ADAPTER_VERSION:
        raise ValueError(f"{where} has format_version={meta.get('format_version')!r}, expected {ADAPTER_VERSION}")
    raw = (folder / ADAPTER_FILE).read_bytes()
    record = meta.get("tensors") or {}
    if record.get("bytes") != len(raw) or record.get("sha256") != hashlib.sha256(raw).hexdigest():
        raise ValueError(f"{where}: {ADAPTER_FILE} does not match the size and SHA-256 in {ADAPTER_META} "
                         "(truncated or changed); expected the file as it was written")
    try:
        tensors = safetensors_numpy.load(raw)
    except (SafetensorError, ValueError, TypeError) as exc:
        raise ValueError(f"{where}: {ADAPTER_FILE} is not a valid safetensors file ({exc})") from None
    return meta, tensors


def load_adapter(model, folder) -> list[str]:
    """Put the adapter in ``folder`` onto ``model`` (the base it was trained on); returns the wrapped modules.

    Wraps the same modules with the same rank and alpha
    (:func:`~minitx.finetune.lora.apply_lora`), checks that ``model``'s
    other weights are the base's (the fingerprint), then copies ``A``,
    ``B`` and any extra trained parameters (a new head) in. Every check
    comes before the model is changed.
    """
    meta, tensors = read_adapter(folder)
    where = f"adapter {str(folder)!r}"
    if lora_layers(model):
        raise ValueError(f"{where}: the model already has LoRA layers, expected the base model as it was loaded")
    if meta.get("model") != type(model).__name__:
        raise ValueError(f"{where} was trained on a {meta.get('model')}, expected it for this "
                         f"{type(model).__name__}; load its base {meta.get('base')!r}")
    modules, ranks = list(meta["modules"]), module_ranks(meta)
    layers = {name: layer for name, layer in model.named_modules() if name in modules}
    wrong = [n for n, layer in layers.items() if not isinstance(layer, (Linear, Embedding))]
    if wrong:
        raise ValueError(f"{where}: {wrong[0]!r} is a {type(layers[wrong[0]]).__name__} in this model, expected a "
                         f"Linear or an Embedding; expected its base {meta.get('base')!r}")
    params = dict(model.named_parameters())
    extra = list(meta.get("extra_parameters", []))
    missing = [m for m in modules if m not in layers] + [n for n in extra if n not in params]
    if missing:
        raise ValueError(f"{where}: this model has no {missing[:3]}, expected its base {meta.get('base')!r}")
    shapes = {n: tuple(params[n].data.shape) for n in extra}
    for name in modules:  # Linear: A (in, r), B (r, out); Embedding: A (V, r), B (r, D)
        shapes[f"{name}.A"], shapes[f"{name}.B"] = lora_class(layers[name]).factor_shapes(layers[name], ranks[name])
    if set(tensors) != set(shapes):
        raise ValueError(f"{where}: {ADAPTER_FILE} holds {sorted(set(tensors) ^ set(shapes))[:3]} against its "
                         f"{ADAPTER_META}; expected the tensors it lists")
    for name, value in tensors.items():
        if tuple(value.shape) != shapes[name]:
            raise ValueError(f"{where}: {name} has shape {tuple(value.shape)}, expected {shapes[name]} for this "
                             f"model; expected its base {meta.get('base')!r}")
    if base_fingerprint(model, exclude=set(tensors)) != meta.get("base_fingerprint"):
        raise ValueError(f"{where} was trained on another base (its weights differ from this model's); expected "
                         f"the base it names, {meta.get('base')!r}")
    # all checked: now change the model
    wrapped = reapply_lora(model, meta)
    params = dict(model.named_parameters())
    for name, value in tensors.items():
        p = params[name]
        p.data[...] = array_module(p.data).asarray(value, dtype=p.data.dtype)
        p.requires_grad = True
    return wrapped


__all__ = ["ADAPTER_FILE", "ADAPTER_META", "adapter_parameters", "base_fingerprint", "is_adapter", "load_adapter",
           "read_adapter", "save_adapter"]
