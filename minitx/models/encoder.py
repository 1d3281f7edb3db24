"""Encoder-only transformers (BERT-style): read the whole sentence at once.

A GPT must not look ahead: it is trained to predict the next token. An
encoder has no such constraint, so every position attends to every other
(left *and* right). That makes it the right tool when the whole input is
known and we want a *representation* of it: a label for the sentence
(sentiment), or a label for every token (named entities).

The model, from token ids to hidden states::

    ids   (B, T)       token ids, padded on the right with pad_id
    pad = ids == pad_id                     True = padding              (B, T)
    x = tok_emb[ids] + pos[0:T]             embeddings + positions     (B, T, D)
    x = block_l(x, key_padding_mask=pad)    N bidirectional EncoderBlocks
    h = ln_f(x)                             final LayerNorm (pre-norm)  (B, T, D)

The **padding mask** is the only mask: nobody may attend *to* a padding
token, so a sentence's representation does not depend on how much padding
its batch needed (a test checks exactly that).

Three heads sit on top of ``h``:

* :class:`EncoderClassifier`: pool ``h`` to one vector per sentence (the
  first token, a ``[CLS]`` token the data pipeline prepends, or the mean of
  the real tokens), then ``Linear(D, n_classes)``. Sentiment.
* :class:`EncoderTagger`: ``Linear(D, n_tags)`` at every position. NER.
* :class:`EncoderMLM`: masked language modelling, BERT's pretraining
  objective: hide 15% of the tokens and predict them from both sides.
  Its output layer is *tied* to the token embedding, like GPT's LM head.

:class:`TransformerEncoder` (the stack without a head) is reused as the
encoder half of :class:`minitx.models.seq2seq.Seq2Seq`.

Parameter names::

    tok_emb.weight (V, D), pos.weight (max_len, D)       (learned positions only)
    blocks.{l}.norm_attn / attn.qkv / attn.proj / norm_ff / ff.fc / ff.proj
    ln_f.weight/bias (pre-norm) or ln_emb.weight/bias (post-norm, BERT)
    head.weight (D, C), head.bias (C,)                   (classifier / tagger)

Example::

    >>> import numpy as np
    >>> from minitx.models.encoder import EncoderConfig, EncoderClassifier
    >>> model = EncoderClassifier(EncoderConfig.from_preset("enc-test", vocab_size=20), n_classes=3, seed=0)
    >>> model.forward(np.array([[1, 5, 6, 0], [1, 7, 0, 0]])).shape   # 0 is padding
    (2, 3)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..backend import DEFAULT_DTYPE, array_module, to_device
from ..nn import (
    Dropout,
    Embedding,
    EncoderBlock,
    LayerNorm,
    LearnedPositionalEmbedding,
    Linear,
    Module,
    ModuleList,
    Parameter,
    SinusoidalPositionalEncoding,
)
from ..nn.activations import Activation
from ..nn.checks import check_positive_int
from ..nn.loss import IGNORE_INDEX
from ..nn.norm import NORMS, make_norm
from ..nn.positions import RelativePositionBias
from ..nn.loss import cross_entropy_backward, cross_entropy_forward
from .config import PresetConfig

# --------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------
#: Named sizes; ``vocab_size`` comes from the tokenizer / vocabulary.
ENCODER_PRESETS: dict[str, dict] = {
    "enc-test": dict(n_layer=2, n_head=2, d_model=16, max_len=16),  # unit tests: milliseconds
    "enc-small": dict(n_layer=2, n_head=4, d_model=64, max_len=64),  # the CPU demos: minutes
    "bert-mini": dict(n_layer=4, n_head=4, d_model=256, max_len=512),  # Turc et al.'s BERT-Mini shape
}

POOLINGS = ("first", "mean")
POSITIONS = ("learned", "sinusoidal", "relative")


@dataclass
class EncoderConfig(PresetConfig):
    """The shape of an encoder stack (shared by the classifier, tagger, MLM and seq2seq encoder).

    ``norm_first=True`` is pre-norm with a final LayerNorm (GPT-2 style, stable
    without warmup); ``False`` is BERT's post-norm, with a LayerNorm on the
    embeddings instead. ``d_ff`` defaults to ``4 * d_model``.

    The fields after ``pad_id`` describe the pretrained families (see
    :mod:`minitx.pretrained`); their defaults are minitx's own encoder:

    * ``norm``: ``"layernorm"``, or ``"rmsnorm"`` (T5, scale only, no bias);
      ``layer_norm_eps`` (BERT 1e-12, T5 1e-6, BART 1e-5).
    * ``bias``: biases in every Linear (T5 has none).
    * ``head_size``: per-head width when ``n_head * head_size != d_model`` (T5's
      ``d_kv``); ``attn_scale``: score scale, None for ``1/sqrt(head_size)``,
      1.0 for T5's unscaled scores. ``gated``: T5 v1.1's gated MLP.
    * ``positions="relative"``: T5's bucketed bias (``relative_buckets``,
      ``relative_max_distance``); ``position_offset``: BART reads row p + 2.
    * ``embed_scale``: token embeddings times this (BART's ``scale_embedding``
      is ``sqrt(d_model)``). ``type_vocab_size``: BERT's segment embeddings
      (segment 0 unless ``token_type_ids`` are given).
    * ``mask_padding``: derive the padding mask from ``ids == pad_id`` when
      none is given. Hugging Face models mask only what the attention mask
      says, so imported models set it False and callers pass masks.
    """

    vocab_size: int
    max_len: int = 64  # the longest sequence (positions table size)
    n_layer: int = 2
    n_head: int = 4
    d_model: int = 64
    d_ff: int | None = None
    dropout: float = 0.0
    norm_first: bool = True
    activation: str = "gelu"
    positions: str = "learned"
    pad_id: int = 0
    norm: str = "layernorm"
    layer_norm_eps: float = 1e-5
    bias: bool = True
    head_size: int | None = None
    attn_scale: float | None = None
    gated: bool = False
    position_offset: int = 0
    relative_buckets: int = 32
    relative_max_distance: int = 128
    embed_scale: float = 1.0
    type_vocab_size: int = 0
    mask_padding: bool = True

    PRESETS = ENCODER_PRESETS  # for from_preset (a class attribute, not a field)

    def __post_init__(self):
        for name in ("vocab_size", "max_len", "n_layer", "n_head", "d_model"):
            check_positive_int(f"EncoderConfig {name}", getattr(self, name))
        if self.d_ff is not None:
            check_positive_int("EncoderConfig d_ff", self.d_ff)
        if self.head_size is None and self.d_model % self.n_head:
            raise ValueError(f"EncoderConfig d_model={self.d_model} with n_head={self.n_head}: "
                             "expected d_model divisible by n_head (or an explicit head_size)")
        if self.head_size is not None:
            check_positive_int("EncoderConfig head_size", self.head_size)
        if self.norm not in NORMS:
            raise ValueError(f"EncoderConfig norm: got {self.norm!r}, expected one of {NORMS}")
        if not isinstance(self.position_offset, int) or self.position_offset < 0:
            raise ValueError(f"EncoderConfig position_offset: got {self.position_offset!r}, expected an integer >= 0")
        if not isinstance(self.type_vocab_size, int) or self.type_vocab_size < 0:
            raise ValueError(f"EncoderConfig type_vocab_size: got {self.type_vocab_size!r}, expected an integer >= 0")
        for name in ("relative_buckets", "relative_max_distance"):
            check_positive_int(f"EncoderConfig {name}", getattr(self, name))
        if not isinstance(self.dropout, (int, float)) or not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"EncoderConfig dropout: got {self.dropout!r}, expected a number in [0, 1)")
        if self.positions not in POSITIONS:
            raise ValueError(f"EncoderConfig positions: got {self.positions!r}, expected one of {POSITIONS}")
        if not 0 <= self.pad_id < self.vocab_size:
            raise ValueError(f"EncoderConfig pad_id: got {self.pad_id!r}, expected an id in [0, {self.vocab_size})")


def check_ids(name: str, ids, max_len: int) -> None:
    """Token ids must be a ``(B, T)`` integer array that fits the positions table."""
    if getattr(ids, "ndim", None) != 2 or ids.dtype.kind not in "iu":
        raise ValueError(f"{name}: got {type(ids).__name__} of shape {tuple(getattr(ids, 'shape', ()))}, "
                         "expected a (B, T) integer array of token ids")
    if ids.shape[1] > max_len:
        raise ValueError(f"{name}: got length {ids.shape[1]}, expected at most max_len={max_len}")
    if ids.shape[1] == 0:
        raise ValueError(f"{name}: got an empty sequence (length 0), expected at least one token")


# --------------------------------------------------------------------------
# The encoder stack
# --------------------------------------------------------------------------
class TransformerEncoder(Module):
    """Embeddings + positions + N bidirectional :class:`~minitx.nn.EncoderBlock` s.

    ``forward(ids) -> h [B, T, D]``; the padding mask is derived from
    ``ids == pad_id`` (kept in ``self.padding_mask``, True = padding) unless
    one is passed (or ``config.mask_padding`` is False). ``backward(dh)`` adds
    every gradient and returns None (ids have no gradient).

    With ``positions="relative"`` there is no position table: ``rel_bias``
    (T5's bucketed bias) is computed once per forward pass and added to the
    scores of every block, so its gradient is the sum of every block's.
    """

    def __init__(self, config: EncoderConfig, *, rng=None, dtype=DEFAULT_DTYPE):
        self.config = c = config
        rng = rng if rng is not None else np.random.default_rng(0)
        self.tok_emb = Embedding(c.vocab_size, c.d_model, rng=rng, std=0.02, dtype=dtype)
        if c.type_vocab_size:
            self.type_emb = Embedding(c.type_vocab_size, c.d_model, rng=rng, std=0.02, dtype=dtype)  # BERT segments
        if c.positions == "learned":
            self.pos = LearnedPositionalEmbedding(c.max_len, c.d_model, rng=rng, std=0.02, offset=c.position_offset,
                                                  dtype=dtype)
        elif c.positions == "sinusoidal":
            self.pos = SinusoidalPositionalEncoding(c.d_model, c.max_len, dtype=dtype)
        else:
            self.rel_bias = RelativePositionBias(c.n_head, bidirectional=True, num_buckets=c.relative_buckets,
                                                 max_distance=c.relative_max_distance, rng=rng, dtype=dtype)
        if not c.norm_first:
            self.ln_emb = LayerNorm(c.d_model, c.layer_norm_eps, dtype=dtype)  # BERT normalises the embeddings
        self.drop = Dropout(c.dropout, rng=rng)
        self.blocks = ModuleList([
            EncoderBlock(c.d_model, c.n_head, c.d_ff, dropout=c.dropout, norm_first=c.norm_first,
                         activation=c.activation, bias=c.bias, eps=c.layer_norm_eps, norm=c.norm,
                         head_size=c.head_size, attn_scale=c.attn_scale, gated=c.gated, rng=rng, dtype=dtype)
            for _ in range(c.n_layer)
        ])
        if c.norm_first:
            self.ln_f = make_norm(c.norm, c.d_model, c.layer_norm_eps, dtype=dtype)  # pre-norm leaves it unnormalised
        self.padding_mask = None

    def forward(self, ids, padding_mask=None, *, token_type_ids=None):
        """``ids [B, T] int -> h [B, T, D]``; ``padding_mask [B, T]`` bool, True = padding.

        ``token_type_ids [B, T]``: BERT's segment ids (all 0 when omitted).
        """
        c = self.config
        check_ids("encoder ids", ids, c.max_len)
        B, T = ids.shape
        if padding_mask is None and c.mask_padding:
            padding_mask = ids == c.pad_id  # (B, T)
        attn_padding = padding_mask
        if padding_mask is None:
            padding_mask = np.zeros((B, T), dtype=bool)  # nothing is padding (pooling still needs a mask)
        self.padding_mask = padding_mask
        x = self.tok_emb(ids)  # (B, T, D)
        if c.embed_scale != 1.0:
            x = x * c.embed_scale
        if c.type_vocab_size:
            types = np.zeros((B, T), dtype=np.int64) if token_type_ids is None else np.asarray(token_type_ids)
            x = x + self.type_emb(types)  # (B, T, D)
        bias = None
        if c.positions == "relative":
            bias = self.rel_bias(T, T)  # (1, H, T, T), shared by every block
        else:
            x = self.pos(x)  # (B, T, D)
        if not c.norm_first:
            x = self.ln_emb(x)
        x = self.drop(x)
        for block in self.blocks:
            x = block(x, key_padding_mask=attn_padding, score_bias=bias)  # (B, T, D)
        return self.ln_f(x) if c.norm_first else x

    def backward(self, dh):
        """``dh [B, T, D]``: gradients added into every parameter; returns None."""
        c = self.config
        dx = self.ln_f.backward(dh) if c.norm_first else dh
        dbias = 0.0
        for block in reversed(list(self.blocks)):
            dx = block.backward(dx)  # (B, T, D)
            if c.positions == "relative":
                dbias = dbias + block.attn.dscore_bias  # (1, H, T, T) every block read the same bias
        dx = self.drop.backward(dx)
        if not c.norm_first:
            dx = self.ln_emb.backward(dx)
        if c.positions == "relative":
            self.rel_bias.backward(dbias)
        else:
            dx = self.pos.backward(dx)  # positions are added: dx passes through
        if c.type_vocab_size:
            self.type_emb.backward(dx)
        if c.embed_scale != 1.0:
            dx = dx * c.embed_scale
        self.tok_emb.backward(dx)  # scatter-add into the embedding rows used
        return None

    @property
    def dtype(self):
        return self.tok_emb.weight.data.dtype

# --------------------------------------------------------------------------
# Pooling: one vector per sentence
# --------------------------------------------------------------------------
def pool_forward(h, padding_mask, mode: str):
    """``h [B, T, D], padding_mask [B, T] -> pooled [B, D]``.

    * ``"first"``: ``h[:, 0]``, the hidden state of the first token. BERT puts a
      ``[CLS]`` token there; since it attends to the whole sentence, training
      makes it a summary.
    * ``"mean"``: the average over the *real* tokens,
      ``sum_t m_t h_t / sum_t m_t`` with ``m = ~padding_mask``; padding must not
      dilute the mean, or the same sentence would pool differently in a
      batch with longer neighbours.
    """
    if mode == "first":
        return h[:, 0], (mode, h.shape, None, None)
    if mode == "mean":
        keep = (~padding_mask).astype(h.dtype)  # (B, T) 1 for real tokens
        count = array_module(h).maximum(keep.sum(axis=1, keepdims=True), 1.0)  # (B, 1) never divide by 0
        pooled = (h * keep[:, :, None]).sum(axis=1) / count  # (B, D)
        return pooled, (mode, h.shape, keep, count)
    raise ValueError(f"pooling: got {mode!r}, expected one of {POOLINGS}")


def pool_backward(dpooled, cache):
    """``dpooled [B, D] -> dh [B, T, D]``.

    * first: pooled = h[:, 0] is a selection, so its gradient goes to position
      0 and every other position gets 0.
    * mean: pooled_d = sum_t m_t h_td / n with n = sum_t m_t (a constant), so
      dL/dh_td = m_t / n * dL/dpooled_d: every real token gets an equal share,
      padding gets nothing.
    """
    mode, shape, keep, count = cache
    xp = array_module(dpooled)
    if mode == "first":
        dh = xp.zeros(shape, dtype=dpooled.dtype)  # (B, T, D)
        dh[:, 0] = dpooled
        return dh
    return (keep / count)[:, :, None] * dpooled[:, None, :]  # (B, T, 1) * (B, 1, D) -> (B, T, D)


# --------------------------------------------------------------------------
# The tied output layer (MLM and seq2seq): logits = h @ E^T + b
# --------------------------------------------------------------------------
def tied_head_forward(h, E):
    """``h [..., D], E [V, D] -> logits [..., V]``: each token's score is h . (its embedding)."""
    return h @ E.T, (h, E)  # (..., D) @ (D, V) -> (..., V)


def tied_head_backward(dlogits, cache):
    """Return ``(dh, dE)`` for ``logits = h E^T``.

    logits[n, v] = sum_d h[n, d] E[v, d], so
        dL/dh = dlogits @ E          (..., V) @ (V, D)
        dL/dE = dlogits^T @ h        (V, N) @ (N, D)     summed over all positions n
    ``dE`` must be *added* to the embedding's gradient: the same matrix also
    received the scatter-add of the input lookup.
    """
    h, E = cache
    V, D = E.shape
    dh = dlogits @ E  # (..., D)
    dE = dlogits.reshape(-1, V).T @ h.reshape(-1, D)  # (V, D)
    return dh, dE


# --------------------------------------------------------------------------
# Heads
# --------------------------------------------------------------------------
class _EncoderWithLoss(Module):
    """Shared plumbing: ``loss`` = forward + cross-entropy, ``backward_loss`` = its backward."""

    ignore_index = IGNORE_INDEX

    def loss(self, ids, targets, *, label_smoothing: float = 0.0):
        """Forward + mean cross-entropy; returns ``(loss, logits)``. Targets ``-100`` are ignored."""
        logits = self.forward(ids)
        loss, self.loss_cache = cross_entropy_forward(logits, targets, ignore_index=self.ignore_index,
                                                      label_smoothing=label_smoothing)
        return float(loss), logits

    def count_targets(self, ids, targets) -> int:
        """How many targets :meth:`loss` averages over (not the ``-100`` padding): a data-parallel share's weight."""
        return int((targets != self.ignore_index).sum())

    def backward_loss(self, scale: float = 1.0) -> None:
        self.backward(cross_entropy_backward(scale, self.loss_cache))

    @property
    def dtype(self):
        return self.encoder.dtype


class EncoderClassifier(_EncoderWithLoss):
    """Sequence classification: encoder, pooling, ``Linear(D, n_classes)``.

    ``forward(ids [B, T]) -> logits [B, n_classes]``. With ``pooling="first"``
    the data must put a summary token (``[CLS]``) at position 0.

    ``pooler=True`` adds BERT's pooler between pooling and head:
    ``tanh(Linear(D, D)(pooled))`` (``BertForSequenceClassification``).

    ``encoder``: an existing :class:`TransformerEncoder` to put the head on
    (a pretrained body, :func:`minitx.finetune.classifier_on`) instead of a
    freshly drawn one; ``config`` must then be its config.
    """

    def __init__(self, config: EncoderConfig, n_classes: int, *, pooling: str = "first", pooler: bool = False,
                 seed: int = 0, rng=None, dtype=DEFAULT_DTYPE, encoder: TransformerEncoder | None = None):
        check_positive_int("EncoderClassifier n_classes", n_classes)
        if pooling not in POOLINGS:
            raise ValueError(f"EncoderClassifier pooling: got {pooling!r}, expected one of {POOLINGS}")
        self.config, self.n_classes, self.pooling = config, n_classes, pooling
        self.rng = rng if rng is not None else np.random.default_rng(seed)
        if encoder is not None and encoder.config is not config:
            raise ValueError("EncoderClassifier encoder: its config is not the config passed, expected "
                             "EncoderClassifier(encoder.config, ..., encoder=encoder)")
        self.encoder = encoder if encoder is not None else TransformerEncoder(config, rng=self.rng, dtype=dtype)
        self.has_pooler = pooler
        if pooler:
            self.pooler = Linear(config.d_model, config.d_model, rng=self.rng, dtype=dtype)
            self.pooler_act = Activation("tanh")
        self.drop = Dropout(config.dropout, rng=self.rng)
        self.head = Linear(config.d_model, n_classes, rng=self.rng, dtype=dtype)

    def forward(self, ids, padding_mask=None, *, token_type_ids=None):
        h = self.encoder(ids, padding_mask, token_type_ids=token_type_ids)  # (B, T, D)
        pooled, self.pool_cache = pool_forward(h, self.encoder.padding_mask, self.pooling)  # (B, D)
        if self.has_pooler:
            pooled = self.pooler_act(self.pooler(pooled))  # (B, D)
        return self.head(self.drop(pooled))  # (B, C)

    def backward(self, dlogits):
        dpooled = self.drop.backward(self.head.backward(dlogits))  # (B, D)
        if self.has_pooler:
            dpooled = self.pooler.backward(self.pooler_act.backward(dpooled))  # (B, D)
        self.encoder.backward(pool_backward(dpooled, self.pool_cache))  # (B, T, D) into the stack
        return None


class EncoderTagger(_EncoderWithLoss):
    """Token classification: ``Linear(D, n_tags)`` on every position.

    ``forward(ids [B, T]) -> logits [B, T, n_tags]``. Targets at padding
    positions are set to ``-100`` (ignored) by the data pipeline.
    """

    def __init__(self, config: EncoderConfig, n_tags: int, *, seed: int = 0, rng=None, dtype=DEFAULT_DTYPE):
        check_positive_int("EncoderTagger n_tags", n_tags)
        self.config, self.n_tags = config, n_tags
        self.rng = rng if rng is not None else np.random.default_rng(seed)
        self.encoder = TransformerEncoder(config, rng=self.rng, dtype=dtype)
        self.drop = Dropout(config.dropout, rng=self.rng)
        self.head = Linear(config.d_model, n_tags, rng=self.rng, dtype=dtype)

    def forward(self, ids):
        return self.head(self.drop(self.encoder(ids)))  # (B, T, n_tags)

    def backward(self, dlogits):
        self.encoder.backward(self.drop.backward(self.head.backward(dlogits)))
        return None


class EncoderMLM(_EncoderWithLoss):
    """Masked language model (BERT pretraining): predict hidden tokens from both sides.

    Head, as in BERT: ``dense (D, D) -> GELU -> LayerNorm -> logits = h E^T + b``
    with ``E`` the token embedding (tied). Build inputs and targets with
    :func:`mask_tokens`.
    """

    def __init__(self, config: EncoderConfig, *, seed: int = 0, rng=None, dtype=DEFAULT_DTYPE):
        self.config = config
        self.rng = rng if rng is not None else np.random.default_rng(seed)
        self.encoder = TransformerEncoder(config, rng=self.rng, dtype=dtype)
        self.dense = Linear(config.d_model, config.d_model, rng=self.rng, dtype=dtype)
        self.act = Activation("gelu")
        self.ln_head = LayerNorm(config.d_model, dtype=dtype)
        self.out_bias = Parameter(to_device(np.zeros(config.vocab_size, dtype=dtype)))  # (V,) per-token bias

    def forward(self, ids):
        h = self.ln_head(self.act(self.dense(self.encoder(ids))))  # (B, T, D)
        logits, self.head_cache = tied_head_forward(h, self.encoder.tok_emb.weight.data)  # (B, T, V)
        return logits + self.out_bias.data

    def backward(self, dlogits):
        dh, dE = tied_head_backward(dlogits, self.head_cache)
        self.encoder.tok_emb.weight.grad += dE  # gradient 1 of 2 for the tied matrix
        self.out_bias.grad += dlogits.reshape(-1, dlogits.shape[-1]).sum(axis=0)
        dh = self.dense.backward(self.act.backward(self.ln_head.backward(dh)))
        self.encoder.backward(dh)  # gradient 2 of 2: the input lookup
        return None


def mask_tokens(ids, rng, *, mask_id: int, vocab_size: int, special_ids=(), p: float = 0.15,
                ignore_index: int = IGNORE_INDEX):
    """BERT's masking recipe: returns ``(inputs, targets)``, both ``[B, T]``.

    Each non-special token is chosen with probability ``p``. A chosen token is
    replaced by ``mask_id`` 80% of the time, by a random token 10% of the
    time and kept 10% of the time (so the model cannot assume that every
    visible token is correct). ``targets`` holds the original id at chosen
    positions and ``ignore_index`` everywhere else: the loss is only on the
    hidden tokens.
    """
    ids = np.asarray(ids)
    special = np.isin(ids, np.asarray(list(special_ids), dtype=ids.dtype))
    chosen = (rng.random(ids.shape) < p) & ~special  # (B, T)
    targets = np.where(chosen, ids, ignore_index)
    u = rng.random(ids.shape)
    inputs = ids.copy()
    inputs[chosen & (u < 0.8)] = mask_id
    rand = chosen & (u >= 0.8) & (u < 0.9)
    inputs[rand] = rng.integers(0, vocab_size, size=int(rand.sum()))
    return inputs, targets


__all__ = ["ENCODER_PRESETS", "EncoderClassifier", "EncoderConfig", "EncoderMLM", "EncoderTagger", "POOLINGS",
           "TransformerEncoder", "check_ids", "mask_tokens", "pool_backward", "pool_forward",
           "tied_head_backward", "tied_head_forward"]
