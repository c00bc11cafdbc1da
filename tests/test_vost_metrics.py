"""VOST J / J_last on a sequence built by hand, every number worked out in the comments."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from hvc.data.palette import save_indexed_png
from hvc.metrics import MetricsError
from hvc.metrics.report import csv_files
from hvc.metrics.vost import TruncatedIdsWarning, evaluate, evaluate_sequence

SEQ = "bend"
ANNOTATED = ("00000", "00005", "00010", "00015", "00020", "00025")  # sparse, every 5th frame


def _square(rows: slice, cols: slice, value: int, out: np.ndarray) -> np.ndarray:
    out[rows, cols] = value
    return out


def _write(root: Path, results: Path) -> None:
    """6 annotated frames of 6x6 pixels; frames 1-4 are scored (first and last are dropped).

    Object 1 (ground truth: rows 1-2, cols 1-2, 4 px, in every frame):
      f1 exact                                    J = 4/4 = 1
      f2 shifted one column right (cols 2-3), and the ground truth has void (255) on col 3:
         void counts as background, so           J = 2 / (4 + 4 - 2) = 1/3 (1/2 if void were excluded)
      f3 not predicted                            J = 0 / 4 = 0
      f4 the square plus 2 px (row 3, cols 1-2)   J = 4 / 6 = 2/3
    Object 2 (ground truth rows 4-5, cols 4-5 in f0-f2, gone from f3 on):
      f1 exact                                    J = 1
      f2 only row 4 predicted                     J = 2/4 = 1/2 (not above 0.5 for Recall)
      f3 absent from both                         J = 1 (empty union)
      f4 absent from the ground truth, 1 px predicted: J = 0/1 = 0
    A ground-truth id 3 appearing at f2 is not an object (the count comes from f0); a
    predicted id 3 at f1 is truncated with a warning.
    """
    gt_dir, pred_dir = root / "Annotations" / SEQ, results / SEQ
    for t, name in enumerate(ANNOTATED):
        gt = np.zeros((6, 6), np.uint8)
        _square(slice(1, 3), slice(1, 3), 1, gt)
        if t <= 2:
            _square(slice(4, 6), slice(4, 6), 2, gt)
        if t == 2:
            gt[1:3, 3] = 255
            gt[0, 5] = 3
        save_indexed_png(gt_dir / f"{name}.png", gt)
        (root / "JPEGImages" / SEQ).mkdir(parents=True, exist_ok=True)
        for frame in range(int(name), int(name) + 5):  # unannotated images are ignored
            (root / "JPEGImages" / SEQ / f"{frame:05d}.jpg").write_bytes(b"")
    preds = {
        1: [(slice(1, 3), slice(1, 3), 1), (slice(4, 6), slice(4, 6), 2), (slice(0, 1), slice(0, 1), 3)],
        2: [(slice(1, 3), slice(2, 4), 1), (slice(4, 5), slice(4, 6), 2)],
        3: [],
        4: [(slice(1, 4), slice(1, 3), 1), (slice(5, 6), slice(0, 1), 2)],
    }
    for t, squares in preds.items():
        pred = np.zeros((6, 6), np.uint8)
        for rows, cols, value in squares:
            _square(rows, cols, value, pred)
        save_indexed_png(pred_dir / f"{ANNOTATED[t]}.png", pred)
    (root / "ImageSets").mkdir(parents=True)
    (root / "ImageSets" / "val.txt").write_text(SEQ + "\n")


def test_hand_built_sequence(tmp_path: Path):
    root, results = tmp_path / "VOST", tmp_path / "results"
    _write(root, results)
    with pytest.warns(TruncatedIdsWarning, match=r"'bend'.*ids up to 3.*2 object.*00005"):
        objects = evaluate(root, results, progress=False)
    assert [o.name for o in objects] == ["bend_1", "bend_2"]
    one, two = objects
    assert one.frames == ANNOTATED[1:-1]
    np.testing.assert_allclose(one.J, [1, 1 / 3, 0, 2 / 3], rtol=0, atol=1e-15)
    np.testing.assert_allclose(two.J, [1, 1 / 2, 1, 0], rtol=0, atol=1e-15)

    # n = 4 evaluated frames: J_last starts at floor(0.75 * 4) = 3, i.e. the last frame only.
    assert one.last_start == two.last_start == 3
    # Decay bins for n = 4: round(linspace(1, 4, 5) + 1e-10) - 1 = [0, 1, 2, 2, 3]
    # (2.5 + 1e-10 rounds up), first bin J[0:2], last bin J[2:4].
    # Object 1: Mean (1 + 1/3 + 0 + 2/3) / 4 = 1/2; Recall: 1 and 2/3 exceed 0.5 -> 2/4;
    #           Decay (1 + 1/3)/2 - (0 + 2/3)/2 = 2/3 - 1/3 = 1/3. J_last = [2/3]: 2/3, 1, 0.
    # Object 2: Mean (1 + 1/2 + 1 + 0) / 4 = 5/8; Recall: 1/2 is not above 0.5 -> 2/4;
    #           Decay (1 + 1/2)/2 - (1 + 0)/2 = 1/4. J_last = [0]: 0, 0, 0.
    expected = [(one, (1 / 2, 1 / 2, 1 / 3), (2 / 3, 1, 0)), (two, (5 / 8, 1 / 2, 1 / 4), (0, 0, 0))]
    for obj, j, last in expected:
        assert tuple(obj.j_stats) == pytest.approx(j, abs=1e-15), obj.name
        assert tuple(obj.j_last_stats) == pytest.approx(last, abs=1e-15), obj.name

    # Global = mean over the 2 objects: J-Mean (1/2 + 5/8)/2 = 0.5625, printed "0.562" (printf
    # rounds the exact binary half to even); J-Recall 1/2; J-Decay (1/3 + 1/4)/2 = 0.29166..;
    # J_last: Mean (2/3 + 0)/2 = 0.333.., Recall 1/2, Decay 0.
    global_csv, sequence_csv = csv_files(objects, ".", "val").values()
    assert global_csv == ("J-Mean,J-Recall,J-Decay,J_last-Mean,J_last-Recall,J_last-Decay\n"
                          "0.562,0.500,0.292,0.333,0.500,0.000\n")
    assert sequence_csv == "Sequence,J-Mean,J_last-Mean\nbend_1,0.500,0.667\nbend_2,0.625,0.000\n"


@pytest.mark.parametrize("annotated", [4, 5, 7, 8, 12, 13])
def test_last_quarter_start(tmp_path: Path, annotated: int):
    """n evaluated frames (annotations - 2): J_last covers indices floor(0.75 n)..n-1."""
    gt_dir, pred_dir = tmp_path / "gt" / "s", tmp_path / "pred" / "s"
    for t in range(annotated):
        mask = np.zeros((4, 4), np.uint8)
        mask[: 1 + t % 4, :2] = 1
        save_indexed_png(gt_dir / f"{t:05d}.png", mask)
        save_indexed_png(pred_dir / f"{t:05d}.png", mask if t % 2 else np.zeros_like(mask))
    (obj,), _ = evaluate_sequence(gt_dir, pred_dir)
    n = annotated - 2
    assert obj.last_start == math.floor(0.75 * n)
    assert obj.j_last_stats.mean == pytest.approx(np.mean(obj.J[obj.last_start:]))
    # odd frames are exact (J = 1), even frames empty predictions (J = 0); frames are t = 1..n
    np.testing.assert_array_equal(obj.J, [t % 2 for t in range(1, n + 1)])


def test_bad_input_names_the_file(tmp_path: Path):
    root, results = tmp_path / "VOST", tmp_path / "results"
    _write(root, results)
    (results / SEQ / "00010.png").unlink()
    with pytest.raises(MetricsError, match=r"'bend'.*00010"):
        evaluate(root, results, progress=False)
    save_indexed_png(results / SEQ / "00010.png", np.zeros((5, 6), np.uint8))
    with pytest.raises(MetricsError, match=r"00010\.png is 6x5 but the ground truth is 6x6"):
        evaluate(root, results, progress=False)
    short = tmp_path / "short" / "s"
    for name in ANNOTATED[:2]:
        save_indexed_png(short / f"{name}.png", np.ones((2, 2), np.uint8))
    with pytest.raises(MetricsError, match="2 annotated frame"):
        evaluate_sequence(short, results / SEQ)
