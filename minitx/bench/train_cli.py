"""``minitx train`` end to end: the command a user types, against a PyTorch peer and under MPI.

    python -m minitx.bench.train_cli                       # the issue's configuration, 3 rounds
    python -m minitx.bench.train_cli --rounds 5 --json     # one JSON object per line

:mod:`minitx.bench.gpt` times one training *step* inside one process. A user
never meets a step: they type a command and wait for it to finish. Between
the two lie Python's and the libraries' start-up, reading and tokenizing the
text, building the model, the evaluations, the checkpoint and (for minitx)
the loss plot. This script times the commands themselves, as subprocesses,
wall clock from start to exit, so all of that counts on both sides, and
prints three figures side by side from one run:

(a) **minitx vs a PyTorch peer.** ``minitx train`` (2 data-parallel threads)
    against :mod:`minitx.bench.torch_peer`, a nanoGPT-style PyTorch CPU
    training script (eager mode, ``torch.set_num_threads(2)``), same model,
    data, schedule, evaluation and checkpoint. Ratio: peer time / minitx time
    (above 1: minitx is faster). Target: at least 1.1x.
(b) **2 MPI ranks vs 2 threads.** ``mpiexec -n 2 minitx train ... --threads 1``
    against ``minitx train ... --threads 2``. Ratio: threads time / MPI time.
    Target: at least 0.95x. Skipped, with the reason, when ``mpiexec`` or
    ``mpi4py`` is missing or when a 2-iteration probe shows that ``minitx
    train`` does not run as one job under ``mpiexec`` (it fails, or every
    rank prints, i.e. the ranks train independently).
(c) **Where the wall time goes.** Each program prints its training-loop
    throughput (``tokens/s``, evaluation excluded); ``iterations x batch x
    block / that rate`` is the time spent in training steps, and the rest of
    the wall time is start-up, data, evaluation and writing. Shown for every
    contestant.

Method. Before the rounds, each contestant runs once untimed on a 2-iteration
toy configuration: this checks that it works and warms the file cache (the
first ``import torch`` after boot reads hundreds of megabytes). Then the
contestants run in alternating rounds (peer, minitx threads, minitx MPI,
then the next round), with a pause before each run so that the previous
one's spinning OpenMP/OpenBLAS threads have gone idle; a burst of load from
elsewhere then hits every contestant alike. Each run gets a fresh, empty
output folder. Reported: the median wall time of each contestant and, for
each ratio, the median of the per-round ratios with its min and max.

The BLAS environment is reported and left alone: some machines export
``OPENBLAS_CORETYPE`` (this project's CI machines force ``Haswell``), which
changes NumPy's kernels but not PyTorch's. ``--numpy-blas`` removes
``OPENBLAS_CORETYPE`` and ``OPENBLAS_L2_SIZE`` from every contestant's
environment, so NumPy picks its own kernels.

The flag names of ``minitx train`` are read from its ``--help`` once (see
:data:`MINITX_FLAGS`), so the script runs against older and newer CLIs.
Results are recorded in ``benchmarks/train_cli.md``; nothing here runs in
the test suite except a toy-sized smoke test.
"""
from __future__ import annotations

from minitx.bench import cpu_model, shakespeare_path

import argparse
import datetime
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

#: ``minitx train`` flags by concept: the first name its ``--help`` lists is used. A concept whose
#: names are all missing is dropped when ``optional`` (``--overwrite``: each run gets a fresh folder).
MINITX_FLAGS = {
    "d_model": {"names": ("--d-model", "--n-embd"), "optional": False},
    "overwrite": {"names": ("--overwrite",), "optional": True},
}
#: A number followed by ``tokens/s``: the last one a program prints is its training-loop throughput.
RATE = re.compile(r"([0-9][0-9,]*(?:\.[0-9]+)?)\s*tokens/s")
#: Targets of issue 10, by ratio name.
TARGETS = {"minitx_vs_peer": 1.1, "mpi_vs_threads": 0.95}
#: Other processes' CPU use during a run, in cores (from /proc/stat, ours subtracted), above which the
#: run is flagged: another job shared the machine. (The load average cannot tell: our own runs raise it.)
BUSY_CORES = 0.25
CONTESTANTS = ("peer", "minitx_threads", "minitx_mpi")
LABELS = {"peer": "PyTorch peer (nanoGPT-style)", "minitx_threads": "minitx train, {t} threads",
          "minitx_mpi": "mpiexec -n {t} minitx train"}


