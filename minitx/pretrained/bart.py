"""BART (``BartForConditionalGeneration``) <-> :class:`minitx.models.seq2seq.Seq2Seq`: the mapping, one page.

BART (Lewis et al., 2019) is the original post-norm Transformer with GPT's
learned positions and GELU, and two details minitx configures:

* **positions offset by 2**: the position table has ``max_position_embeddings
  + 2`` rows and position p reads row p + 2 (fairseq reserved the first rows
  for padding); ``Seq2SeqConfig(position_offset=2)``;
* **a LayerNorm on the embeddings** (``layernorm_embedding``) in both stacks:
  minitx's post-norm stacks have one (``ln_emb``, ``ln_tgt_emb``).

Encoder and decoder share one embedding matrix (``shared``), which is also
the LM head; the logits get a learned bias ``final_logits_bias``. The
decoder starts from ``decoder_start_token_id`` (BART: the EOS id, 2).
Linear layers are ``nn.Linear``, ``(out, in)``: transposed (``T``).

What each tensor is (``model.`` prefix dropped; ``D = d_model``, ``F = ffn_dim``)::

    shared.weight                             (V, D)     token embedding of both stacks = LM head
    encoder.embed_positions.weight            (P+2, D)   learned positions, read from row 2
    encoder.layernorm_embedding               (D,)x2     LayerNorm on the embedding sum
    encoder.layers.{l}.self_attn.{q,k,v}_proj (D, D)+(D,) attention projections
    encoder.layers.{l}.self_attn.out_proj     (D, D)     heads -> residual
    encoder.layers.{l}.self_attn_layer_norm   (D,)x2     post-norm after attention
    encoder.layers.{l}.fc1 / fc2              (F, D) / (D, F)  the MLP
    encoder.layers.{l}.final_layer_norm       (D,)x2     post-norm after the MLP
    decoder.*                                 the same, plus per layer
    decoder.layers.{l}.encoder_attn.*         cross-attention (queries from the decoder, keys/values from memory)
    decoder.layers.{l}.encoder_attn_layer_norm
    final_logits_bias                         (1, V)     added to the logits
"""
from __future__ import annotations

import math

from ..models.seq2seq import Seq2Seq, Seq2SeqConfig
from .common import activation_from_hf, activation_to_hf, field, refuse, same_tensor, single_id
from .folder import PretrainedError
from .mapping import ROW, SAME, T, check_leftovers, expand, export_state, format_table, load_state, strip_prefix, \
    used_names

MODEL_TYPE = "bart"
ARCHITECTURES = ("BartForConditionalGeneration",)


def _attention(mx: str, hf: str, group: str, cross: bool = False):
    """The rows of one attention sublayer (q, k, v fused into qkv, or q + kv for cross-attention)."""
    if cross:
        return [
            (f"{mx}.q.weight",    f"{hf}.q_proj.weight",                             T, group),
            (f"{mx}.q.bias",      f"{hf}.q_proj.bias",                               SAME, group),
            (f"{mx}.kv.weight",   (f"{hf}.k_proj.weight", f"{hf}.v_proj.weight"),    T, group),
            (f"{mx}.kv.bias",     (f"{hf}.k_proj.bias", f"{hf}.v_proj.bias"),        SAME, group),
            (f"{mx}.proj.weight", f"{hf}.out_proj.weight",                           T, group),
            (f"{mx}.proj.bias",   f"{hf}.out_proj.bias",                             SAME, group),
        ]
    return [
        (f"{mx}.qkv.weight",  (f"{hf}.q_proj.weight", f"{hf}.k_proj.weight", f"{hf}.v_proj.weight"), T, group),
        (f"{mx}.qkv.bias",    (f"{hf}.q_proj.bias", f"{hf}.k_proj.bias", f"{hf}.v_proj.bias"),       SAME, group),
        (f"{mx}.proj.weight", f"{hf}.out_proj.weight",                                               T, group),
        (f"{mx}.proj.bias",   f"{hf}.out_proj.bias",                                                 SAME, group),
    ]


