"""The committed checkpoint trained by this repository (checkpoints/hvc_bsds_cpu.pth, model
card checkpoints/hvc_bsds_cpu.md) loads as the README says and tracks a real DAVIS object
better than the random-init baseline under the same protocol."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

from hvc.entry.test import main as run_test_py
from hvc.metrics import evaluate
from hvc.models.encoders import load_encoder

REPO = Path(__file__).resolve().parents[1]
CHECKPOINT = REPO / "checkpoints" / "hvc_bsds_cpu.pth"
SEQUENCE = "blackswan"
# The first 15 frames: J&F 0.52 (hvc) against 0.34 (random18) at input size 120, context 10;
# over all 50 frames 0.37 against 0.15.
FRAMES = 15


def test_file_is_the_small_fp16_test_time_encoder():
    assert CHECKPOINT.stat().st_size < 8 * 2**20
    state = torch.load(CHECKPOINT, map_location="cpu", weights_only=True)
    assert not any(k.startswith(("layer4.", "fc.")) for k in state)
    assert {v.dtype for v in state.values() if v.is_floating_point()} == {torch.float16}
    encoder = load_encoder("hvc", str(CHECKPOINT))
    assert encoder.out_channels == 256


def _first_frames(davis_root: Path, dest: Path) -> Path:
    """A DAVIS 2016 tree of links holding the first FRAMES frames and masks of SEQUENCE."""
    for sub, ext in (("JPEGImages", "jpg"), ("Annotations", "png")):
        folder = dest / sub / "480p" / SEQUENCE
        folder.mkdir(parents=True)
        for path in sorted((davis_root / sub / "480p" / SEQUENCE).glob(f"*.{ext}"))[:FRAMES]:
            os.symlink(path, folder / path.name)
    assert len(list(folder.iterdir())) == FRAMES
    (dest / "ImageSets" / "2016").mkdir(parents=True)
    (dest / "ImageSets" / "2016" / "val.txt").write_text(SEQUENCE + "\n")
    return dest


def test_trained_encoder_beats_random18_on_real_davis(tmp_path, davis_root, monkeypatch):
    """test.py --model hvc --checkpoint checkpoints/hvc_bsds_cpu.pth, as on a fresh clone."""
    davis_root = _first_frames(davis_root, tmp_path / "DAVIS")
    scores = {}
    for model, extra in (("hvc", ["--checkpoint", str(CHECKPOINT.relative_to(REPO))]), ("random18", [])):
        out = tmp_path / model
        argv = ["--config", "configs/test_davis16.yaml", "--model", model, *extra, "--input-size", "120",
                "--sequences", SEQUENCE, "--output", str(out), f"data.root={davis_root}", "data.workers=1",
                "prop.context=10"]  # a shorter context keeps CI fast
        if model == "hvc":  # the committed checkpoint through the real command line, as on a fresh clone
            run = subprocess.run([sys.executable, "test.py", *argv], cwd=REPO, capture_output=True, text=True,
                                 timeout=300)
            assert run.returncode == 0, run.stderr[-3000:]
        else:  # the baseline through test.py's main(argv) here: one interpreter start and torch import fewer
            monkeypatch.chdir(REPO)
            assert run_test_py(argv) == 0
        objects = evaluate(davis_root, out, year=2016, sequences=[SEQUENCE], progress=False)
        scores[model] = (objects[0].j_stats.mean + objects[0].f_stats.mean) / 2
    assert scores["hvc"] > scores["random18"] + 0.1, scores
