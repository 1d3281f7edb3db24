

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
