"""The shortened `make demo` (--quick) runs every stage and leaves their files behind."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from hvc.demo.run import MODELS, QUICK_FRAMES, SEQUENCE

REPO = Path(__file__).resolve().parents[1]


def _jf(csv_path: Path) -> float:
    with open(csv_path, newline="") as f:
        return float(next(csv.DictReader(f))["J&F-Mean"])


def test_quick_demo_produces_every_stage(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "hvc.demo.run", "--quick", "--output", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]

    # stage 1: training photos and the video in the DAVIS layout, exact 2-object masks
    assert len(list((out / "photos").glob("*.jpg"))) >= 20
    frames = sorted((out / "DAVIS" / "JPEGImages" / "480p" / SEQUENCE).glob("*.jpg"))
    masks = sorted((out / "DAVIS" / "Annotations" / "480p" / SEQUENCE).glob("*.png"))
    assert len(frames) == len(masks) == QUICK_FRAMES
    first = Image.open(masks[0])
    assert first.mode == "P" and set(np.unique(np.asarray(first))) == {0, 1, 2}
    assert (out / "DAVIS" / "ImageSets" / "2017" / "val.txt").read_text().split() == [SEQUENCE]

    # stages 2-3: training run and exported encoder
    for name in ("checkpoint.pth", "log.jsonl", "config.yaml"):
        assert (out / "train" / name).stat().st_size > 0
    assert (out / "checkpoints" / "hvc_demo.pth").stat().st_size > 0

    # stages 4-5: masks, overlays + mp4 and CSVs of both models; J&F in [0, 1], in the table
    jf = {}
    for model in MODELS:
        results = out / "results" / model
        assert len(list((results / SEQUENCE).glob("*.png"))) == QUICK_FRAMES
        assert len(list((out / "results" / f"{model}_vis" / SEQUENCE).glob("*.jpg"))) == QUICK_FRAMES
        assert (out / "results" / f"{model}_vis" / f"{SEQUENCE}.mp4").stat().st_size > 0
        assert (results / "per-sequence_results-val.csv").is_file()
        jf[model] = _jf(results / "global_results-val.csv")
        assert 0.0 <= jf[model] <= 1.0
        assert f"{jf[model]:.3f}" in next(line for line in proc.stdout.splitlines() if line.startswith(model + " "))
    assert str(out.resolve()) in proc.stdout.splitlines()[-1]
