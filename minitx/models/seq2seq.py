"""Encoder-decoder transformers (the original Transformer, T5, BART): translation.

When input and output are different sequences whose lengths differ
(a sentence and its translation), one model reads and another writes:

    src (B, S) --encoder--> memory (B, S, D)        bidirectional, read once
    tgt_in (B, T) --decoder(memory)--> logits (B, T, V_tgt)

The decoder is a GPT with one extra sublayer per block: **cross-attention**,
whose queries come from the target so far and whose keys and values come
from the encoder's ``memory``. That is where the alignment lives: the
cross-attention weights ``[B, H, T, S]`` say which source words each target
word looked at (the translation tutorial plots them).

Masks, one per attention:

* encoder self-attention: source padding (True = padding);
* decoder self-attention: causal (no peeking at later target words), plus
  target padding;
* cross-attention: source padding again, so no target word reads a pad.

**Teacher forcing.** Training feeds the decoder the *correct* previous words,
the target shifted right by one with a beginning-of-sentence token::

    target   (what to predict):  la   gata  negra  ve    <eos>
    tgt_in   (what it reads):    <bos> la   gata   negra ve

so every position is trained in parallel in one forward pass, exactly as a
GPT is. :func:`shift_right` builds ``tgt_in``; padded target positions are
ignored by the loss. Label smoothing (``loss(..., label_smoothing=0.1)``)
keeps the model from becoming certain, which helps beam search.

**Shared embeddings.** With one joint vocabulary, ``share_embeddings=True``
makes the source embedding, the target embedding and the output layer one
matrix (Press & Wolf, 2017). The output layer is always tied to the target
embedding; the gradient derivation is in
:func:`minitx.models.encoder.tied_head_backward`.

**Decoding, efficiently.** :meth:`Seq2Seq.start_decoding` runs the encoder
*once* and projects ``memory`` to each layer's cross-attention keys and
values *once*; every later step (:meth:`Seq2Seq.decode_step`) feeds one new
target token per row, appends its self-attention keys/values to a
:class:`~minitx.nn.KVCache` and reuses the cached cross-attention K/V. A test
checks that stepping gives the same logits as the full teacher-forced pass,
and that the cross K/V projection is not run again while stepping.

Parameter names::

    encoder.*                     see :class:`~minitx.models.encoder.TransformerEncoder`
    tgt_emb.weight (V_tgt, D)     (the same Parameter as encoder.tok_emb.weight when shared)
    tgt_pos.weight (max_len, D)
    dec_blocks.{l}.norm_attn / attn.qkv / attn.proj / norm_cross / cross_attn.q /
        cross_attn.kv / cross_attn.proj / norm_ff / ff.fc / ff.proj
    ln_dec.weight/bias            (pre-norm only)
    dec_rel_bias.weight (buckets, H)  (positions="relative", T5; encoder.rel_bias likewise)
    head (V_tgt, D)               (tie_head=False only)
    out_bias (V_tgt,)             (logits_bias=True only, BART's final_logits_bias)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..backend import DEFAULT_DTYPE, array_module, to_device
from ..nn import (
    Parameter,
    RelativePositionBias,
    DecoderBlock,
    Dropout,
    Embedding,
    KVCache,
    LayerNorm,
    LearnedPositionalEmbedding,
    Module,
    ModuleList,
    SinusoidalPositionalEncoding,
)
from ..nn.attention import (
    merge_heads,
    scaled_dot_product_attention_forward,
    split_heads,
)
from ..nn.blocks import residual_forward
from ..nn.norm import make_norm
from ..nn.loss import IGNORE_INDEX, cross_entropy_backward, cross_entropy_forward
from .config import PresetConfig
from .encoder import (
    POSITIONS,
    EncoderConfig,
    TransformerEncoder,
    check_ids,
    tied_head_backward,
    tied_head_forward,
)

SEQ2SEQ_PRESETS: dict[str, dict] = {
    "s2s-test": dict(n_enc_layer=1, n_dec_layer=1, n_head=2, d_model=16, max_len=16),  # unit tests
    "s2s-small": dict(n_enc_layer=2, n_dec_layer=2, n_head=4, d_model=64, max_len=32),  # CPU demo: minutes
    "transformer-base": dict(n_enc_layer=6, n_dec_layer=6, n_head=8, d_model=512, d_ff=2048, max_len=256,
                             norm_first=False, positions="sinusoidal"),  # Vaswani et al. (2017)
}


@dataclass
class Seq2SeqConfig(PresetConfig):
    """The shape of an encoder-decoder model. Special ids are shared by both vocabularies.

    ``bos_id`` is what the decoder starts from (Hugging Face's
    ``decoder_start_token_id``: T5 starts from its pad id, BART from its EOS).
    """

    src_vocab_size: int
    tgt_vocab_size: int
    max_len: int = 32
    n_enc_layer: int = 2
    n_dec_layer: int = 2
    n_head: int = 4
    d_model: int = 64
    d_ff: int | None = None
    dropout: float = 0.0
    norm_first: bool = True
    activation: str = "gelu"
    positions: str = "learned"
    share_embeddings: bool = False
    pad_id: int = 0
    bos_id: int = 1
    eos_id: int = 2
    # The pretrained families (see EncoderConfig for the shared ones; defaults are minitx's own model):
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
    mask_padding: bool = True
    tie_head: bool = True  # logits = h @ tgt_emb^T; False: a separate head matrix (V_tgt, D)
    head_scale: float = 1.0  # h is multiplied by this before the head (T5 with a tied head: d_model ** -0.5)
    logits_bias: bool = False  # a learned (V_tgt,) bias on the logits (BART's final_logits_bias)

    PRESETS = SEQ2SEQ_PRESETS  # for from_preset (a class attribute, not a field)

    def __post_init__(self):
        # The encoder config validates the shared fields.
        self.encoder_config()
        if self.tgt_vocab_size < 1 or self.n_dec_layer < 1:
            raise ValueError(f"Seq2SeqConfig: tgt_vocab_size={self.tgt_vocab_size}, n_dec_layer={self.n_dec_layer}; "
                             "expected positive integers")
        if self.share_embeddings and self.src_vocab_size != self.tgt_vocab_size:
            raise ValueError(f"Seq2SeqConfig share_embeddings: src_vocab_size={self.src_vocab_size} != "
                             f"tgt_vocab_size={self.tgt_vocab_size}; expected one joint vocabulary")
        for name in ("pad_id", "bos_id", "eos_id"):
            v = getattr(self, name)
            if not 0 <= v < min(self.src_vocab_size, self.tgt_vocab_size):
                raise ValueError(f"Seq2SeqConfig {name}: got {v!r}, expected an id inside both vocabularies")

    def encoder_config(self) -> EncoderConfig:
        return EncoderConfig(vocab_size=self.src_vocab_size, max_len=self.max_len, n_layer=self.n_enc_layer,
                             n_head=self.n_head, d_model=self.d_model, d_ff=self.d_ff, dropout=self.dropout,
                             norm_first=self.norm_first, activation=self.activation, positions=self.positions,
                             pad_id=self.pad_id, norm=self.norm, layer_norm_eps=self.layer_norm_eps, bias=self.bias,
                             head_size=self.head_size, attn_scale=self.attn_scale, gated=self.gated,
                             position_offset=self.position_offset, relative_buckets=self.relative_buckets,
                             relative_max_distance=self.relative_max_distance, embed_scale=self.embed_scale,
                             mask_padding=self.mask_padding)


def shift_right(tgt, bos_id: int, pad_id: int):
    """``tgt [B, T] -> tgt_in [B, T]``: prepend BOS, drop the last column (teacher forcing).

    ``tgt`` ends each row with EOS then padding; the dropped last column is
    either padding or the final EOS, which is never an *input*.
    """
    tgt = np.asarray(tgt)
    out = np.full_like(tgt, pad_id)
    out[:, 0] = bos_id
    out[:, 1:] = tgt[:, :-1]
    return out


# --------------------------------------------------------------------------
# Incremental decoding state
# --------------------------------------------------------------------------
@dataclass
class DecoderState:
    """Everything :meth:`Seq2Seq.decode_step` needs between steps, for ``N`` rows.

    ``cross_kv[l] = (k, v)``, each ``[N, H, S, hs]``: layer l's cross-attention
    keys and values of the source, computed once. ``self_caches[l]``: the
    decoder's own keys/values so far. ``src_padding_mask [N, S]``.
    """

    cross_kv: list
    self_caches: list
    src_padding_mask: object
    length: int = 0

    def reorder(self, rows, *, cross: bool = True) -> None:
        """Keep rows ``rows`` (beam search: the beams that survived, possibly repeated).

        ``cross=False`` leaves the cross-attention K/V and source mask alone:
        correct (and copy-free) when every row moves only among the rows of
        its own source, which hold identical values; beam search does that.
        """
        rows = np.asarray(rows)
        if cross:
            self.cross_kv = [(k[rows], v[rows]) for k, v in self.cross_kv]
            self.src_padding_mask = self.src_padding_mask[rows]
        for cache in self.self_caches:
            if cache.k is not None:
                cache.k, cache.v = cache.k[rows], cache.v[rows]


def _cross_attend(attn, x, k, v, padding_mask):
    """Cross-attention with precomputed ``k, v [N, H, S, hs]`` (inference only).

    The same maths as :class:`~minitx.nn.MultiHeadAttention` with ``cross=True``,
    minus the ``kv`` projection, which was done once in :meth:`Seq2Seq.start_decoding`.
    """
    q = split_heads(attn.q(x), attn.n_heads)  # (N, H, T, hs)
    allowed = None if padding_mask is None else ~padding_mask[:, None, None, :]  # (N, 1, 1, S)
    y, weights, _ = scaled_dot_product_attention_forward(q, k, v, allowed, scale=attn.scale)  # (N, H, T, hs)
    attn.attn_weights = weights  # (N, H, T, S), for plotting alignments
    return attn.proj(merge_heads(y))  # (N, T, D)


# --------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------
class Seq2Seq(Module):
    """Encoder-decoder transformer; ``forward(src, tgt_in) -> logits [B, T, V_tgt]``.

    ``backward(dlogits)`` runs the decoder backward, summing each block's
    gradient with respect to ``memory`` (every decoder layer read it), then
    the encoder backward from that sum.
    """

    def __init__(self, config: Seq2SeqConfig, *, seed: int = 0, rng=None, dtype=DEFAULT_DTYPE):
        self.config = c = config
        self.rng = rng if rng is not None else np.random.default_rng(seed)
        rng = self.rng
        self.encoder = TransformerEncoder(c.encoder_config(), rng=rng, dtype=dtype)
        self.tgt_emb = Embedding(c.tgt_vocab_size, c.d_model, rng=rng, std=0.02, dtype=dtype)
        if c.share_embeddings:
            # Two Embedding modules (each keeps its own lookup cache for backward),
            # one Parameter: both scatter-adds land in the same .grad.
            self.tgt_emb.weight = self.encoder.tok_emb.weight
        if c.positions == "learned":
            self.tgt_pos = LearnedPositionalEmbedding(c.max_len, c.d_model, rng=rng, std=0.02,
                                                      offset=c.position_offset, dtype=dtype)
        elif c.positions == "sinusoidal":
            self.tgt_pos = SinusoidalPositionalEncoding(c.d_model, c.max_len, dtype=dtype)
        else:  # T5: a causal bucketed bias of the decoder's own
            self.dec_rel_bias = RelativePositionBias(c.n_head, bidirectional=False, num_buckets=c.relative_buckets,
                                                     max_distance=c.relative_max_distance, rng=rng, dtype=dtype)
        if not c.norm_first:
            self.ln_tgt_emb = LayerNorm(c.d_model, c.layer_norm_eps, dtype=dtype)
        self.drop = Dropout(c.dropout, rng=rng)
        self.dec_blocks = ModuleList([
            DecoderBlock(c.d_model, c.n_head, c.d_ff, cross_attention=True, dropout=c.dropout,
                         norm_first=c.norm_first, activation=c.activation, bias=c.bias, eps=c.layer_norm_eps,
                         norm=c.norm, head_size=c.head_size, attn_scale=c.attn_scale, gated=c.gated, rng=rng,
                         dtype=dtype)
            for _ in range(c.n_dec_layer)
        ])
        if c.norm_first:
            self.ln_dec = make_norm(c.norm, c.d_model, c.layer_norm_eps, dtype=dtype)
        if not c.tie_head:
            self.head = Parameter(to_device((rng.standard_normal((c.tgt_vocab_size, c.d_model)) * 0.02).astype(dtype)))
        if c.logits_bias:
            self.out_bias = Parameter(to_device(np.zeros(c.tgt_vocab_size, dtype=dtype)))  # (V,)

    # ---- training: teacher-forced forward / backward --------------------------
    def encode(self, src, src_padding_mask=None):
        """``src [B, S] -> memory [B, S, D]``; the padding mask is ``self.encoder.padding_mask``."""
        return self.encoder(src, src_padding_mask)

    def _embed_target(self, tgt_in, start: int = 0):
        c = self.config
        x = self.tgt_emb(tgt_in)  # (B, T, D)
        if c.embed_scale != 1.0:
            x = x * c.embed_scale
        if c.positions != "relative":
            x = self.tgt_pos(x, start)  # (B, T, D)
        if not c.norm_first:
            x = self.ln_tgt_emb(x)
        return self.drop(x)

    def _self_bias(self, T: int, start: int = 0):
        """T5's decoder bias for queries ``start..start+T-1`` over keys ``0..start+T-1`` (None otherwise)."""
        if self.config.positions != "relative":
            return None
        return self.dec_rel_bias(T, start + T, start)  # (1, H, T, start + T)

    @property
    def head_weight(self):
        """The ``(V_tgt, D)`` matrix the logits are scored against (the target embedding when tied)."""
        return (self.tgt_emb.weight if self.config.tie_head else self.head).data

    def _head(self, x):
        c = self.config
        h = self.ln_dec(x) if c.norm_first else x  # (B, T, D)
        if c.head_scale != 1.0:
            h = h * c.head_scale
        logits, self.head_cache = tied_head_forward(h, self.head_weight)  # (B, T, V)
        if c.logits_bias:
            logits += self.out_bias.data
        return logits

    def decode(self, tgt_in, memory, src_padding_mask):
        """``tgt_in [B, T], memory [B, S, D] -> logits [B, T, V_tgt]`` (all positions at once)."""
        c = self.config
        check_ids("decoder tgt_in", tgt_in, c.max_len)
        tgt_padding_mask = (tgt_in == c.pad_id) if c.mask_padding else None  # (B, T)
        if src_padding_mask is not None and not src_padding_mask.any():
            src_padding_mask = None  # nothing to block
        x = self._embed_target(tgt_in)
        bias = self._self_bias(tgt_in.shape[1])
        for block in self.dec_blocks:
            x = block(x, memory, key_padding_mask=tgt_padding_mask, memory_key_padding_mask=src_padding_mask,
                      score_bias=bias)
        return self._head(x)

    def forward(self, src, tgt_in, src_padding_mask=None):
        """``src [B, S], tgt_in [B, T] -> logits [B, T, V_tgt]``.

        ``src_padding_mask [B, S]`` (True = padding) overrides the mask derived from ``pad_id``.
        """
        memory = self.encode(src, src_padding_mask)  # (B, S, D)
        if src.shape[0] != tgt_in.shape[0]:
            raise ValueError(f"Seq2Seq tgt_in: got batch {tgt_in.shape[0]}, expected {src.shape[0]} (as src)")
        return self.decode(tgt_in, memory, self.encoder.padding_mask)

    def backward(self, dlogits):
        """``dlogits [B, T, V]``: gradients into every parameter; returns None.

        memory feeds the cross-attention of *every* decoder layer, so by the
        multivariable chain rule its gradient is the sum of what each layer
        sends back: ``dmemory = sum_l dmemory_l``.
        """
        c = self.config
        if c.logits_bias:
            self.out_bias.grad += dlogits.reshape(-1, dlogits.shape[-1]).sum(axis=0)  # (V,)
        dh, dE = tied_head_backward(dlogits, self.head_cache)  # (B, T, D), (V, D)
        (self.tgt_emb.weight if c.tie_head else self.head).grad += dE  # the output layer's share
        if c.head_scale != 1.0:
            dh = dh * c.head_scale
        dx = self.ln_dec.backward(dh) if c.norm_first else dh
        dmemory, dbias = 0.0, 0.0
        for block in reversed(list(self.dec_blocks)):
            dx, dmem = block.backward(dx)  # (B, T, D), (B, S, D)
            dmemory = dmemory + dmem
            if c.positions == "relative":
                dbias = dbias + block.attn.dscore_bias  # every layer read the same bias
        dx = self.drop.backward(dx)
        if not c.norm_first:
            dx = self.ln_tgt_emb.backward(dx)
        if c.positions == "relative":
            self.dec_rel_bias.backward(dbias)
        else:
            dx = self.tgt_pos.backward(dx)
        if c.embed_scale != 1.0:
            dx = dx * c.embed_scale
        self.tgt_emb.backward(dx)  # the input lookup's share
        self.encoder.backward(dmemory)
        return None

    def loss(self, src, tgt, *, label_smoothing: float = 0.0):
        """Teacher-forced cross-entropy. ``tgt [B, T]``: target ids ending in EOS, right-padded.

        Returns ``(loss, logits)``; padded positions are ignored.
        """
        c = self.config
        tgt = np.asarray(tgt)
        tgt_in = shift_right(tgt, c.bos_id, c.pad_id)
        targets = np.where(tgt == c.pad_id, IGNORE_INDEX, tgt)
        logits = self.forward(src, tgt_in)
        loss, self.loss_cache = cross_entropy_forward(logits, targets, ignore_index=IGNORE_INDEX,
                                                      label_smoothing=label_smoothing)
        return float(loss), logits

    def count_targets(self, src, tgt) -> int:
        """How many target tokens :meth:`loss` averages over (not the padding): a data-parallel share's weight."""
        return int((np.asarray(tgt) != self.config.pad_id).sum())

    def backward_loss(self, scale: float = 1.0) -> None:
        self.backward(cross_entropy_backward(scale, self.loss_cache))

    # ---- inference: encode once, then one token at a time -------------------
    def start_decoding(self, src, *, repeat: int = 1, src_padding_mask=None) -> DecoderState:
        """Encode ``src [B, S]`` once; return a :class:`DecoderState` for ``B * repeat`` rows.

        Each decoder layer's cross-attention keys and values are projected
        from ``memory`` here, once per source. ``repeat`` (beam search: the
        beam size) copies each source's K/V to ``repeat`` consecutive rows,
        which costs memory but no recomputation.
        """
        c = self.config
        memory = self.encode(src, src_padding_mask)  # (B, S, D)
        pad = self.encoder.padding_mask  # (B, S)
        B, S, _ = memory.shape
        cross_kv = []
        for block in self.dec_blocks:
            attn = block.cross_attn
            kv = attn.kv(memory).reshape(B, S, 2, attn.n_heads, attn.head_size)  # (B, S, 2, H, hs)
            k, v = kv.transpose(2, 0, 3, 1, 4)  # 2 x (B, H, S, hs)
            if repeat > 1:
                k, v = np.repeat(k, repeat, axis=0), np.repeat(v, repeat, axis=0)  # (B*K, H, S, hs)
            cross_kv.append((k, v))
        if repeat > 1:
            pad = np.repeat(pad, repeat, axis=0)
        return DecoderState(cross_kv, [KVCache(c.max_len) for _ in self.dec_blocks], pad)

    def decode_step(self, tokens, state: DecoderState):
        """``tokens [N, T_new]`` (usually T_new = 1) ``-> logits [N, T_new, V]``; advances ``state``."""
        c = self.config
        T = tokens.shape[1]
        if state.length + T > c.max_len:
            raise ValueError(f"decode_step: {state.length + T} target positions, expected at most max_len={c.max_len}")
        x = self._embed_target(tokens, state.length)  # (N, T, D)
        bias = self._self_bias(T, state.length)  # (1, H, T, length + T) or None
        pad = state.src_padding_mask if state.src_padding_mask.any() else None
        nf = c.norm_first
        for block, cache, (k, v) in zip(self.dec_blocks, state.self_caches, state.cross_kv):
            x = residual_forward(nf, block.norm_attn, block.drop_attn, x,
                                 lambda h: block.attn(h, kv_cache=cache, score_bias=bias))
            x = residual_forward(nf, block.norm_cross, block.drop_cross, x,
                                 lambda h: _cross_attend(block.cross_attn, h, k, v, pad))
            x = residual_forward(nf, block.norm_ff, block.drop_ff, x, block.ff)
        state.length += T
        return self._head(x)  # (N, T, V)

    def generate(self, src, max_new_tokens: int = 40, *, temperature: float = 0.0, top_k: int | None = None,
                 top_p: float | None = None, seed: int | None = None) -> list[list[int]]:
        """Greedy (``temperature=0``) or sampled translation of every row of ``src [B, S]``.

        Returns one list of target ids per row, without BOS/EOS. Rows that
        have produced EOS stop growing (they keep feeding padding, ignored).
        """
        from ..generate import check_sampling_args, next_token_probs, sample_from

        check_sampling_args(temperature, top_k, top_p, max_new_tokens)
        c = self.config
        check_ids("source ids", src, c.max_len)
        max_new_tokens = min(max_new_tokens, c.max_len)
        was_training = self.training
        self.eval()
        rng = np.random.default_rng(seed)
        B = src.shape[0]
        state = self.start_decoding(src)
        tokens = np.full((B, 1), c.bos_id, dtype=np.int64)
        out: list[list[int]] = [[] for _ in range(B)]
        done = np.zeros(B, dtype=bool)
        for _ in range(max_new_tokens):
            logits = self.decode_step(tokens, state)[:, -1]  # (B, V)
            if temperature == 0:
                nxt = np.asarray(logits).argmax(axis=-1)
            else:
                nxt = sample_from(next_token_probs(logits, temperature=temperature, top_k=top_k, top_p=top_p), rng)
            for b in np.flatnonzero(~done):
                if nxt[b] == c.eos_id:
                    done[b] = True
                else:
                    out[b].append(int(nxt[b]))
            if done.all():
                break
            tokens = np.where(done, c.pad_id, nxt)[:, None].astype(np.int64)
        self.train(was_training)
        return out

    def cross_attention_weights(self):
        """The last decode's cross-attention weights, one ``[B, H, T, S]`` array per layer."""
        return [block.cross_attn.attn_weights for block in self.dec_blocks]

    @property
    def dtype(self):
        return self.encoder.dtype

    @property
    def xp(self):
        return array_module(self.encoder.tok_emb.weight.data)


__all__ = ["DecoderState", "SEQ2SEQ_PRESETS", "Seq2Seq", "Seq2SeqConfig", "shift_right", "POSITIONS"]
