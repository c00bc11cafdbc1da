"""The shortened `make demo` (--quick) runs every stage: exact file counts, the training steps it
claims, an mp4 of every frame; the trained encoder beats the untrained one by a margin that holds on
any CPU; and a second run on the same machine gives the same bytes and numbers."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from hvc.demo.run import MODELS, QUICK_FRAMES, QUICK_STEPS, SEQUENCE

REPO = Path(__file__).resolve().parents[1]
TRAINING_IMAGES = 63  # docs/demo.md: the scikit-image colour photos and their 160x160 tiles
EXPORTED_KEYS = 90  # ResNet-18 without fc (120 keys) minus layer4's 30 (--drop-layer4)
# Quick-mode J&F-Mean on AMD EPYC machines with AVX-512, oneDNN capped at AVX2 (as the suite runs)
# and not: hvc 0.790-0.801, random18 0.651-0.656. The 3 training steps carry each CPU's convolution
# and matmul rounding into the weights, so hvc's score moves by ~0.01 between machines and is not
# pinned (determinism is "the same machine twice", checked below). What holds on every CPU: training
# helps by 0.13-0.15 over random18, asserted with a 0.10 margin, and both stay far above the 0.10
# that copying the first mask to every frame scores (the figures cross the frame).
TRAINED_MARGIN = 0.10
FLOOR = {"hvc": 0.70, "random18": 0.55}


def _scores(csv_path: Path) -> tuple[float, float, float]:
    with open(csv_path, newline="") as f:
        (row,) = list(csv.DictReader(f))
    return tuple(float(row[k]) for k in ("J&F-Mean", "J-Mean", "F-Mean"))


def _video_frames(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def _run_demos(*outs: Path) -> list[subprocess.CompletedProcess]:
    """Quick demos into each of ``outs``, run side by side (one thread each, so that together they
    use the cores one run with a thread per core would: same settings, same bytes expected)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    runs = [subprocess.Popen([sys.executable, "-m", "hvc.demo.run", "--quick", "--output", str(out)], cwd=REPO,
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for out in outs]
    # the timeout only guards against a hang: ~45 s on idle cores, over 10 min on a crowded machine
    done = [subprocess.CompletedProcess(run.args, 0, *run.communicate(timeout=1800)) for run in runs]
    for run, proc in zip(runs, done):
        assert run.returncode == 0, proc.stderr[-3000:]
    return done


def _outputs(out: Path) -> dict[str, bytes]:
    """Every file a run writes whose bytes must repeat: the exported encoder, masks, keypoints and
    scores (not the logs and the completion records with their timings and paths, nor the JPEG
    overlays and mp4s made from the masks)."""
    results = out / "results"
    files = [out / "checkpoints" / "hvc_demo.pth", *sorted(results.rglob("*.png")), *sorted(results.rglob("*.npz")),
             *sorted(p for p in results.rglob("*.csv") if p.name != "sequences.csv")]
    return {str(p.relative_to(out)): p.read_bytes() for p in files}


def test_quick_demo_is_complete_and_deterministic(tmp_path):
    out, again = tmp_path / "demo", tmp_path / "again"
    proc, second = _run_demos(out, again)  # the second run is for the determinism check at the end

    # stage 1: the training photos and the video in the DAVIS layout, exact 2-object masks
    assert len(list((out / "photos").glob("*.jpg"))) == TRAINING_IMAGES
    frames = sorted((out / "DAVIS" / "JPEGImages" / "480p" / SEQUENCE).glob("*.jpg"))
    masks = sorted((out / "DAVIS" / "Annotations" / "480p" / SEQUENCE).glob("*.png"))
    assert [p.stem for p in frames] == [p.stem for p in masks] == [f"{t:05d}" for t in range(QUICK_FRAMES)]
    with Image.open(masks[0]) as first:
        assert first.mode == "P" and first.size == (432, 240)
        assert set(np.unique(np.asarray(first))) == {0, 1, 2}
    assert (out / "DAVIS" / "ImageSets" / "2017" / "val.txt").read_text().split() == [SEQUENCE]

    # stages 2-3: the training run did exactly the quick steps on all photos; the exported encoder
    log = [json.loads(line) for line in (out / "train" / "log.jsonl").read_text().splitlines()]
    assert log[0]["event"] == "start" and log[0]["samples"] == TRAINING_IMAGES
    assert [r["step"] for r in log if r["event"] == "step"][-1] == QUICK_STEPS
    ckpt = torch.load(out / "train" / "checkpoint.pth", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == QUICK_STEPS
    encoder = torch.load(out / "checkpoints" / "hvc_demo.pth", map_location="cpu", weights_only=True)
    assert len(encoder) == EXPORTED_KEYS and not any(k.startswith("layer4.") for k in encoder)

    # stages 4-5: masks, overlays and an mp4 of every frame; the scores, in the printed table
    scores = {}
    for model in MODELS:
        results = out / "results" / model
        vis = out / "results" / f"{model}_vis"
        assert len(list((results / SEQUENCE).glob("*.png"))) == QUICK_FRAMES
        assert len(list((vis / SEQUENCE).glob("*.jpg"))) == QUICK_FRAMES
        assert _video_frames(vis / f"{SEQUENCE}.mp4") == QUICK_FRAMES
        scores[model] = _scores(results / "global_results-val.csv")
        row = next(line for line in proc.stdout.splitlines() if line.startswith(model + " "))
        assert row.split()[1:] == [f"{v:.3f}" for v in scores[model]]
        assert scores[model][0] >= FLOOR[model], (model, scores[model])
    assert scores["hvc"][0] >= scores["random18"][0] + TRAINED_MARGIN, scores

    # the stage timings table lists every stage
    stages = re.findall(r"^(\d \w+(?: \w+)?)\s+[\d.]+\s+[\d.]+$", proc.stdout, flags=re.M)
    assert stages == ["1 data", "2 train", "3 export", "4 propagate hvc", "5 score hvc",
                      "4 propagate random18", "5 score random18"]
    assert str(out.resolve()) in proc.stdout.splitlines()[-1]

    # determinism: the same machine, a second run, the same bytes
    first_files, second_files = _outputs(out), _outputs(again)
    assert len(first_files) > 2 * QUICK_FRAMES and first_files.keys() == second_files.keys()
    assert [k for k in first_files if first_files[k] != second_files[k]] == []
    def score_rows(out: str) -> list[str]:  # the printed J&F and PCK tables
        return [line for line in out.splitlines() if line.split()[:1] and line.split()[0] in MODELS]

    assert score_rows(proc.stdout) == score_rows(second.stdout) and len(score_rows(proc.stdout)) == 2 * len(MODELS)
