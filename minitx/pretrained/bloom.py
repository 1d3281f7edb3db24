"""BLOOM (``BloomForCausalLM``) <-> :class:`minitx.models.GPT` configured as a BLOOM: the mapping, one page.

A BLOOM is minitx's GPT-2 decoder with two choices changed in its config:
``positions="alibi"`` (no position table; every head subtracts
``slope * distance`` from its scores) and ``embed_norm=True`` (a LayerNorm
right after the token embedding, which BLOOM added for training stability).
Everything else is GPT-2's: pre-norm LayerNorm blocks with biases, the
tanh GELU MLP of width ``4 D``, a final LayerNorm and an LM head tied to the
embedding. The details that decide exactness:

* **Fused, per-head query/key/value.** ``query_key_value`` is one
  ``nn.Linear`` of ``3D`` outputs ordered head by head,
  ``(n_head, 3, head_dim)``; minitx's ``qkv`` columns are
  ``(3, n_head, head_dim)``. The transform :class:`~minitx.pretrained.mapping.PerHeadQKV`
  reorders (and transposes ``(out, in)`` to ``(in, out)``); saving undoes it.
* **ALiBi.** transformers adds ``slope_h * key_position`` to
  ``q k^T / sqrt(head_dim)`` (``alibi.baddbmm(q, k^T, beta=1, alpha=1/sqrt(hd))``),
  with the slopes of :func:`~minitx.nn.positions.alibi_slopes`. minitx adds
  ``-slope_h * (query_position - key_position)``: the same row shifted by a
  constant, which softmax ignores.
* **GELU.** BLOOM's ``0.79788456`` is ``sqrt(2/pi)`` rounded to 8 digits:
  minitx's tanh GELU (``gelu``), different from it below float32 rounding.

What each tensor is (``D = hidden_size``, ``V = vocab_size``)::

    word_embeddings.weight               (V, D)   token embedding = LM head (tied)
    word_embeddings_layernorm            (D,)x2   LayerNorm on the embeddings
    h.{l}.input_layernorm                (D,)x2   LayerNorm before attention
    h.{l}.self_attention.query_key_value (3D, D)  per-head q, k, v (+ bias (3D,))
    h.{l}.self_attention.dense           (D, D)   heads back into the residual stream (+ bias)
    h.{l}.post_attention_layernorm       (D,)x2   LayerNorm before the MLP
    h.{l}.mlp.dense_h_to_4h              (4D, D)  up-projection (+ bias)
    h.{l}.mlp.dense_4h_to_h              (D, 4D)  down-projection (+ bias)
    ln_f                                 (D,)x2   final LayerNorm

``BloomForCausalLM`` saves the body under ``transformer.``. BLOOM's config
has no context length (ALiBi needs none); minitx reads ``seq_length`` when a
folder has one (minitx writes it) and uses 2048, BLOOM's training context,
otherwise: it sizes the KV cache and the generation window, nothing else.
"""
from __future__ import annotations

from ..models.gpt import GPT, GPTConfig
from .common import build_gpt, field, refuse, same_tensor
from .folder import PretrainedError
from .mapping import SAME, PerHeadQKV, T, expand, export_state

MODEL_TYPE = "bloom"
ARCHITECTURES = ("BloomForCausalLM",)
PER_HEAD = PerHeadQKV.DESCRIPTION  # a placeholder: rows() puts a PerHeadQKV(n_head) here
DEFAULT_CONTEXT = 2048

