"""The shortened `make demo` (--quick) runs every stage: exact file counts, the training steps it
claims, an mp4 of every frame; the trained encoder beats the untrained one by a margin that holds on
any CPU; and on the same machine its data, masks and scores repeat byte for byte."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from hvc.demo.run import MODELS, QUICK_FRAMES, QUICK_STEPS, SEQUENCE, propagate, score
from hvc.demo.run import main as demo_main
from hvc.demo.video import render_video, write_davis_sequence, write_training_photos

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


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_quick_demo_is_complete_and_deterministic(tmp_path, capsys):
    out, again = tmp_path / "demo", tmp_path / "again"
    assert demo_main(["--quick", "--output", str(out)]) == 0  # `make demo --quick`, in this process
    printed = capsys.readouterr().out

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
        row = next(line for line in printed.splitlines() if line.startswith(model + " "))
        assert row.split()[1:] == [f"{v:.3f}" for v in scores[model]]
        assert scores[model][0] >= FLOOR[model], (model, scores[model])
    assert scores["hvc"][0] >= scores["random18"][0] + TRAINED_MARGIN, scores

    # the stage timings table lists every stage
    stages = re.findall(r"^(\d \w+(?: \w+)?)\s+[\d.]+\s+[\d.]+$", printed, flags=re.M)
    assert stages == ["1 data", "2 train", "3 export", "4 propagate hvc", "5 score hvc",
                      "4 propagate random18", "5 score random18"]
    assert str(out.resolve()) in printed.splitlines()[-1]

    # determinism on the same machine: stage 1 again writes the same files, and stages 4-5 again (the
    # demo's own functions) the same masks and scores from the trained encoder. That
    # training repeats bit for bit is tests/test_checkpoint_resume.py's check (an interrupted run ends
    # with the uninterrupted run's weights); its 3 steps here would double this test's time.
    write_training_photos(str(again / "photos"))
    write_davis_sequence(str(again / "DAVIS"), SEQUENCE, *render_video(num_frames=QUICK_FRAMES))
    assert _files(again / "photos") == _files(out / "photos") and _files(again / "DAVIS") == _files(out / "DAVIS")
    propagate("hvc", out / "DAVIS", again / "hvc", out / "checkpoints" / "hvc_demo.pth")
    assert tuple(score(out / "DAVIS", again / "hvc").values()) == scores["hvc"]
    first, second = _files(out / "results" / "hvc" / SEQUENCE), _files(again / "hvc" / SEQUENCE)
    assert len(first) == QUICK_FRAMES and first == second
