"""JHMDB pose pieces against videowalk's own code (golden README section 6).

Heatmap placement, top-3 decoding and PCK are compared with values produced by the
official functions; cases are discovered from the files, so any fixture set in the
documented format is checked.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from hvc.metrics.pck import PoseDistances, normalised_distances, pck
from hvc.tasks.clips import decode_keypoints, gaussian_heatmap, joint_label_maps

EXACT = 1e-9


def _cases(npz, prefix: str) -> list[str]:
    cases = sorted((m.group(1) for k in npz.files if (m := re.fullmatch(rf"{prefix}_(\w+)", k))), key=str)
    assert cases, f"no '{prefix}_*' arrays in {sorted(npz.files)}"
    return cases


def test_golden_heatmaps(golden_dir: Path):
    data = np.load(golden_dir / "pose" / "heatmaps.npz")
    map_hw, sigma = tuple(int(v) for v in data["map_hw"]), float(data["sigma"])
    points, expected = data["points_xy"], data["heatmaps"]
    assert len(points) == len(expected) > 0
    for point, heatmap in zip(points, expected):
        ours = gaussian_heatmap(point, map_hw, sigma)
        assert ours.dtype == np.float64 and ours.shape == heatmap.shape
        np.testing.assert_allclose(ours, heatmap, rtol=0, atol=EXACT, err_msg=str(point))
    # all points as one frame: each joint channel is its own heatmap, background where none reaches
    maps = joint_label_maps(points.T, map_hw, sigma)
    np.testing.assert_array_equal(maps[1:], expected.astype(np.float32))
    np.testing.assert_array_equal(maps[0], (expected.sum(0) == 0).astype(np.float32))


def test_golden_decoding(golden_dir: Path):
    data = np.load(golden_dir / "pose" / "decode.npz")
    for case in _cases(data, "pred"):
        pred = data[f"pred_{case}"]  # [h, w, 1 + J], the official channel-last layout
        expected = data[f"coords_{case}"]
        ours = decode_keypoints(pred.transpose(2, 0, 1))
        assert ours.shape == expected.shape, case
        np.testing.assert_allclose(ours, expected, rtol=0, atol=EXACT, err_msg=f"case {case}")
        lost = pred[..., 1:].sum(axis=(0, 1)) == 0
        assert np.all(ours[:, lost] == -1), case


def test_golden_pck(golden_dir: Path):
    data = np.load(golden_dir / "pose" / "pck.npz")
    n_videos, feat_res = int(data["n_videos"]), int(data["feat_res"])
    assert n_videos > 0 and _cases(data, "pred") == sorted(str(v) for v in range(n_videos))
    videos = []
    for v in range(n_videos):
        distances, scored = normalised_distances(data[f"gt_pos_img_{v}"], data[f"pred_{v}"],
                                                 tuple(int(s) for s in data[f"image_wh_{v}"]), (feat_res, feat_res))
        assert not scored[:, 0].any(), "frame 0 is never scored"
        assert not scored[data[f"pred_{v}"][0] < 0].any(), "invisible predictions are skipped"
        videos.append(PoseDistances(str(v), distances, scored))
    result = pck(videos, tuple(data["thresholds"]))
    expected = data["pck_per_joint_then_mean"]
    assert result.table().shape == expected.shape
    np.testing.assert_allclose(result.table(), expected, rtol=0, atol=EXACT)