def _norm(mx: str, hf: str, group: str = ""):
    return [(f"{mx}.weight", f"{hf}.weight", SAME, group), (f"{mx}.bias", f"{hf}.bias", SAME, group)]


def _mlp(mx: str, hf: str, group: str):
    return [
        (f"{mx}.ff.fc.weight",   f"{hf}.fc1.weight", T, group),
        (f"{mx}.ff.fc.bias",     f"{hf}.fc1.bias",   SAME, group),
        (f"{mx}.ff.proj.weight", f"{hf}.fc2.weight", T, group),
        (f"{mx}.ff.proj.bias",   f"{hf}.fc2.bias",   SAME, group),
    ]


# minitx name                                  Hugging Face name (after "model.")          how
TABLE = [
    ("encoder.tok_emb.weight",                   "shared.weight",                             SAME),
    ("encoder.pos.weight",                       "encoder.embed_positions.weight",            SAME),
    *_norm("encoder.ln_emb",                     "encoder.layernorm_embedding"),
    *_attention("encoder.blocks.{l}.attn",       "encoder.layers.{l}.self_attn", "enc"),
    *_norm("encoder.blocks.{l}.norm_attn",       "encoder.layers.{l}.self_attn_layer_norm", "enc"),
    *_mlp("encoder.blocks.{l}",                  "encoder.layers.{l}", "enc"),
    *_norm("encoder.blocks.{l}.norm_ff",         "encoder.layers.{l}.final_layer_norm", "enc"),
    ("tgt_pos.weight",                           "decoder.embed_positions.weight",            SAME),
    *_norm("ln_tgt_emb",                         "decoder.layernorm_embedding"),
    *_attention("dec_blocks.{l}.attn",           "decoder.layers.{l}.self_attn", "dec"),
    *_norm("dec_blocks.{l}.norm_attn",           "decoder.layers.{l}.self_attn_layer_norm", "dec"),
    *_attention("dec_blocks.{l}.cross_attn",     "decoder.layers.{l}.encoder_attn", "dec", cross=True),
    *_norm("dec_blocks.{l}.norm_cross",          "decoder.layers.{l}.encoder_attn_layer_norm", "dec"),
    *_mlp("dec_blocks.{l}",                      "decoder.layers.{l}", "dec"),
    *_norm("dec_blocks.{l}.norm_ff",             "decoder.layers.{l}.final_layer_norm", "dec"),
]
# Outside the "model." prefix:
HEAD = [("out_bias", "final_logits_bias", ROW)]
UNTIED_HEAD = [("head", "lm_head.weight", SAME)]
TIED_COPIES = ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight")  # = shared.weight when present


def config_from_hf(hf: dict, source: str, tied: bool) -> Seq2SeqConfig:
    for key in ("normalize_before", "add_final_layer_norm"):
        refuse(hf, key, (False,), source)
    refuse(hf, "normalize_embedding", (True,), source)
    heads = field(hf, "encoder_attention_heads", source)
    if field(hf, "decoder_attention_heads", source) != heads:
        raise PretrainedError(f"{source}: encoder_attention_heads={heads} != decoder_attention_heads="
                              f"{hf['decoder_attention_heads']}; minitx needs one head count")
    ffn = field(hf, "encoder_ffn_dim", source)
    if field(hf, "decoder_ffn_dim", source) != ffn:
        raise PretrainedError(f"{source}: encoder_ffn_dim={ffn} != decoder_ffn_dim={hf['decoder_ffn_dim']}; "
                              "minitx needs one MLP width")
    d_model, vocab = field(hf, "d_model", source), field(hf, "vocab_size", source)
    eos = single_id(hf, "eos_token_id", source)
    return Seq2SeqConfig(
        src_vocab_size=vocab, tgt_vocab_size=vocab, max_len=field(hf, "max_position_embeddings", source),
        n_enc_layer=field(hf, "encoder_layers", source), n_dec_layer=field(hf, "decoder_layers", source),
        n_head=heads, d_model=d_model, d_ff=ffn, dropout=0.0, norm_first=False,
        activation=activation_from_hf(hf.get("activation_function", "gelu"), "activation_function", source),
        positions="learned", share_embeddings=True, pad_id=field(hf, "pad_token_id", source, 1),
        bos_id=field(hf, "decoder_start_token_id", source, eos if eos is not None else 2),
        eos_id=eos if eos is not None else 2, layer_norm_eps=1e-5, position_offset=2,
        embed_scale=math.sqrt(d_model) if hf.get("scale_embedding") else 1.0, mask_padding=False,
        tie_head=tied, logits_bias=True)


