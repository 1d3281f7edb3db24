"""Llama (``LlamaForCausalLM``) <-> :class:`minitx.models.GPT` configured as a LLaMA: the mapping, one page.

A Llama is minitx's GPT with four choices changed in its config
(``norm="rmsnorm"``, ``positions="rope"``, ``ffn="swiglu"``, ``n_kv_head``)
and no biases; see ``docs/decoders.md`` for what each change is. The
details that decide exactness:

* **Rotary layout.** Hugging Face rotates channel ``i`` with channel
  ``i + head_dim / 2`` ("rotate half"), which is minitx's
  :func:`~minitx.nn.positions.rope_forward` layout, so ``q_proj`` and
  ``k_proj`` are copied without permuting their rows. (Meta's original
  checkpoints pair neighbouring channels; the conversion script that made
  the Hugging Face folders permuted the rows once, so that this layout is
  what every folder holds.)
* **Linear layout.** ``nn.Linear`` stores ``(out, in)``; minitx computes
  ``x @ W`` with ``(in, out)``: every matrix is transposed (``T``).
* **Grouped-query attention.** ``k_proj`` and ``v_proj`` have
  ``num_key_value_heads * head_dim`` rows. The three become the column
  blocks ``[q | k | v]`` of minitx's ``qkv`` (narrower k and v blocks), and
  saving splits them at those widths.
* **SwiGLU names.** Llama's ``gate_proj`` is the factor that goes through
  SiLU (minitx's ``ff.fc``), ``up_proj`` the linear one (``ff.fc_gate``),
  ``down_proj`` the output (``ff.proj``).

What each tensor is (``D = hidden_size``, ``F = intermediate_size``,
``H, Hkv`` query and key/value heads, ``hs = D / H``)::

    embed_tokens.weight              (V, D)      token embedding
    layers.{l}.input_layernorm       (D,)        RMSNorm gain before attention
    layers.{l}.self_attn.q_proj      (H hs, D)   queries (+ bias with attention_bias)
    layers.{l}.self_attn.k_proj      (Hkv hs, D) keys, rotated by position
    layers.{l}.self_attn.v_proj      (Hkv hs, D) values
    layers.{l}.self_attn.o_proj      (D, H hs)   heads back into the residual stream
    layers.{l}.post_attention_layernorm (D,)     RMSNorm gain before the MLP
    layers.{l}.mlp.gate_proj         (F, D)      SwiGLU: silu(x W_gate) ...
    layers.{l}.mlp.up_proj           (F, D)      ... * (x W_up) ...
    layers.{l}.mlp.down_proj         (D, F)      ... then W_down (+ biases with mlp_bias)
    norm.weight                      (D,)        final RMSNorm
    lm_head.weight                   (V, D)      the LM head (absent or equal to embed_tokens when tied)

``LlamaForCausalLM`` saves the body under ``model.``.
"""
from __future__ import annotations

from ..models.gpt import GPT, GPTConfig
from .common import activation_from_hf, build_gpt, field, same_tensor
from .folder import PretrainedError
from .mapping import SAME, T, expand, export_state

MODEL_TYPE = "llama"
ARCHITECTURES = ("LlamaForCausalLM",)

# minitx name                        Hugging Face name(s)                                          how
TABLE = [
    ("wte.weight",                     "embed_tokens.weight",                                          SAME),
    ("blocks.{l}.norm_attn.weight",    "layers.{l}.input_layernorm.weight",                            SAME),
    ("blocks.{l}.attn.qkv.weight",     ("layers.{l}.self_attn.q_proj.weight", "layers.{l}.self_attn.k_proj.weight",
                                        "layers.{l}.self_attn.v_proj.weight"),                         T),
    ("blocks.{l}.attn.proj.weight",    "layers.{l}.self_attn.o_proj.weight",                           T),
    ("blocks.{l}.norm_ff.weight",      "layers.{l}.post_attention_layernorm.weight",                   SAME),
    ("blocks.{l}.ff.fc.weight",        "layers.{l}.mlp.gate_proj.weight",                              T),  # through SiLU
    ("blocks.{l}.ff.fc_gate.weight",   "layers.{l}.mlp.up_proj.weight",                                T),  # linear factor
    ("blocks.{l}.ff.proj.weight",      "layers.{l}.mlp.down_proj.weight",                              T),
    ("ln_f.weight",                    "norm.weight",                                                  SAME),
]
ATTENTION_BIAS = [  # attention_bias=True
    ("blocks.{l}.attn.qkv.bias",       ("layers.{l}.self_attn.q_proj.bias", "layers.{l}.self_attn.k_proj.bias",
                                        "layers.{l}.self_attn.v_proj.bias"),                           SAME),
    ("blocks.{l}.attn.proj.bias",      "layers.{l}.self_attn.o_proj.bias",                             SAME),
]
MLP_BIAS = [  # mlp_bias=True
    ("blocks.{l}.ff.fc.bias",          "layers.{l}.mlp.gate_proj.bias",                                SAME),
    ("blocks.{l}.ff.fc_gate.bias",     "layers.{l}.mlp.up_proj.bias",                                  SAME),
    ("blocks.{l}.ff.proj.bias",        "layers.{l}.mlp.down_proj.bias",                                SAME),
]
UNTIED_HEAD = [("lm_head", "lm_head.weight", SAME)]  # (V, D) on both sides: logits = h @ W^T
IGNORE = (r"layers\.\d+\.self_attn\.rotary_emb\.inv_freq", r"rotary_emb\.inv_freq")  # old folders: a buffer


