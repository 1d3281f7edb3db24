"""Putting LoRA into a model by name, and taking it out again.

:class:`~minitx.nn.lora.LoRALinear` is one layer; this page finds the
layers. Every minitx model is a tree of modules with dotted names
(``blocks.0.attn.qkv``, ``encoder.blocks.3.ff.fc``; see
:meth:`~minitx.nn.module.Module.named_modules`), so "put LoRA on the
attention" is a pattern over those names::

    apply_lora(model, "blocks.*.attn.*", rank=8, alpha=16)   # qkv and proj of every block
    apply_lora(model, ["*.qkv", "*.ff.fc"])                    # a list: the union

The model's own code is not touched: each matching
:class:`~minitx.nn.linear.Linear` attribute is replaced by a
:class:`LoRALinear` wrapping it, which the parent calls exactly as before.
That is why the same call works on a GPT, an encoder, a seq2seq model and
anything :func:`minitx.from_pretrained` returns.
"""
from __future__ import annotations

import math
from fnmatch import fnmatchcase

import numpy as np

from ..nn.linear import Linear
from ..nn.lora import LoRALinear
from ..nn.module import Module

#: Every Linear inside the transformer blocks (attention, cross-attention, feed-forward), not the heads.
DEFAULT_TARGETS = "*blocks.*"


def _linear_slots(model) -> list[tuple[str, object, str, object]]:
    """``(full name, parent, attribute, layer)`` for every Linear or LoRALinear attribute of every module."""
    slots = []
    for parent_name, parent in model.named_modules():
        for attr, child in parent.named_children():
            if isinstance(child, (Linear, LoRALinear)):
                slots.append((f"{parent_name}.{attr}" if parent_name else attr, parent, attr, child))
    return slots


def _patterns(targets) -> list[str]:
    patterns = [targets] if isinstance(targets, str) else list(targets) if targets is not None else []
    if not patterns or not all(isinstance(p, str) and p for p in patterns):
        raise ValueError(f"LoRA targets: got {targets!r}, expected an fnmatch pattern over module names such as "
                         "'blocks.*.attn.qkv', or a list of them")
    return patterns


def check_lora_settings(rank, alpha) -> tuple[int, float]:
    """``(rank, alpha)`` as ``(int >= 1, float > 0)``, or a ValueError naming the bad one."""
    if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or rank < 1:
        raise ValueError(f"LoRA rank: got {rank!r}, expected an integer >= 1")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha) or alpha <= 0:
        raise ValueError(f"LoRA alpha: got {alpha!r}, expected a finite number > 0")
    return int(rank), float(alpha)


def apply_lora(model, targets=DEFAULT_TARGETS, *, rank: int = 8, alpha: float = 16, seed: int = 0) -> list[str]:
    """Wrap every Linear whose module name matches ``targets`` in a :class:`LoRALinear`; returns their names.

    Everything else in the model is frozen: afterwards only the adapters'
    ``A`` and ``B`` train (unfreeze a new head yourself, or use
    :func:`minitx.finetune.prepare`). ``A`` is drawn from
    ``numpy.random.default_rng(seed)`` layer after layer in name order, so
    the same call gives the same adapters. A pattern that matches no
    Linear raises ValueError naming it (with a few names that exist), as
    does ``rank < 1``; a layer that already has LoRA is an error too.
    Apply LoRA before wrapping the model in a DataParallel or building an
    optimizer: both take the parameters as they are then.
    """
    if not isinstance(model, Module):  # a DataParallel's replicas were copied before: they would not see it
        raise ValueError(f"apply_lora: got a {type(model).__name__}, expected a minitx Module (apply LoRA to the "
                         "model before wrapping it in a DataParallel)")
    rank, alpha = check_lora_settings(rank, alpha)
    patterns = _patterns(targets)
    slots = _linear_slots(model)
    chosen = []
    for pattern in patterns:
        hits = [s for s in slots if fnmatchcase(s[0], pattern)]
        if not hits:
            names = [s[0] for s in slots]
            raise ValueError(f"LoRA targets: pattern {pattern!r} matches no Linear module; expected a pattern over "
                             f"names such as {names[:4]}{'...' if len(names) > 4 else ''}")
        for hit in hits:
            if isinstance(hit[3], LoRALinear):
                raise ValueError(f"LoRA targets: {hit[0]!r} (matched by {pattern!r}) already has LoRA, expected a "
                                 "plain Linear")
            if all(hit[0] != c[0] for c in chosen):
                chosen.append(hit)
    order = {slot[0]: i for i, slot in enumerate(slots)}
    chosen.sort(key=lambda s: order[s[0]])  # model order, whatever the order of the patterns
    for p in model.parameters():
        p.requires_grad = False
    rng = np.random.default_rng(seed)
    for name, parent, attr, linear in chosen:
        setattr(parent, attr, LoRALinear(linear, rank, alpha, rng=rng))
    settings = getattr(model, "lora_settings", None) or {"modules": []}
    settings.update(rank=rank, alpha=alpha, seed=seed)
    settings["modules"] = settings["modules"] + [name for name, *_ in chosen]
    model.lora_settings = settings  # what save_adapter writes, so load_adapter can rebuild the same layers
    return [name for name, *_ in chosen]


def lora_layers(model) -> list[tuple[str, LoRALinear]]:
    """``(module name, LoRALinear)`` for every LoRA layer of ``model``, in model order."""
    return [(name, layer) for name, _, _, layer in _linear_slots(model) if isinstance(layer, LoRALinear)]


def _layers_or_raise(model, what: str) -> list[tuple[str, LoRALinear]]:
    layers = lora_layers(model)
    if not layers:
        raise ValueError(f"{what}: the {type(model).__name__} has no LoRA layers, expected a model apply_lora "
                         "was called on")
    return layers


def merge_lora(model) -> list[str]:
    """Fold every LoRA correction into its weight (``W += (alpha/r) A B``); returns the merged layers' names.

    The merged model computes the same function (up to float rounding) at
    the base model's cost; :func:`unmerge_lora` undoes it.
    """
    layers = _layers_or_raise(model, "merge_lora")
    for _, layer in layers:
        if not layer.merged:
            layer.merge()
    return [name for name, _ in layers]


def unmerge_lora(model) -> list[str]:
    """Take every merged correction out of its weight again; returns the layers' names."""
    layers = _layers_or_raise(model, "unmerge_lora")
    for _, layer in layers:
        if layer.merged:
            layer.unmerge()
    return [name for name, _ in layers]


def remove_lora(model, *, merge: bool = True) -> list[str]:
    """Replace every LoRALinear by a plain Linear (folding the adapter in first unless ``merge=False``).

    What is left is an ordinary model of the base's architecture, with the
    base's parameter names: a ``minitx train`` checkpoint or a Hugging Face
    folder (:func:`minitx.save_pretrained`) takes it as it is. The weights'
    ``requires_grad`` flags are left as they are.
    """
    layers = {name for name, _ in _layers_or_raise(model, "remove_lora")}
    for name, parent, attr, layer in _linear_slots(model):
        if name in layers:
            if merge and not layer.merged:
                layer.merge()
            elif not merge and layer.merged:
                layer.unmerge()
            setattr(parent, attr, layer.to_linear())
    if hasattr(model, "lora_settings"):
        del model.lora_settings
    return sorted(layers)


__all__ = ["DEFAULT_TARGETS", "apply_lora", "check_lora_settings", "lora_layers", "merge_lora", "remove_lora",
           "unmerge_lora"]
