"""What the architecture pages share: config fields, activations, the decoder-only build step."""
from __future__ import annotations

import numpy as np

from .folder import PretrainedError
from .mapping import check_leftovers, load_state, strip_prefix, used_names

#: Hugging Face activation names -> minitx's. ``gelu`` is the exact (erf) GELU in
#: transformers, ``gelu_new`` / ``gelu_pytorch_tanh`` the tanh approximation GPT-2 used.
ACTIVATIONS_FROM_HF = {"gelu": "gelu_exact", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh",
                       "relu": "relu", "silu": "silu", "swish": "silu"}
ACTIVATIONS_TO_HF = {"gelu_exact": "gelu", "gelu_tanh": "gelu_new", "gelu": "gelu_new", "relu": "relu",
                     "silu": "silu"}


def activation_from_hf(name, field: str, source: str) -> str:
    if name not in ACTIVATIONS_FROM_HF:
        raise PretrainedError(f"{source}: {field}={name!r} is not supported "
                              f"(expected one of {sorted(ACTIVATIONS_FROM_HF)})")
    return ACTIVATIONS_FROM_HF[name]


def activation_to_hf(name: str) -> str:
    if name not in ACTIVATIONS_TO_HF:
        raise PretrainedError(f"save_pretrained: activation {name!r} has no Hugging Face name")
    return ACTIVATIONS_TO_HF[name]


def field(hf: dict, key: str, source: str, default=None, *, kind=int):
    """``hf[key]`` checked to be a ``kind`` (``default`` when absent; no default: required)."""
    if key not in hf or hf[key] is None:
        if default is None:
            raise PretrainedError(f"{source}: field {key!r} missing (needed to build the model)")
        return default
    value = hf[key]
    if kind is int and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
        raise PretrainedError(f"{source}: field {key}={value!r}, expected a non-negative integer")
    if kind is float and not isinstance(value, (int, float)):
        raise PretrainedError(f"{source}: field {key}={value!r}, expected a number")
    return value


def refuse(hf: dict, key: str, supported, source: str) -> None:
    """Raise unless ``hf.get(key)`` is one of ``supported`` (a feature minitx does not implement)."""
    if hf.get(key, supported[0]) not in supported:
        raise PretrainedError(f"{source}: {key}={hf[key]!r} is not supported by minitx (expected "
                              f"{' or '.join(repr(s) for s in supported)})")


def single_id(hf: dict, key: str, source: str):
    """A special-token id that may be stored as a one-element list (``eos_token_id: [1]``)."""
    value = hf.get(key)
    if isinstance(value, list):
        if len(value) != 1:
            raise PretrainedError(f"{source}: {key}={value!r}; minitx supports one id here")
        value = value[0]
    return value


def same_tensor(tensors: dict, a: str, b: str) -> bool:
    return a in tensors and b in tensors and tensors[a].shape == tensors[b].shape and np.array_equal(tensors[a],
                                                                                                     tensors[b])


def build_gpt(hf: dict, tensors: dict, source: str, dtype, *, prefix: str, config_from_hf, rows, ignore=()):
    """The build step of every decoder-only page (GPT-2, Llama, BLOOM): one :class:`~minitx.models.GPT`.

    Strip the body's ``prefix`` (``transformer.``, ``model.``), read the
    config (``config_from_hf(hf, source, tensors)``), map every tensor of
    ``rows(config)`` with its shape checked, and refuse tensors nobody
    mapped (``lm_head.weight`` is allowed when the head is tied: it then
    duplicates the token embedding).
    """
    from ..models.gpt import GPT

    tensors = strip_prefix(tensors, prefix)
    config = config_from_hf(hf, source, tensors)
    model = GPT(config, dtype=dtype)
    rs = rows(config)
    state = load_state(rs, tensors, dict(model.named_parameters()), source)
    check_leftovers(tensors, used_names(rs) | {"lm_head.weight"}, ignore, source)
    model.load_state_dict(state)
    return model


__all__ = ["ACTIVATIONS_FROM_HF", "ACTIVATIONS_TO_HF", "activation_from_hf", "activation_to_hf", "build_gpt", "field",
           "refuse", "same_tensor", "single_id"]
