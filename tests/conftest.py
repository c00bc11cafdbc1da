"""Shared fixtures: where the golden fixtures and the real data are.

- Golden fixtures ship with the repository in ``tests/golden`` (see its README);
  ``$HVC_GOLDEN_DIR`` points the same tests at another set in the format of docs/fixtures.md.
  A missing golden folder is always a failure.
- CUDA tests carry the ``cuda`` marker (``pytest -m cuda``). Without a usable CUDA device they
  SKIP with the reason, except under ``CI=true`` on a machine where a GPU is visible
  (``/dev/nvidia0`` or ``nvidia-smi``): there a CUDA test that cannot run FAILS, so a GPU job
  never passes by skipping (``cuda_unavailable``).
- Real data (the DAVIS frames, the BSDS500 photos) lives outside the repository, under
  ``$HVC_SHARED_DIR`` (default: ``shared`` beside the checkout, i.e. ``../shared``). Tests that
  need it take the fixtures below, which SKIP with the reason when it is absent, or FAIL when
  ``CI`` is set to true: CI keeps proving them.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from helpers.locations import GOLDEN, IN_CI, SHARED

# oneDNN picks its convolution kernels by CPU; its AVX-512 kernels round differently from the
# AVX2 ones the golden fixtures were made with (8e-7 on the features), and the random golden
# ResNet amplifies that to 1e-3 on an early gradient. Capping oneDNN at AVX2 gives the fixtures'
# kernels on every x86 CPU (on an AVX2-only CPU it changes nothing). Matmuls go through MKL, not
# oneDNN, and are left alone: see tests/README.md. oneDNN reads this at first use, so set it here.
os.environ["ONEDNN_MAX_CPU_ISA"] = "AVX2"

# Under pytest-xdist (`make test` runs one worker per core) each worker computes with one
# thread: workers that each started a thread per core would oversubscribe the cores, and
# OpenMP threads waiting for a busy core slow a step many times over. Set before torch is
# imported, and inherited by the commands tests start, so a test comparing its own results
# with a subprocess's compares runs of the same thread count.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")


def require_real_data(path: Path, what: str) -> Path:
    """``path`` if it exists; otherwise skip the test with the reason (fail under CI=true)."""
    if path.exists():
        return path
    reason = f"{what} not found at {path} (set $HVC_SHARED_DIR to the folder holding data/)"
    if IN_CI:
        pytest.fail(f"{reason}; CI=true, so real-data tests must run, not skip", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    """Golden fixtures: $HVC_GOLDEN_DIR, default tests/golden (in the repository)."""
    if not GOLDEN.is_dir():
        pytest.fail(f"golden fixtures not found at {GOLDEN} (set $HVC_GOLDEN_DIR or restore tests/golden)",
                    pytrace=False)
    return GOLDEN


@pytest.fixture(scope="session")
def davis_root() -> Path:
    """The real DAVIS 2016 val sequences: $HVC_SHARED_DIR/data/DAVIS."""
    return require_real_data(SHARED / "data" / "DAVIS", "real DAVIS data")


@pytest.fixture(scope="session")
def static_root() -> Path:
    """Real photos for training (BSDS500 below it): $HVC_SHARED_DIR/data/Static/JPEGImages."""
    root = SHARED / "data" / "Static" / "JPEGImages"
    require_real_data(root / "BSDS500", "the BSDS500 photos")  # what the tests read below it
    return root


def gpu_visible() -> bool:
    """A GPU is attached to this machine, whether or not torch can use it (a CPU-only torch
    build, a driver mismatch): the NVIDIA device node or the driver's nvidia-smi exists."""
    return Path("/dev/nvidia0").exists() or shutil.which("nvidia-smi") is not None


def cuda_unavailable(reason: str) -> None:
    """A CUDA test cannot run: skip with ``reason``, or fail under CI=true where a GPU is visible."""
    if IN_CI and gpu_visible():
        pytest.fail(f"{reason}; CI=true and a GPU is visible, so CUDA tests must run, not skip", pytrace=False)
    pytest.skip(reason)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Tests marked ``cuda`` run only where torch sees a CUDA device (see the module doc)."""
    if item.get_closest_marker("cuda") is None:
        return
    import torch  # here, not at import: collecting the CPU-only tests does not need it

    if not torch.cuda.is_available():
        cuda_unavailable(f"needs CUDA; torch {torch.__version__} sees no CUDA device")


# The files that take longest, in that order (docs/tests.md). `make test` hands whole files to its
# pytest-xdist workers in collection order; a long file handed out near the end keeps one worker
# busy while the others have nothing left to do, so these go first and the short ones fill in.
LONGEST_FIRST = ("test_demo.py", "test_cuda.py", "test_speed_benchmarks.py", "test_golden_propagation.py",
                 "test_e2e_tasks.py", "test_faults.py", "test_segment.py", "test_segment_direction.py",
                 "test_sharding.py", "test_readme.py", "test_ddp.py", "test_gpu_check.py", "test_propagation.py",
                 "test_benchmarks.py", "test_safety_writers.py", "test_train_switches.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Long files first (see LONGEST_FIRST); a stable sort keeps every file's own test order."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
