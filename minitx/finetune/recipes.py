"""The three fine-tuning recipes, as one switch: which parameters train.

Starting from a trained model, fine-tuning is ordinary training (the one
:class:`~minitx.train.trainer.Trainer`) after deciding what may change:

=========  ==========================================================  ======================
method     what trains                                                 typical share
=========  ==========================================================  ======================
``full``   every weight                                                100%
``head``   a new classification head; the body is frozen              under 1%
           (``freeze_body=False``: head and body, from the start)
``lora``   low-rank adapters on the body's Linear layers (a GPT's      1-5%
           token embedding too, if asked; and a new head, when there
           is one; optionally the norms)
=========  ==========================================================  ======================

``prepare(model, method, ...)`` sets the ``requires_grad`` flags (and for
``lora`` inserts the adapters) and returns the model to train, which is a
new :class:`~minitx.models.encoder.EncoderClassifier` when ``n_classes``
asks for a classification head on an encoder body::

    body, tokenizer = minitx.from_pretrained("all-MiniLM-L6-v2")
    model = prepare(body, "lora", n_classes=2, rank=8)      # head + adapters train
    print(model.num_trainable_parameters(), model.num_parameters())
    Trainer(model, data, TrainConfig(max_iters=200)).train()
"""
from __future__ import annotations

from dataclasses import replace

from ..models.encoder import EncoderClassifier, TransformerEncoder
from .lora import DEFAULT_TARGETS, apply_lora

METHODS = ("full", "head", "lora")


def classifier_on(body, n_classes: int, *, pooling: str = "mean", freeze_body: bool = True,
                  seed: int = 0) -> EncoderClassifier:
    """A new classification head (``Linear(D, n_classes)``) on an encoder ``body``; returns the classifier.

    ``body`` is a :class:`~minitx.models.encoder.TransformerEncoder` (what
    :func:`minitx.from_pretrained` returns for a BERT/MiniLM folder) or an
    :class:`~minitx.models.encoder.EncoderClassifier`, whose old head is
    dropped. The body becomes the classifier's ``encoder`` (the same object,
    not a copy); the head is drawn from ``seed``. ``pooling="mean"``
    averages the real tokens, as sentence-transformers does for MiniLM;
    ``"first"`` reads a ``[CLS]`` token.

    A pretrained body masks only what its caller's attention mask says;
    the classifier's ``loss(ids, targets)`` has no mask argument, so the
    body is switched to deriving the padding mask from ``ids == pad_id``
    (for a tokenizer that pads on the right with ``[PAD]``, the same mask).

    ``freeze_body=True`` trains the head alone (the ``head`` recipe);
    ``False`` trains head and body together (``full``).
    """
    if isinstance(body, EncoderClassifier):
        body = body.encoder
    if not isinstance(body, TransformerEncoder):
        raise ValueError(f"classifier_on body: got a {type(body).__name__}, expected an encoder "
                         "(TransformerEncoder or EncoderClassifier), such as from_pretrained returns for a BERT "
                         "folder")
    if not body.config.mask_padding:
        body.config = replace(body.config, mask_padding=True)
    model = EncoderClassifier(body.config, n_classes, pooling=pooling, seed=seed, dtype=body.dtype, encoder=body)
    model.train(body.training)
    for p in body.parameters():
        p.requires_grad = not freeze_body
    return model


def prepare(model, method: str, *, n_classes: int | None = None, pooling: str = "mean", freeze_body: bool = True,
            targets=None, rank: int = 8, alpha: float = 16, seed: int = 0, train_norms: bool = False,
            rank_pattern: dict | None = None):
    """Set up ``model`` for fine-tuning by ``method`` (``"full" | "head" | "lora"``); returns the model to train.

    * ``n_classes``: put a new classification head on the (encoder) body
      first, :func:`classifier_on`; the head always trains.
    * ``full``: every parameter trains.
    * ``head``: only the classification head trains (``freeze_body=False``
      trains the body too). Without ``n_classes`` the model must already
      have a ``head`` (an encoder classifier or tagger, a GPT's
      untied ``lm_head`` is not one): everything else is frozen.
    * ``lora``: :func:`~minitx.finetune.lora.apply_lora` on ``targets``
      (default: every Linear in the transformer blocks) with ``rank``,
      ``alpha``, ``seed`` and ``rank_pattern`` (other ranks for some
      modules); everything else frozen, except a new head
      and, with ``train_norms``, every LayerNorm / RMSNorm. A GPT's
      ``targets`` may name its token embedding ``wte``: the adapter then
      reaches the tied LM head too (:class:`~minitx.nn.lora.LoRAEmbedding`).

    Bad input (an unknown method, a pattern matching nothing, rank 0, a
    head asked of a body that has none) raises a one-line ValueError.
    """
    if method not in METHODS:
        raise ValueError(f"fine-tuning method: got {method!r}, expected one of {', '.join(METHODS)}")
    if n_classes is not None:
        model = classifier_on(model, n_classes, pooling=pooling, freeze_body=method == "head" and freeze_body,
                              seed=seed)
    if method == "full":
        model.unfreeze("*")
    elif method == "head":
        if n_classes is None:
            if not hasattr(model, "head"):
                raise ValueError(f"fine-tuning method 'head': the {type(model).__name__} has no head, expected "
                                 "n_classes (a new classification head on an encoder body) or a model with a head")
            if freeze_body:
                model.freeze("*")
            model.unfreeze("head.*")
    else:
        apply_lora(model, targets if targets is not None else DEFAULT_TARGETS, rank=rank, alpha=alpha, seed=seed,
                   train_norms=train_norms, rank_pattern=rank_pattern)
        if n_classes is not None:
            model.unfreeze("head.*")  # the new head has nothing to adapt from: it trains whole
    return model


__all__ = ["METHODS", "classifier_on", "prepare"]
