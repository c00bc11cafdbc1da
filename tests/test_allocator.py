"""hvc.cli.keep_freed_memory: glibc's thresholds are set by every entry point, unless turned off.

Its effect on speed (fewer page faults per step) depends on the allocator's history and is
measured by the benchmarks, not here (docs/local_kernel.md, "Cost")."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _run(code: str, keep: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "HVC_KEEP_FREED_MEMORY"}
    if keep is not None:
        env["HVC_KEEP_FREED_MEMORY"] = keep
    env["PYTHONPATH"] = str(REPO)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's (Linux)")
def test_thresholds_are_set_unless_turned_off():
    call = "from hvc.cli import keep_freed_memory; print(keep_freed_memory())"
    assert _run(call, None) == "True"  # glibc accepted both settings
    assert _run(call, "1") == "True"
    assert _run(call, "0") == "False"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's (Linux)")
def test_entry_points_set_them_before_main_runs():
    code = ("import hvc.cli as c\n"
            "calls = []\n"
            "real = c.keep_freed_memory\n"
            "c.keep_freed_memory = lambda: calls.append(real())\n"
            "c.run_main(lambda: print(calls))")
    assert _run(code, None) == "[True]"
    assert _run(code, "0") == "[False]"
