"""JHMDB, VIP and VOST end to end: ``scripts/run_test.sh`` propagates the synthetic clips
(hvc/demo/tasks.py) with the untrained random18 at a small input size, ``scripts/run_metrics``
scores them, and the scores must beat what the first frame's labels score when copied to every
frame (the clips move, so standing still is the baseline to beat). Plus: dense and local
kernels give the same keypoints, bad input stops before anything is written, and the square
resize of the JHMDB / VIP protocol is cv2's.

Input sizes: 160 for JHMDB and VIP (20x20 features; the configs' 320 and 560 take minutes on
two CPU cores), 120 for VOST; everything else as in configs/test_<task>.yaml.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from hvc.config.core import ConfigError, load_config
from hvc.config.inference import TestConfig
from hvc.data.jhmdb import read_joints
from hvc.data.vos import DatasetError, FrameDataset, VideoSequence
from hvc.tasks.pose import decode_keypoints, feature_coords, joint_label_maps, load_keypoints
from hvc.tasks.runners import run_test
from task_fixtures import synthetic_tasks  # noqa: F401 (fixture)

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable  # the scripts run this interpreter (scripts/run_test.sh: $PYTHON)
SMALL = {"jhmdb": 160, "vip": 160, "vost": 120}
MODEL = "random18"


def _env(tasks, results: Path) -> dict[str, str]:
    env = dict(os.environ, PYTHON=PYTHON, RESULTS_ROOT=str(results), JHMDB_ROOT=str(tasks.jhmdb),
               VIP_ROOT=str(tasks.vip), VOST_ROOT=str(tasks.vost))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return env


def _run(script: str, task: str, env: dict[str, str], *extra: str) -> str:
    proc = subprocess.run(["bash", str(REPO / "scripts" / script), MODEL, task, *extra], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{script} {task} failed:\n{proc.stderr[-3000:]}"
    return proc.stdout


def _propagate_and_score(tasks, results: Path, task: str) -> Path:
    env = _env(tasks, results)
    _run("run_test.sh", task, env, "--input-size", str(SMALL[task]), "data.workers=0")
    _run("run_metrics", task, env)
    return results / MODEL / task


@pytest.fixture(scope="module")
def jhmdb_results(synthetic_tasks, tmp_path_factory) -> Path:
    return _propagate_and_score(synthetic_tasks, tmp_path_factory.mktemp("results"), "jhmdb")


def test_jhmdb_keypoints_tracked_above_standing_still(synthetic_tasks, jhmdb_results):
    for name in synthetic_tasks.jhmdb_videos:
        pos = read_joints(synthetic_tasks.jhmdb / "joint_positions" / name / "joint_positions.mat")
        kp = load_keypoints(jhmdb_results / f"{name}.npz")
        assert kp.feature_wh == (20, 20) and kp.coords.shape == (2, 15, pos.shape[2])
        # frame 0 is the given labels, decoded: the Gaussian maps of the ground truth (320x240
        # frames squeezed to 160x160, stride 8)
        first = feature_coords(pos[:, :, :1], (320, 240), (160, 160), 8)[:, :, 0]
        np.testing.assert_array_equal(kp.coords[:, :, 0], decode_keypoints(joint_label_maps(first, (20, 20))))
        assert np.all(kp.coords >= 0) and np.all(kp.coords <= 19)  # every joint stays on the map
    with open(jhmdb_results / "pck_results.csv", newline="") as f:
        pck = {float(r["Threshold"]): float(r["Mean"]) for r in csv.DictReader(f)}
    # Measured 19.6 / 38.8 (PCK@0.1 / @0.2); frame 0's joints repeated in every frame score
    # 5.0 / 18.8: the figure walks 30 % of the frame width.
    assert pck[0.1] >= 12 and pck[0.2] >= 30, pck
    assert (jhmdb_results / "pck_results.png").stat().st_size > 0


def test_jhmdb_dense_and_local_kernels_give_the_same_keypoints(synthetic_tasks, jhmdb_results, tmp_path):
    cfg = load_config(TestConfig, REPO / "configs" / "test_jhmdb.yaml", [
        f"model.name={MODEL}", f"data.root={synthetic_tasks.jhmdb}", f"data.input_size={SMALL['jhmdb']}",
        "data.workers=0", "prop.impl=dense", f"run.output_dir={tmp_path}",
        f"data.sequences=[{synthetic_tasks.jhmdb_videos[1]}]"])  # the shorter clip: dense is slow
    run_test(cfg)
    for name in synthetic_tasks.jhmdb_videos[1:]:
        local, dense = load_keypoints(jhmdb_results / f"{name}.npz"), load_keypoints(tmp_path / f"{name}.npz")
        # the kernels' soft masks agree to ~1e-7 (tests/test_propagation.py); decoded positions
        # are weighted means of the same top-3 cells
        np.testing.assert_allclose(dense.coords, local.coords, rtol=0, atol=1e-4)


def test_vip_parts_propagated_above_standing_still(synthetic_tasks, tmp_path):
    out = _propagate_and_score(synthetic_tasks, tmp_path, "vip")
    for frame in synthetic_tasks.vip_frames:  # greyscale class ids at the annotation's size
        with Image.open(out / synthetic_tasks.vip_video / f"{frame}.png") as im:
            assert im.mode == "L" and im.size == (320, 240)
            assert np.asarray(im).max() < 20
    scores = json.loads((out / "vip_results.json").read_text())
    # Measured 0.399; the first frame's labels copied to the later frames score 0.215 (the
    # figure's thin limbs move by more than their width between annotated frames).
    assert scores["mean_iu"] >= 0.30, scores["mean_iu"]
    assert (out / "vip_results.png").stat().st_size > 0


def test_vost_cut_dough_followed_above_standing_still(synthetic_tasks, tmp_path):
    out = _propagate_and_score(synthetic_tasks, tmp_path, "vost")
    written = sorted(p.stem for p in (out / synthetic_tasks.vost_sequence).glob("*.png"))
    assert written == sorted(synthetic_tasks.vost_frames)  # the annotated frames only
    with open(out / "per-sequence_results-val.csv", newline="") as f:
        rows = {r["Sequence"]: r for r in csv.DictReader(f)}
    dough = rows[f"{synthetic_tasks.vost_sequence}_1"]
    # The dough (id 1): measured J-Mean 0.62, J over the last quarter 0.57; its first mask
    # copied to every frame scores 0.44 and 0.04 (it stretches and its halves drift apart). The
    # 8-pixel blade (id 2) is 0.5 feature cells wide at this size and is lost: not asserted.
    assert float(dough["J-Mean"]) >= 0.5 and float(dough["J_last-Mean"]) >= 0.4, dough


def test_bad_input_names_the_file_and_writes_nothing(synthetic_tasks, tmp_path):
    root = tmp_path / "JHMDB"
    shutil.copytree(synthetic_tasks.jhmdb, root)
    mat = root / "joint_positions" / synthetic_tasks.jhmdb_videos[1] / "joint_positions.mat"
    mat.write_bytes(b"not a mat file")
    out = tmp_path / "out"
    overrides = [f"model.name={MODEL}", f"data.root={root}", f"run.output_dir={out}"]
    with pytest.raises(DatasetError, match=re.escape(str(mat))):
        run_test(load_config(TestConfig, REPO / "configs" / "test_jhmdb.yaml", overrides))
    with pytest.raises(ConfigError, match="prop.num_classes=16"):
        run_test(load_config(TestConfig, REPO / "configs" / "test_jhmdb.yaml", [*overrides, "prop.num_classes=20"]))
    vip = tmp_path / "VIP"
    shutil.copytree(synthetic_tasks.vip, vip)
    first = vip / "Annotations" / "Category_ids" / synthetic_tasks.vip_video / f"{synthetic_tasks.vip_frames[0]}.png"
    Image.fromarray(np.full((240, 320), 33, np.uint8)).save(first)
    with pytest.raises(DatasetError, match=re.escape(f"{first}: class ids [33]")):
        run_test(load_config(TestConfig, REPO / "configs" / "test_vip.yaml",
                             [f"model.name={MODEL}", f"data.root={vip}", f"run.output_dir={out}"]))
    assert not out.exists()


def test_square_resize_is_cv2_bilinear(synthetic_tasks):
    """resize=square: videowalk resizes float frames with cv2.resize (bilinear, half-pixel)."""
    frames = sorted((synthetic_tasks.jhmdb / "Rename_Images" / synthetic_tasks.jhmdb_videos[0]).glob("*.png"))
    seq = VideoSequence("clip", tuple(frames[:1]), {}, (), "palette")
    ours = FrameDataset(seq, 320, (0, 0, 0), (1, 1, 1), resize="square")[0]
    with Image.open(frames[0]) as im:
        rgb = np.asarray(im.convert("RGB"), dtype=np.float32) / 255
    reference = torch.from_numpy(cv2.resize(rgb, (320, 320))).permute(2, 0, 1)
    assert ours.shape == (3, 320, 320)
    torch.testing.assert_close(ours, reference, rtol=0, atol=5e-5)  # cv2's fixed-point weights: 3e-5
    shorter = FrameDataset(seq, 120, (0, 0, 0), (1, 1, 1))[0]  # the HVC loader is unchanged
    expected = F.interpolate(torch.from_numpy(rgb).permute(2, 0, 1)[None], size=(120, 160), mode="bilinear",
                             align_corners=True)[0]
    torch.testing.assert_close(shorter, expected, rtol=0, atol=0)
