"""PCK's visibility rule at the edges, against values worked out by hand (docs/tasks.md, JHMDB).

A prediction is invisible when its x is negative (videowalk's eval_pck.py tests x only); x = 0
or y = 0 is a visible prediction on the image border. An invisible prediction is not scored
and its ground-truth joint leaves the frame's normaliser; frame 0 is never scored.
"""

from __future__ import annotations

import math

import numpy as np

from hvc.metrics.pck import BOX_FACTOR, PoseDistances, normalised_distances, pck

# features 10 x 10 on a 100 x 100 image: a prediction (x, y) lands on pixel (10 x, 10 y)
FEATURE_WH, IMAGE_WH = (10, 10), (100, 100)
# frame 1, per joint: prediction at feature resolution, ground truth 0-based in pixels
CASES = [
    # (pred x, pred y), (gt x, gt y)      what it checks
    ((0.0, 5.0), (0.0, 50.0)),  # x = 0: visible, distance 0
    ((3.0, 0.0), (30.0, 3.0)),  # y = 0: visible, distance 3
    ((-1.0, -1.0), (90.0, 90.0)),  # the decoder's "lost" (-1, -1): not scored, not in the box
    ((4.0, 4.0), (40.0, 44.0)),  # an ordinary joint: distance 4
    ((2.0, -1.0), (20.0, 0.0)),  # y < 0 but x >= 0: visible, as the official test is on x only
    ((-1e-6, 3.0), (60.0, 80.0)),  # x just below 0: lost, and not in the box either
]


def _arrays():
    pred = np.zeros((2, len(CASES), 2), dtype=np.float32)  # [2, J, T]
    gt = np.zeros((2, len(CASES), 2))
    for j, ((px, py), (gx, gy)) in enumerate(CASES):
        pred[:, j, 1] = px, py
        gt[:, j, 1] = gx + 1, gy + 1  # joint_positions.mat is 1-based
        pred[:, j, 0] = gt[:, j, 1] / 10 - 0.1  # frame 0: visible and right, but never scored
        gt[:, j, 0] = gt[:, j, 1]
    return gt, pred


def test_border_joints_are_visible_and_negative_x_is_lost():
    gt, pred = _arrays()
    distances, scored = normalised_distances(gt, pred, IMAGE_WH, FEATURE_WH)
    assert scored[:, 0].tolist() == [False] * len(CASES)
    assert scored[:, 1].tolist() == [True, True, False, True, True, False]

    # normaliser: 0.6 x the diagonal of the box around the visible predictions' ground truth
    # (0, 50), (30, 3), (40, 44), (20, 0): x 0..40, y 0..50; the lost joints at (90, 90) and
    # (60, 80) would widen it
    box = BOX_FACTOR * math.hypot(40 - 0, 50 - 0)
    expected = {0: 0.0, 1: 3.0 / box, 3: 4.0 / box, 4: 10.0 / box}
    for j, value in expected.items():
        assert math.isclose(distances[j, 1], value, rel_tol=1e-12, abs_tol=1e-12), (j, distances[j, 1], value)


def test_pck_counts_only_scored_joints():
    gt, pred = _arrays()
    distances, scored = normalised_distances(gt, pred, IMAGE_WH, FEATURE_WH)
    result = pck([PoseDistances("v", distances, scored)], thresholds=(0.1, 0.3))
    box = BOX_FACTOR * math.hypot(40, 50)  # 38.4: distances 0, 0.078, 0.104, 0.260
    assert 3 / box <= 0.1 < 4 / box and 10 / box <= 0.3
    assert result.counts.tolist() == [1, 1, 0, 1, 1, 0]
    np.testing.assert_array_equal(result.per_joint[0], [100, 100, np.nan, 0, 0, np.nan])
    np.testing.assert_array_equal(result.per_joint[1], [100, 100, np.nan, 100, 100, np.nan])
    np.testing.assert_array_equal(result.mean, [50.0, 100.0])  # over the four scored joints


def test_a_frame_with_every_prediction_lost_scores_nothing():
    gt, pred = _arrays()
    pred[0, :, 1] = -1
    distances, scored = normalised_distances(gt, pred, IMAGE_WH, FEATURE_WH)
    assert not scored.any()
    assert np.isnan(pck([PoseDistances("v", distances, scored)]).mean).all()
