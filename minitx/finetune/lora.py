"""Putting LoRA into a model by name, and taking it out again.

:class:`~minitx.nn.lora.LoRALinear` and
:class:`~minitx.nn.lora.LoRAEmbedding` are the layers; this page finds
them. Every minitx model is a tree of modules with dotted names
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

**The token embedding.** A model may also list embeddings that take an
adapter (its class attribute ``LORA_EMBEDDINGS``): a GPT lists ``wte``,
because both of its uses, the lookup and the tied LM head, go through the
module (``effective_weight`` / ``weight_backward``), so one
:class:`LoRAEmbedding` adapts both::

    apply_lora(gpt, ["wte", "blocks.*"], rank=4)      # the table (= the head) and every block Linear

An embedding a model does not list (an encoder's ``tok_emb``, shared with a
seq2seq decoder or read directly by a tied MLM head) is never wrapped: an
adapter on one of its uses only would be silently wrong.

**A rank per module.** ``rank_pattern`` gives some modules another rank
(PEFT's option of that name)::

    apply_lora(gpt, ["wte", "blocks.*"], rank=4, rank_pattern={"*.attn.qkv": 8, "*.ff.*": 2})

Each adapter's alpha grows with its rank (``alpha * r / rank``), so every
one has the same multiplier ``alpha / rank``: the pattern moves capacity
between modules without changing any adapter's step size. Where the
budget of trainable weights is tight, capacity is worth most in the
attention's ``qkv`` (it decides *where* to look, what copying a name
needs) and least in the wide feed-forward layers, whose adapters cost the
most per rank (``benchmarks/finetune.md`` measures it).

**LayerNorms.** ``train_norms=True`` leaves every LayerNorm / RMSNorm
weight and bias trainable beside the adapters (a few ``D`` numbers per
norm; they travel in the adapter file as extra parameters).
"""
from __future__ import annotations

import math
from fnmatch import fnmatchcase

import numpy as np

from ..nn.embedding import Embedding
from ..nn.linear import Linear
from ..nn.lora import LORA_LAYERS, LoRAEmbedding, LoRALayer, LoRALinear
from ..nn.module import Module
from ..nn.norm import LayerNorm, RMSNorm

#: Every Linear inside the transformer blocks (attention, cross-attention, feed-forward), not the heads.
DEFAULT_TARGETS = "*blocks.*"


def _slots(model) -> list[tuple[str, object, str, object]]:
    """``(full name, parent, attribute, layer)`` for every layer LoRA can wrap, or has wrapped, in model order.

    That is every Linear, and the Embeddings the model lists in ``LORA_EMBEDDINGS``
    (those whose every use, a tied head included, goes through the module).
    """
    embeddings = set(getattr(model, "LORA_EMBEDDINGS", ()))
    slots = []
    for parent_name, parent in model.named_modules():
        for attr, child in parent.named_children():
            name = f"{parent_name}.{attr}" if parent_name else attr
            if isinstance(child, (Linear, LoRALayer)) or (isinstance(child, Embedding) and name in embeddings):
                slots.append((name, parent, attr, child))
    return slots


def lora_class(layer) -> type[LoRALayer]:
    """The LoRA layer that wraps ``layer`` (``LoRALinear`` for a Linear, ``LoRAEmbedding`` for an Embedding)."""
    for base, cls in LORA_LAYERS.items():
        if isinstance(layer, base):
            return cls
    raise ValueError(f"LoRA: got a {type(layer).__name__}, expected one of {[b.__name__ for b in LORA_LAYERS]}")


def norm_parameters(model) -> list[str]:
    """Names of every LayerNorm / RMSNorm parameter of ``model`` (what ``train_norms`` unfreezes)."""
    norms = {name for name, m in model.named_modules() if isinstance(m, (LayerNorm, RMSNorm))}
    return [n for n, _ in model.named_parameters() if n.rpartition(".")[0] in norms]


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


