"""The test suite's wall time against an earlier version's, measured side by side.

The machine's speed drifts over a day, so a suite time is only comparable with one measured
right before or after it. This runs, ``--rounds`` times in turn, the earlier version's suite as
it ran then (one process: ``python -m pytest -q``, in a temporary git worktree of ``--base``)
and this checkout's ``make test``, both with this environment (set ``CI=true`` and
``HVC_SHARED_DIR`` as CI does), and prints pytest's own figures and their ratio.

    CI=true python bench/suite_time.py [--base 55e8e3a] [--rounds 2] [-k EXPR]

``-k`` narrows both runs to the tests it selects (a quick check of the script itself).
Figures of 2026-12-07: docs/tests.md.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

from hvc.cli import run_main

REPO = Path(__file__).resolve().parents[1]
SUMMARY = re.compile(r"^(?P<counts>.*\b(?:passed|failed|error)\b.*) in (?P<seconds>[\d.]+)s\b", re.M)


def pytest_summary(output: str) -> tuple[str, float]:
    """(the counts, the seconds) of pytest's last summary line in ``output``."""
    found = list(SUMMARY.finditer(output))
    if not found:
        raise RuntimeError(f"no pytest summary line in the output:\n{output[-2000:]}")
    return found[-1]["counts"].strip("= "), float(found[-1]["seconds"])


def run(cmd: list[str], cwd: Path, env_extra: dict[str, str]) -> tuple[str, float]:
    done = subprocess.run(cmd, cwd=cwd, env={**os.environ, **env_extra}, capture_output=True, text=True)
    return pytest_summary(done.stdout + done.stderr)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", default="55e8e3a", help="the earlier version (a git revision of this checkout)")
    ap.add_argument("--rounds", type=int, default=2, help="pairs of runs, the earlier version first in each")
    ap.add_argument("-k", dest="select", help="only the tests this pytest -k expression selects")
    args = ap.parse_args(argv)
    select = ["-k", args.select] if args.select else []
    rows = []
    with tempfile.TemporaryDirectory(prefix="hvc-suite-") as tmp:
        base = Path(tmp) / "base"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(base), args.base], cwd=REPO, check=True)
        try:
            for r in range(1, args.rounds + 1):
                # the earlier suite with this interpreter, its own code first on the path
                old = run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *select], base,
                          {"PYTHONPATH": str(base)})
                # quoted: the recipe's shell splits PYTEST_ARGS
                new = run(["make", "test", f"PYTEST_ARGS={shlex.join(select)}"], REPO, {})
                rows.append((r, old, new))
                print(f"round {r}: {args.base} {old[1]:.1f} s ({old[0]}); this checkout {new[1]:.1f} s ({new[0]}); "
                      f"ratio {new[1] / old[1]:.2f}", flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=REPO, check=True)
    ratios = [new[1] / old[1] for _, old, new in rows]
    print(f"this checkout / {args.base}: {', '.join(f'{x:.2f}' for x in ratios)} (below 1: faster)")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
