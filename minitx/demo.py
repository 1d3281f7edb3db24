"""``minitx demo``: the whole foundation in a few seconds.

Builds a tiny GPT (token embedding, learned positions, two causal decoder
blocks, a final LayerNorm, the tied output head), runs a forward and a
backward pass on a random batch, prints the loss and the gradient norm of
every parameter, then proves the hand-written backward pass right with the
gradient checker in float64.
"""
from __future__ import annotations

import numpy as np

from .gradcheck import gradcheck
from .models import GPT, GPTConfig

VOCAB = 11


def run_demo(seed: int = 0) -> float:
    """Forward + backward, then a gradient check; returns the worst relative error."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, VOCAB, size=(3, 8))  # (B, T) a random batch of token ids
    targets = np.roll(ids, -1, axis=1)  # predict the next token

    config = GPTConfig.from_preset("gpt-test", vocab_size=VOCAB)
    model = GPT(config, seed=seed)  # float32, as for training
    model.zero_grad()
    loss, logits = model.loss(ids, targets)
    model.backward_loss()
    print(f"GPT ({config.n_layer} blocks, d_model {config.n_embd}): {model.num_parameters():,} parameters, "
          f"logits {logits.shape}, loss {loss:.4f}")
    for name, p in model.named_parameters():
        print(f"  {name:32s} {str(tuple(p.shape)):12s} |grad| = {float(np.linalg.norm(p.grad)):.4e}")

    # The same model in float64, checked against finite differences. GPT's small
    # initial weights (std 0.02) make the loss curve on a fine scale, hence h = 1e-4.
    model64 = GPT(config, seed=seed, dtype=np.float64)
    model64.zero_grad()
    model64.loss(ids, targets)
    model64.backward_loss()
    params = dict(model64.named_parameters())
    result = gradcheck(lambda: model64.loss(ids, targets)[0], {n: p.data for n, p in params.items()},
                       {n: p.grad.copy() for n, p in params.items()}, max_elements=12, h=1e-4)
    print(result)
    print("backward pass verified" if result.ok(1e-6) else "GRADIENT CHECK FAILED")
    return result.max_rel_error
