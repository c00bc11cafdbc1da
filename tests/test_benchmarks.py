"""The propagation benchmark runs end to end and its work accounting counts what it claims."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import torch

BENCH = Path(__file__).resolve().parents[1] / "bench" / "propagation_speed.py"


def _bench_module():
    spec = importlib.util.spec_from_file_location("propagation_speed", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_in_radius_pairs_counts_grid_pairs():
    bench = _bench_module()
    for h, w, radius in [(9, 13, 3.5), (9, 13, 12.0), (5, 30, 4.0), (1, 7, 2.0)]:
        ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        grid = torch.stack([ys.flatten(), xs.flatten()], dim=1).double()
        assert bench.in_radius_pairs(h, w, radius) == int((torch.cdist(grid, grid) < radius).sum())
    work = bench.matmul_work(256, 60, 107, 50, 12.0)
    assert round(work["dense"]) == 1076  # 51 x 6420^2 x 256 x 2
    assert work["least"] < work["local"] < work["dense"] / 5


def test_benchmark_prints_the_kernels_and_the_ratios():
    """The script as it runs, each kernel in a worker process of its own that reports one JSON line.
    The exact kernels only: the approximate ones (an interpreter start each) and their ratio lines
    are checked in this process by tests/test_speed_benchmarks.py."""
    done = subprocess.run([sys.executable, str(BENCH), "--size", "12x20", "--context", "4", "--frames", "1",
                           "--repeat", "1", "--no-bf16"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "speed-up local vs dense" in out and "matmul work ratio dense / least" in out
    rows = [line.split() for line in out.splitlines() if re.fullmatch(r"(dense|local\S*)( +[\d.]+){3}", line)]
    assert [r[0] for r in rows] == ["dense", "local"]
    assert all(float(r[1]) > 0 for r in rows)