def _rank_pattern(rank_pattern) -> dict:
    if rank_pattern is None:
        return {}
    if not isinstance(rank_pattern, dict) or not all(isinstance(k, str) and k for k in rank_pattern):
        raise ValueError(f"LoRA rank_pattern: got {rank_pattern!r}, expected a dict of fnmatch pattern -> rank "
                         "such as {'*.attn.qkv': 8}")
    out = {}
    for pattern, r in rank_pattern.items():
        try:
            out[pattern] = check_lora_settings(r, 1.0)[0]
        except ValueError:
            raise ValueError(f"LoRA rank_pattern {pattern!r}: got rank {r!r}, expected an integer >= 1") from None
    return out


def apply_lora(model, targets=DEFAULT_TARGETS, *, rank: int = 8, alpha: float = 16, seed: int = 0,
               train_norms: bool = False, rank_pattern: dict | None = None) -> list[str]:
    """Wrap every Linear (or listed Embedding) whose module name matches ``targets`` in LoRA; returns their names.

    A Linear becomes a :class:`LoRALinear`, an embedding the model lists in
    ``LORA_EMBEDDINGS`` (a GPT's ``wte``) a :class:`LoRAEmbedding`.
    Everything else in the model is frozen: afterwards only the adapters'
    ``A`` and ``B`` train, and with ``train_norms`` every norm's weight and
    bias too (unfreeze a new head yourself, or use
    :func:`minitx.finetune.prepare`). The random factor (a Linear's ``A``,
    an embedding's ``B``) is drawn from ``numpy.random.default_rng(seed)``
    layer after layer in name order, so the same call gives the same
    adapters. A pattern that matches no such layer raises ValueError naming
    it (with a few names that exist), as does ``rank < 1``; a layer that
    already has LoRA is an error too.
    ``rank_pattern`` (``{pattern: rank}``): a chosen module that matches a
    pattern gets that rank (the first pattern that matches), and alpha
    ``alpha * r / rank``, so that every adapter keeps the multiplier
    ``alpha / rank``; a pattern that matches none of the chosen modules is
    an error.
    Apply LoRA before wrapping the model in a DataParallel or building an
    optimizer: both take the parameters as they are then.
    """
    if not isinstance(model, Module):  # a DataParallel's replicas were copied before: they would not see it
        raise ValueError(f"apply_lora: got a {type(model).__name__}, expected a minitx Module (apply LoRA to the "
                         "model before wrapping it in a DataParallel)")
    rank, alpha = check_lora_settings(rank, alpha)
    pattern_ranks = _rank_pattern(rank_pattern)
    if not isinstance(train_norms, bool):
        raise ValueError(f"LoRA train_norms: got {train_norms!r}, expected True or False")
    norms = norm_parameters(model) if train_norms else []
    if train_norms and not norms:
        raise ValueError(f"LoRA train_norms: the {type(model).__name__} has no LayerNorm or RMSNorm, expected a model "
                         "with norms (or train_norms=False)")
    patterns = _patterns(targets)
    slots = _slots(model)
    chosen = []
    for pattern in patterns:
        hits = [s for s in slots if fnmatchcase(s[0], pattern)]
        if not hits:
            names = [s[0] for s in slots]
            embeddings = list(getattr(model, "LORA_EMBEDDINGS", ()))
            raise ValueError(f"LoRA targets: pattern {pattern!r} matches no Linear module"
                             f"{f' nor the embedding {embeddings}' if embeddings else ''}; expected a pattern over "
                             f"names such as {names[:4]}{'...' if len(names) > 4 else ''}")
        for hit in hits:
            if isinstance(hit[3], LoRALayer):
                raise ValueError(f"LoRA targets: {hit[0]!r} (matched by {pattern!r}) already has LoRA, expected a "
                                 "plain layer")
            if all(hit[0] != c[0] for c in chosen):
                chosen.append(hit)
    order = {slot[0]: i for i, slot in enumerate(slots)}
    chosen.sort(key=lambda s: order[s[0]])  # model order, whatever the order of the patterns
    ranks = {name: next((r for pattern, r in pattern_ranks.items() if fnmatchcase(name, pattern)), rank)
             for name, *_ in chosen}
    unused = [pattern for pattern in pattern_ranks if not any(fnmatchcase(name, pattern) for name in ranks)]
    if unused:
        raise ValueError(f"LoRA rank_pattern: {unused[0]!r} matches none of the modules the targets chose, "
                         f"expected a pattern over {list(ranks)[:4]}{'...' if len(ranks) > 4 else ''}")
    for p in model.parameters():
        p.requires_grad = False
    rng = np.random.default_rng(seed)
    for name, parent, attr, layer in chosen:  # alpha grows with the rank: every adapter's multiplier is alpha/rank
        own_alpha = alpha if ranks[name] == rank else alpha * ranks[name] / rank  # exactly alpha without a pattern
        setattr(parent, attr, lora_class(layer)(layer, ranks[name], own_alpha, rng=rng))
    if norms:
        model.unfreeze(norms)  # their names hold no fnmatch wildcards: each matches itself
    settings = getattr(model, "lora_settings", None) or {"modules": []}
    settings.update(rank=rank, alpha=alpha, seed=seed, train_norms=train_norms or settings.get("train_norms", False))
    settings["modules"] = settings["modules"] + [name for name, *_ in chosen]
    settings["ranks"] = {**settings.get("ranks", {}), **ranks}  # a module's own rank (its alpha: alpha r / rank)
    model.lora_settings = settings  # what save_adapter writes, so load_adapter can rebuild the same layers
    return [name for name, *_ in chosen]


