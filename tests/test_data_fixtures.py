"""The real-data rule of tests/conftest.py: a missing data folder skips with the reason, except under
CI=true, where it fails; a missing golden folder always fails."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
REAL_DATA_TEST = "tests/test_vos.py::test_davis2016_real_sequences"  # takes davis_root
GOLDEN_TEST = "tests/test_vos.py::test_palette_is_the_davis_palette"  # takes golden_dir


def _pytest(tests: list[str], **env: str) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k not in ("CI", "HVC_SHARED_DIR", "HVC_GOLDEN_DIR")}
    full_env.update(env)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-ra", *tests],
                          cwd=REPO, env=full_env, capture_output=True, text=True, timeout=300)


def test_missing_data_skips_outside_ci_and_missing_golden_fails(tmp_path):
    """Both rules in one pytest run (one interpreter start instead of two): outside CI the real-data
    test skips with its reason and does not count as an error; the golden test errors."""
    done = _pytest([REAL_DATA_TEST, GOLDEN_TEST], CI="", HVC_SHARED_DIR=str(tmp_path / "nothing"),
                   HVC_GOLDEN_DIR=str(tmp_path / "none"))
    assert "1 skipped, 1 error" in done.stdout, done.stdout[-2000:]
    assert f"real DAVIS data not found at {tmp_path / 'nothing' / 'data' / 'DAVIS'}" in done.stdout
    errors = [line for line in done.stdout.splitlines() if line.startswith("ERROR ")]
    assert len(errors) == 1 and errors[0].startswith(f"ERROR {GOLDEN_TEST}"), done.stdout[-2000:]
    assert "golden fixtures not found" in done.stdout
    assert done.returncode == 1
    assert (REPO / ".ci" / "run").read_text().strip().endswith("make test")


def test_missing_real_data_fails_under_ci(tmp_path):
    done = _pytest([REAL_DATA_TEST], CI="true", HVC_SHARED_DIR=str(tmp_path / "nothing"))
    assert "1 error" in done.stdout, done.stdout[-2000:]
    assert f"real DAVIS data not found at {tmp_path / 'nothing' / 'data' / 'DAVIS'}" in done.stdout
    assert done.returncode == 1
