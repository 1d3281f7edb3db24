"""T5 (``T5ForConditionalGeneration``) <-> :class:`minitx.models.seq2seq.Seq2Seq`: the mapping, one page.

T5 (Raffel et al., 2019) differs from the textbook Transformer in four ways,
each a :class:`~minitx.models.seq2seq.Seq2SeqConfig` option backed by a layer
with its own backward pass:

* **no position vectors**: a learned scalar per (distance bucket, head) is
  added to the attention scores (:class:`~minitx.nn.RelativePositionBias`,
  ``positions="relative"``), computed by the first layer of each stack and
  reused by all the others; the encoder's is bidirectional, the decoder's
  causal; cross-attention has none;
* **scale-only LayerNorm**: ``x / rms(x) * weight``, no mean, no bias
  (:class:`~minitx.nn.RMSNorm`, ``norm="rmsnorm"``), pre-norm, with a
  final norm per stack;
* **unscaled scores**: ``Q K^T`` without ``1/sqrt(d_kv)`` (``attn_scale=1.0``);
  the initialisation folds the scale into the query weights;
* **no biases** anywhere, heads of width ``d_kv`` (``head_size``), and, when the
  head is tied to the embedding, the decoder output is multiplied by
  ``d_model ** -0.5`` first (``head_scale``).

The decoder starts from the pad id (``decoder_start_token_id = 0``).
T5 v1.1's gated MLP (``feed_forward_proj="gated-gelu"``) maps ``wi_0``/``wi_1``
to ``ff.fc``/``ff.fc_gate``. Linear layers are ``nn.Linear``: transposed.

What each tensor is (``D = d_model``, ``I = num_heads * d_kv``, ``F = d_ff``)::

    shared.weight                                        (V, D)  embedding of both stacks (= LM head when tied)
    encoder.block.{l}.layer.0.SelfAttention.{q,k,v}      (I, D)  attention projections
    encoder.block.{l}.layer.0.SelfAttention.o            (D, I)  heads -> residual
    encoder.block.0.layer.0.SelfAttention.relative_attention_bias  (buckets, H)  block 0 only
    encoder.block.{l}.layer.0.layer_norm                 (D,)    RMSNorm before attention
    encoder.block.{l}.layer.1.DenseReluDense.wi / wo     (F, D) / (D, F)  the MLP
    encoder.block.{l}.layer.1.layer_norm                 (D,)    RMSNorm before the MLP
    encoder.final_layer_norm                             (D,)
    decoder.block.{l}.layer.0  self-attention (+ relative_attention_bias in block 0)
    decoder.block.{l}.layer.1  EncDecAttention: cross-attention, q from the decoder, k/v from memory
    decoder.block.{l}.layer.2  the MLP
    decoder.final_layer_norm                             (D,)
    lm_head.weight                                       (V, D)  only when untied
"""
from __future__ import annotations

from ..models.seq2seq import Seq2Seq, Seq2SeqConfig
from .common import activation_from_hf, activation_to_hf, field, same_tensor, single_id
from .folder import PretrainedError
from .mapping import SAME, T, check_leftovers, expand, export_state, format_table, load_state, used_names

MODEL_TYPE = "t5"
ARCHITECTURES = ("T5ForConditionalGeneration",)


def _self_attention(mx: str, hf: str, group: str):
    return [
        (f"{mx}.qkv.weight",  (f"{hf}.q.weight", f"{hf}.k.weight", f"{hf}.v.weight"), T, group),
        (f"{mx}.proj.weight", f"{hf}.o.weight",                                      T, group),
    ]


def _cross_attention(mx: str, hf: str, group: str):
    return [
        (f"{mx}.q.weight",    f"{hf}.q.weight",                    T, group),
        (f"{mx}.kv.weight",   (f"{hf}.k.weight", f"{hf}.v.weight"), T, group),
        (f"{mx}.proj.weight", f"{hf}.o.weight",                    T, group),
    ]


def _mlp(mx: str, hf: str, group: str, gated: bool):
    if gated:
        return [(f"{mx}.fc.weight", f"{hf}.wi_0.weight", T, group), (f"{mx}.fc_gate.weight", f"{hf}.wi_1.weight", T,
                                                                     group),
                (f"{mx}.proj.weight", f"{hf}.wo.weight", T, group)]
    return [(f"{mx}.fc.weight", f"{hf}.wi.weight", T, group), (f"{mx}.proj.weight", f"{hf}.wo.weight", T, group)]


def table(gated: bool):
    """The mapping (it depends on the MLP kind only)."""
    enc, dec = "encoder.block.{l}.layer", "decoder.block.{l}.layer"
    return [
        # minitx name                               Hugging Face name                                   how
        ("encoder.tok_emb.weight",                    "shared.weight",                                    SAME),
        ("encoder.rel_bias.weight",                   "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", SAME),
        *_self_attention("encoder.blocks.{l}.attn",   f"{enc}.0.SelfAttention", "enc"),
        ("encoder.blocks.{l}.norm_attn.weight",       f"{enc}.0.layer_norm.weight",                       SAME, "enc"),
        *_mlp("encoder.blocks.{l}.ff",                f"{enc}.1.DenseReluDense", "enc", gated),
        ("encoder.blocks.{l}.norm_ff.weight",         f"{enc}.1.layer_norm.weight",                       SAME, "enc"),
        ("encoder.ln_f.weight",                       "encoder.final_layer_norm.weight",                  SAME),
        ("dec_rel_bias.weight",                       "decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", SAME),
        *_self_attention("dec_blocks.{l}.attn",       f"{dec}.0.SelfAttention", "dec"),
        ("dec_blocks.{l}.norm_attn.weight",           f"{dec}.0.layer_norm.weight",                       SAME, "dec"),
        *_cross_attention("dec_blocks.{l}.cross_attn", f"{dec}.1.EncDecAttention", "dec"),
        ("dec_blocks.{l}.norm_cross.weight",          f"{dec}.1.layer_norm.weight",                       SAME, "dec"),
        *_mlp("dec_blocks.{l}.ff",                    f"{dec}.2.DenseReluDense", "dec", gated),
        ("dec_blocks.{l}.norm_ff.weight",             f"{dec}.2.layer_norm.weight",                       SAME, "dec"),
        ("ln_dec.weight",                             "decoder.final_layer_norm.weight",                  SAME),
    ]