# --------------------------------------------------------------------------
# Finding the contestants
# --------------------------------------------------------------------------
def _sibling_or_which(name: str) -> str | None:
    """``name`` next to this Python (a virtual environment's bin/), else on PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.is_file() and os.access(beside, os.X_OK) else shutil.which(name)


def minitx_command(env: dict, override: str | None = None) -> tuple[list[str], str]:
    """What a user types: the ``minitx`` script of this environment, else ``python -m minitx``.

    Returns ``(command, python)``: the interpreter that runs it (the script's ``#!`` line), for the
    version and commit report. The fallback puts this checkout first on ``PYTHONPATH`` (in ``env``),
    since the contestants run in a scratch folder, not in the repository.
    """
    if override:
        import shlex  # noqa: PLC0415

        cmd = shlex.split(override)
        return cmd, (cmd[0] if "python" in Path(cmd[0]).name else sys.executable)
    script = _sibling_or_which("minitx")
    if script:
        python = sys.executable
        try:
            with open(script, "rb") as f:
                first = f.readline().decode("utf-8", "replace")
            if first.startswith("#!") and len(first[2:].split()) == 1:
                python = first[2:].strip()
        except OSError:
            pass
        return [script], python
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return [sys.executable, "-m", "minitx"], sys.executable


def detect_flags(minitx: list[str], env: dict, cwd: Path) -> dict:
    """``{concept: flag or None}`` from one ``minitx train --help``; a missing required concept raises."""
    proc = subprocess.run([*minitx, "train", "--help"], capture_output=True, text=True, env=env, timeout=120,
                          cwd=cwd)
    if proc.returncode != 0:
        raise RuntimeError(f"`{' '.join(minitx)} train --help` failed (exit {proc.returncode}): "
                           f"{proc.stderr.strip()[-500:]}")
    offered = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", proc.stdout))
    flags = {}
    for concept, spec in MINITX_FLAGS.items():
        found = next((n for n in spec["names"] if n in offered), None)
        if found is None and not spec["optional"]:
            raise RuntimeError(f"minitx train offers none of {spec['names']} ({concept}); update MINITX_FLAGS")
        flags[concept] = found
    return flags


def minitx_train_args(a, flags: dict, threads: int, out: str, *, tiny: bool = False) -> list[str]:
    """The arguments after ``minitx``, for the issue's configuration (or the 2-iteration probe)."""
    iters, d_model, eval_iters = (2, 32, 1) if tiny else (a.max_iters, a.d_model, a.eval_iters)
    argv = ["train", "--data", a.data, "--n-layer", a.n_layer, "--n-head", a.n_head, flags["d_model"], d_model,
            "--block-size", a.block_size, "--batch-size", a.batch_size, "--max-iters", iters,
            "--eval-interval", iters, "--eval-iters", eval_iters, "--warmup-iters", min(a.warmup_iters, iters),
            "--lr", a.lr, "--min-lr", a.min_lr, "--dropout", 0, "--threads", threads, "--out", out,
            "--sample-tokens", 0, "--no-progress"]
    if flags.get("overwrite"):
        argv.append(flags["overwrite"])
    return [str(v) for v in argv]


def peer_args(a, out: str, *, tiny: bool = False) -> list[str]:
    iters, d_model, eval_iters = (2, 32, 1) if tiny else (a.max_iters, a.d_model, a.eval_iters)
    argv = ["--data", a.data, "--n-layer", a.n_layer, "--n-head", a.n_head, "--d-model", d_model,
            "--block-size", a.block_size, "--batch-size", a.batch_size, "--max-iters", iters,
            "--eval-iters", eval_iters, "--warmup-iters", min(a.warmup_iters, iters), "--lr", a.lr,
            "--min-lr", a.min_lr, "--dropout", 0, "--threads", a.threads, "--out", out]
    return [str(v) for v in argv]


def find_mpi(env: dict, python: str) -> tuple[str | None, str]:
    """``(mpiexec path, "")`` when MPI can be tried, else ``(None, reason)``."""
    mpiexec = _sibling_or_which("mpiexec")
    if mpiexec is None:
        return None, "no mpiexec next to this Python or on PATH (pip install mpi4py mpich)"
    probe = subprocess.run([python, "-c", "import mpi4py"], capture_output=True, text=True, env=env)
    if probe.returncode != 0:
        return None, "mpi4py is not installed (pip install mpi4py mpich)"
    return mpiexec, ""


def default_data(explicit: str | None, workdir: Path) -> tuple[str, str]:
    """``(path, description)``: ``--data``, else tiny Shakespeare if present, else minitx's embedded corpus."""
    if explicit is not None:
        path = str(Path(explicit).resolve())
        return path, path
    found = shakespeare_path()
    if found is not None:
        return str(found), f"tiny Shakespeare ({found})"
    from minitx.corpus import default_corpus  # noqa: PLC0415 - only when there is no data file

    path = workdir / "minitx-default-corpus.txt"
    path.write_text(default_corpus(), encoding="utf-8")
    return str(path), f"minitx's embedded corpus (tiny Shakespeare not found), written to {path}"


# --------------------------------------------------------------------------
# Running one contestant
# --------------------------------------------------------------------------
def run_timed(cmd: list[str], env: dict, log_path: Path, timeout: float) -> dict:
    """Run ``cmd`` to completion in ``log_path``'s folder; wall seconds from start to exit, CPU seconds of
    its whole process tree (``os.times`` counts every descendant that was waited for)."""
    load, host0 = _loadavg(), _host_busy_seconds()
    before = os.times()
    with open(log_path, "w", encoding="utf-8") as log:
        t0 = time.perf_counter()
        try:
            rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, timeout=timeout,
                                cwd=log_path.parent).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
        wall = time.perf_counter() - t0
    after, host1 = os.times(), _host_busy_seconds()
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    others = None if host0 is None or host1 is None else max(0.0, (host1 - host0 - cpu) / wall)
    text = log_path.read_text(encoding="utf-8", errors="replace")
    rates = RATE.findall(text)
    return {"rc": rc, "wall_s": wall, "cpu_s": cpu, "loadavg_before": load, "others_cores": others,
            "log_tokens_per_s": float(rates[-1].replace(",", "")) if rates
            else None, "output": text}


