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

Parameter names (what checkpoints and weight importers key on)::

    wte.weight                      (V, D)  token embedding = LM head
    wpe.weight                      (block_size, D)
    blocks.{l}.norm_attn.weight/bias, blocks.{l}.attn.qkv.weight/bias (D, 3D),
    blocks.{l}.attn.proj.weight/bias, blocks.{l}.norm_ff.weight/bias,
    blocks.{l}.ff.fc.weight/bias (D, 4D), blocks.{l}.ff.proj.weight/bias (4D, D)
    ln_f.weight/bias                (D,)

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
    LayerNorm,
    LearnedPositionalEmbedding,
    Module,
    ModuleList,
    Parameter,
)
from ..nn.checks import check_positive_int
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


@dataclass
class GPTConfig(PresetConfig):
    """Everything that fixes the model's shape (and nothing about training).

    ``d_ff`` (the MLP width) is ``4 * n_embd`` as in GPT-2 unless given. ``bias=False``
    drops the biases of every Linear layer (LayerNorms keep theirs).
    ``activation`` names the MLP's nonlinearity (GPT-2: the tanh GELU),
    ``layer_norm_eps`` the LayerNorms' epsilon, and ``tie_embeddings=False``
    gives the LM head its own ``(V, D)`` matrix ``lm_head`` (a checkpoint
    whose ``lm_head.weight`` differs from its token embedding).
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

    PRESETS = PRESETS  # for from_preset (a class attribute, not a field)

    def __post_init__(self):
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            check_positive_int(f"GPTConfig {name}", getattr(self, name))
        if self.n_embd % self.n_head:
            raise ValueError(f"GPTConfig n_embd={self.n_embd} with n_head={self.n_head}: "
                             "expected n_embd divisible by n_head")
        if not isinstance(self.dropout, (int, float)) or not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"GPTConfig dropout: got {self.dropout!r}, expected a number in [0, 1)")


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
    """Decoder-only transformer language model (GPT-2 architecture).

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

    def __init__(self, config: GPTConfig, *, seed: int = 0, rng=None, dtype=DEFAULT_DTYPE):
        self.config = config
        self.rng = rng if rng is not None else np.random.default_rng(seed)
        c, rng = config, self.rng
        self.wte = Embedding(c.vocab_size, c.n_embd, rng=rng, std=0.02, dtype=dtype)
        self.wpe = LearnedPositionalEmbedding(c.block_size, c.n_embd, rng=rng, std=0.02, dtype=dtype)
        self.drop = Dropout(c.dropout, rng=rng)
        self.blocks = ModuleList([
            DecoderBlock(c.n_embd, c.n_head, c.d_ff or 4 * c.n_embd, cross_attention=False, dropout=c.dropout,
                         norm_first=True, activation=c.activation, bias=c.bias, eps=c.layer_norm_eps, rng=rng,
                         dtype=dtype)
            for _ in range(c.n_layer)
        ])
        self.ln_f = LayerNorm(c.n_embd, c.layer_norm_eps, dtype=dtype)
        if not c.tie_embeddings:
            self.lm_head = Parameter(to_device((rng.standard_normal((c.vocab_size, c.n_embd)) * 0.02).astype(dtype)))
        self._init_weights(rng, dtype)

    def _init_weights(self, rng, dtype) -> None:
        """GPT-2 init: N(0, 0.02^2) matrices, zero biases, residual projections scaled down."""
        resid_std = 0.02 / math.sqrt(2 * self.config.n_layer)
        for name, p in self.named_parameters():
            if name.startswith(("wte.", "wpe.", "lm_head")) or ".norm_" in name or name.startswith("ln_f."):
                continue  # embeddings drew N(0, 0.02^2) already; LayerNorms stay (1, 0)
            if name.endswith(".bias"):
                p.data[...] = 0
            else:
                std = resid_std if name.endswith(("attn.proj.weight", "ff.proj.weight")) else 0.02
                p.data[...] = to_device((rng.standard_normal(p.data.shape) * std).astype(dtype))

    # ---- forward / backward ------------------------------------------------
    def forward(self, idx, *, kv_caches: list[KVCache] | None = None):
        """``idx [B, T] int -> logits [B, T, V]``.

        With ``kv_caches`` (one :class:`~minitx.nn.KVCache` per block, see
        :meth:`new_kv_caches`), ``idx`` holds only the *new* tokens: they are
        placed after the ``kv_caches[0].length`` tokens already cached.
        """
        if getattr(idx, "ndim", None) != 2:
            raise ValueError(f"GPT idx: got shape {tuple(getattr(idx, 'shape', ()))}, expected (B, T) token ids")
        start = kv_caches[0].length if kv_caches is not None else 0
        T = idx.shape[1]
        if start + T > self.config.block_size:
            raise ValueError(f"GPT idx: {start + T} positions (past {start} + new {T}), expected at most "
                             f"block_size={self.config.block_size}; crop the context first")
        idx = self._on_weights_device(idx)  # NumPy ids for a GPU model are copied over; else untouched
        x = self.wpe(self.wte(idx), start)  # (B, T, D) + (T, D) -> (B, T, D)
        x = self.drop(x)
        for i, block in enumerate(self.blocks):
            x = block(x, kv_cache=None if kv_caches is None else kv_caches[i])  # (B, T, D)
        h = self.ln_f(x)  # (B, T, D)
        logits, self.head_cache = lm_head_forward(h, self.head_weight)  # (B, T, V)
        return logits

    @property
    def head_weight(self):
        """The ``(V, D)`` matrix the logits are scored against: ``wte`` when tied, else ``lm_head``."""
        return (self.wte.weight if self.config.tie_embeddings else self.lm_head).data

    def backward(self, dlogits):
        """``dlogits [B, T, V]``: add every parameter's gradient; returns None (ids have none)."""
        dh, dW = lm_head_backward(dlogits, self.head_cache)  # (B, T, D), (V, D)
        (self.wte.weight if self.config.tie_embeddings else self.lm_head).grad += dW  # the head's gradient
        dx = self.ln_f.backward(dh)  # (B, T, D)
        for block in reversed(list(self.blocks)):
            dx = block.backward(dx)  # (B, T, D)
        dx = self.drop.backward(dx)
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
