

def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux), for the machine line of every benchmark report."""
    import platform  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


#: The tiny-Shakespeare file, relative to the repository root (the project's shared data folder).
#: minitx never *needs* it: a benchmark that finds it reports it, one that does not says so and falls
#: back to the embedded corpus.
SHARED_DATA = "../shared/data/tinyshakespeare.txt"


def shakespeare_path():
    """The tiny-Shakespeare file (a ``Path``) beside the repository or the working folder, else ``None``."""
    from pathlib import Path  # noqa: PLC0415

    repo = Path(__file__).resolve().parents[2]
    for candidate in (repo / SHARED_DATA, Path.cwd() / SHARED_DATA):
        if candidate.is_file():
            return candidate.resolve()
    return None


def pyplot():
    """``matplotlib.pyplot`` on the file-only Agg backend, or ``None`` when matplotlib (an extra) is missing."""
    try:
        import matplotlib  # noqa: PLC0415

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        return None
    return plt


def save_figure(fig, path):
    """Lay out ``fig``, write it to ``path`` (its folder created), close it; returns the ``Path``."""
    from pathlib import Path  # noqa: PLC0415

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    pyplot().close(fig)
    return path


def positive_int(text: str) -> int:
    """An argparse ``type`` for counts (threads, BLAS threads): argparse reports the error as one line, exit 2."""
    import argparse  # noqa: PLC0415

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"got {text!r}, expected a positive integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"got {value}, expected a positive integer")
    return value


def cache_note(infos: dict) -> str:
    """How many of a study's models came from its cache: wall clock then leaves their training out, and says so."""
    cached = [i for i in infos.values() if i.get("cached")]
    if not cached:
        return "every model trained in this run"
    spent = sum(float(i.get("seconds", 0.0)) for i in cached)
    return (f"{len(cached)} of {len(infos)} models read from the cache, so their training ({spent:.0f} s when they "
            "were trained) is not in this run's time; --cache to an empty folder for a cold run")


def study_parser(module: str, doc: str, *, seed_help: str, fast_help: str, cache: str | None = None):
    """The options every study benchmark shares: ``--seed S``, ``--json`` and ``--fast``.

    The studies (``icl``, ``scaling``, ``rnn``, ``decoders``, ``finetune``) are
    one shape of command: a seeded experiment that prints tables, or one JSON
    object a line with ``--json``, and whose ``--fast`` version the tests run.
    A study that keeps trained models between runs names what it keeps in
    ``cache``, and gets ``--cache DIR`` (default ``.cache/<module>``) and
    ``--threads N`` (data-parallel threads, checked positive here, once).
    Each adds its own options to the parser this returns.
    """
    import argparse  # noqa: PLC0415

    p = argparse.ArgumentParser(prog=f"python -m minitx.bench.{module}", description=doc.splitlines()[0])
    p.add_argument("--seed", type=int, default=0, help=f"seed of {seed_help} (default 0)")
    p.add_argument("--json", action="store_true", help="one JSON object a line instead of the tables")
    p.add_argument("--fast", action="store_true", help=fast_help)
    if cache is not None:
        p.add_argument("--cache", default=f".cache/{module}", metavar="DIR",
                       help=f"folder of {cache} (default .cache/{module})")
        p.add_argument("--threads", type=positive_int, default=2, help="data-parallel threads (default 2)")
    return p
