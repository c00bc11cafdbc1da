"""DAVIS evaluation on the real DAVIS-2016 data, the run_metrics script, and bad input."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from hvc.metrics import MetricsError, evaluate, read_sequence_list
from helpers.metrics_helpers import load_eval_metrics, reference_jf

REPO = Path(__file__).resolve().parents[1]
PERTURBED = ("scooter-black", "libby")  # the two shortest sequences: 43 and 49 frames


def test_ground_truth_as_prediction_scores_one(davis_root: Path):
    """The identical-masks oracle on the two shortest real sequences, in two worker processes
    (the suite's one successful multi-process evaluation)."""
    names = read_sequence_list(davis_root, 2016, "val")
    assert len(names) == 10 and set(PERTURBED) <= set(names)
    objects = evaluate(davis_root, davis_root / "Annotations" / "480p", 2016, "val", sequences=PERTURBED,
                       workers=2, progress=False)
    assert [o.name for o in objects] == [f"{n}_1" for n in PERTURBED]
    for obj in objects:
        n_frames = len(list((davis_root / "Annotations" / "480p" / obj.sequence).glob("*.png")))
        assert len(obj.frames) == n_frames - 2  # first and last frame are not scored
        assert np.all(obj.J == 1.0) and np.all(obj.F == 1.0), obj.name
    assert sum(len(o.frames) for o in objects) == 43 + 49 - 4


def _write_perturbed(davis_root: Path, out: Path) -> None:
    """Shifted and eroded ground truth; one sequence as 0/255 greyscale, one as palette id 1."""
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))
    for i, name in enumerate(PERTURBED):
        (out / name).mkdir(parents=True)
        for t, path in enumerate(sorted((davis_root / "Annotations" / "480p" / name).glob("*.png"))):
            mask = (np.array(Image.open(path)) > 0).astype(np.uint8)
            mask = cv2.erode(np.roll(mask, (t % 7, -2 * (t % 5)), axis=(0, 1)), kernel)
            if i == 0:
                Image.fromarray(mask * 255, mode="L").save(out / name / path.name)
            else:
                image = Image.fromarray(mask, mode="P")
                image.putpalette([0, 0, 0, 128, 0, 0])
                image.save(out / name / path.name)


def test_perturbed_predictions_match_whole_frame_reference(davis_root: Path, tmp_path: Path):
    results = tmp_path / "results"
    _write_perturbed(davis_root, results)
    objects = evaluate(davis_root, results, 2016, sequences=PERTURBED, workers=1, progress=False)
    assert [o.name for o in objects] == [f"{n}_1" for n in PERTURBED]
    for obj in objects:
        for t, frame in enumerate(obj.frames):
            gt = np.array(Image.open(davis_root / "Annotations" / "480p" / obj.sequence / f"{frame}.png")) > 0
            pred = np.array(Image.open(results / obj.sequence / f"{frame}.png")) > 0
            assert (obj.J[t], obj.F[t]) == reference_jf(gt, pred), (obj.name, frame)
        assert 0.3 < obj.J.mean() < 0.99 and 0.1 < obj.F.mean() < 0.99


