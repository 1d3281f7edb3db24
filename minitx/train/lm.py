"""Language-model runs: what a GPT checkpoint holds besides its weights, and loading one back.

The trainer is generic; this module is the GPT's share of the bookkeeping:

* the **metadata** of a GPT run (:func:`gpt_meta`): the checkpoint kind, the
  model's config and its tokenizer, described in JSON (never pickled);
* **loading** a trained GPT for generation (:func:`load_model`), from the
  run folder (``out``) or its checkpoint (``out/ckpt``).
"""
from __future__ import annotations

from ..models.gpt import GPT, GPTConfig
from .checkpoint import check_kind, load_checkpoint, resolve_checkpoint

CHECKPOINT_KIND = "minitx-gpt"


# --------------------------------------------------------------------------
# Tokenizers in a checkpoint: described in JSON, never pickled
# --------------------------------------------------------------------------
def tokenizer_to_meta(tokenizer) -> dict:
    """A JSON-able description of a Char, word-level or BPE tokenizer (goes into checkpoint.json)."""
    from ..tokenizer import BPETokenizer, CharTokenizer  # noqa: PLC0415
    from ..tokenizer.word import WordTokenizer  # noqa: PLC0415

    if isinstance(tokenizer, WordTokenizer):
        return {"type": "word", "words": list(tokenizer.words)}
    if isinstance(tokenizer, CharTokenizer):
        return {"type": "char", "chars": list(tokenizer.chars)}
    if isinstance(tokenizer, BPETokenizer):
        from ..tokenizer.formats import dumps_bpe  # noqa: PLC0415

        return {"type": "bpe", "model": dumps_bpe(tokenizer)}
    raise ValueError(f"tokenizer: got {type(tokenizer).__name__}, expected a CharTokenizer, WordTokenizer or "
                     "BPETokenizer")


def tokenizer_from_meta(meta) -> object:
    """Inverse of :func:`tokenizer_to_meta`; a malformed description raises ValueError."""
    from ..tokenizer import CharTokenizer  # noqa: PLC0415

    kind = meta.get("type") if isinstance(meta, dict) else None
    if kind == "char" and isinstance(meta.get("chars"), list):
        return CharTokenizer(meta["chars"])
    if kind == "word" and isinstance(meta.get("words"), list):
        from ..tokenizer.word import WordTokenizer  # noqa: PLC0415

        return WordTokenizer(meta["words"])
    if kind == "bpe" and isinstance(meta.get("model"), str):
        from ..tokenizer.formats import loads_bpe  # noqa: PLC0415

        return loads_bpe(meta["model"], source="checkpoint tokenizer")
    raise ValueError(f"tokenizer description: got type {kind!r}, expected 'char' (with chars), 'word' (with "
                     "words) or 'bpe' (with model)")


def gpt_meta(model: GPT, tokenizer=None, **extra) -> dict:
    """The ``meta`` a :class:`~minitx.train.trainer.Trainer` stores with a GPT run."""
    return {"kind": CHECKPOINT_KIND, "config": model.config.to_dict(),
            "tokenizer": tokenizer_to_meta(tokenizer) if tokenizer is not None else None, **extra}


# --------------------------------------------------------------------------
# Loading a trained model (for generation)
# --------------------------------------------------------------------------
def read_checkpoint(path) -> tuple[dict, dict, dict]:
    """:func:`load_checkpoint` of ``path`` (a run folder or its ``ckpt``), checked to hold a minitx GPT."""
    directory = resolve_checkpoint(path)
    model_state, optim_arrays, meta = load_checkpoint(directory)
    check_kind(directory, meta, CHECKPOINT_KIND)
    if not isinstance(meta.get("config"), dict):
        raise ValueError(f"checkpoint {str(directory)!r} has no model config; expected one written by minitx train")
    return model_state, optim_arrays, meta


def load_model(path, *, dtype=None, device: str = "cpu") -> tuple[GPT, object, dict]:
    """``(model, tokenizer, meta)`` from a run folder or checkpoint folder, model in eval mode on ``device``.

    Checkpoints hold NumPy arrays whichever device wrote them, so any
    checkpoint loads on ``"cpu"`` or ``"cuda"``.
    """
    model_state, _, meta = read_checkpoint(path)
    config = GPTConfig.from_dict(meta["config"])
    model = GPT(config, seed=0, **({} if dtype is None else {"dtype": dtype}))
    model.load_state_dict(model_state)
    model.to(device)
    tokenizer = tokenizer_from_meta(meta.get("tokenizer"))
    if tokenizer.vocab_size > config.vocab_size:
        raise ValueError(f"checkpoint tokenizer has {tokenizer.vocab_size} tokens, expected at most the model's "
                         f"vocab_size={config.vocab_size}")
    return model.eval(), tokenizer, meta


__all__ = ["CHECKPOINT_KIND", "gpt_meta", "load_model", "read_checkpoint", "tokenizer_from_meta",
           "tokenizer_to_meta"]