def rows(c: Seq2SeqConfig):
    groups = {"": 0, "enc": c.n_enc_layer, "dec": c.n_dec_layer}
    model_rows = [(mx, ("model." + h if isinstance(h, str) else tuple("model." + x for x in h)), how)
                  for mx, h, how in expand(TABLE, groups)]
    return model_rows + HEAD + ([] if c.tie_head else UNTIED_HEAD)


def build(hf: dict, tensors: dict, architecture: str, source: str, dtype):
    if not any(n.startswith("model.") for n in tensors):
        tensors = {("model." + n if n not in ("final_logits_bias", "lm_head.weight") else n): v
                   for n, v in tensors.items()}
    tied = "lm_head.weight" not in tensors or same_tensor(tensors, "lm_head.weight", "model.shared.weight")
    config = config_from_hf(hf, source, tied)
    model = Seq2Seq(config, dtype=dtype)
    rs = rows(config)
    state = load_state(rs, tensors, dict(model.named_parameters()), source)
    for name in TIED_COPIES:
        if "model." + name in tensors and not same_tensor(tensors, "model." + name, "model.shared.weight"):
            raise PretrainedError(f"{source}: tensor model.{name} differs from model.shared.weight; minitx ties them")
    used = used_names(rs) | {"model." + n for n in TIED_COPIES} | {"lm_head.weight"}
    check_leftovers(tensors, used, (), source)
    model.load_state_dict(state)
    return model


def export(model: Seq2Seq, hf_base: dict) -> tuple[dict, dict]:
    c = model.config
    if c.norm_first or c.positions != "learned" or c.position_offset != 2 or not c.share_embeddings \
            or c.norm != "layernorm" or not c.logits_bias or not c.bias or c.attn_scale is not None or c.gated:
        raise PretrainedError("save_pretrained: this Seq2Seq is not BART-shaped (BART is post-norm with shared "
                              "embeddings, positions offset by 2 and a logits bias)")
    hf = dict(hf_base)
    hf.update(model_type=MODEL_TYPE, architectures=["BartForConditionalGeneration"], vocab_size=c.src_vocab_size,
              max_position_embeddings=c.max_len, encoder_layers=c.n_enc_layer, decoder_layers=c.n_dec_layer,
              encoder_attention_heads=c.n_head, decoder_attention_heads=c.n_head, d_model=c.d_model,
              encoder_ffn_dim=c.d_ff or 4 * c.d_model, decoder_ffn_dim=c.d_ff or 4 * c.d_model,
              activation_function=activation_to_hf(c.activation), scale_embedding=c.embed_scale != 1.0,
              pad_token_id=c.pad_id, eos_token_id=c.eos_id, decoder_start_token_id=c.bos_id,
              tie_word_embeddings=c.tie_head, is_encoder_decoder=True)
    return hf, export_state(rows(c), model.state_dict())



def printable_table():
    """Every row, for ``python -m minitx.pretrained bart``."""
    return TABLE + HEAD + UNTIED_HEAD
