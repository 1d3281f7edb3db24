"""Shared test configuration.

* ``gpu`` marks tests that need an NVIDIA GPU and CuPy; they skip cleanly
  (with the reason) on machines without one, such as CI.
* Hypothesis runs a fixed, modest number of examples with no deadline: the
  machines are shared and noisy, and a timing failure is not a bug.
"""
import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "minitx", deadline=None, max_examples=25, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# A longer, randomised run for hunting bugs locally: HYPOTHESIS_PROFILE=thorough pytest ...
settings.register_profile("thorough", deadline=None, max_examples=300,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "minitx"))


#: Where the GPU tests run when this machine has no GPU.
GPU_ELSEWHERE = "they run on a machine with one: tools/gpu_check.sh"


def _nvidia_gpu_present() -> bool:
    """An NVIDIA driver with at least one device node, whether or not CuPy is installed."""
    return any(os.path.exists(f"/dev/nvidia{i}") for i in range(8)) or os.path.exists("/proc/driver/nvidia/gpus")


def _gpu_available() -> tuple[bool, str]:
    """``(usable, why not)``: the reason fits the machine (no GPU at all is not "install CuPy")."""
    try:
        import cupy  # noqa: PLC0415
    except ImportError:
        if _nvidia_gpu_present():
            return False, "an NVIDIA GPU is present but CuPy is not installed (pip install minitx[cuda])"
        return False, f"no CUDA GPU on this machine; {GPU_ELSEWHERE}"
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return False, f"no CUDA GPU on this machine; {GPU_ELSEWHERE}"
    except Exception as exc:  # noqa: BLE001 - any driver error means no GPU here
        if not _nvidia_gpu_present():
            return False, f"no CUDA GPU on this machine; {GPU_ELSEWHERE}"
        return False, f"an NVIDIA GPU is present but not usable ({type(exc).__name__}: {exc})"
    return True, ""


@pytest.fixture
def nvrtc():
    """``cupy.cuda.nvrtc`` for the CPU-side compile checks (no GPU needed); skips, saying how to get it."""
    try:
        from cupy.cuda import nvrtc as module  # noqa: PLC0415

        module.getVersion()
    except Exception as exc:  # noqa: BLE001 - ImportError, or the NVRTC library not found
        pytest.skip("needs CuPy and NVRTC: "
                    f'pip install cupy-cuda13x "cuda-toolkit[nvrtc]==13.0.*" ({type(exc).__name__}: {exc})')
    return module


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs an NVIDIA GPU with CuPy; skipped without one")
    config.addinivalue_line("markers", "slow: long-running; excluded from the default suite")


def pytest_collection_modifyitems(config, items):
    ok, why = _gpu_available()
    if ok:
        return
    skip = pytest.mark.skip(reason=f"GPU test skipped: {why}")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
