"""The GPU check script itself, dry run on the CPU: ``bench/gpu_check.py --device cpu --quick``.

The real-data parts take the ``davis_root`` / ``static_root`` fixtures (skip without the data,
fail under CI=true). Staging copies a few photos and the first frames of three DAVIS sequences
into a temporary folder and runs test.py on the CPU; the check then runs all five stages at tiny
sizes. Its own oracle: test.py rerun on the same CPU with the same settings reproduces the
staged CPU labels exactly (0 pixels differ), and the staged folder holds only copies.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

from helpers.engine_support import REPO

STAGES = ["tests", "throughput", "train", "test.py", "propagation"]


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "bench" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # its dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("gpu_check", None)


def test_dry_run_on_cpu(gpu_check, davis_root, static_root, tmp_path, capsys, monkeypatch):
    shared = davis_root.parents[1]  # $HVC_SHARED_DIR: the folder holding data/
    assert static_root.parents[2] == shared
    monkeypatch.setenv("HVC_SHARED_DIR", str(shared))
    data, out = tmp_path / "gpu_data", tmp_path / "out"
    assert gpu_check.main(["--stage", str(data), "--quick"]) == 0
    staged = json.loads((data / "stage.json").read_text())
    assert staged["quick"] and staged["sequences"] == list(gpu_check.SEQUENCES)
    photos = sorted((data / "data" / "Static" / "JPEGImages" / "BSDS500").iterdir())
    assert [p.name for p in photos] == sorted(p.name for p in (static_root / "BSDS500").glob("*.jpg"))[:len(photos)]
    assert not any(p.is_symlink() for p in data.rglob("*")), "the staged folder must travel: copies, not links"
    for name in gpu_check.SEQUENCES:
        assert len(list((data / "cpu_labels" / name).glob("*.png"))) == gpu_check.QUICK["frames"]

    code = gpu_check.main(["--device", "cpu", "--quick", "--data", str(data), "--out", str(out), "--budget", "900"])
    printed = capsys.readouterr().out
    report = json.loads((out / "gpu_check.json").read_text())
    stages = report["stages"]
    assert list(stages) == STAGES
    assert code == 0, {k: (v["status"], v["summary"]) for k, v in stages.items()}
    assert all(stages[s]["status"] == "passed" for s in STAGES)
    for name in STAGES:  # one table row per stage
        assert any(line.startswith(name) and "passed" in line for line in printed.splitlines()), name

    assert stages["throughput"]["result"]["images_per_s"] > 0
    assert stages["train"]["result"]["steps"] == 2 and Path(stages["train"]["result"]["checkpoint"]).is_file()
    runs = stages["test.py"]["result"]
    assert set(runs) == {"hvc_bsds_cpu", "this run's training"}
    for run in runs.values():
        assert set(run["jf"]) == set(gpu_check.SEQUENCES)
        assert all(0.0 <= v <= 1.0 for v in run["jf"].values()) and run["s_per_frame"] > 0
    assert runs["hvc_bsds_cpu"]["labels_differing_from_cpu"] == 0.0  # same CPU, same settings
    for impl in ("dense", "local"):
        assert stages["propagation"]["result"][impl]["ms_per_frame"] > 0
    assert report["total_s"] <= report["budget_s"]


def test_check_refuses_unstaged_data(gpu_check, tmp_path):
    with pytest.raises(SystemExit, match="stage the data first"):
        gpu_check.main(["--device", "cpu", "--quick", "--data", str(tmp_path / "none"), "--out", str(tmp_path)])
    assert os.listdir(tmp_path) == []  # nothing written


def test_stages_fit_the_loan(gpu_check):
    """The stages' budgets add up to less than the default --budget, itself under 8 minutes; a
    stage gets the lesser of its budget and what is left, is not run when less than its minimum
    is left, and a failing stage is reported without stopping the others."""
    assert sum(gpu_check.BUDGET.values()) <= gpu_check.DEFAULT_BUDGET <= 8 * 60

    called = []
    late = gpu_check.run_stage(gpu_check.Stage("train", 180), gpu_check.Clock(5.0),
                               lambda s: called.append(s) or (True, "", {}), minimum=30)
    assert late.status == "skipped" and late.summary.startswith("not run") and not called

    given = gpu_check.run_stage(gpu_check.Stage("tests", 110), gpu_check.Clock(100.0),
                                lambda s: (True, f"{s:.3f}", {}), minimum=10)
    assert given.status == "passed" and 99.0 < float(given.summary) <= 100.0

    def boom(_seconds):
        raise RuntimeError("no GPU memory left")

    failed = gpu_check.run_stage(gpu_check.Stage("throughput", 35), gpu_check.Clock(100.0), boom, minimum=10)
    assert failed.status == "failed" and "no GPU memory left" in failed.summary
