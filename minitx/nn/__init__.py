"""Neural-network layers, each a forward/backward pair written out by hand.

Read them in this order; each file is one concept:

    module.py       Parameter (value + gradient) and Module (the bookkeeping)
    linear.py       y = x W + b
    lora.py         LoRA: a frozen Linear or Embedding plus a trainable low-rank correction, mergeable
    embedding.py    a lookup table, and its scatter-add gradient
    activations.py  ReLU, GELU (tanh and exact)
    softmax.py      softmax and log-softmax
    loss.py         cross-entropy fused with log-softmax
    norm.py         LayerNorm, with its three-term gradient derived; T5's scale-only RMSNorm
    dropout.py      inverted dropout with an explicit RNG
    positions.py    sinusoidal and learned (optionally offset) positions; T5's relative bias;
                    rotary (RoPE) and ALiBi
    attention.py    scaled dot-product attention, multi-head and grouped-query attention, KV cache
    feedforward.py  the position-wise MLP, gated (SwiGLU) or not
    blocks.py       encoder and decoder blocks, pre-norm and post-norm
    rnn.py          the networks before attention: a tanh RNN and a GRU, backpropagation through time
"""
from .activations import GELU, Activation, ReLU, get_activation
from .attention import (KVCache, MultiHeadAttention, causal_mask, scaled_dot_product_attention_backward,
                        scaled_dot_product_attention_forward)
from .blocks import DecoderBlock, EncoderBlock
from .dropout import Dropout
from .embedding import Embedding
from .feedforward import FeedForward, SwiGLU
from .linear import Linear
from .lora import LoRAEmbedding, LoRALayer, LoRALinear, lora_backward, lora_forward
from .loss import cross_entropy_backward, cross_entropy_forward
from .module import Module, ModuleList, Parameter
from .norm import LayerNorm, RMSNorm, layernorm_backward, layernorm_forward, rmsnorm_backward, rmsnorm_forward
from .rnn import GRU, RNN, gru_backward, gru_forward, rnn_backward, rnn_forward
from .positions import (LearnedPositionalEmbedding, RelativePositionBias, RotaryEmbedding, SinusoidalPositionalEncoding,
                        alibi_bias, alibi_slopes, relative_position_buckets, rope_angles, rope_backward, rope_forward,
                        sinusoidal_table)
from .softmax import log_softmax_backward, log_softmax_forward, softmax_backward, softmax_forward

__all__ = [
    "Activation", "DecoderBlock", "Dropout", "Embedding", "EncoderBlock", "FeedForward", "GELU", "KVCache",
    "LayerNorm", "LearnedPositionalEmbedding", "Linear", "LoRAEmbedding", "LoRALayer", "LoRALinear", "Module", "ModuleList", "MultiHeadAttention",
    "Parameter", "RMSNorm", "ReLU", "RelativePositionBias", "RotaryEmbedding", "SinusoidalPositionalEncoding", "SwiGLU",
    "alibi_bias", "alibi_slopes", "relative_position_buckets", "rope_angles", "rope_backward", "rope_forward",
    "rmsnorm_backward", "rmsnorm_forward", "causal_mask", "cross_entropy_backward", "cross_entropy_forward",
    "GRU", "RNN", "gru_backward", "gru_forward", "rnn_backward", "rnn_forward",
    "get_activation", "layernorm_backward", "lora_backward", "lora_forward", "layernorm_forward", "log_softmax_backward", "log_softmax_forward", "scaled_dot_product_attention_backward",
    "scaled_dot_product_attention_forward", "sinusoidal_table", "softmax_backward", "softmax_forward",
]