# minitx name                        Hugging Face name                                  how
TABLE = [
    ("wte.weight",                     "word_embeddings.weight",                            SAME),
    ("ln_emb.weight",                  "word_embeddings_layernorm.weight",                  SAME),
    ("ln_emb.bias",                    "word_embeddings_layernorm.bias",                    SAME),
    ("blocks.{l}.norm_attn.weight",    "h.{l}.input_layernorm.weight",                      SAME),
    ("blocks.{l}.norm_attn.bias",      "h.{l}.input_layernorm.bias",                        SAME),
    ("blocks.{l}.attn.qkv.weight",     "h.{l}.self_attention.query_key_value.weight",       PER_HEAD),
    ("blocks.{l}.attn.qkv.bias",       "h.{l}.self_attention.query_key_value.bias",         PER_HEAD),
    ("blocks.{l}.attn.proj.weight",    "h.{l}.self_attention.dense.weight",                 T),
    ("blocks.{l}.attn.proj.bias",      "h.{l}.self_attention.dense.bias",                   SAME),
    ("blocks.{l}.norm_ff.weight",      "h.{l}.post_attention_layernorm.weight",             SAME),
    ("blocks.{l}.norm_ff.bias",        "h.{l}.post_attention_layernorm.bias",               SAME),
    ("blocks.{l}.ff.fc.weight",        "h.{l}.mlp.dense_h_to_4h.weight",                    T),
    ("blocks.{l}.ff.fc.bias",          "h.{l}.mlp.dense_h_to_4h.bias",                      SAME),
    ("blocks.{l}.ff.proj.weight",      "h.{l}.mlp.dense_4h_to_h.weight",                    T),
    ("blocks.{l}.ff.proj.bias",        "h.{l}.mlp.dense_4h_to_h.bias",                      SAME),
    ("ln_f.weight",                    "ln_f.weight",                                       SAME),
    ("ln_f.bias",                      "ln_f.bias",                                         SAME),
]


def config_from_hf(hf: dict, source: str, tensors: dict) -> GPTConfig:
    refuse(hf, "apply_residual_connection_post_layernorm", (False,), source)
    if "lm_head.weight" in tensors and not same_tensor(tensors, "lm_head.weight", "word_embeddings.weight"):
        raise PretrainedError(f"{source}: lm_head.weight differs from word_embeddings.weight; BLOOM ties them "
                              "(expected a tied head)")
    D = field(hf, "hidden_size", source, hf.get("n_embed"))
    try:
        return GPTConfig(vocab_size=field(hf, "vocab_size", source),
                         block_size=field(hf, "seq_length", source, DEFAULT_CONTEXT),
                         n_layer=field(hf, "n_layer", source, hf.get("num_hidden_layers")),
                         n_head=field(hf, "n_head", source, hf.get("num_attention_heads")), n_embd=D, d_ff=4 * D,
                         activation="gelu", layer_norm_eps=float(field(hf, "layer_norm_epsilon", source, 1e-5,
                                                                      kind=float)),
                         positions="alibi", embed_norm=True)
    except ValueError as exc:  # e.g. hidden_size not divisible by n_head
        raise PretrainedError(f"{source}: {exc}") from None


def rows(config: GPTConfig):
    how = PerHeadQKV(config.n_head)
    return [(mx, hf, how if h == PER_HEAD else h) for mx, hf, h in expand(TABLE, {"": config.n_layer})]


def build(hf: dict, tensors: dict, architecture: str, source: str, dtype):
    return build_gpt(hf, tensors, source, dtype, prefix="transformer.", config_from_hf=config_from_hf, rows=rows,
                     ignore=())


def export(model: GPT, hf_base: dict) -> tuple[dict, dict]:
    c = model.config
    want = dict(norm="layernorm", positions="alibi", ffn="mlp", embed_norm=True, bias=True, tie_embeddings=True,
                activation="gelu", n_kv_head=c.n_head if c.n_kv_head is not None else None)
    got = {k: getattr(c, k) for k in want}
    if not c.has_ffn_bias or c.hidden_width != 4 * c.n_embd or got != want:
        raise PretrainedError(f"save_pretrained: a BLOOM folder needs {want} and d_ff = 4 n_embd; got {got}, "
                              f"d_ff={c.hidden_width}")
    hf = dict(hf_base)
    hf.update(model_type=MODEL_TYPE, architectures=["BloomForCausalLM"], vocab_size=c.vocab_size,
              hidden_size=c.n_embd, n_layer=c.n_layer, n_head=c.n_head, layer_norm_epsilon=c.layer_norm_eps,
              apply_residual_connection_post_layernorm=False, tie_word_embeddings=True, seq_length=c.block_size)
    tensors = export_state(rows(c), model.state_dict())
    return hf, {"transformer." + k: v for k, v in tensors.items()}


def printable_table():
    """Every row, for ``python -m minitx.pretrained bloom``."""
    return TABLE
