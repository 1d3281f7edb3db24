"""GPT speed: minitx against PyTorch CPU eager, side by side in one run.

    python -m minitx.bench.gpt                      # the issue's configuration
    python -m minitx.bench.gpt --iters 20 --layers 4 --width 128 --block 128 --batch 16 --vocab 512 --threads 2

Two measurements, each reported as a ratio (figures drift between runs and
machines; ratios measured in one run are what to compare):

1. **Training tokens/s.** One full step: sample a batch, forward, loss,
   backward, gradient clipping, AdamW. PyTorch runs eager mode with
   ``F.scaled_dot_product_attention`` and ``torch.set_num_threads(threads)``.
   minitx runs twice: one model with ``threads``-threaded BLAS, and the
   data-parallel trainer (``DataParallel(model, threads=threads)``: the batch
   split across Python threads, single-threaded BLAS each).
2. **KV cache.** Greedy decoding of ``--gen-tokens`` new tokens with the
   cache against recomputing the whole context at every step (both minitx;
   the tokens must be identical).

Same model shape, batch, data and thread count on both sides. Nothing here
runs in the test suite; results are recorded in ``benchmarks/gpt.md``.
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np


def _minitx_trainer(args, threads: int):
    from minitx.models import GPT, GPTConfig
    from minitx.train.config import TrainConfig
    from minitx.train.data import LMDataset
    from minitx.train.parallel import DataParallel
    from minitx.train.trainer import Trainer

    rng = np.random.default_rng(0)
    data = LMDataset.from_ids(rng.integers(0, args.vocab, 200_000), vocab_size=args.vocab, block_size=args.block)
    config = GPTConfig(vocab_size=args.vocab, block_size=args.block, n_layer=args.layers, n_head=args.heads,
                       n_embd=args.width)
    train = TrainConfig(batch_size=args.batch, max_iters=10**6, warmup_iters=10, seed=0)
    import tempfile

    model = GPT(config, seed=0)
    model = DataParallel(model, threads=threads) if threads > 1 else model
    return Trainer(model, data, train, tempfile.mkdtemp(prefix="minitx-bench-"), progress=False,
                   log=None), data


def minitx_train_step(args, threads: int):
    """A function running one minitx training step (``threads`` data-parallel replicas)."""
    trainer, _ = _minitx_trainer(args, threads)
    return trainer.train_step


def torch_train_step(args):
    """A function running one training step of the same GPT in PyTorch eager (SDPA), same data pipeline."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)
    D, H, L, V, T = args.width, args.heads, args.layers, args.vocab, args.block

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1, self.ln2 = torch.nn.LayerNorm(D), torch.nn.LayerNorm(D)
            self.qkv, self.proj = torch.nn.Linear(D, 3 * D), torch.nn.Linear(D, D)
            self.fc, self.fc_proj = torch.nn.Linear(D, 4 * D), torch.nn.Linear(4 * D, D)

        def forward(self, x):
            B, T_, _ = x.shape
            q, k, v = self.qkv(self.ln1(x)).split(D, dim=2)
            q, k, v = (t.view(B, T_, H, D // H).transpose(1, 2) for t in (q, k, v))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T_, D)
            x = x + self.proj(y)
            return x + self.fc_proj(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))

    class TorchGPT(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.wte, self.wpe = torch.nn.Embedding(V, D), torch.nn.Embedding(T, D)
            self.blocks = torch.nn.ModuleList(Block() for _ in range(L))
            self.ln_f = torch.nn.LayerNorm(D)

        def forward(self, idx, targets):
            x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
            for block in self.blocks:
                x = block(x)
            logits = self.ln_f(x) @ self.wte.weight.T  # tied head
            return F.cross_entropy(logits.view(-1, V), targets.view(-1))

    model = TorchGPT()
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=1e-3, betas=(0.9, 0.99), foreach=True)
    _, data = _minitx_trainer(args, 1)
    rng = np.random.default_rng(0)

    def step():
        x, y = data.get_batch("train", args.batch, rng)
        loss = model(torch.from_numpy(x), torch.from_numpy(y))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    return step


def time_interleaved(steps: dict, args) -> dict:
    """Median tokens/s of each step function, timed in alternating rounds.

    Alternating (A, B, C, A, B, C, ...) means a burst of load from elsewhere on
    the machine hits every contestant alike, so the *ratios* stay meaningful.
    Before each round the benchmark sleeps ``args.settle`` seconds: PyTorch's
    OpenMP workers and OpenBLAS's threads busy-wait for a while after their
    work ends, and without the pause the next contestant would share its
    cores with the previous one's spinning threads.
    """
    from threadpoolctl import threadpool_limits

    tokens = args.iters * args.batch * args.block
    rates = {name: [] for name in steps}
    for name, (fn, blas_threads) in steps.items():
        with threadpool_limits(limits=blas_threads, user_api="blas"):
            for _ in range(args.warmup):
                fn()
    for _ in range(args.rounds):
        for name, (fn, blas_threads) in steps.items():
            time.sleep(args.settle)
            with threadpool_limits(limits=blas_threads, user_api="blas"):
                t0 = time.perf_counter()
                for _ in range(args.iters):
                    fn()
                rates[name].append(tokens / (time.perf_counter() - t0))
    return rates


def bench_kv_cache(args) -> tuple[float, float, bool]:
    """Seconds for greedy decoding of ``gen_tokens`` with and without the KV cache; tokens equal?

    Each way is run once untimed (first-touch allocations), then timed in
    ``args.rounds`` alternating rounds; the fastest round of each is kept,
    the usual estimate of a computation's cost on a noisy machine.
    """
    from minitx.generate import generate
    from minitx.models import GPT, GPTConfig

    prompt_len = 16
    config = GPTConfig(vocab_size=args.vocab, block_size=prompt_len + args.gen_tokens, n_layer=args.layers,
                       n_head=args.heads, n_embd=args.width)
    model = GPT(config, seed=0)
    prompt = np.random.default_rng(0).integers(0, args.vocab, (1, prompt_len))
    for use_cache in (True, False):  # warm-up
        generate(model, prompt, 8, temperature=0, use_kv_cache=use_cache)
    times, outs = {True: [], False: []}, {}
    for _ in range(max(1, min(args.rounds, 3))):
        for use_cache in (True, False):
            time.sleep(args.settle)
            t0 = time.perf_counter()
            outs[use_cache] = generate(model, prompt, args.gen_tokens, temperature=0, use_kv_cache=use_cache)
            times[use_cache].append(time.perf_counter() - t0)
    return min(times[True]), min(times[False]), bool(np.array_equal(outs[True], outs[False]))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m minitx.bench.gpt", description=__doc__.splitlines()[0])
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--block", type=int, default=128)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--vocab", type=int, default=512)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--iters", type=int, default=5, help="steps per timed round")
    p.add_argument("--rounds", type=int, default=5, help="alternating rounds; medians are reported")
    p.add_argument("--settle", type=float, default=0.5,
                   help="seconds to sleep before each timed round, so spinning worker threads go idle (default 0.5)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--gen-tokens", type=int, default=256)
    p.add_argument("--skip-torch", action="store_true")
    p.add_argument("--skip-generate", action="store_true")
    args = p.parse_args(argv)

    from threadpoolctl import threadpool_limits

    print(f"GPT {args.layers} layers, {args.heads} heads, {args.width} wide, block {args.block}, batch {args.batch}, "
          f"vocab {args.vocab}; {args.threads} threads")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, numpy {np.__version__}")
    # Generation first, before PyTorch has run: PyTorch's OpenMP threads, once
    # started, measurably slow NumPy's multi-threaded BLAS in the same process.
    if not args.skip_generate:
        with threadpool_limits(limits=args.threads, user_api="blas"):
            cached, recomputed, same = bench_kv_cache(args)
        print(f"greedy generation, {args.gen_tokens} new tokens after a 16-token prompt")
        print(f"  KV cache   {cached:7.2f} s ({args.gen_tokens / cached:,.0f} tokens/s)")
        print(f"  recompute  {recomputed:7.2f} s ({args.gen_tokens / recomputed:,.0f} tokens/s)")
        print(f"  speed-up   {recomputed / cached:7.1f}x; identical tokens: {same}")
    steps = {}
    if not args.skip_torch:
        import torch

        torch.set_num_threads(args.threads)
        print(f"torch {torch.__version__}")
        steps["PyTorch eager (SDPA)"] = (torch_train_step(args), args.threads)
    steps["minitx, 1 replica"] = (minitx_train_step(args, 1), args.threads)
    if args.threads > 1:
        steps[f"minitx, {args.threads} data-parallel threads"] = (minitx_train_step(args, args.threads), args.threads)
    rates = time_interleaved(steps, args)
    ref = rates.get("PyTorch eager (SDPA)")
    print(f"\ntraining throughput (median of {args.rounds} alternating rounds of {args.iters} steps)")
    for name, r in rates.items():
        ratio = f"{np.median(np.array(r) / np.array(ref)):.2f}x PyTorch" if ref else ""
        print(f"  {name:34s} {np.median(r):10,.0f} tokens/s  {ratio}   (rounds: "
              + ", ".join(f"{v:,.0f}" for v in r) + ")")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