def module_ranks(settings) -> dict[str, int]:
    """``{module: rank}`` of a model's ``lora_settings`` (or an adapter.json, which holds the same keys)."""
    rank = int(settings["rank"])
    return {name: int(settings.get("ranks", {}).get(name, rank)) for name in settings["modules"]}


def reapply_lora(model, settings) -> list[str]:
    """Wrap the modules ``settings`` names as they were wrapped (a checkpoint's or an adapter's record).

    The adapters' values are not restored here: the caller loads them.
    """
    rank = int(settings["rank"])
    other = {name: r for name, r in module_ranks(settings).items() if r != rank}
    return apply_lora(model, list(settings["modules"]), rank=rank, alpha=settings["alpha"], seed=settings["seed"],
                      train_norms=bool(settings.get("train_norms", False)), rank_pattern=other or None)


def lora_layers(model) -> list[tuple[str, LoRALayer]]:
    """``(module name, layer)`` for every LoRA layer (LoRALinear, LoRAEmbedding) of ``model``, in model order."""
    return [(name, layer) for name, _, _, layer in _slots(model) if isinstance(layer, LoRALayer)]


def _layers_or_raise(model, what: str) -> list[tuple[str, LoRALayer]]:
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
    """Replace every LoRA layer by its plain layer (folding the adapter in first unless ``merge=False``).

    What is left is an ordinary model of the base's architecture, with the
    base's parameter names: a ``minitx train`` checkpoint or a Hugging Face
    folder (:func:`minitx.save_pretrained`) takes it as it is. The weights'
    ``requires_grad`` flags are left as they are.
    """
    layers = {name for name, _ in _layers_or_raise(model, "remove_lora")}
    for name, parent, attr, layer in _slots(model):
        if name in layers:
            if merge and not layer.merged:
                layer.merge()
            elif not merge and layer.merged:
                layer.unmerge()
            setattr(parent, attr, layer.to_plain())  # a Linear or an Embedding holding the same Parameters
    if hasattr(model, "lora_settings"):
        del model.lora_settings
    return sorted(layers)


__all__ = ["DEFAULT_TARGETS", "LoRAEmbedding", "LoRALinear", "apply_lora", "check_lora_settings", "lora_class",
           "lora_layers", "merge_lora", "norm_parameters", "remove_lora", "unmerge_lora"]
