"""``eval_metrics.py --pred DIR --gt DIR``: one's own <video>/<frame>.png folders scored with
the DAVIS measures (hvc.metrics.davis.evaluate_folders), equal to the DAVIS-layout path on the shared
DAVIS sequences for predictions that are not the ground truth."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from hvc.data.palette import save_indexed_png
from hvc.errors import EXIT_INPUT, EXIT_USAGE
from hvc.metrics import MetricsError, evaluate, global_table
from hvc.metrics.davis import evaluate_folders, is_binary
from hvc.metrics.report import video_table

from helpers.metrics_helpers import load_eval_metrics

VIDEOS = ("blackswan", "scooter-black")


def _perturbed(davis_root: Path, out: Path) -> None:
    """blackswan eroded, saved 0/255 greyscale as DAVIS 2016's; scooter-black dilated, with a
    false-positive block on every 5th frame, saved as palette ids."""
    kernel = np.ones((9, 9), np.uint8)
    for name in VIDEOS:
        for t, path in enumerate(sorted((davis_root / "Annotations" / "480p" / name).glob("*.png"))):
            gt = (np.array(Image.open(path)) > 0).astype(np.uint8)
            if name == "blackswan":
                Image.fromarray(cv2.erode(gt, kernel, iterations=2) * 255, mode="L").save(out / name / path.name)
            else:
                pred = cv2.dilate(gt, kernel)
                if t % 5 == 0:
                    pred[:40, :60] = 1
                save_indexed_png(out / name / path.name, pred)


@pytest.fixture(scope="module")
def folders(davis_root, tmp_path_factory):
    """(pred, gt): gt links to the shared sequences (read only), pred their perturbed copies."""
    root = tmp_path_factory.mktemp("own")
    gt, pred = root / "gt", root / "pred"
    for name in VIDEOS:
        gt.mkdir(exist_ok=True)
        (gt / name).symlink_to((davis_root / "Annotations" / "480p" / name).resolve(), target_is_directory=True)
        (pred / name).mkdir(parents=True)
    _perturbed(davis_root, pred)
    return pred, gt


def test_own_folders_score_as_the_davis_layout(davis_root, folders):
    pred, gt = folders
    assert all(is_binary(gt / v) for v in VIDEOS)
    own = evaluate_folders(pred, gt, progress=False)
    davis = evaluate(davis_root, pred, 2016, sequences=VIDEOS, progress=False)
    assert [(o.sequence, o.object_id, o.frames) for o in own] == [(o.sequence, o.object_id, o.frames) for o in davis]
    for a, b in zip(own, davis):
        assert np.array_equal(a.J, b.J) and np.array_equal(a.F, b.F)
    assert global_table(own).equals(global_table(davis))
    table = video_table(own)
    assert list(table["Video"]) == list(VIDEOS)
    jf = table["J&F-Mean"].to_numpy()
    assert ((jf > 0.3) & (jf < 0.98)).all(), jf  # perturbed: neither perfect nor unrelated
    # the ground truth as its own prediction scores one
    perfect = video_table(evaluate_folders(gt, gt, ["blackswan"], progress=False))
    assert perfect["J&F-Mean"].tolist() == [1.0]


def test_the_command_line_prints_per_video_and_the_mean_and_writes_csvs(folders, tmp_path, capsys):
    pred, gt = folders
    assert load_eval_metrics().main(["--pred", str(pred), "--gt", str(gt), "--output", str(tmp_path / "scores")]) == 0
    out = capsys.readouterr().out
    assert "Global results for own" in out and "Per video" in out
    assert all(f"{v} " in out for v in VIDEOS)
    with open(tmp_path / "scores" / "per-video_results-own.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["Video"] for r in rows] == list(VIDEOS) and all(r["Objects"] == "1" for r in rows)
    with open(tmp_path / "scores" / "global_results-own.csv") as f:
        mean = float(next(csv.DictReader(f))["J&F-Mean"])
    assert min(float(r["J&F-Mean"]) for r in rows) <= mean <= max(float(r["J&F-Mean"]) for r in rows)


def test_bad_folders_are_one_line_errors(folders, tmp_path, capsys):
    pred, gt = folders
    for argv, code, message in [
        (["--pred", str(pred), "--gt", str(tmp_path / "none")], EXIT_INPUT, "ground-truth folder not found"),
        (["--pred", str(tmp_path / "none"), "--gt", str(gt)], EXIT_INPUT, "results folder not found"),
        (["--pred", str(pred), "--gt", str(gt), "--videos", "../etc"], EXIT_INPUT, "no ground-truth video '../etc'"),
        (["--pred", str(pred)], EXIT_USAGE, "--gt"),
        (["--pred", str(pred), "--gt", str(gt), "--output", str(gt / "scores")], EXIT_USAGE, "--gt"),  # read-only
    ]:
        assert load_eval_metrics().main(argv) == code
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], (argv, err)
    assert not (gt / "scores").exists()
    with pytest.raises(MetricsError, match="no ground-truth video"):
        evaluate_folders(pred, gt, ["dog"])
