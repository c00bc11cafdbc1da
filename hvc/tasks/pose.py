"""Keypoints as label maps: videowalk's JHMDB codec (``code/data/jhmdb.py``, ``code/utils/test_utils.py``), quirks
included, as the published PCK numbers have them (docs/tasks.md). The keypoint file: hvc/data/keypoints.py."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

SIGMA = 0.5  # Gaussian width in feature cells (videowalk's JhmdbSet default)
TOPK = 3  # positions averaged when decoding a joint map
LOST = -1.0  # coordinate of a joint whose propagated map is all zero


def gaussian_heatmap(point_xy: tuple[float, float], map_hw: tuple[int, int], sigma: float = SIGMA) -> np.ndarray:
    """One joint as an unnormalised Gaussian (peak 1) in an empty [h, w] float64 map, as videowalk's
    ``draw_labelmap_np``: a (6σ+1)-wide kernel pasted with its upper-left corner at ``int(pt - 3σ)`` (truncated
    toward zero; docs/tasks.md). ``point_xy``: (x, y) at feature resolution, may lie outside the map."""
    h, w = map_hw
    out = np.zeros((h, w), dtype=np.float64)
    x, y = float(point_xy[0]), float(point_xy[1])
    left, top = int(x - 3 * sigma), int(y - 3 * sigma)
    right, bottom = int(x + 3 * sigma + 1), int(y + 3 * sigma + 1)
    if left >= w or top >= h or right < 0 or bottom < 0:  # the window misses the map
        return out
    size = 6 * sigma + 1
    grid, centre = np.arange(0, size, 1, float), size // 2
    kernel = np.exp(-((grid[None, :] - centre) ** 2 + (grid[:, None] - centre) ** 2) / (2 * sigma**2))
    # The pasted part: kernel columns [max(0, -left), min(right, w) - left), same for rows.
    out[max(0, top):min(bottom, h), max(0, left):min(right, w)] = kernel[max(0, -top):min(bottom, h) - top,
                                                                         max(0, -left):min(right, w) - left]
    return out


def joint_label_maps(points_xy: np.ndarray, map_hw: tuple[int, int], sigma: float = SIGMA) -> np.ndarray:
    """The label maps [J + 1, h, w] float32 (as videowalk's label tensor) of the joints ``points_xy`` [2, J] (x row 0,
    y row 1) at feature resolution: background (1 where no joint map reaches), then a Gaussian per joint."""
    points_xy = np.asarray(points_xy, dtype=np.float64)
    if points_xy.ndim != 2 or points_xy.shape[0] != 2:
        raise ValueError(f"expected joints as [2, J] (x row, y row), got shape {points_xy.shape}")
    joints = np.stack([gaussian_heatmap(p, map_hw, sigma) for p in points_xy.T]).astype(np.float32)
    background = (joints.sum(0) == 0).astype(np.float32)
    return np.concatenate([background[None], joints])


def feature_coords(pos_img: np.ndarray, image_wh: tuple[int, int], input_wh: tuple[int, int],
                   stride: tuple[int, int] | int) -> np.ndarray:
    """JHMDB joints ``pos_img`` [2, J, T] (x row 0, y row 1; 1-based image pixels) at feature resolution, [2, J, T]
    float64, as videowalk's ``JhmdbSet``: ``(pos - 1) * new_size / old_size / stride`` per axis, in that order.
    image_wh, input_wh: (width, height); stride: (x, y) or one int."""
    sx, sy = (stride, stride) if np.isscalar(stride) else stride
    coords = np.asarray(pos_img, dtype=np.float64) - 1
    coords[0] = coords[0] * float(input_wh[0]) / float(image_wh[0]) / sx
    coords[1] = coords[1] * float(input_wh[1]) / float(image_wh[1]) / sy
    return coords


def decode_keypoints(maps: np.ndarray | "torch.Tensor", topk: int = TOPK) -> np.ndarray:
    """Joints [2, K - 1] float32 (x row 0, y row 1, feature resolution) of propagated label maps [K, h, w], channel 0
    the background (videowalk's ``process_pose``): per joint, the ``topk`` largest values, normalised to sum 1,
    weight their positions; a map summing to 0 is lost, (-1, -1). float32 and torch.topk over an [h*w, J] view as
    the official code, so ties resolve alike."""
    import torch  # here, not at module level: the PCK scorer reads keypoint files without torch

    maps = torch.as_tensor(maps)
    if maps.ndim != 3 or maps.shape[0] < 2:
        raise ValueError(f"expected label maps [K, h, w] with a background channel, got shape {tuple(maps.shape)}")
    joints = maps[1:].permute(1, 2, 0)  # [h, w, J], the official layout
    flat = joints.flatten(0, 1)  # [h*w, J]
    vals, ids = torch.topk(flat, k=min(flat.shape[0], topk), dim=0)
    vals = vals / vals.sum(0)[None]
    width = joints.shape[1]
    coords = torch.stack([((ids % width) * vals).sum(0), ((ids // width) * vals).sum(0)])
    coords[:, flat.sum(0) == 0] = LOST
    return coords.numpy()
