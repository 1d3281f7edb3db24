"""``minitx demo``: the whole foundation in a few seconds.

Builds a two-block transformer (embedding, learned positions, decoder
blocks, LayerNorm, a linear head), runs a forward and a backward pass on a
random batch, prints the loss and the gradient of every parameter, then
proves the hand-written backward pass right with the gradient checker in
float64.
"""
from __future__ import annotations

import numpy as np

from .gradcheck import gradcheck
from .nn import DecoderBlock, Embedding, LayerNorm, LearnedPositionalEmbedding, Linear, Module, ModuleList
from .nn.loss import cross_entropy_backward, cross_entropy_forward


class TinyTransformer(Module):
    """Token ids ``[B, T]`` -> next-token logits ``[B, T, vocab]``."""

    def __init__(self, vocab_size=11, d_model=16, n_heads=2, n_layers=2, block_size=8, *, seed=0, dtype=np.float32):
        rng = np.random.default_rng(seed)
        self.tok = Embedding(vocab_size, d_model, rng=rng, std=0.5, dtype=dtype)
        self.pos = LearnedPositionalEmbedding(block_size, d_model, rng=rng, std=0.5, dtype=dtype)
        self.blocks = ModuleList([DecoderBlock(d_model, n_heads, cross_attention=False, rng=rng, dtype=dtype)
                                  for _ in range(n_layers)])
        self.norm = LayerNorm(d_model, dtype=dtype)
        self.head = Linear(d_model, vocab_size, rng=rng, dtype=dtype)

    def forward(self, ids):
        x = self.pos(self.tok(ids))  # (B, T, D)
        for block in self.blocks:
            x = block(x)  # (B, T, D)
        return self.head(self.norm(x))  # (B, T, V)

    def backward(self, dlogits):
        dx = self.norm.backward(self.head.backward(dlogits))
        for block in reversed(list(self.blocks)):
            dx = block.backward(dx)
        self.tok.backward(self.pos.backward(dx))


def run_demo(seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 11, size=(3, 8))  # (B, T) a random batch of token ids
    targets = np.roll(ids, -1, axis=1)  # predict the next token

    model = TinyTransformer(seed=seed)
    logits = model(ids)
    loss, cache = cross_entropy_forward(logits, targets)
    model.zero_grad()
    model.backward(cross_entropy_backward(1.0, cache))
    print(f"TinyTransformer: {model.num_parameters():,} parameters, logits {logits.shape}, loss {float(loss):.4f}")
    for name, p in model.named_parameters():
        print(f"  {name:32s} {str(tuple(p.shape)):12s} |grad| = {float(np.linalg.norm(p.grad)):.4e}")

    # The same model in float64, checked against finite differences.
    model64 = TinyTransformer(seed=seed, dtype=np.float64)

    def loss_fn():
        return float(cross_entropy_forward(model64(ids), targets)[0])

    _, cache = cross_entropy_forward(model64(ids), targets)
    model64.zero_grad()
    model64.backward(cross_entropy_backward(1.0, cache))
    params = dict(model64.named_parameters())
    result = gradcheck(loss_fn, {n: p.data for n, p in params.items()}, {n: p.grad for n, p in params.items()},
                       max_elements=12)
    print(result)
    print("backward pass verified" if result.ok(1e-6) else "GRADIENT CHECK FAILED")
    return result.max_rel_error


def add_parser(sub):
    p = sub.add_parser("demo", help="forward + backward through a tiny transformer, then gradient-check it",
                       description=__doc__.split("\n\n")[1] if __doc__ else None)
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.set_defaults(func=lambda args: 0 if run_demo(args.seed) <= 1e-6 else 1)
