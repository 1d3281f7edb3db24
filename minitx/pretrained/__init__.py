"""Pretrained models: Hugging Face folders in and out, with safetensors and NumPy only.

    >>> model, tokenizer = minitx.from_pretrained("path/to/folder")   # doctest: +SKIP
    >>> minitx.save_pretrained(model, tokenizer, "copy")              # doctest: +SKIP

One page per architecture, each with its mapping table and what every
tensor is:

    gpt2.py     GPT2LMHeadModel              -> minitx.models.GPT
    llama.py    LlamaForCausalLM             -> GPT (RMSNorm, rotary, SwiGLU, grouped-query attention)
    bloom.py    BloomForCausalLM             -> GPT (ALiBi, a LayerNorm on the embeddings)
    bert.py     BertModel                    -> TransformerEncoder (forward(ids) = last hidden state)
                BertForSequenceClassification -> EncoderClassifier (with BERT's pooler)
    bart.py     BartForConditionalGeneration -> Seq2Seq (post-norm, positions offset by 2)
    t5.py       T5ForConditionalGeneration   -> Seq2Seq (RMSNorm, relative bias, unscaled scores)

and the machinery: ``folder.py`` (reading/writing files), ``mapping.py``
(the table engine), ``tokenizer.py`` (the folder's tokenizer),
``generation.py`` (greedy and beam search with Hugging Face's settings),
``embeddings.py`` (sentence embeddings and semantic search).

Loaded models keep ``hf_config`` (the config.json dict), ``hf_architecture``
and ``generation_config`` so that saving and generating follow the folder.
Models are loaded in eval mode: these are inference weights.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from . import bart, bert, bloom, gpt2, llama, t5
from .folder import PretrainedError, read_config, read_json, read_tensors, write_json, write_tensors
from .tokenizer import PretrainedTokenizer, UnsupportedTokenizer, load_tokenizer, load_tokenizer_or_placeholder

PAGES = {page.MODEL_TYPE: page for page in (gpt2, llama, bloom, bert, bart, t5)}


def _architecture(hf: dict, page, source: str) -> str:
    archs = hf.get("architectures") or [page.ARCHITECTURES[0]]
    arch = archs[0]
    if arch not in page.ARCHITECTURES:
        raise PretrainedError(f"{source}: architecture {arch!r} is not supported for model_type "
                              f"{page.MODEL_TYPE!r} (expected one of {', '.join(page.ARCHITECTURES)})")
    return arch


def load_model(folder: str | os.PathLike, *, dtype=np.float32):
    """The model alone (see :func:`from_pretrained`)."""
    hf = read_config(folder)
    source = str(Path(folder) / "config.json")
    model_type = hf.get("model_type")
    if model_type not in PAGES:
        raise PretrainedError(f"{source}: model_type {model_type!r} is not supported "
                              f"(expected one of {', '.join(sorted(PAGES))})")
    page = PAGES[model_type]
    arch = _architecture(hf, page, source)
    tensors = read_tensors(folder)
    model = page.build(hf, tensors, arch, str(Path(folder) / "model.safetensors"), dtype)
    model.hf_config, model.hf_architecture = hf, arch
    gen = read_json(Path(folder) / "generation_config.json", required=False)
    model.generation_config = gen if gen is not None else {k: v for k, v in hf.items() if k.endswith("_token_id")
                                                           or k.startswith(("forced_", "max_length", "min_length",
                                                                            "do_sample", "temperature", "top_"))}
    st = read_json(Path(folder) / "sentence_bert_config.json", required=False)  # sentence-transformers' limit
    model.max_seq_length = int(st["max_seq_length"]) if st and st.get("max_seq_length") else None
    model.eval()
    return model


def from_pretrained(folder: str | os.PathLike, *, dtype=np.float32):
    """``folder -> (model, tokenizer)``; the tokenizer is None when the folder has no tokenizer files.

    Raises :class:`PretrainedError` (a ``ValueError``) naming the file, the
    tensor or the architecture when the *model* cannot be loaded exactly. A
    tokenizer minitx cannot run (say, a normaliser it does not implement)
    does not stop the model from loading: it comes back as an
    :class:`~minitx.pretrained.tokenizer.UnsupportedTokenizer` that raises
    that error, naming the file and the part, when it is used.
    """
    model = load_model(folder, dtype=dtype)
    return model, load_tokenizer_or_placeholder(folder)


def _page_for(model):
    from ..models.encoder import EncoderClassifier, TransformerEncoder
    from ..models.gpt import GPT
    from ..models.seq2seq import Seq2Seq

    model_type = (getattr(model, "hf_config", None) or {}).get("model_type")
    if model_type in PAGES:
        return PAGES[model_type]
    if isinstance(model, GPT):  # a minitx-built decoder: its positions say which family it belongs to
        return {"learned": gpt2, "rope": llama, "alibi": bloom}[model.config.positions]
    if isinstance(model, (TransformerEncoder, EncoderClassifier)):
        return bert
    if isinstance(model, Seq2Seq):
        return t5 if model.config.positions == "relative" else bart
    raise PretrainedError(f"save_pretrained: got a {type(model).__name__}, expected a GPT, TransformerEncoder, "
                          "EncoderClassifier or Seq2Seq")


def save_pretrained(model, tokenizer, folder: str | os.PathLike) -> None:
    """Write ``config.json``, ``model.safetensors`` (and the tokenizer's files) that ``transformers`` loads.

    ``tokenizer`` may be None (weights only), a :class:`PretrainedTokenizer`
    (its files are written back as read), or a minitx ``BPETokenizer``
    (written as ``tokenizer.json``).
    """
    page = _page_for(model)
    hf, tensors = page.export(model, dict(getattr(model, "hf_config", None) or {}))
    hf.pop("transformers_version", None)
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    write_json(hf, path / "config.json")
    write_tensors(tensors, path / "model.safetensors")
    gen = getattr(model, "generation_config", None)
    if gen:
        write_json(dict(gen), path / "generation_config.json")
    if tokenizer is None:
        return
    if isinstance(tokenizer, (PretrainedTokenizer, UnsupportedTokenizer)):
        tokenizer.save(path)
        return
    raise PretrainedError(f"save_pretrained: tokenizer of type {type(tokenizer).__name__} cannot be written as a "
                          "Hugging Face tokenizer; pass the PretrainedTokenizer from from_pretrained, or None")


__all__ = ["PAGES", "PretrainedError", "PretrainedTokenizer", "from_pretrained", "load_model", "load_tokenizer",
           "read_tensors", "save_pretrained"]