def test_run_metrics_script_writes_csvs_next_to_results(davis_root: Path, tmp_path: Path):
    for name in PERTURBED[:1]:
        shutil.copytree(davis_root / "Annotations" / "480p" / name, tmp_path / "hvc" / "davis16" / name)
    env = dict(os.environ, DATA_ROOT=str(davis_root.parent), RESULTS_ROOT=str(tmp_path), PYTHON=sys.executable)
    cmd = ["bash", str(REPO / "scripts" / "run_metrics"), "hvc", "davis16", "--sequences", PERTURBED[0]]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "hvc" / "davis16"
    assert (out / "global_results-val.csv").read_text().splitlines() == [
        "J&F-Mean,J-Mean,J-Recall,J-Decay,F-Mean,F-Recall,F-Decay",
        "1.000,1.000,1.000,0.000,1.000,1.000,0.000",
    ]
    assert (out / "per-sequence_results-val.csv").read_text() == f"Sequence,J-Mean,F-Mean\n{PERTURBED[0]}_1,1.000,1.000\n"
    assert "Global results for val" in done.stdout
    bad = subprocess.run(["bash", str(REPO / "scripts" / "run_metrics"), "hvc", "davis18"], env=env,
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "davis18" in bad.stderr


def test_run_metrics_sh_is_an_alias_of_run_metrics(tmp_path: Path):
    """The alias hands every argument to scripts/run_metrics (checked by its text and by its
    exit status on a bad dataset, which stops in bash before Python starts)."""
    lines = [line for line in (REPO / "scripts" / "run_metrics.sh").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert lines == ['exec bash "$(dirname "$0")/run_metrics" "$@"']
    bad = subprocess.run(["bash", str(REPO / "scripts" / "run_metrics.sh"), "hvc", "davis18"], cwd=tmp_path,
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "davis18: unknown dataset" in bad.stderr


# ---- bad input: a clear message naming the culprit, and no CSV written -------------------

SEQ = "composite3"  # 3 objects, 12 frames 00000..00033 in the golden DAVIS-2017 fixture
FRAME = "00015"


def _remove(path: Path) -> None:
    path.unlink()


def _resize(path: Path) -> None:
    image = Image.open(path)
    image.resize((427, 240), Image.NEAREST).save(path)


def _extra_object(path: Path) -> None:
    image = Image.open(path)
    labels = np.array(image)
    labels[10:20, 10:20] = 4
    out = Image.fromarray(labels, mode="P")
    out.putpalette(image.getpalette())
    out.save(path)


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:300])


def _rgb(path: Path) -> None:
    Image.open(path).convert("RGB").save(path)


@pytest.mark.parametrize(
    "damage, needles, workers",
    [
        (_remove, [SEQ, FRAME, "missing"], 1),
        (_resize, [SEQ, FRAME, f"{SEQ}/{FRAME}.png", "427x240", "854x480"], 1),
        # one case in two processes: a worker's error reaches the caller with its message
        (_extra_object, [SEQ, FRAME, f"{SEQ}/{FRAME}.png", "object id 4", "3 object"], 2),
        (_truncate, [f"{SEQ}/{FRAME}.png", "corrupt"], 1),
        (_rgb, [f"{SEQ}/{FRAME}.png", "mode RGB"], 1),
    ],
    ids=["missing-frame", "size", "object-id-2-workers", "corrupt", "rgb"],
)
def test_bad_prediction_frame(golden_dir: Path, tmp_path: Path, capsys, damage, needles, workers):
    metrics = golden_dir / "metrics"
    results = tmp_path / "results"
    for name in ("blackswan", SEQ):  # a healthy sequence too, so that two workers run
        shutil.copytree(metrics / "results" / "methodA" / name, results / name)
    damage(results / SEQ / f"{FRAME}.png")
    _expect_failure(metrics / "DAVIS", results, tmp_path / "out", ["blackswan", SEQ], capsys, needles, workers)


def test_missing_results_folder_and_sequence(golden_dir: Path, tmp_path: Path, capsys):
    davis = golden_dir / "metrics" / "DAVIS"
    _expect_failure(davis, tmp_path / "nowhere", tmp_path / "out", [SEQ], capsys, ["results folder", "nowhere"])
    (tmp_path / "results").mkdir()
    _expect_failure(davis, tmp_path / "results", tmp_path / "out", [SEQ], capsys, [SEQ, "no results folder"])
    _expect_failure(davis, tmp_path / "results", tmp_path / "out", ["nosuchseq"], capsys, ["nosuchseq", "no ground truth"])


def test_empty_sequence_list(golden_dir: Path, tmp_path: Path, capsys):
    davis = tmp_path / "DAVIS"
    (davis / "ImageSets" / "2017").mkdir(parents=True)
    (davis / "ImageSets" / "2017" / "val.txt").write_text("\n")
    shutil.copytree(golden_dir / "metrics" / "DAVIS" / "Annotations", davis / "Annotations")
    _expect_failure(davis, golden_dir / "metrics" / "results" / "methodA", tmp_path / "out", None, capsys, ["empty"])
    with pytest.raises(MetricsError, match="empty"):
        evaluate(davis, golden_dir / "metrics" / "results" / "methodA", 2017, sequences=[], progress=False)


def _expect_failure(davis: Path, results: Path, out: Path, sequences, capsys, needles, workers: int = 1) -> None:
    argv = ["--davis-root", str(davis), "--results", str(results), "--year", "2017", "--output", str(out),
            "--workers", str(workers)]
    if sequences:
        argv += ["--sequences", *sequences]
    assert load_eval_metrics().main(argv) == 3
    message = capsys.readouterr().err
    for needle in needles:
        assert needle in message, (needle, message)
    assert not list(out.glob("*.csv")), "no CSV may be left behind"
