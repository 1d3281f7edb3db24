"""A nanoGPT-style character-level GPT training script in PyTorch, on the CPU.

    python -m minitx.bench.torch_peer --data input.txt --n-layer 4 --n-head 4 --d-model 128 \\
        --block-size 128 --batch-size 16 --max-iters 150 --eval-iters 20 --out /tmp/peer

This is the *peer* that :mod:`minitx.bench.train_cli` times against
``minitx train``: what a user of nanoGPT's ``train.py`` types to train the
same model on the same text, written independently here so the benchmark
depends on nothing outside this repository and PyTorch. It imports nothing
from minitx (the benchmark runs it as a plain file), so its start-up cost is
PyTorch's and NumPy's alone.

What it does, following nanoGPT's ``train.py`` and ``model.py``:

* **Data.** The text file is read whole and encoded character by character
  with NumPy (vocabulary: the sorted distinct characters); the first 90% is
  the training split, the rest validation. A batch is ``batch_size`` random
  offsets, ``x`` the ``block_size`` ids there and ``y`` the same shifted by one
  (nanoGPT writes ``train.bin`` once with a separate ``prepare.py`` and
  memory-maps it; here the encoding happens in the timed process, as it does
  in ``minitx train``).
* **Model.** GPT-2 style: token + learned position embeddings, pre-LayerNorm
  blocks (causal ``F.scaled_dot_product_attention``; MLP 4x wide with tanh
  GELU), a final LayerNorm, the output head tied to the token embedding.
  Weights drawn from N(0, 0.02), the residual projections from
  N(0, 0.02 / sqrt(2 n_layer)), biases zero. ``--no-bias`` drops the biases
  of the Linear and LayerNorm layers (nanoGPT's ``train.py`` default); the
  default keeps them, like minitx's GPT, so both sides do the same work.
* **Optimisation.** AdamW, betas (0.9, beta2), weight decay on the 2-D
  weights only, PyTorch's default implementation for CPU tensors (nanoGPT
  asks for ``fused`` only on CUDA); gradient clipping at 1.0; linear warmup
  then cosine decay to ``min_lr`` at ``max_iters``; eager mode (nanoGPT's CPU
  recipe passes ``--compile=False``); ``torch.set_num_threads(threads)``.
* **Evaluation and checkpoint.** Train and val loss on ``eval_iters``
  batches each, under ``torch.no_grad()``, at iteration 0, every
  ``eval_interval`` and at the end; a checkpoint (model, optimizer, config,
  iteration, best val loss) written with ``torch.save`` when the val loss
  improved, except at iteration 0, as nanoGPT does.

One difference in counting: nanoGPT's loop runs one step past its last
evaluation (``max_iters + 1`` steps); this one runs exactly ``max_iters``,
like ``minitx train``. The last line printed, ``train loop: N tokens/s``, is
the training throughput with evaluation and checkpointing excluded.
"""
from __future__ import annotations

import argparse
import math
import os
import time