def rope_theta(hf: dict, source: str) -> float:
    """The rotary base: ``rope_parameters.rope_theta`` (transformers 5) or ``rope_theta`` (older folders).

    Scaled variants (``rope_type`` linear, dynamic, yarn, llama3...) change
    the frequencies; minitx implements the plain rotation and refuses them.
    """
    params = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
    if not isinstance(params, dict):
        raise PretrainedError(f"{source}: rope_parameters={params!r}, expected an object")
    kind = params.get("rope_type", params.get("type", "default"))
    if kind != "default":
        raise PretrainedError(f"{source}: rope_type={kind!r} is not supported by minitx (expected 'default', "
                              "the unscaled rotation)")
    theta = params.get("rope_theta", hf.get("rope_theta", 10000.0))
    if not isinstance(theta, (int, float)) or theta <= 1:
        raise PretrainedError(f"{source}: rope_theta={theta!r}, expected a number > 1")
    return float(theta)


def config_from_hf(hf: dict, source: str, tensors: dict) -> GPTConfig:
    D, H = field(hf, "hidden_size", source), field(hf, "num_attention_heads", source)
    if not H or D % H:
        raise PretrainedError(f"{source}: hidden_size={D} with num_attention_heads={H}, expected hidden_size "
                              "divisible by the head count")
    head_dim = hf.get("head_dim") or D // H
    if head_dim != D // H:
        raise PretrainedError(f"{source}: head_dim={head_dim} is not supported by minitx (expected "
                              f"hidden_size / num_attention_heads = {D // H})")
    if activation_from_hf(hf.get("hidden_act", "silu"), "hidden_act", source) != "silu":
        raise PretrainedError(f"{source}: hidden_act={hf.get('hidden_act')!r} is not supported for Llama by minitx "
                              "(expected 'silu': the SwiGLU feed-forward)")
    n_kv = hf.get("num_key_value_heads") or H
    tied = (hf.get("tie_word_embeddings", False) or "lm_head.weight" not in tensors
            or same_tensor(tensors, "lm_head.weight", "embed_tokens.weight"))
    try:
        return GPTConfig(vocab_size=field(hf, "vocab_size", source),
                         block_size=field(hf, "max_position_embeddings", source, 2048),
                         n_layer=field(hf, "num_hidden_layers", source), n_head=H, n_embd=D,
                         d_ff=field(hf, "intermediate_size", source), bias=bool(hf.get("attention_bias", False)),
                         ffn_bias=bool(hf.get("mlp_bias", False)),
                         layer_norm_eps=float(field(hf, "rms_norm_eps", source, 1e-6, kind=float)),
                         tie_embeddings=tied, norm="rmsnorm", positions="rope", rope_theta=rope_theta(hf, source),
                         ffn="swiglu", n_kv_head=field(hf, "num_key_value_heads", source, n_kv))
    except ValueError as exc:  # e.g. num_key_value_heads not dividing num_attention_heads
        raise PretrainedError(f"{source}: {exc}") from None


def rows(config: GPTConfig):
    table = list(TABLE)
    if config.bias:
        table += ATTENTION_BIAS
    if config.has_ffn_bias:
        table += MLP_BIAS
    if not config.tie_embeddings:
        table += UNTIED_HEAD
    return expand(table, {"": config.n_layer})


def build(hf: dict, tensors: dict, architecture: str, source: str, dtype):
    return build_gpt(hf, tensors, source, dtype, prefix="model.", config_from_hf=config_from_hf, rows=rows,
                     ignore=IGNORE)


def export(model: GPT, hf_base: dict) -> tuple[dict, dict]:
    c = model.config
    if (c.norm, c.positions, c.ffn, c.embed_norm) != ("rmsnorm", "rope", "swiglu", False):
        raise PretrainedError("save_pretrained: a Llama folder needs norm='rmsnorm', positions='rope', "
                              f"ffn='swiglu', embed_norm=False; got {c.norm!r}, {c.positions!r}, {c.ffn!r}, "
                              f"{c.embed_norm!r}")
    D, H = c.n_embd, c.n_head
    n_kv = c.n_kv_head or H
    hf = dict(hf_base)
    hf.pop("rope_theta", None)
    hf.pop("rope_scaling", None)
    hf.update(model_type=MODEL_TYPE, architectures=["LlamaForCausalLM"], vocab_size=c.vocab_size,
              max_position_embeddings=c.block_size, num_hidden_layers=c.n_layer, num_attention_heads=H,
              num_key_value_heads=n_kv, hidden_size=D, head_dim=D // H, intermediate_size=c.hidden_width,
              hidden_act="silu", rms_norm_eps=c.layer_norm_eps, attention_bias=bool(c.bias),
              mlp_bias=c.has_ffn_bias, tie_word_embeddings=c.tie_embeddings,
              rope_parameters={"rope_type": "default", "rope_theta": c.rope_theta})
    kv = n_kv * (D // H)
    widths = {f"blocks.{l}.attn.qkv.{p}": [D, kv, kv] for l in range(c.n_layer) for p in ("weight", "bias")}
    tensors = export_state(rows(c), model.state_dict(), widths)
    return hf, {"model." + k if not k.startswith("lm_head") else k: v for k, v in tensors.items()}


def printable_table():
    """Every row, for ``python -m minitx.pretrained llama``."""
    return TABLE + ATTENTION_BIAS + MLP_BIAS + UNTIED_HEAD
