"""VIP mIoU against videowalk's code/eval/eval_vip.py (golden README section 7).

Videos and frames are discovered from <golden>/vip/gt, so any fixture set in the documented
format is checked; predictions of another size are resized (nearest) as officially.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hvc.metrics.vip import CLASS_NAMES, NUM_CLASSES, evaluate, frames_of

EXACT = 1e-9
PRINTED = 5e-7  # the official script prints per-class values with 6 decimals


def _nan(values: list) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def test_golden_vip_scores(golden_dir: Path):
    root = golden_dir / "vip"
    expected = json.loads((root / "expected.json").read_text())
    assert expected["n_classes"] == NUM_CLASSES and tuple(expected["classes"]) == CLASS_NAMES
    frames = frames_of(root / "gt")
    n_frames = sum(len(f) for f in frames.values())
    assert n_frames > 0, "no ground-truth frame found"

    ours = evaluate(root / "gt", root / "pred")
    assert ours.frames == n_frames
    np.testing.assert_array_equal(ours.confusion, np.array(expected["confusion_matrix_gt_rows_pred_cols"]))
    for key, value in (("overall_accuracy", ours.overall_accuracy), ("mean_accuracy", ours.mean_accuracy),
                       ("mean_iu", ours.mean_iou), ("fwavacc", ours.fwavacc)):
        assert value == pytest.approx(expected[key], abs=EXACT), key
    for key, values in (("per_class_accuracy", ours.class_accuracy), ("per_class_iu", ours.class_iou)):
        reference = _nan(expected[key])
        np.testing.assert_array_equal(np.isnan(values), np.isnan(reference), err_msg=key)
        np.testing.assert_allclose(values, reference, rtol=0, atol=PRINTED, equal_nan=True, err_msg=key)
