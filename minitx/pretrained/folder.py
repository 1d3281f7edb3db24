"""Reading and writing a Hugging Face model folder with safetensors and NumPy only.

A folder written by ``transformers``' ``save_pretrained`` holds::

    config.json              the architecture (model_type, sizes, special ids)
    generation_config.json   decoding defaults (optional)
    model.safetensors        the weights: a JSON header naming each tensor, then raw bytes
                             (or model.safetensors.index.json + shards for big models)
    tokenizer.json           the tokenizer (or vocab.txt for BERT)

safetensors is a plain format (no pickle, no code runs when loading), which
is why minitx can read it with ``safetensors.numpy`` and never import torch.
Every problem is a :class:`PretrainedError` naming the file and what was wrong.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np


class PretrainedError(ValueError):
    """A folder minitx cannot load: the message names the file, tensor or architecture."""


WEIGHTS = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"


def check_folder(folder: str | os.PathLike) -> Path:
    path = Path(folder)
    if not path.is_dir():
        raise PretrainedError(f"{path}: not a folder (expected a Hugging Face model folder with config.json)")
    return path


def read_json(path: Path, *, required: bool = True) -> dict | None:
    if not path.is_file():
        if required:
            raise PretrainedError(f"{path}: file missing (expected it in a Hugging Face model folder)")
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PretrainedError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise PretrainedError(f"{path}: got a JSON {type(data).__name__}, expected an object")
    return data


def read_config(folder: str | os.PathLike) -> dict:
    return read_json(check_folder(folder) / "config.json")


def read_tensors(folder: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every tensor of the folder as a NumPy array (float16/bfloat16 become float32)."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    path = check_folder(folder)
    files = [path / WEIGHTS]
    if not files[0].is_file():
        index = read_json(path / WEIGHTS_INDEX, required=False)
        if index is None:
            if (path / "pytorch_model.bin").is_file():
                raise PretrainedError(f"{path / 'pytorch_model.bin'}: a pickled PyTorch checkpoint; minitx reads "
                                      f"only {WEIGHTS} (convert it with transformers: save_pretrained)")
            raise PretrainedError(f"{path / WEIGHTS}: file missing (expected the weights in safetensors format)")
        files = [path / name for name in sorted(set(index.get("weight_map", {}).values()))]
    tensors: dict[str, np.ndarray] = {}
    for file in files:
        if not file.is_file():
            raise PretrainedError(f"{file}: file missing (listed in {WEIGHTS_INDEX})")
        try:
            loaded = load_file(str(file))
        except (SafetensorError, OSError, ValueError, TypeError) as exc:
            raise PretrainedError(f"{file}: not a readable safetensors file ({exc})") from None
        for name, array in loaded.items():
            if array.dtype.kind == "f" and array.dtype != np.float32 and array.dtype != np.float64:
                array = array.astype(np.float32)
            tensors[name] = array
    return tensors


def write_tensors(tensors: dict[str, np.ndarray], path: Path) -> None:
    """Write ``model.safetensors`` atomically (``format: pt`` is what transformers expects in the header)."""
    from safetensors.numpy import save_file

    tmp = path.with_name(path.name + ".tmp")
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(tmp), metadata={"format": "pt"})
    os.replace(tmp, path)


def write_json(data: dict, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


__all__ = ["PretrainedError", "check_folder", "read_config", "read_json", "read_tensors", "write_json",
           "write_tensors"]
