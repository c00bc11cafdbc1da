"""Keypoints as label maps: the JHMDB pose-tracking codec of videowalk (``code/data/jhmdb.py``,
``code/utils/test_utils.py``), its quirks included, as the published PCK numbers were produced with
them (docs/tasks.md, "Quirks of the reference code"). The keypoint file: hvc/data/jhmdb.py."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

SIGMA = 0.5  # Gaussian width in feature cells (videowalk's JhmdbSet default)
TOPK = 3  # positions averaged when decoding a joint map
LOST = -1.0  # coordinate of a joint whose propagated map is all zero


def gaussian_heatmap(point_xy: tuple[float, float], map_hw: tuple[int, int], sigma: float = SIGMA) -> np.ndarray:
    """One joint drawn as an unnormalised Gaussian (peak 1) into an empty map, placed as videowalk's
    ``draw_labelmap_np``: a (6σ+1)-wide kernel pasted with its upper-left corner at ``int(pt - 3σ)``
    (truncated toward zero; docs/tasks.md). A window that misses the map leaves it empty.

    point_xy: (x, y) at feature resolution, may lie outside. map_hw: (h, w). Returns: [h, w] float64."""
    h, w = map_hw
    out = np.zeros((h, w), dtype=np.float64)
    x, y = float(point_xy[0]), float(point_xy[1])
    left, top = int(x - 3 * sigma), int(y - 3 * sigma)
    right, bottom = int(x + 3 * sigma + 1), int(y + 3 * sigma + 1)
    if left >= w or top >= h or right < 0 or bottom < 0:
        return out
    size = 6 * sigma + 1
    grid = np.arange(0, size, 1, float)
    centre = size // 2
    kernel = np.exp(-((grid[None, :] - centre) ** 2 + (grid[:, None] - centre) ** 2) / (2 * sigma**2))
    # The pasted part: kernel columns [max(0, -left), min(right, w) - left), same for rows.
    out[max(0, top):min(bottom, h), max(0, left):min(right, w)] = kernel[max(0, -top):min(bottom, h) - top,
                                                                         max(0, -left):min(right, w) - left]
    return out


def joint_label_maps(points_xy: np.ndarray, map_hw: tuple[int, int], sigma: float = SIGMA) -> np.ndarray:
    """The label maps of one frame: background (1 where no joint map reaches, as videowalk's) then one
    Gaussian per joint, in float32 as videowalk's label tensor holds them.

    points_xy: [2, J] (x row 0, y row 1) at feature resolution. Returns: [J + 1, h, w] float32."""
    points_xy = np.asarray(points_xy, dtype=np.float64)
    if points_xy.ndim != 2 or points_xy.shape[0] != 2:
        raise ValueError(f"expected joints as [2, J] (x row, y row), got shape {points_xy.shape}")
    joints = np.stack([gaussian_heatmap(p, map_hw, sigma) for p in points_xy.T]).astype(np.float32)
    background = (joints.sum(0) == 0).astype(np.float32)
    return np.concatenate([background[None], joints])


def feature_coords(pos_img: np.ndarray, image_wh: tuple[int, int], input_wh: tuple[int, int],
                   stride: tuple[int, int] | int) -> np.ndarray:
    """JHMDB joint positions (1-based image pixels) at feature resolution, as videowalk's ``JhmdbSet``:
    ``(pos - 1) * new_size / old_size / stride`` per axis, in that order of operations.

    pos_img: [2, J, T] (x row 0, y row 1). image_wh, input_wh: (width, height).
    stride: feature stride (x, y) or one int. Returns: [2, J, T] float64."""
    sx, sy = (stride, stride) if np.isscalar(stride) else stride
    coords = np.asarray(pos_img, dtype=np.float64) - 1
    coords[0] = coords[0] * float(input_wh[0]) / float(image_wh[0]) / sx
    coords[1] = coords[1] * float(input_wh[1]) / float(image_wh[1]) / sy
    return coords


def decode_keypoints(maps: np.ndarray | "torch.Tensor", topk: int = TOPK) -> np.ndarray:
    """Joint coordinates from propagated label maps (videowalk's ``process_pose``): per joint, the
    ``topk`` largest values, normalised to sum 1, weight their positions; a map summing to 0 is lost,
    (-1, -1). float32 and torch.topk over an [h*w, J] view as the official code, so ties resolve alike.

    maps: [K, h, w], channel 0 the background. Returns: [2, K - 1] float32 at feature resolution (x row 0, y row 1)."""
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