def _host_busy_seconds() -> float | None:
    """CPU seconds the whole machine has been busy since boot (user, nice, system, irq, softirq, steal)."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = f.readline().split()
        return sum(int(v) for v in fields[1:4] + fields[6:9]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def ranks_quiet(output: str) -> bool:
    """True when no non-blank line is printed twice (under MPI only rank 0 should print)."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    return len(lines) == len(set(lines))


def _tail(text: str, n: int = 300) -> str:
    return " | ".join(text.strip().splitlines())[-n:]


# --------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------
def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def machine_info(env: dict, python: str, cwd: Path) -> dict:
    cpu = cpu_model()
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    versions = {d: None for d in _DISTS}
    source = commit = dirty = None
    try:  # asked of the contestants' Python: the minitx they import need not be this file's checkout
        proc = subprocess.run([python, "-c", _PROBE], capture_output=True, text=True, env=env, cwd=cwd, timeout=60)
        reply = json.loads(proc.stdout.strip().splitlines()[-1])
        versions, source = reply["versions"], reply["source"]
    except (OSError, subprocess.SubprocessError, ValueError, IndexError, KeyError):
        pass
    try:
        if source:
            commit = subprocess.run(["git", "-C", source, "rev-parse", "HEAD"], capture_output=True, text=True,
                                    timeout=10).stdout.strip() or None
        if commit:
            dirty = bool(subprocess.run(["git", "-C", source, "status", "--porcelain", "--untracked-files=no"],
                                        capture_output=True, text=True, timeout=10).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    blas_env = {k: env.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS",
                                        "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    return {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"), "cpu": cpu,
            "cpu_count": os.cpu_count(), "usable_cpus": usable, **versions, "minitx_source": source,
            "commit": commit, "dirty": dirty, "blas_env": blas_env, "loadavg_start": _loadavg()}


_DISTS = ("python", "numpy", "torch", "mpi4py", "mpich", "threadpoolctl")
#: Run by the contestants' Python: its package versions and where its minitx lives (one JSON line).
_PROBE = """import json, os, platform
from importlib import metadata
def v(d):
    try:
        return metadata.version(d)
    except metadata.PackageNotFoundError:
        return None
import minitx
print(json.dumps({"versions": {"python": platform.python_version(), **{d: v(d) for d in %r}},
                  "source": os.path.dirname(os.path.abspath(minitx.__file__))}))
""" % (_DISTS[1:],)


def _loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def _ratio_summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "rounds": values}


