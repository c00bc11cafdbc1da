"""Shared fixtures: locations of the golden fixtures and the real data in ../shared.

These paths are required, not optional: a missing folder fails the test with a clear
message instead of skipping it (CI always has ../shared beside the checkout).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# The golden fixtures were generated with oneDNN's AVX2 convolution kernels. On a CPU with
# AVX-512, oneDNN picks other kernels whose float32 rounding differs (~8e-7 relative on the
# encoder features), which the random golden ResNet amplifies to ~1e-3 on some gradients.
# Capping the ISA gives the same kernels, so the golden tolerances of README 1.9 hold; on
# a CPU without AVX-512 this changes nothing. Read at oneDNN's first use, so set it here.
os.environ["ONEDNN_MAX_CPU_ISA"] = "AVX2"

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("HVC_SHARED_DIR", REPO.parent / "shared"))


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        pytest.fail(f"{what} not found at {path}; set the environment variable to its location")
    return path


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    """Golden fixtures: $HVC_GOLDEN_DIR, default ../shared/golden."""
    return _require(Path(os.environ.get("HVC_GOLDEN_DIR", SHARED / "golden")), "golden fixtures ($HVC_GOLDEN_DIR)")


@pytest.fixture(scope="session")
def davis_root() -> Path:
    """The 10 real DAVIS 2016 val sequences in ../shared/data/DAVIS."""
    return _require(SHARED / "data" / "DAVIS", "DAVIS data ($HVC_SHARED_DIR/data/DAVIS)")


@pytest.fixture(scope="session")
def static_root() -> Path:
    """Real photos for training: ../shared/data/Static/JPEGImages."""
    return _require(SHARED / "data" / "Static" / "JPEGImages", "static images ($HVC_SHARED_DIR/data/Static)")
