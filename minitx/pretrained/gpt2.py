"""GPT-2 (``GPT2LMHeadModel``) <-> :class:`minitx.models.GPT`: the mapping, one page.

GPT-2 *is* minitx's GPT: learned positions, pre-norm blocks, a final
LayerNorm and an LM head tied to the token embedding. Only the names differ.

GPT-2's linear layers are ``Conv1D`` modules (a name left over from the
original TensorFlow code; they are plain matrix products), and they store
their weight as ``(in, out)``: **exactly minitx's layout**, so every GPT-2
matrix is copied as it is, with no transpose. (BERT, BART and T5 use
``nn.Linear``, ``(out, in)``, and need one.) ``c_attn`` already holds the
query, key and value projections side by side, like minitx's ``qkv``.

What each tensor is (``D = n_embd``, ``V = vocab_size``, ``P = n_positions``)::

    wte.weight            (V, D)   token embedding; also the LM head (logits = h @ wte^T)
    wpe.weight            (P, D)   one learned vector per position
    h.{l}.ln_1            (D,)x2   LayerNorm before attention (weight = gamma, bias = beta)
    h.{l}.attn.c_attn     (D, 3D)  query | key | value projections, + bias (3D,)
    h.{l}.attn.c_proj     (D, D)   mixes the heads back into the residual stream, + bias
    h.{l}.ln_2            (D,)x2   LayerNorm before the MLP
    h.{l}.mlp.c_fc        (D, 4D)  MLP up-projection, + bias (4D,)
    h.{l}.mlp.c_proj      (4D, D)  MLP down-projection, + bias
    ln_f                  (D,)x2   final LayerNorm
    lm_head.weight        (V, D)   only in untied checkpoints

``GPT2LMHeadModel`` saves these under ``transformer.``; older checkpoints
also carry ``attn.bias`` / ``attn.masked_bias`` (the causal mask as a
buffer, not a weight), which are ignored.
"""
from __future__ import annotations

from ..models.gpt import GPT, GPTConfig
from .common import activation_from_hf, activation_to_hf, build_gpt, field, refuse, same_tensor
from .folder import PretrainedError
from .mapping import SAME, expand, export_state

MODEL_TYPE = "gpt2"
ARCHITECTURES = ("GPT2LMHeadModel", "GPT2Model")

# minitx name                        Hugging Face name                  how
TABLE = [
    ("wte.weight",                     "wte.weight",                      SAME),
    ("wpe.weight",                     "wpe.weight",                      SAME),
    ("blocks.{l}.norm_attn.weight",    "h.{l}.ln_1.weight",               SAME),
    ("blocks.{l}.norm_attn.bias",      "h.{l}.ln_1.bias",                 SAME),
    ("blocks.{l}.attn.qkv.weight",     "h.{l}.attn.c_attn.weight",        SAME),  # Conv1D: already (in, out)
    ("blocks.{l}.attn.qkv.bias",       "h.{l}.attn.c_attn.bias",          SAME),
    ("blocks.{l}.attn.proj.weight",    "h.{l}.attn.c_proj.weight",        SAME),
    ("blocks.{l}.attn.proj.bias",      "h.{l}.attn.c_proj.bias",          SAME),
    ("blocks.{l}.norm_ff.weight",      "h.{l}.ln_2.weight",               SAME),
    ("blocks.{l}.norm_ff.bias",        "h.{l}.ln_2.bias",                 SAME),
    ("blocks.{l}.ff.fc.weight",        "h.{l}.mlp.c_fc.weight",           SAME),
    ("blocks.{l}.ff.fc.bias",          "h.{l}.mlp.c_fc.bias",             SAME),
    ("blocks.{l}.ff.proj.weight",      "h.{l}.mlp.c_proj.weight",         SAME),
    ("blocks.{l}.ff.proj.bias",        "h.{l}.mlp.c_proj.bias",           SAME),
    ("ln_f.weight",                    "ln_f.weight",                     SAME),
    ("ln_f.bias",                      "ln_f.bias",                       SAME),
]
UNTIED_HEAD = [("lm_head", "lm_head.weight", SAME)]
IGNORE = (r"h\.\d+\.attn\.bias", r"h\.\d+\.attn\.masked_bias")  # causal-mask buffers, not weights


def config_from_hf(hf: dict, source: str, tensors: dict) -> GPTConfig:
    refuse(hf, "add_cross_attention", (False,), source)
    refuse(hf, "scale_attn_by_inverse_layer_idx", (False,), source)
    refuse(hf, "scale_attn_weights", (True,), source)
    n_embd = field(hf, "n_embd", source)
    tied = "lm_head.weight" not in tensors or same_tensor(tensors, "lm_head.weight", "wte.weight")
    return GPTConfig(vocab_size=field(hf, "vocab_size", source), block_size=field(hf, "n_positions", source),
                     n_layer=field(hf, "n_layer", source), n_head=field(hf, "n_head", source), n_embd=n_embd,
                     d_ff=hf.get("n_inner") or 4 * n_embd,
                     activation=activation_from_hf(hf.get("activation_function", "gelu_new"), "activation_function",
                                                   source),
                     layer_norm_eps=float(field(hf, "layer_norm_epsilon", source, 1e-5, kind=float)),
                     tie_embeddings=tied)


def rows(config: GPTConfig):
    table = TABLE + ([] if config.tie_embeddings else UNTIED_HEAD)
    return expand(table, {"": config.n_layer})


def build(hf: dict, tensors: dict, architecture: str, source: str, dtype):
    return build_gpt(hf, tensors, source, dtype, prefix="transformer.", config_from_hf=config_from_hf, rows=rows,
                     ignore=IGNORE)


def export(model: GPT, hf_base: dict) -> tuple[dict, dict]:
    c = model.config
    if c.bias is False or not c.has_ffn_bias:
        raise PretrainedError("save_pretrained: a GPT with bias=False has no GPT-2 equivalent (GPT-2 has biases)")
    got = (c.norm, c.positions, c.ffn, c.n_kv_head in (None, c.n_head), c.embed_norm)
    if got != ("layernorm", "learned", "mlp", True, False):
        raise PretrainedError("save_pretrained: a GPT-2 folder needs norm='layernorm', positions='learned', ffn='mlp', "
                              f"every head its own keys and no embed_norm; got norm={c.norm!r}, "
                              f"positions={c.positions!r}, ffn={c.ffn!r}, n_kv_head={c.n_kv_head!r}, "
                              f"embed_norm={c.embed_norm!r}")
    hf = dict(hf_base)
    hf.update(model_type=MODEL_TYPE, architectures=["GPT2LMHeadModel"], vocab_size=c.vocab_size,
              n_positions=c.block_size, n_ctx=c.block_size, n_layer=c.n_layer, n_head=c.n_head, n_embd=c.n_embd,
              n_inner=c.d_ff or 4 * c.n_embd, activation_function=activation_to_hf(c.activation),
              layer_norm_epsilon=c.layer_norm_eps, tie_word_embeddings=c.tie_embeddings)
    hf.setdefault("bos_token_id", c.vocab_size - 1)
    hf.setdefault("eos_token_id", c.vocab_size - 1)
    tensors = export_state(rows(c), model.state_dict())
    return hf, {"transformer." + k if not k.startswith("lm_head") else k: v for k, v in tensors.items()}



def printable_table():
    """Every row, for ``python -m minitx.pretrained gpt2``."""
    return TABLE + UNTIED_HEAD
