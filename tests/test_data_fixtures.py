"""The real-data rule of tests/conftest.py: a missing data folder skips with the reason, except under
CI=true, where it fails; a missing golden folder always fails."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REAL_DATA_TEST = "tests/test_vos.py::test_davis2016_real_sequences"  # takes davis_root
GOLDEN_TEST = "tests/test_vos.py::test_palette_is_the_davis_palette"  # takes golden_dir


def _pytest(test: str, **env: str) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k not in ("CI", "HVC_SHARED_DIR", "HVC_GOLDEN_DIR")}
    full_env.update(env)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test], cwd=REPO,
                          env=full_env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("ci, outcome", [("", "1 skipped"), ("true", "1 error")])
def test_missing_real_data_skips_or_fails_under_ci(tmp_path, ci, outcome):
    done = _pytest(REAL_DATA_TEST, CI=ci, HVC_SHARED_DIR=str(tmp_path / "nothing"))
    assert outcome in done.stdout, done.stdout[-2000:]
    assert f"real DAVIS data not found at {tmp_path / 'nothing' / 'data' / 'DAVIS'}" in done.stdout
    assert done.returncode == (0 if not ci else 1)


def test_missing_golden_dir_fails(tmp_path):
    done = _pytest(GOLDEN_TEST, HVC_GOLDEN_DIR=str(tmp_path / "none"))
    assert done.returncode == 1 and "golden fixtures not found" in done.stdout, done.stdout[-2000:]