def summarise(runs: dict, a, tokens: int) -> tuple[list[dict], list[dict]]:
    """Ratio rows (a, b, plus the training-loop ratio) and split rows (c) from the per-round runs."""
    ratios = []

    def per_round(num: str, den: str) -> list[float]:  # time of `num` / time of `den`, round by round
        return [n["wall_s"] / d["wall_s"] for n, d in zip(runs[num], runs[den])]

    if runs.get("peer") and runs.get("minitx_threads"):
        ratios.append({"name": "minitx_vs_peer", "what": "PyTorch peer wall time / minitx wall time",
                       "target": TARGETS["minitx_vs_peer"], **_ratio_summary(per_round("peer", "minitx_threads"))})
        loop = [m["log_tokens_per_s"] / p["log_tokens_per_s"] for p, m in zip(runs["peer"], runs["minitx_threads"])
                if m["log_tokens_per_s"] and p["log_tokens_per_s"]]
        if loop:
            ratios.append({"name": "minitx_vs_peer_train_loop", "target": None,
                           "what": "minitx / peer training-loop tokens/s (each program's own log; not a target)",
                           **_ratio_summary(loop)})
    if runs.get("minitx_mpi") and runs.get("minitx_threads"):
        ratios.append({"name": "mpi_vs_threads", "what": "minitx threads wall time / minitx MPI wall time",
                       "target": TARGETS["mpi_vs_threads"],
                       **_ratio_summary(per_round("minitx_threads", "minitx_mpi"))})
    splits = []
    for name in CONTESTANTS:
        if not runs.get(name):
            continue
        walls = [r["wall_s"] for r in runs[name]]
        rates = [r["log_tokens_per_s"] for r in runs[name] if r["log_tokens_per_s"]]
        wall = statistics.median(walls)
        row = {"contestant": name, "wall_s": wall, "wall_tokens_per_s": tokens / wall,
               "cpu_s": statistics.median(r["cpu_s"] for r in runs[name]),
               "others_cores": max((r["others_cores"] for r in runs[name] if r["others_cores"] is not None),
                                   default=None),
               "log_tokens_per_s": statistics.median(rates) if rates else None}
        if rates:  # per round, then the median of each (a round's split stays that round's)
            pairs = [(tokens / r["log_tokens_per_s"], r["wall_s"]) for r in runs[name] if r["log_tokens_per_s"]]
            row.update(train_loop_s=statistics.median(lp for lp, _ in pairs),
                       other_s=statistics.median(w - lp for lp, w in pairs),
                       train_loop_share=statistics.median(lp / w for lp, w in pairs))
        splits.append(row)
    return ratios, splits


def _fmt_ratio(r: dict) -> str:
    target = f"   target >= {r['target']:.2f}x: {'met' if r['median'] >= r['target'] else 'NOT met'}" \
        if r.get("target") else ""
    rounds = ", ".join(f"{v:.3f}" for v in r["rounds"])
    return f"  {r['name']:27s} {r['median']:6.3f}x  (min {r['min']:.3f}, max {r['max']:.3f}; rounds {rounds}){target}"


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m minitx.bench.train_cli", description=__doc__.splitlines()[0])
    p.add_argument("--data", metavar="FILE", default=None,
                   help="text file (default: ../shared/data/tinyshakespeare.txt if present, else minitx's "
                        "embedded corpus written to a temporary file)")
    p.add_argument("--n-layer", type=int, default=4)
    p.add_argument("--n-head", type=int, default=4)
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--block-size", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-iters", type=int, default=150)
    p.add_argument("--eval-iters", type=int, default=20, help="batches per loss estimate, both sides (default 20)")
    p.add_argument("--warmup-iters", type=int, default=10)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--min-lr", type=float, default=1e-4)
    p.add_argument("--threads", type=int, default=2, help="peer's torch threads, minitx's replicas, MPI ranks")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds; medians are reported (default 3)")
    p.add_argument("--settle", type=float, default=2.0, help="seconds of pause before each run (default 2)")
    p.add_argument("--timeout", type=float, default=900, help="seconds one run may take (default 900)")
    p.add_argument("--no-warmup", action="store_true", help="skip the untimed 2-iteration run of each contestant "
                                                            "(the MPI probe still runs)")
    p.add_argument("--minitx", metavar="CMD", default=None,
                   help="how to run minitx (default: the minitx script next to this Python, else python -m minitx)")
    p.add_argument("--skip-peer", action="store_true", help="no PyTorch peer")
    p.add_argument("--skip-mpi", action="store_true", help="no MPI contestant")
    p.add_argument("--numpy-blas", action="store_true",
                   help="unset OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE for every contestant (NumPy's own kernels)")
    p.add_argument("--keep", metavar="DIR", default=None, help="keep every run's folder and log under DIR")
    p.add_argument("--json", action="store_true", help="one JSON object per line instead of the text report")
    return p


