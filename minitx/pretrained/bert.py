"""BERT (``BertModel``, ``BertForSequenceClassification``) <-> minitx's encoder: the mapping, one page.

BERT is minitx's :class:`~minitx.models.encoder.TransformerEncoder` in its
post-norm form (``norm_first=False``): the embeddings (token + segment +
learned position) go through a LayerNorm, and every block is
``x = LN(x + attention(x)); x = LN(x + MLP(x))``, with no final LayerNorm.
all-MiniLM-L6-v2 is a small BERT (6 layers, 384 wide) and loads here too.

BERT's linear layers are ``nn.Linear``, stored ``(out, in)``: every matrix
is transposed (``T``) into minitx's ``(in, out)``. Query, key and value are
three separate matrices in BERT and one fused ``qkv`` in minitx.

What each tensor is (``D = hidden_size``, ``F = intermediate_size``)::

    embeddings.word_embeddings          (V, D)    token embedding
    embeddings.position_embeddings      (P, D)    learned positions
    embeddings.token_type_embeddings    (2, D)    segment A / segment B
    embeddings.LayerNorm                (D,)x2    normalises their sum
    encoder.layer.{l}.attention.self.query/key/value   (D, D) + (D,)
    encoder.layer.{l}.attention.output.dense           (D, D)  heads -> residual
    encoder.layer.{l}.attention.output.LayerNorm       post-norm after attention
    encoder.layer.{l}.intermediate.dense               (F, D)  MLP up
    encoder.layer.{l}.output.dense                     (D, F)  MLP down
    encoder.layer.{l}.output.LayerNorm                 post-norm after the MLP
    pooler.dense                        (D, D)    tanh(W h[CLS]): the sentence vector classifiers use
    classifier                          (C, D)    BertForSequenceClassification only

``BertModel``'s pooler is not part of ``forward(ids) -> last hidden state``;
its two tensors are carried along unchanged so that saving writes them back.
"""
from __future__ import annotations

from ..models.encoder import EncoderClassifier, EncoderConfig, TransformerEncoder
from .common import activation_from_hf, activation_to_hf, field, refuse
from .folder import PretrainedError
from .mapping import SAME, T, check_leftovers, expand, export_state, format_table, load_state, normalise_names, \
    strip_prefix, used_names

MODEL_TYPE = "bert"
ARCHITECTURES = ("BertModel", "BertForSequenceClassification")

# minitx name (of the encoder)        Hugging Face name                                          how
TABLE = [
    ("tok_emb.weight",                  "embeddings.word_embeddings.weight",                        SAME),
    ("pos.weight",                      "embeddings.position_embeddings.weight",                    SAME),
    ("type_emb.weight",                 "embeddings.token_type_embeddings.weight",                  SAME),
    ("ln_emb.weight",                   "embeddings.LayerNorm.weight",                              SAME),
    ("ln_emb.bias",                     "embeddings.LayerNorm.bias",                                SAME),
    ("blocks.{l}.attn.qkv.weight",      ("encoder.layer.{l}.attention.self.query.weight",
                                         "encoder.layer.{l}.attention.self.key.weight",
                                         "encoder.layer.{l}.attention.self.value.weight"),          T),
    ("blocks.{l}.attn.qkv.bias",        ("encoder.layer.{l}.attention.self.query.bias",
                                         "encoder.layer.{l}.attention.self.key.bias",
                                         "encoder.layer.{l}.attention.self.value.bias"),            SAME),
    ("blocks.{l}.attn.proj.weight",     "encoder.layer.{l}.attention.output.dense.weight",          T),
    ("blocks.{l}.attn.proj.bias",       "encoder.layer.{l}.attention.output.dense.bias",            SAME),
    ("blocks.{l}.norm_attn.weight",     "encoder.layer.{l}.attention.output.LayerNorm.weight",      SAME),
    ("blocks.{l}.norm_attn.bias",       "encoder.layer.{l}.attention.output.LayerNorm.bias",        SAME),
    ("blocks.{l}.ff.fc.weight",         "encoder.layer.{l}.intermediate.dense.weight",              T),
    ("blocks.{l}.ff.fc.bias",           "encoder.layer.{l}.intermediate.dense.bias",                SAME),
    ("blocks.{l}.ff.proj.weight",       "encoder.layer.{l}.output.dense.weight",                    T),
    ("blocks.{l}.ff.proj.bias",         "encoder.layer.{l}.output.dense.bias",                      SAME),
    ("blocks.{l}.norm_ff.weight",       "encoder.layer.{l}.output.LayerNorm.weight",                SAME),
    ("blocks.{l}.norm_ff.bias",         "encoder.layer.{l}.output.LayerNorm.bias",                  SAME),
]
# BertForSequenceClassification: the table above under "encoder." (minitx) / "bert." (HF), plus
CLASSIFIER = [
    ("pooler.weight",                   "pooler.dense.weight",                                      T),
    ("pooler.bias",                     "pooler.dense.bias",                                        SAME),
    ("head.weight",                     "classifier.weight",                                        T),
    ("head.bias",                       "classifier.bias",                                          SAME),
]
POOLER = ("pooler.dense.weight", "pooler.dense.bias")
IGNORE = (r"embeddings\.position_ids", r"cls\..*")  # a buffer; pretraining heads BertModel does not use