def _parse(argv=None):
    p = argparse.ArgumentParser(prog="python -m minitx.bench.torch_peer", description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, metavar="FILE", help="UTF-8 text file (character-level)")
    p.add_argument("--n-layer", type=int, default=4)
    p.add_argument("--n-head", type=int, default=4)
    p.add_argument("--d-model", type=int, default=128, help="model width (nanoGPT: n_embd)")
    p.add_argument("--block-size", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--no-bias", action="store_true", help="no biases in Linear and LayerNorm (nanoGPT's default)")
    p.add_argument("--max-iters", type=int, default=150)
    p.add_argument("--eval-interval", type=int, default=None, help="default: max-iters (evaluate at 0 and the end)")
    p.add_argument("--eval-iters", type=int, default=20)
    p.add_argument("--log-interval", type=int, default=10)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--min-lr", type=float, default=1e-4)
    p.add_argument("--warmup-iters", type=int, default=10)
    p.add_argument("--beta2", type=float, default=0.99)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--grad-clip", type=float, default=1.0)
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--out", required=True, metavar="DIR", help="folder for ckpt.pt")
    args = p.parse_args(argv)
    if args.eval_interval is None:
        args.eval_interval = args.max_iters
    if args.d_model % args.n_head:
        p.error(f"--d-model {args.d_model}: expected a multiple of --n-head {args.n_head}")
    return args


def main(argv=None) -> int:
    args = _parse(argv)
    import numpy as np
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    # ---- data: characters -> ids with NumPy ------------------------------
    with open(args.data, encoding="utf-8") as f:
        text = f.read()
    codepoints = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    chars, ids = np.unique(codepoints, return_inverse=True)  # vocabulary: sorted distinct characters
    ids = ids.astype(np.uint16 if len(chars) < 2**16 else np.int64)
    vocab_size = len(chars)
    n = int(0.9 * len(ids))
    splits = {"train": ids[:n], "val": ids[n:]}
    B, T = args.batch_size, args.block_size
    if min(len(s) for s in splits.values()) <= T:
        raise SystemExit(f"--data {args.data}: too short for --block-size {T}")

    def get_batch(split):
        data = splits[split]
        ix = torch.randint(len(data) - T, (B,))
        x = torch.stack([torch.from_numpy(data[i:i + T].astype(np.int64)) for i in ix])  # (B, T)
        y = torch.stack([torch.from_numpy(data[i + 1:i + 1 + T].astype(np.int64)) for i in ix])  # (B, T)
        return x, y

    # ---- model --------------------------------------------------------------
    D, H, L, bias = args.d_model, args.n_head, args.n_layer, not args.no_bias

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.qkv = nn.Linear(D, 3 * D, bias=bias)
            self.proj = nn.Linear(D, D, bias=bias)
            self.resid_drop = nn.Dropout(args.dropout)

        def forward(self, x):  # (B, T, D) -> (B, T, D)
            B_, T_, _ = x.shape
            q, k, v = self.qkv(x).split(D, dim=2)
            q, k, v = (t.view(B_, T_, H, D // H).transpose(1, 2) for t in (q, k, v))  # (B, H, T, hs)
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=args.dropout if self.training else 0.0,
                                               is_causal=True)
            y = y.transpose(1, 2).contiguous().view(B_, T_, D)  # heads side by side again
            return self.resid_drop(self.proj(y))

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(D, 4 * D, bias=bias)
            self.proj = nn.Linear(4 * D, D, bias=bias)
            self.drop = nn.Dropout(args.dropout)

        def forward(self, x):
            return self.drop(self.proj(F.gelu(self.fc(x), approximate="tanh")))

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1, self.attn = nn.LayerNorm(D, bias=bias), Attention()
            self.ln2, self.mlp = nn.LayerNorm(D, bias=bias), MLP()

        def forward(self, x):
            x = x + self.attn(self.ln1(x))
            return x + self.mlp(self.ln2(x))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte, self.wpe = nn.Embedding(vocab_size, D), nn.Embedding(T, D)
            self.drop = nn.Dropout(args.dropout)
            self.blocks = nn.ModuleList(Block() for _ in range(L))
            self.ln_f = nn.LayerNorm(D, bias=bias)
            self.head = nn.Linear(D, vocab_size, bias=False)
            self.head.weight = self.wte.weight  # tied
            self.apply(self._init)
            for name, p in self.named_parameters():
                if name.endswith("proj.weight"):  # residual projections, scaled by depth (GPT-2)
                    nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * L))

        @staticmethod
        def _init(module):
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)

        def forward(self, idx, targets):  # (B, T) ids -> scalar loss
            pos = torch.arange(idx.shape[1], dtype=torch.long)
            x = self.drop(self.wte(idx) + self.wpe(pos))  # (B, T, D)
            for block in self.blocks:
                x = block(x)
            logits = self.head(self.ln_f(x))  # (B, T, V)
            return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))

    model = GPT()
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": args.weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, args.beta2))
    n_params = sum(p.numel() for p in params)
    print(f"PyTorch {torch.__version__} GPT {L} layers, {H} heads, {D} wide, block {T}: {n_params:,} parameters; "
          f"vocab {vocab_size}; {len(splits['train']):,} train / {len(splits['val']):,} val tokens; "
          f"{torch.get_num_threads()} threads", flush=True)

    def lr_at(it):
        if it < args.warmup_iters:
            return args.lr * (it + 1) / (args.warmup_iters + 1)
        ratio = min(1.0, (it - args.warmup_iters) / max(1, args.max_iters - args.warmup_iters))
        return args.min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (args.lr - args.min_lr)

    @torch.no_grad()
    def estimate_loss():
        model.eval()
        out = {}
        for split in ("train", "val"):
            losses = torch.zeros(args.eval_iters)
            for k in range(args.eval_iters):
                losses[k] = model(*get_batch(split)).item()
            out[split] = losses.mean().item()
        model.train()
        return out

    os.makedirs(args.out, exist_ok=True)
    best_val, train_time, x, y = math.inf, 0.0, *get_batch("train")
    for it in range(args.max_iters + 1):
        if it % args.eval_interval == 0 or it == args.max_iters:
            losses = estimate_loss()
            print(f"step {it}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}", flush=True)
            if losses["val"] < best_val:
                best_val = losses["val"]
                if it > 0:
                    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                "config": vars(args), "iter_num": it, "best_val_loss": best_val},
                               os.path.join(args.out, "ckpt.pt"))
        if it == args.max_iters:
            break
        t0 = time.perf_counter()
        for group in optimizer.param_groups:
            group["lr"] = lr_at(it)
        loss = model(x, y)
        x, y = get_batch("train")  # the next batch, drawn while nothing else waits on it (nanoGPT's order)
        loss.backward()
        if args.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if it % args.log_interval == 0:
            print(f"iter {it}: loss {loss.item():.4f}, time {(time.perf_counter() - t0) * 1000:.1f} ms", flush=True)
        train_time += time.perf_counter() - t0
    print(f"train loop: {args.max_iters * B * T / max(train_time, 1e-9):,.0f} tokens/s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
