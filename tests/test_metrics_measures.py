"""J, F and the per-object statistics on small synthetic masks with known answers,
and the cropped fast path against a whole-frame reference."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage.morphology import disk as skimage_disk

from hvc.metrics.measures import boundary_map, boundary_radius, db_statistics, decay_bin_edges, disk, jf_scores
from helpers.metrics_helpers import reference_jf, seg2bmap


def test_disk_matches_skimage_and_radius_is_eight_at_480p():
    for r in (1, 3, 8, 11):
        np.testing.assert_array_equal(disk(r), skimage_disk(r).astype(np.uint8))
    assert boundary_radius(480, 854) == 8
    assert boundary_radius(100, 100) == 2  # ceil(0.008 * 141.4) = ceil(1.13)


def test_boundary_map_of_a_square_and_image_edge_rules():
    mask = np.zeros((6, 7), bool)
    mask[1:4, 2:5] = True
    b = boundary_map(mask)
    # A pixel differing from its right, lower or lower-right neighbour: the square's bottom row
    # and right column inside it, and the row above and the column left of it, outside.
    expected = np.zeros_like(mask)
    expected[0:4, 1:5] = True
    expected[1:3, 2:4] = False
    np.testing.assert_array_equal(b, expected)
    np.testing.assert_array_equal(b, seg2bmap(mask))
    full = np.ones((4, 5), bool)  # a mask filling the image has no boundary at all
    assert not boundary_map(full).any()


def test_iou_and_f_on_known_cases():
    h, w = 120, 160  # radius ceil(0.008 * 200) = 2
    gt = np.zeros((h, w), bool)
    gt[20:60, 30:90] = True
    assert jf_scores(gt, gt) == (1.0, 1.0)
    empty = np.zeros_like(gt)
    assert jf_scores(empty, empty) == (1.0, 1.0)  # empty union: J = 1, both boundaries empty: F = 1
    assert jf_scores(gt, empty) == (0.0, 0.0)
    assert jf_scores(empty, gt) == (0.0, 0.0)
    shifted = np.roll(gt, 2, axis=1)  # within the 2-pixel tolerance: every boundary pixel matches
    j, f = jf_scores(gt, shifted)
    assert j == pytest.approx(40 * 58 / (40 * 62))
    assert f == 1.0
    far = np.roll(gt, 30, axis=0)
    j, f = jf_scores(gt, far)
    assert j == pytest.approx(10 * 60 / (70 * 60))
    assert 0.0 < f < 0.5


def _random_masks(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    gt = np.zeros((h, w), np.uint8)
    for _ in range(rng.integers(1, 4)):
        center = (int(rng.integers(-10, w + 10)), int(rng.integers(-10, h + 10)))
        axes = (int(rng.integers(3, w // 2)), int(rng.integers(3, h // 2)))
        cv2.ellipse(gt, center, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    pred = np.roll(gt, (int(rng.integers(-6, 7)), int(rng.integers(-6, 7))), axis=(0, 1))
    pred = cv2.dilate(pred, np.ones((3, 3), np.uint8)) if rng.random() < 0.5 else pred
    pred[rng.random((h, w)) < 0.002] ^= 1  # isolated specks far from the object
    return gt.astype(bool), pred.astype(bool)


def test_cropped_scores_equal_whole_frame_reference_including_image_edges():
    rng = np.random.default_rng(0)
    for h, w in ((120, 214), (97, 131)):
        for _ in range(25):
            gt, pred = _random_masks(rng, h, w)
            assert jf_scores(gt, pred) == reference_jf(gt, pred)
    gt = np.zeros((50, 60), bool)
    gt[30:, 40:] = True  # touches the bottom-right corner
    pred = np.zeros_like(gt)
    pred[:25, :35] = True  # touches the top-left corner
    assert jf_scores(gt, pred) == reference_jf(gt, pred)
    assert jf_scores(gt, gt | pred) == reference_jf(gt, gt | pred)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shapes differ"):
        jf_scores(np.zeros((4, 5), bool), np.zeros((5, 4), bool))


def test_statistics_mean_strict_recall_and_overlapping_decay_bins():
    np.testing.assert_array_equal(decay_bin_edges(10), [0, 2, 5, 7, 9])
    values = np.array([1.0, 0.9, 0.8, 0.5, 0.6, 0.4, 0.3, 0.5, 0.2, 0.1])
    stats = db_statistics(values)
    assert stats.mean == pytest.approx(0.53)
    assert stats.recall == pytest.approx(0.4)  # the two 0.5 values are not above 0.5
    # bins share their edge frames: [0..2] and [7..9]
    assert stats.decay == pytest.approx(np.mean(values[0:3]) - np.mean(values[7:10]))
    one = db_statistics(np.array([0.7]))
    assert one == (0.7, 1.0, 0.0)
    with pytest.raises(ValueError):
        db_statistics(np.array([]))
