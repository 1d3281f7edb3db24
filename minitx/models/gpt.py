"""GPT: a decoder-only transformer that predicts the next token.

The whole model, from token ids to next-token logits::

    idx     (B, T)      integer token ids
    x = wte[idx] + wpe[0:T]             token embedding + learned position   (B, T, D)
    x = dropout(x)
    x = block_l(x)  for l = 1..n_layer  pre-norm causal DecoderBlocks        (B, T, D)
    h = ln_f(x)                         a final LayerNorm (pre-norm needs it) (B, T, D)
    logits = h @ wte^T                  the LM head, *tied* to wte            (B, T, V)

Three choices follow GPT-2 (and nanoGPT, minGPT):

* **Weight tying.** The output head reuses the token-embedding matrix: the
  vector that *reads* token v in is the vector its logit is *scored* against
  on the way out. It saves ``V * D`` parameters (a third of a small model) and
  trains better on small data. The one matrix then receives two gradients,
  which is why :class:`~minitx.nn.Parameter` gradients are added, not set.
* **Scaled init of residual projections.** Every block adds two branches
  (attention and MLP) into the residual stream, so after ``n_layer`` blocks
  the stream's variance has grown by about ``2 * n_layer`` contributions.
  Initialising the two projections that write into the stream
  (``attn.proj`` and ``ff.proj``) with std ``0.02 / sqrt(2 * n_layer)``
  keeps the sum's variance independent of depth. Everything else is
  N(0, 0.02^2), biases 0, LayerNorms (1, 0).
* **Pre-norm blocks + final LayerNorm.** See :mod:`minitx.nn.blocks`.

The same decoder is a LLaMA or a BLOOM when its config says so (see
``docs/decoders.md``): ``norm="rmsnorm"`` (every LayerNorm above becomes an
RMSNorm), ``positions="rope"`` (no ``wpe``: queries and keys are rotated
inside attention) or ``"alibi"`` (no ``wpe``: a distance penalty on the
scores, computed once per forward and shared by every block),
``ffn="swiglu"``, ``n_kv_head`` (grouped-query attention) and
``embed_norm`` (a norm ``ln_emb`` after ``wte``). The presets ``llama-*``
and ``bloom-*`` set them.

Parameter names (what checkpoints and weight importers key on)::

    wte.weight                      (V, D)  token embedding = LM head
    wpe.weight                      (block_size, D)
    blocks.{l}.norm_attn.weight/bias, blocks.{l}.attn.qkv.weight/bias (D, 3D),
    blocks.{l}.attn.proj.weight/bias, blocks.{l}.norm_ff.weight/bias,
    blocks.{l}.ff.fc.weight/bias (D, 4D), blocks.{l}.ff.proj.weight/bias (4D, D)
    ln_f.weight/bias                (D,)
    lm_head                         (V, D)  only with tie_embeddings=False
    ln_emb.weight/bias              (D,)    only with embed_norm=True (BLOOM)

With ``positions`` "rope" or "alibi" there is no ``wpe``; with ``n_kv_head``
``qkv`` is ``(D, D + 2 n_kv_head hs)``; with ``ffn="swiglu"`` the MLP has
``ff.fc`` (through SiLU), ``ff.fc_gate`` (the linear factor) and ``ff.proj``;
RMSNorms have a weight and no bias; ``bias=False`` drops every Linear bias.

Example::

    >>> import numpy as np
    >>> from minitx.models import GPT, GPTConfig
    >>> model = GPT(GPTConfig.from_preset("gpt-test", vocab_size=11), seed=0)
    >>> idx = np.array([[1, 2, 3]])
    >>> model.forward(idx).shape
    (1, 3, 11)
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .. import ops
from ..backend import DEFAULT_DTYPE, array_module, kernels_enabled, to_device
from ..nn import (
    DecoderBlock,
    Dropout,
    Embedding,
    KVCache,
    LearnedPositionalEmbedding,
    Module,
    ModuleList,
    Parameter,
)
from ..nn.checks import check_positive_int
from ..nn.norm import make_norm
from ..nn.positions import alibi_bias
from .config import PresetConfig
from .lm_loss import NextTokenLoss

# --------------------------------------------------------------------------
# Configuration and presets
# --------------------------------------------------------------------------
#: Named sizes. ``vocab_size`` is left to the tokenizer except for GPT-2's own.
#: The small ones follow minGPT's names; "gpt-test" exists for unit tests.
PRESETS: dict[str, dict] = {
    "gpt-test": dict(n_layer=2, n_head=2, n_embd=16, block_size=16),  # unit tests: milliseconds
    "gpt-nano": dict(n_layer=3, n_head=3, n_embd=48, block_size=64),  # minGPT's nano
    "gpt-micro": dict(n_layer=4, n_head=4, n_embd=128, block_size=64),  # nanoGPT's CPU recipe
    "gpt-mini": dict(n_layer=6, n_head=6, n_embd=192, block_size=128),  # minGPT's mini
    "gpt2": dict(n_layer=12, n_head=12, n_embd=768, block_size=1024, vocab_size=50257),  # 124M
    "gpt2-medium": dict(n_layer=24, n_head=16, n_embd=1024, block_size=1024, vocab_size=50257),  # 350M
    "gpt2-large": dict(n_layer=36, n_head=20, n_embd=1280, block_size=1024, vocab_size=50257),  # 774M
    "gpt2-xl": dict(n_layer=48, n_head=25, n_embd=1600, block_size=1024, vocab_size=50257),  # 1558M
}
#: The LLaMA recipe: RMSNorm, rotary positions, SwiGLU, no biases, untied head (tied in the small ones, whose
#: embeddings would otherwise be most of the model), grouped-query attention in the later generations.
LLAMA = dict(norm="rmsnorm", positions="rope", ffn="swiglu", bias=False)
#: The BLOOM recipe: ALiBi instead of positions, a LayerNorm on the embeddings, GPT-2's tanh GELU MLP.
BLOOM = dict(positions="alibi", embed_norm=True)
PRESETS.update({
    "llama-test": dict(LLAMA, n_layer=2, n_head=4, n_kv_head=2, n_embd=16, d_ff=32, block_size=16),  # milliseconds
    # gpt-micro's size: with GQA 4/2 the attention holds 3 D^2 and SwiGLU 3 D d_ff = 9 D^2, GPT-2's 12 D^2 a layer
    "llama-micro": dict(LLAMA, n_layer=4, n_head=4, n_kv_head=2, n_embd=128, d_ff=384, block_size=64),
    "llama-mini": dict(LLAMA, n_layer=6, n_head=6, n_kv_head=2, n_embd=192, d_ff=576, block_size=128),
    "tinyllama-1.1b": dict(LLAMA, n_layer=22, n_head=32, n_kv_head=4, n_embd=2048, d_ff=5632, block_size=2048,
                           vocab_size=32000, tie_embeddings=False),
    "llama2-7b": dict(LLAMA, n_layer=32, n_head=32, n_embd=4096, d_ff=11008, block_size=4096, vocab_size=32000,
                      tie_embeddings=False),
    "llama3-8b": dict(LLAMA, n_layer=32, n_head=32, n_kv_head=8, n_embd=4096, d_ff=14336, block_size=8192,
                      vocab_size=128256, rope_theta=500000.0, tie_embeddings=False),
    "bloom-test": dict(BLOOM, n_layer=2, n_head=3, n_embd=12, block_size=16),  # 3 heads: the non-power-of-two slopes
    "bloom-micro": dict(BLOOM, n_layer=4, n_head=4, n_embd=128, block_size=64),  # gpt-micro without its wpe
    "bloom-mini": dict(BLOOM, n_layer=6, n_head=6, n_embd=192, block_size=128),
    "bloom-560m": dict(BLOOM, n_layer=24, n_head=16, n_embd=1024, block_size=2048, vocab_size=250880),
    "bloom-1b1": dict(BLOOM, n_layer=24, n_head=16, n_embd=1536, block_size=2048, vocab_size=250880),
})
NORMS = ("layernorm", "rmsnorm")
POSITIONS = ("learned", "rope", "alibi")
FFNS = ("mlp", "swiglu")


@dataclass
class GPTConfig(PresetConfig):
    """Everything that fixes the model's shape (and nothing about training).

    ``d_ff`` (the MLP width) is ``4 * n_embd`` as in GPT-2 unless given. ``bias=False``
    drops the biases of every Linear layer (LayerNorms keep theirs);
    ``ffn_bias`` overrides it for the feed-forward alone (None: as ``bias``).
    ``activation`` names the MLP's nonlinearity (GPT-2: the tanh GELU),
    ``layer_norm_eps`` the norms' epsilon, and ``tie_embeddings=False``
    gives the LM head its own ``(V, D)`` matrix ``lm_head`` (a checkpoint
    whose ``lm_head.weight`` differs from its token embedding).

    The choices that make the same decoder a LLaMA or a BLOOM (defaults: GPT-2):

    * ``norm``: ``"layernorm"`` or ``"rmsnorm"`` (scale only, no bias: LLaMA);
    * ``positions``: ``"learned"`` (a ``wpe`` table of ``block_size`` rows),
      ``"rope"`` (queries and keys rotated, with ``rope_theta``: LLaMA) or
      ``"alibi"`` (a distance penalty on the scores: BLOOM). Without a table,
      ``block_size`` is the training context, not a limit on ``forward``;
    * ``ffn``: ``"mlp"`` or ``"swiglu"`` (LLaMA; ``d_ff`` is then the width
      of each of its two input matrices, default ``8/3 n_embd`` rounded up to
      a multiple of 8, which keeps the MLP's ``8 n_embd^2`` parameters);
    * ``n_kv_head``: key/value heads for grouped-query attention (None:
      ``n_head``; 1: multi-query); it must divide ``n_head``;
    * ``embed_norm``: a norm right after the token embedding (BLOOM).
    """

    vocab_size: int
    block_size: int = 64  # the context window: the most tokens the model sees at once
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128  # d_model
    dropout: float = 0.0
    bias: bool = True
    d_ff: int | None = None
    activation: str = "gelu"
    layer_norm_eps: float = 1e-5
    tie_embeddings: bool = True
    norm: str = "layernorm"
    positions: str = "learned"
    rope_theta: float = 10000.0
    ffn: str = "mlp"
    n_kv_head: int | None = None
    embed_norm: bool = False
    ffn_bias: bool | None = None

    PRESETS = PRESETS  # for from_preset (a class attribute, not a field)

    def __post_init__(self):
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            check_positive_int(f"GPTConfig {name}", getattr(self, name))
        if self.n_embd % self.n_head:
            raise ValueError(f"GPTConfig n_embd={self.n_embd} with n_head={self.n_head}: "
                             "expected n_embd divisible by n_head")
        if not isinstance(self.dropout, (int, float)) or not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"GPTConfig dropout: got {self.dropout!r}, expected a number in [0, 1)")
        for name, allowed in (("norm", NORMS), ("positions", POSITIONS), ("ffn", FFNS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"GPTConfig {name}: got {getattr(self, name)!r}, expected one of {allowed}")
        if self.n_kv_head is not None:
            check_positive_int("GPTConfig n_kv_head", self.n_kv_head)
            if self.n_head % self.n_kv_head:
                raise ValueError(f"GPTConfig n_kv_head={self.n_kv_head} with n_head={self.n_head}: expected "
                                 "n_kv_head dividing n_head (each key/value head serves a whole group of queries)")
        if self.positions == "rope":
            if (self.n_embd // self.n_head) % 2:
                raise ValueError(f"GPTConfig positions='rope' with head size {self.n_embd // self.n_head}: "
                                 "expected an even head size (rotary pairs channels)")
            if not isinstance(self.rope_theta, (int, float)) or not self.rope_theta > 1:
                raise ValueError(f"GPTConfig rope_theta: got {self.rope_theta!r}, expected a number > 1")

    @property
    def has_ffn_bias(self) -> bool:
        """Whether the feed-forward's Linear layers have biases (``ffn_bias``, else ``bias``)."""
        return bool(self.bias if self.ffn_bias is None else self.ffn_bias)

    @property
    def hidden_width(self) -> int:
        """The feed-forward's hidden width: ``d_ff``, or its default for the chosen ``ffn``."""
        if self.d_ff:
            return self.d_ff
        if self.ffn == "swiglu":
            width = -(-8 * self.n_embd // 3)  # ceil(8 D / 3): two input matrices hold what GPT-2's one 4D did
            return -(-width // 8) * 8  # rounded up to a multiple of 8, as LLaMA rounds (to 256)
        return 4 * self.n_embd


# --------------------------------------------------------------------------
# The tied LM head: logits = h @ W^T
# --------------------------------------------------------------------------
def lm_head_forward(h, W):
    """``h [B, T, D], W [V, D] -> logits [B, T, V]``: a score per vocabulary entry."""
    if kernels_enabled(h) and ops.matmul_supported(h, W):  # "kernels" backend: minitx's CUDA matmul
        return ops.lm_head_forward(h, W)
    return h @ W.T, (h, W)  # (B, T, D) @ (D, V) -> (B, T, V)


def lm_head_backward(dlogits, cache):
    """Return ``(dh, dW)`` for ``logits = h W^T``.

    Element-wise, logits[n, v] = sum_d h[n, d] W[v, d], so
        dL/dh[n, d] = sum_v dlogits[n, v] W[v, d]    ->  dh = dlogits @ W
        dL/dW[v, d] = sum_n dlogits[n, v] h[n, d]    ->  dW = dlogits^T @ h
    (n runs over all B*T positions). ``dW`` is *added* to the embedding's
    gradient, next to the scatter-add from the input lookup.
    """
    if kernels_enabled(dlogits) and ops.matmul_supported(dlogits, cache[1]):  # "kernels" backend
        return ops.lm_head_backward(dlogits, cache)
    h, W = cache
    V, D = W.shape
    dh = dlogits @ W  # (B, T, V) @ (V, D) -> (B, T, D)
    dW = dlogits.reshape(-1, V).T @ h.reshape(-1, D)  # (V, N) @ (N, D) -> (V, D)
    return dh, dW


# --------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------
class GPT(NextTokenLoss, Module):
    """Decoder-only transformer language model: GPT-2's architecture, or a LLaMA or BLOOM by its config.

    ``forward(idx) -> logits`` and ``backward(dlogits)`` follow the same
    contract as every minitx layer; :meth:`loss` adds the cross-entropy on
    top. ``seed`` makes initialisation *and* dropout reproducible: the model
    owns one ``numpy.random.Generator`` (``self.rng``) shared by every
    dropout layer, whose state a checkpoint saves.

    On a GPU: ``model.to("cuda")`` (see :meth:`~minitx.nn.Module.to`) moves
    the weights; token ids and targets may stay NumPy arrays, ``forward`` and
    :meth:`loss` copy them to the weights' device. The initial weights are
    drawn on the host either way, so a seed gives the same model on both.
    """

    #: Embeddings LoRA may adapt (minitx.finetune.apply_lora): the lookup and the tied head both read wte
    #: through the module (``effective_weight`` / ``weight_backward``), so one adapter reaches both.
    LORA_EMBEDDINGS = ("wte",)

    def __init__(self, config: GPTConfig, *, seed: int = 0, rng=None, dtype=DEFAULT_DTYPE):
        self.config = config
        self.rng = rng if rng is not None else np.random.default_rng(seed)
        c, rng = config, self.rng
        self.wte = Embedding(c.vocab_size, c.n_embd, rng=rng, std=0.02, dtype=dtype)
        if c.positions == "learned":
            self.wpe = LearnedPositionalEmbedding(c.block_size, c.n_embd, rng=rng, std=0.02, dtype=dtype)
        if c.embed_norm:
            self.ln_emb = make_norm(c.norm, c.n_embd, c.layer_norm_eps, dtype=dtype)
        self.drop = Dropout(c.dropout, rng=rng)
        swiglu = c.ffn == "swiglu"
        self.blocks = ModuleList([
            DecoderBlock(c.n_embd, c.n_head, c.hidden_width, cross_attention=False, dropout=c.dropout,
                         norm_first=True, activation="silu" if swiglu else c.activation, bias=c.bias,
                         eps=c.layer_norm_eps, norm=c.norm, gated=swiglu, n_kv_heads=c.n_kv_head,
                         rope_theta=c.rope_theta if c.positions == "rope" else None, ffn_bias=c.has_ffn_bias, rng=rng,
                         dtype=dtype)
            for _ in range(c.n_layer)
        ])
        self.ln_f = make_norm(c.norm, c.n_embd, c.layer_norm_eps, dtype=dtype)
        if not c.tie_embeddings:
            self.lm_head = Parameter(to_device((rng.standard_normal((c.vocab_size, c.n_embd)) * 0.02).astype(dtype)))
        self._init_weights(rng, dtype)

    def _init_weights(self, rng, dtype) -> None:
        """GPT-2 init: N(0, 0.02^2) matrices, zero biases, residual projections scaled down."""
        resid_std = 0.02 / math.sqrt(2 * self.config.n_layer)
        for name, p in self.named_parameters():
            if name.startswith(("wte.", "wpe.", "lm_head", "ln_f.", "ln_emb.")) or ".norm_" in name:
                continue  # embeddings drew N(0, 0.02^2) already; norms stay (1, 0)
            if name.endswith(".bias"):
                p.data[...] = 0
            else:
                std = resid_std if name.endswith(("attn.proj.weight", "ff.proj.weight")) else 0.02
                p.data[...] = to_device((rng.standard_normal(p.data.shape) * std).astype(dtype))

    # ---- forward / backward ------------------------------------------------
    def forward(self, idx, *, kv_caches: list[KVCache] | None = None, positions=None, key_padding_mask=None):
        """``idx [B, T] int -> logits [B, T, V]``.

        With ``kv_caches`` (one :class:`~minitx.nn.KVCache` per block, see
        :meth:`new_kv_caches`), ``idx`` holds only the *new* tokens: they are
        placed after the ``kv_caches[0].length`` tokens already cached.
        ``positions`` (``[B, T]`` ints) and ``key_padding_mask`` (``[B, Tk]``,
        True = padding) serve left-padded batches: see :meth:`hidden`.
        """
        h = self.hidden(idx, kv_caches=kv_caches, positions=positions, key_padding_mask=key_padding_mask)
        logits, self.head_cache = lm_head_forward(h, self.head_weight)  # (B, T, V)
        return logits

    def hidden(self, idx, *, kv_caches: list[KVCache] | None = None, positions=None, key_padding_mask=None):
        """``idx [B, T] -> h [B, T, D]``: everything before the LM head (the final norm's output).

        ``positions``: None (token ``t`` sits at ``start + t``, ``start`` the
        cache length) or a ``[B, T]`` int array, one position per token, for
        rows that count from their own first real token (left padding).
        Learned positions read those rows of ``wpe``, rotary attention
        rotates by them; ALiBi needs none, as it sees only the distance
        between a query and a key, which left padding does not change.
        """
        if getattr(idx, "ndim", None) != 2:
            raise ValueError(f"GPT idx: got shape {tuple(getattr(idx, 'shape', ()))}, expected (B, T) token ids")
        c = self.config
        start = kv_caches[0].length if kv_caches is not None else 0
        T = idx.shape[1]
        if c.positions == "learned" and start + T > c.block_size:
            raise ValueError(f"GPT idx: {start + T} positions (past {start} + new {T}), expected at most "
                             f"block_size={c.block_size}; crop the context first")
        idx = self._on_weights_device(idx)  # NumPy ids for a GPU model are copied over; else untouched
        x = self.wte(idx)  # (B, T, D)
        if c.positions == "learned":
            x = self.wpe(x, start if positions is None else positions)  # (B, T, D) + (T or B T, D)
        if c.embed_norm:
            x = self.ln_emb(x)  # (B, T, D)
        x = self.drop(x)
        bias = self._alibi(T, start) if c.positions == "alibi" else None  # (H, T, start + T), every layer's
        rope_positions = positions if c.positions == "rope" else None
        if key_padding_mask is not None:
            key_padding_mask = self._on_weights_device(key_padding_mask)
        for i, block in enumerate(self.blocks):
            x = block(x, kv_cache=None if kv_caches is None else kv_caches[i], key_padding_mask=key_padding_mask,
                      score_bias=bias, positions=rope_positions)  # (B, T, D)
        return self.ln_f(x)  # (B, T, D)

    def _alibi(self, T: int, start: int):
        """ALiBi's ``(H, T, start + T)`` score bias, in the model's dtype on the weights' device."""
        return self.xp.asarray(alibi_bias(self.config.n_head, T, start + T, start, dtype=self.dtype))

    @property
    def head_weight(self):
        """The ``(V, D)`` matrix the logits are scored against: ``wte`` when tied, else ``lm_head``."""
        # tied: through the embedding module, so a LoRA adapter on wte (LoRAEmbedding) adapts the head too
        return self.wte.effective_weight() if self.config.tie_embeddings else self.lm_head.data

    def backward(self, dlogits):
        """``dlogits [B, T, V]``: add every parameter's gradient; returns None (ids have none)."""
        dh, dW = lm_head_backward(dlogits, self.head_cache)  # (B, T, D), (V, D)
        if self.config.tie_embeddings:
            self.wte.weight_backward(dW)  # gradient 1 of 2 for the tied matrix (or for its adapter)
        else:
            self.lm_head.grad += dW
        dx = self.ln_f.backward(dh)  # (B, T, D)
        for block in reversed(list(self.blocks)):
            dx = block.backward(dx)  # (B, T, D)
        dx = self.drop.backward(dx)
        if self.config.embed_norm:
            dx = self.ln_emb.backward(dx)  # (B, T, D)
        if self.config.positions == "learned":
            dx = self.wpe.backward(dx)  # adds into wpe.weight.grad; dx passes through unchanged
        self.wte.backward(dx)  # gradient 2 of 2: the scatter-add of the input lookup
        return None

    # ---- incremental decoding ---------------------------------------------
    def new_kv_caches(self) -> list[KVCache]:
        """One empty cache per block, sized for the whole context window."""
        return [KVCache(self.config.block_size) for _ in self.blocks]

    @property
    def dtype(self):
        return self.wte.weight.data.dtype

    @property
    def xp(self):
        return array_module(self.wte.weight.data)