def config_from_hf(hf: dict, source: str) -> EncoderConfig:
    refuse(hf, "position_embedding_type", ("absolute",), source)
    refuse(hf, "is_decoder", (False,), source)
    refuse(hf, "add_cross_attention", (False,), source)
    return EncoderConfig(
        vocab_size=field(hf, "vocab_size", source), max_len=field(hf, "max_position_embeddings", source),
        n_layer=field(hf, "num_hidden_layers", source), n_head=field(hf, "num_attention_heads", source),
        d_model=field(hf, "hidden_size", source), d_ff=field(hf, "intermediate_size", source), dropout=0.0,
        norm_first=False, activation=activation_from_hf(hf.get("hidden_act", "gelu"), "hidden_act", source),
        positions="learned", pad_id=field(hf, "pad_token_id", source, 0),
        layer_norm_eps=float(field(hf, "layer_norm_eps", source, 1e-12, kind=float)),
        type_vocab_size=field(hf, "type_vocab_size", source, 2), mask_padding=False)


def build(hf: dict, tensors: dict, architecture: str, source: str, dtype):
    tensors = normalise_names(strip_prefix(tensors, "bert."))
    config = config_from_hf(hf, source)
    rows = expand(TABLE, {"": config.n_layer})
    if architecture == "BertForSequenceClassification":
        if "classifier.weight" not in tensors:
            raise PretrainedError(f"{source}: tensor classifier.weight missing (needed by "
                                  "BertForSequenceClassification)")
        model = EncoderClassifier(config, int(tensors["classifier.weight"].shape[0]), pooling="first", pooler=True,
                                  dtype=dtype)
        rows = [("encoder." + mx, hf_name, how) for mx, hf_name, how in rows] + CLASSIFIER
        passthrough = {}
    else:
        model = TransformerEncoder(config, dtype=dtype)
        passthrough = {n: tensors[n] for n in POOLER if n in tensors}
    state = load_state(rows, tensors, dict(model.named_parameters()), source)
    check_leftovers(tensors, used_names(rows) | set(passthrough), IGNORE, source)
    model.load_state_dict(state)
    model.hf_passthrough = passthrough
    return model


def export(model, hf_base: dict) -> tuple[dict, dict]:
    classifier = isinstance(model, EncoderClassifier)
    encoder = model.encoder if classifier else model
    if not isinstance(encoder, TransformerEncoder):
        raise PretrainedError(f"save_pretrained: got {type(model).__name__}, expected a TransformerEncoder or "
                              "EncoderClassifier for BERT")
    c = encoder.config
    if c.norm_first or c.positions != "learned" or c.norm != "layernorm" or not c.bias or c.type_vocab_size < 1 \
            or c.position_offset or c.head_size not in (None, c.d_model // c.n_head) or c.attn_scale is not None \
            or c.gated or c.embed_scale != 1.0:
        raise PretrainedError("save_pretrained: this encoder is not BERT-shaped (BERT is post-norm, learned "
                              "positions, LayerNorm, biases, segment embeddings)")
    if classifier and (model.pooling != "first" or not model.has_pooler):
        raise PretrainedError("save_pretrained: BertForSequenceClassification needs pooling='first' and pooler=True")
    hf = dict(hf_base)
    hf.update(model_type=MODEL_TYPE, architectures=["BertForSequenceClassification" if classifier else "BertModel"],
              vocab_size=c.vocab_size, max_position_embeddings=c.max_len, num_hidden_layers=c.n_layer,
              num_attention_heads=c.n_head, hidden_size=c.d_model, intermediate_size=c.d_ff or 4 * c.d_model,
              hidden_act=activation_to_hf(c.activation), layer_norm_eps=c.layer_norm_eps,
              type_vocab_size=c.type_vocab_size, pad_token_id=c.pad_id, position_embedding_type="absolute")
    rows = expand(TABLE, {"": c.n_layer})
    if classifier:
        n = model.n_classes
        hf.setdefault("id2label", {str(i): f"LABEL_{i}" for i in range(n)})
        hf.setdefault("label2id", {f"LABEL_{i}": i for i in range(n)})
        rows = [("encoder." + mx, hf_name, how) for mx, hf_name, how in rows]
        tensors = {"bert." + k: v for k, v in export_state(rows, model.state_dict()).items()}
        extra = export_state(CLASSIFIER, model.state_dict())
        tensors.update({("bert." + k if k.startswith("pooler") else k): v for k, v in extra.items()})
        return hf, tensors
    tensors = export_state(rows, model.state_dict())
    tensors.update(getattr(model, "hf_passthrough", {}) or {})
    return hf, tensors



def printable_table():
    """Every row, for ``python -m minitx.pretrained bert``."""
    return TABLE + CLASSIFIER