def main(argv=None) -> int:
    a = _parser().parse_args(argv)
    for name in ("rounds", "threads", "max_iters", "eval_iters"):
        if getattr(a, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')}: got {getattr(a, name)}, expected at least 1")
    env = dict(os.environ)
    if a.numpy_blas:
        env.pop("OPENBLAS_CORETYPE", None)
        env.pop("OPENBLAS_L2_SIZE", None)
    env["PYTHONUNBUFFERED"] = "1"
    work = Path(a.keep).resolve() if a.keep else Path(tempfile.mkdtemp(prefix="minitx-bench-cli-"))
    work.mkdir(parents=True, exist_ok=True)
    emit = (lambda obj: print(json.dumps(obj), flush=True)) if a.json else (lambda obj: None)
    say = (lambda *s: None) if a.json else (lambda *s: print(*s, flush=True))
    try:
        return _run(a, env, work, emit, say)
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)


def _run(a, env, work: Path, emit, say) -> int:
    a.data, data_desc = default_data(a.data, work)
    minitx, python = minitx_command(env, a.minitx)
    flags = detect_flags(minitx, env, work)
    info = machine_info(env, python, work)
    tokens = a.max_iters * a.batch_size * a.block_size
    config = {k: getattr(a, k) for k in ("n_layer", "n_head", "d_model", "block_size", "batch_size", "max_iters",
                                         "eval_iters", "warmup_iters", "lr", "min_lr", "threads", "rounds",
                                         "settle", "numpy_blas")}
    peer_script = str(Path(__file__).with_name("torch_peer.py"))
    commands = {
        "peer": lambda out, tiny=False: [sys.executable, peer_script, *peer_args(a, out, tiny=tiny)],
        "minitx_threads": lambda out, tiny=False: [*minitx, *minitx_train_args(a, flags, a.threads, out, tiny=tiny)],
    }
    skipped = {}
    if a.skip_peer:
        skipped["peer"] = "--skip-peer"
    elif _version("torch") is None:
        skipped["peer"] = "PyTorch is not installed (pip install torch)"
    mpiexec = None
    if a.skip_mpi:
        skipped["minitx_mpi"] = "--skip-mpi"
    else:
        mpiexec, reason = find_mpi(env, python)
        if mpiexec is None:
            skipped["minitx_mpi"] = reason
        else:
            commands["minitx_mpi"] = lambda out, tiny=False: [mpiexec, "-n", str(a.threads), *minitx,
                                                              *minitx_train_args(a, flags, 1, out, tiny=tiny)]
    for name in skipped:
        commands.pop(name, None)
    meta = {"type": "meta", **info, "data": a.data, "data_source": data_desc, "config": config,
            "minitx_command": minitx, "minitx_flags": flags, "mpiexec": mpiexec,
            "commands": {n: _shell(c(f"{work}/{n}-ROUND")) for n, c in commands.items()}}
    emit(meta)
    say(f"minitx train end to end: {a.n_layer} layers, {a.n_head} heads, {a.d_model} wide, block {a.block_size}, "
        f"batch {a.batch_size}, {a.max_iters} iterations, eval {a.eval_iters} batches at 0 and the end; "
        f"{a.threads} threads")
    say(f"data: {data_desc}")
    say(f"machine: {info['cpu']}, {info['cpu_count']} CPUs ({info['usable_cpus']} usable), load average "
        f"{info['loadavg_start']}; {info['date']}")
    say(f"python {info['python']}, numpy {info['numpy']}, torch {info['torch']}, mpi4py {info['mpi4py']}, "
        f"mpich {info['mpich']}, threadpoolctl {info['threadpoolctl']}")
    say(f"minitx {info['minitx_source']} at {info['commit']}{' (uncommitted changes)' if info['dirty'] else ''}; "
        f"flags: {flags}")
    say(f"BLAS env: {info['blas_env']}{' (--numpy-blas: OPENBLAS_CORETYPE/L2_SIZE unset)' if a.numpy_blas else ''}")
    for name, cmd in commands.items():
        say(f"  {name}: {_shell(cmd(str(work / (name + '-N'))))}")

    # probes: each contestant once on a toy configuration (the MPI one decides whether MPI is measured)
    for name in list(commands):
        if a.no_warmup and name != "minitx_mpi":
            continue
        out = work / f"{name}-probe"
        r = run_timed(commands[name](str(out), tiny=True), env, work / f"{name}-probe.log", a.timeout)
        reason = None
        if r["rc"] != 0:
            reason = f"the 2-iteration probe failed (exit {r['rc']}): {_tail(r['output'])}"
        elif name == "minitx_mpi" and not ranks_quiet(r["output"]):
            reason = (f"under mpiexec -n {a.threads} every rank printed the same lines: minitx train does not run "
                      "as one MPI job here (the ranks trained independently)")
        if reason:
            if name != "minitx_mpi":
                raise SystemExit(f"{name}: {reason}")
            skipped[name] = reason
            del commands[name]
    for name, reason in skipped.items():
        emit({"type": "skipped", "contestant": name, "reason": reason})
        say(f"{name}: skipped: {reason}")

    runs = {name: [] for name in commands}
    for rnd in range(a.rounds):
        for name, cmd in commands.items():
            time.sleep(a.settle)
            out = work / f"{name}-{rnd}"
            r = run_timed(cmd(str(out)), env, work / f"{name}-{rnd}.log", a.timeout)
            if r["rc"] != 0:
                raise SystemExit(f"{name}, round {rnd}: exit {r['rc']}: {_tail(r['output'])}")
            if not a.keep:
                shutil.rmtree(out, ignore_errors=True)
            record = {k: v for k, v in r.items() if k != "output"}
            runs[name].append(record)
            emit({"type": "run", "contestant": name, "round": rnd, **record})
            rate = f"{r['log_tokens_per_s']:,.0f}" if r["log_tokens_per_s"] else "?"
            others = "?" if r["others_cores"] is None else f"{r['others_cores']:.2f}"
            busy = r["others_cores"] is not None and r["others_cores"] > BUSY_CORES
            say(f"round {rnd}  {name:15s} {r['wall_s']:7.2f} s wall, {r['cpu_s']:6.1f} s CPU, "
                f"log {rate} tokens/s; other processes {others} cores{'  (host busy)' if busy else ''}")
    ratios, splits = summarise(runs, a, tokens)
    loadavg_end = _loadavg()
    for row in ratios:
        emit({"type": "ratio", **row})
    for row in splits:
        emit({"type": "split", **row})
    emit({"type": "end", "loadavg_end": loadavg_end})

    say(f"\nwhere the time goes (median of {a.rounds} rounds; {tokens:,} training tokens)")
    say(f"  {'contestant':34s} {'wall s':>7s} {'CPU s':>7s} {'log tok/s':>10s} {'wall tok/s':>10s} "
        f"{'loop s':>7s} {'other s':>7s}")
    for row in splits:
        label = LABELS[row["contestant"]].format(t=a.threads)
        log_rate = f"{row['log_tokens_per_s']:10,.0f}" if row["log_tokens_per_s"] else f"{'?':>10s}"
        loop = f"{row['train_loop_s']:7.2f} {row['other_s']:7.2f}" if "train_loop_s" in row else ""
        say(f"  {label:34s} {row['wall_s']:7.2f} {row['cpu_s']:7.1f} {log_rate} {row['wall_tokens_per_s']:10,.0f} "
            f"{loop}")
    say("\nratios (median of per-round ratios; above 1 means the second-named is slower)")
    for row in ratios:
        say(_fmt_ratio(row))
    for name, reason in skipped.items():
        if name == "minitx_mpi":
            say(f"  {'mpi_vs_threads':27s} skipped: {reason}")
        elif name == "peer":
            say(f"  {'minitx_vs_peer':27s} skipped: {reason}")
    say(f"load average at the end: {loadavg_end}")
    busy = sum(1 for rs in runs.values() for r in rs
               if r["others_cores"] is not None and r["others_cores"] > BUSY_CORES)
    if busy:
        say(f"warning: in {busy} run(s) other processes used more than {BUSY_CORES} cores: other jobs shared the CPUs, "
            "and "
            "PyTorch's OpenMP threads slow down far more than minitx's under contention; compare CPU s with wall s "
            "and re-run on a quiet host")
    return 0


def _shell(cmd: list[str]) -> str:
    import shlex  # noqa: PLC0415

    return " ".join(shlex.quote(c) for c in cmd)


if __name__ == "__main__":
    raise SystemExit(main())
