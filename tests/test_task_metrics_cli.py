"""eval_metrics.py --task jhmdb|vip|vost (and the DAVIS figure) end to end on synthetic data:
ground truth as prediction scores perfectly, constructed errors score what they must, every
scorer writes a valid PNG figure, and bad input writes nothing."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hvc.data.jhmdb import JOINT_NAMES, read_joints, save_keypoints
from hvc.demo.video import FACE, HAIR
from hvc.errors import EXIT_INPUT
from hvc.tasks.clips import feature_coords
from helpers.metrics_helpers import load_eval_metrics
from helpers.task_fixtures import synthetic_tasks  # noqa: F401 (fixture)

REPO = Path(__file__).resolve().parents[1]
STRIDE, INPUT = 8, (320, 320)  # the paper's JHMDB protocol: 320x320 frames, 40x40 feature maps
FEAT = (INPUT[0] // STRIDE, INPUT[1] // STRIDE)


def _main(argv: list[str]) -> int:
    return load_eval_metrics().main([str(a) for a in argv])


def _assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
    with Image.open(path) as im:
        assert im.format == "PNG" and im.width >= 300 and im.height >= 200
        im.verify()


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# ---- JHMDB ----------------------------------------------------------------------------------

def _write_keypoints(tasks, results: Path, shift_cells: float = 0.0, lost: tuple[int, ...] = ()) -> None:
    """Predictions from the ground truth at feature resolution, shifted right by ``shift_cells``;
    joints in ``lost`` are marked invisible (-1) after frame 0."""
    for name in tasks.jhmdb_videos:
        pos = read_joints(tasks.jhmdb / "joint_positions" / name / "joint_positions.mat")
        coords = feature_coords(pos, (320, 240), INPUT, STRIDE).astype(np.float32)
        coords[0] += shift_cells
        for j in lost:
            coords[:, j, 1:] = -1
        save_keypoints(results / f"{name}.npz", coords, FEAT)


def _pck_rows(path: Path) -> dict[float, dict[str, float]]:
    """Threshold -> joint -> PCK; an empty field (a joint never scored) reads as NaN."""
    return {float(r["Threshold"]): {k: float(v or "nan") for k, v in r.items() if k != "Threshold"}
            for r in _rows(path)}


def test_jhmdb_perfect_and_lost_joints(synthetic_tasks, tmp_path: Path, capsys):
    results = tmp_path / "results"
    _write_keypoints(synthetic_tasks, results, lost=(2, 7))
    assert _main(["--task", "jhmdb", "--root", synthetic_tasks.jhmdb, "--results", results, "--output", results]) == 0
    table = _pck_rows(results / "pck_results.csv")
    assert list(table) == [0.1, 0.2, 0.3, 0.4, 0.5]
    assert list(table[0.1]) == [*JOINT_NAMES, "Mean"]
    for row in table.values():  # invisible predictions are skipped, not counted as misses
        assert all(row[j] == 100.0 for j in JOINT_NAMES if j not in (JOINT_NAMES[2], JOINT_NAMES[7]))
        assert np.isnan(row[JOINT_NAMES[2]]) and np.isnan(row[JOINT_NAMES[7]]) and row["Mean"] == 100.0
    out = capsys.readouterr().out
    assert "PCK@0.1" in out and "never scored" in out and "face" in out
    _assert_png(results / "pck_results.png")


def test_jhmdb_shifted_predictions(synthetic_tasks, tmp_path: Path):
    """A shift of 2 feature cells is 2 x 320/40 = 16 px in x on every joint of every frame.
    The normaliser is 0.6 x the diagonal of the joints' box; if it lies in (80, 160) px on
    every frame, 16 / normaliser lies in (0.1, 0.2): PCK@0.1 = 0 and PCK@0.2.. = 100."""
    normalisers = []
    for name in synthetic_tasks.jhmdb_videos:
        pos = read_joints(synthetic_tasks.jhmdb / "joint_positions" / name / "joint_positions.mat")[:, :, 1:]
        normalisers += list(0.6 * np.hypot(np.ptp(pos[0], axis=0), np.ptp(pos[1], axis=0)))
    assert 80 < min(normalisers) and max(normalisers) < 160, "the premise of the expected values"
    results = tmp_path / "results"
    _write_keypoints(synthetic_tasks, results, shift_cells=2.0)
    assert _main(["--task", "jhmdb", "--root", synthetic_tasks.jhmdb, "--list", synthetic_tasks.jhmdb / "test_list.txt",
                  "--results", results, "--output", tmp_path / "out"]) == 0
    table = _pck_rows(tmp_path / "out" / "pck_results.csv")
    assert all(v == 0.0 for v in table[0.1].values())
    assert all(v == 100.0 for t in (0.2, 0.3, 0.4, 0.5) for v in table[t].values())


# ---- VIP ------------------------------------------------------------------------------------

def _vip_predictions(tasks, results: Path, relabel: tuple[int, int] | None = None, palette: bool = False) -> None:
    labels = tasks.vip / "Annotations" / "Category_ids" / tasks.vip_video
    for frame in tasks.vip_frames:
        ids = np.array(Image.open(labels / f"{frame}.png"))
        if relabel:
            ids[ids == relabel[0]] = relabel[1]
        image = Image.fromarray(ids)
        if palette:  # palette PNGs are read as their indices
            image.putpalette([v for i in range(256) for v in (i, 255 - i, 7 * i % 256)])
        (results / tasks.vip_video).mkdir(parents=True, exist_ok=True)
        image.save(results / tasks.vip_video / f"{frame}.png")


def test_vip_perfect_and_relabelled(synthetic_tasks, tmp_path: Path):
    results = tmp_path / "results"
    _vip_predictions(synthetic_tasks, results, palette=True)
    assert _main(["--task", "vip", "--root", synthetic_tasks.vip, "--list", synthetic_tasks.vip / "val_vip.txt",
                  "--results", results, "--output", results]) == 0
    perfect = json.loads((results / "vip_results.json").read_text())
    assert perfect["frames"] == len(synthetic_tasks.vip_frames)
    assert perfect["mean_iu"] == perfect["overall_accuracy"] == perfect["mean_accuracy"] == perfect["fwavacc"] == 1.0
    _assert_png(results / "vip_results.png")

    # Every face pixel predicted as hair: face IoU 0, hair IoU = hair / (hair + face), every
    # other present class 1, so mIoU = (P - 2 + hair / (hair + face)) / P over the P classes
    # present; pixel accuracy = 1 - face / all pixels.
    gt = np.stack([np.array(Image.open(synthetic_tasks.vip / "Annotations" / "Category_ids" / synthetic_tasks.vip_video
                                       / f"{f}.png")) for f in synthetic_tasks.vip_frames])
    face, hair, present = np.sum(gt == FACE), np.sum(gt == HAIR), len(np.unique(gt))
    other = tmp_path / "relabelled"
    _vip_predictions(synthetic_tasks, other, relabel=(FACE, HAIR))
    assert _main(["--task", "vip", "--root", synthetic_tasks.vip, "--results", other, "--output", other]) == 0
    scores = json.loads((other / "vip_results.json").read_text())
    assert scores["per_class_iu"][FACE] == 0.0
    assert scores["per_class_iu"][HAIR] == pytest.approx(hair / (hair + face), abs=1e-12)
    assert scores["mean_iu"] == pytest.approx((present - 2 + hair / (hair + face)) / present, abs=1e-12)
    assert scores["overall_accuracy"] == pytest.approx(1 - face / gt.size, abs=1e-12)
    assert scores["per_class_iu"][1] is None  # "hat": in neither ground truth nor prediction


# ---- VOST -----------------------------------------------------------------------------------

def _vost_predictions(tasks, results: Path, drop_blade: bool = False) -> None:
    for frame in tasks.vost_frames:
        path = tasks.vost / "Annotations" / tasks.vost_sequence / f"{frame}.png"
        (results / tasks.vost_sequence).mkdir(parents=True, exist_ok=True)
        image = Image.open(path)
        if drop_blade:
            ids = np.array(image)
            ids[ids == 2] = 0
            out = Image.fromarray(ids, mode="L").convert("P")
            out.putpalette(image.getpalette())
            image = out
        image.save(results / tasks.vost_sequence / f"{frame}.png")


def test_vost_perfect_and_missing_object(synthetic_tasks, tmp_path: Path):
    results = tmp_path / "results"
    _vost_predictions(synthetic_tasks, results)
    assert _main(["--task", "vost", "--root", synthetic_tasks.vost, "--results", results, "--output", results]) == 0
    seq = synthetic_tasks.vost_sequence
    assert (results / "global_results-val.csv").read_text() == (
        "J-Mean,J-Recall,J-Decay,J_last-Mean,J_last-Recall,J_last-Decay\n1.000,1.000,0.000,1.000,1.000,0.000\n")
    _assert_png(results / "per-frame_J-val.png")
    raw = json.loads((results / "raw-val.json").read_text())
    assert raw["per_frame"][f"{seq}_1"]["frames"] == list(synthetic_tasks.vost_frames[1:-1])

    # The blade (object 2) is in every annotated frame; never predicting it gives J = 0 on
    # every evaluated frame, the dough stays exact: J-Mean = J_last-Mean = (1 + 0) / 2.
    other = tmp_path / "no_blade"
    _vost_predictions(synthetic_tasks, other, drop_blade=True)
    assert _main(["--task", "vost", "--root", synthetic_tasks.vost, "--results", other, "--output", other]) == 0
    assert (other / "per-sequence_results-val.csv").read_text() == (
        f"Sequence,J-Mean,J_last-Mean\n{seq}_1,1.000,1.000\n{seq}_2,0.000,0.000\n")
    assert _rows(other / "global_results-val.csv")[0]["J-Mean"] == "0.500"


def test_run_metrics_script_scores_vost(synthetic_tasks, tmp_path: Path):
    _vost_predictions(synthetic_tasks, tmp_path / "hvc" / "vost")
    env = dict(os.environ, VOST_ROOT=str(synthetic_tasks.vost), RESULTS_ROOT=str(tmp_path), PYTHON=sys.executable)
    done = subprocess.run(["bash", str(REPO / "scripts" / "run_metrics"), "hvc", "vost"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Global results for val" in done.stdout
    assert (tmp_path / "hvc" / "vost" / "global_results-val.csv").read_text().splitlines()[1].startswith("1.000,")
    bad = subprocess.run(["bash", str(REPO / "scripts" / "run_metrics"), "hvc", "pose"], env=env,
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "pose" in bad.stderr and "jhmdb, vip or vost" in bad.stderr


# ---- DAVIS: the figure, and nothing at all on failure ---------------------------------------

def test_davis_figure_and_no_partial_output(golden_dir: Path, tmp_path: Path):
    davis = golden_dir / "metrics" / "DAVIS"
    out = tmp_path / "out"
    argv = ["--davis-root", davis, "--results", davis / "Annotations" / "480p", "--year", 2017, "--output", out,
            "--sequences", "blackswan", "libby"]
    assert _main(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "global_results-val.csv", "per-sequence_results-val.csv", "per-sequence_results-val.png"]
    _assert_png(out / "per-sequence_results-val.png")
    failing = [*argv[:7], tmp_path / "failed", "--sequences", "blackswan", "nosuchseq"]
    # the output folder is created (and checked writable) up front, but nothing is written in it
    assert _main(failing) == EXIT_INPUT
    assert not (tmp_path / "failed").exists() or not any((tmp_path / "failed").iterdir())


# ---- bad input: an error naming the file, and no output ------------------------------------

def _fails(argv: list, capsys, needles: list[str]) -> None:
    out = Path(argv[argv.index("--output") + 1])
    assert _main(argv) == EXIT_INPUT
    message = capsys.readouterr().err
    for needle in needles:
        assert needle in message, (needle, message)
    assert not out.exists() or not any(out.iterdir()), "nothing may be written"


def test_bad_jhmdb_predictions(synthetic_tasks, tmp_path: Path, capsys):
    results, name = tmp_path / "results", synthetic_tasks.jhmdb_videos[1]
    _write_keypoints(synthetic_tasks, results)
    argv = ["--task", "jhmdb", "--root", synthetic_tasks.jhmdb, "--results", results, "--output", tmp_path / "out"]
    path = results / f"{name}.npz"
    save_keypoints(path, np.zeros((2, 15, 5), np.float32), FEAT)
    _fails(argv, capsys, [name, f"{name}.npz", "(2, 15, 5)", "(2, 15, 8)"])
    path.write_bytes(b"garbage")
    _fails(argv, capsys, [f"{name}.npz", "corrupt"])
    path.unlink()
    _fails(argv, capsys, [f"{name}.npz", "missing"])
    _fails([*argv, "--videos", "walk/nothing"], capsys, ["walk/nothing"])


def test_bad_vip_predictions(synthetic_tasks, tmp_path: Path, capsys):
    results = tmp_path / "results"
    _vip_predictions(synthetic_tasks, results)
    video, frame = synthetic_tasks.vip_video, synthetic_tasks.vip_frames[2]
    argv = ["--task", "vip", "--root", synthetic_tasks.vip, "--results", results, "--output", tmp_path / "out"]
    Image.fromarray(np.full((240, 320), 25, np.uint8)).save(results / video / f"{frame}.png")
    _fails(argv, capsys, [f"{video}/{frame}.png", "class id 25"])
    (results / video / f"{frame}.png").unlink()
    _fails(argv, capsys, [video, frame, "missing prediction"])


def test_bad_vost_predictions(synthetic_tasks, tmp_path: Path, capsys):
    results = tmp_path / "results"
    _vost_predictions(synthetic_tasks, results)
    seq, frame = synthetic_tasks.vost_sequence, synthetic_tasks.vost_frames[2]
    argv = ["--task", "vost", "--root", synthetic_tasks.vost, "--results", results, "--output", tmp_path / "out"]
    Image.new("RGB", (320, 240)).save(results / seq / f"{frame}.png")
    _fails(argv, capsys, [f"{seq}/{frame}.png", "mode RGB"])
    shutil.rmtree(results / seq)
    _fails(argv, capsys, [seq, "no results folder"])