UNTIED_HEAD = [("head", "lm_head.weight", SAME)]
TIED_COPIES = ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight")


def _mlp_kind(hf: dict, source: str) -> tuple[bool, str]:
    proj = hf.get("feed_forward_proj", "relu")
    parts = proj.split("-")
    gated = parts[0] == "gated"
    if (gated and len(parts) != 2) or (not gated and len(parts) != 1):
        raise PretrainedError(f"{source}: feed_forward_proj={proj!r} is not supported (expected 'ACT' or 'gated-ACT')")
    act = hf.get("dense_act_fn") or ("gelu_new" if proj == "gated-gelu" else parts[-1])
    return gated, activation_from_hf(act, "dense_act_fn", source)


def config_from_hf(hf: dict, source: str, tied: bool) -> Seq2SeqConfig:
    gated, act = _mlp_kind(hf, source)
    d_model, vocab = field(hf, "d_model", source), field(hf, "vocab_size", source)
    n_layer = field(hf, "num_layers", source)
    pad = field(hf, "pad_token_id", source, 0)
    eos = single_id(hf, "eos_token_id", source)
    scale_out = hf.get("scale_decoder_outputs", hf.get("tie_word_embeddings", True) is not False)
    return Seq2SeqConfig(
        src_vocab_size=vocab, tgt_vocab_size=vocab, max_len=max(int(hf.get("n_positions") or 512), 512),
        n_enc_layer=n_layer, n_dec_layer=field(hf, "num_decoder_layers", source, n_layer),
        n_head=field(hf, "num_heads", source), d_model=d_model, d_ff=field(hf, "d_ff", source), dropout=0.0,
        norm_first=True, activation=act, positions="relative", share_embeddings=True, pad_id=pad,
        bos_id=field(hf, "decoder_start_token_id", source, pad), eos_id=eos if eos is not None else 1,
        norm="rmsnorm", layer_norm_eps=float(field(hf, "layer_norm_epsilon", source, 1e-6, kind=float)),
        bias=False, head_size=field(hf, "d_kv", source), attn_scale=1.0, gated=gated,
        relative_buckets=field(hf, "relative_attention_num_buckets", source, 32),
        relative_max_distance=field(hf, "relative_attention_max_distance", source, 128), mask_padding=False,
        tie_head=tied, head_scale=d_model ** -0.5 if (scale_out and tied) else 1.0)


def rows(c: Seq2SeqConfig):
    return expand(table(c.gated) + ([] if c.tie_head else UNTIED_HEAD),
                  {"": 0, "enc": c.n_enc_layer, "dec": c.n_dec_layer})


def build(hf: dict, tensors: dict, architecture: str, source: str, dtype):
    tied = "lm_head.weight" not in tensors or same_tensor(tensors, "lm_head.weight", "shared.weight")
    config = config_from_hf(hf, source, tied)
    model = Seq2Seq(config, dtype=dtype)
    rs = rows(config)
    state = load_state(rs, tensors, dict(model.named_parameters()), source)
    for name in TIED_COPIES:
        if name in tensors and not same_tensor(tensors, name, "shared.weight"):
            raise PretrainedError(f"{source}: tensor {name} differs from shared.weight; minitx ties them")
    check_leftovers(tensors, used_names(rs) | set(TIED_COPIES) | {"lm_head.weight"}, (), source)
    model.load_state_dict(state)
    return model


def export(model: Seq2Seq, hf_base: dict) -> tuple[dict, dict]:
    c = model.config
    if c.positions != "relative" or c.norm != "rmsnorm" or not c.norm_first or c.bias or c.attn_scale != 1.0 \
            or not c.share_embeddings or c.logits_bias or c.embed_scale != 1.0:
        raise PretrainedError("save_pretrained: this Seq2Seq is not T5-shaped (T5 is pre-norm RMSNorm, relative "
                              "positions, unscaled scores, no biases, shared embeddings)")
    act = activation_to_hf(c.activation)
    hf = dict(hf_base)
    hf.update(model_type=MODEL_TYPE, architectures=["T5ForConditionalGeneration"], vocab_size=c.src_vocab_size,
              d_model=c.d_model, d_kv=model.dec_blocks[0].attn.head_size, d_ff=c.d_ff or 4 * c.d_model,
              num_layers=c.n_enc_layer, num_decoder_layers=c.n_dec_layer, num_heads=c.n_head,
              relative_attention_num_buckets=c.relative_buckets,
              relative_attention_max_distance=c.relative_max_distance, layer_norm_epsilon=c.layer_norm_eps,
              feed_forward_proj=("gated-" if c.gated else "") + ("gelu" if c.gated and act == "gelu_new" else act),
              dense_act_fn=act, is_gated_act=c.gated, pad_token_id=c.pad_id, eos_token_id=c.eos_id,
              decoder_start_token_id=c.bos_id, is_encoder_decoder=True,
              tie_word_embeddings=c.tie_head, scale_decoder_outputs=c.head_scale != 1.0)
    return hf, export_state(rows(c), model.state_dict())



def printable_table():
    """Every row, for ``python -m minitx.pretrained t5``."""
    return table(False) + UNTIED_HEAD
