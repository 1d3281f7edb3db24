

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
