"""J (region) and F (boundary) of one object in one frame as the official ``db_eval_iou``, ``db_eval_boundary`` to the
last bit, on both masks' bounding box grown by one pixel (docs/metrics.md says why); per object, ``db_statistics``."""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import cv2
import numpy as np

BOUND_TH = 0.008  # boundary tolerance as a fraction of the image diagonal (official default)
N_DECAY_BINS = 4  # the official Decay compares the first and the last of 4 quantile bins


def boundary_radius(height: int, width: int) -> int:
    """Dilation radius in pixels: ceil(BOUND_TH * image diagonal) (8 at 480x854)."""
    return int(math.ceil(BOUND_TH * math.hypot(height, width)))


@functools.lru_cache(maxsize=8)
def disk(radius: int) -> np.ndarray:
    """Disk structuring element {(x, y): x^2 + y^2 <= r^2}, as skimage.morphology.disk: [2r+1, 2r+1] uint8."""
    offsets = np.arange(-radius, radius + 1)
    return (offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius**2).astype(np.uint8)


def boundary_map(mask: np.ndarray, at_bottom: bool = True, at_right: bool = True) -> np.ndarray:
    """Boundary pixels [H, W] bool of a mask [H, W] bool, as the official ``seg2bmap`` (the rule: docs/metrics.md).
    ``at_bottom`` / ``at_right``: whether the last row / column of ``mask`` is the image's (False for a crop)."""
    grown = np.zeros((mask.shape[0] + 1, mask.shape[1] + 1), dtype=mask.dtype)  # a zero row and column beyond
    grown[:-1, :-1] = mask
    right, below, diag = grown[:-1, 1:], grown[1:, :-1], grown[1:, 1:]  # each pixel's neighbour, [H, W]
    bmap = (mask ^ right) | (mask ^ below) | (mask ^ diag)
    if at_bottom:
        bmap[-1, :] = mask[-1, :] ^ right[-1, :]
    if at_right:
        bmap[:, -1] = mask[:, -1] ^ below[:, -1]
    if at_bottom and at_right:
        bmap[-1, -1] = False
    return bmap


def jaccard(gt: np.ndarray, pred: np.ndarray) -> float:
    """Region similarity J = |P & G| / |P | G| of [H, W] bool masks (official ``db_eval_iou``), 1 if both are empty."""
    union = np.count_nonzero(gt | pred)
    return 1.0 if union == 0 else np.count_nonzero(gt & pred) / float(union)


def jf_scores(gt: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    """(J, F) of one object in one frame, Python floats: IoU and boundary F-measure (disk dilation of radius
    ceil(BOUND_TH * diagonal)), with the official empty-boundary conventions. gt, pred: [H, W] bool."""
    if gt.shape != pred.shape:
        raise ValueError(f"mask shapes differ: ground truth {gt.shape}, prediction {pred.shape}")
    x, y, w, h = cv2.boundingRect((gt | pred).view(np.uint8))
    if w == 0:  # both empty
        return 1.0, 1.0
    height, width = gt.shape
    rows, cols = slice(max(y - 1, 0), min(y + h + 1, height)), slice(max(x - 1, 0), min(x + w + 1, width))
    g, p = gt[rows, cols], pred[rows, cols]  # the crop holds every pixel of both masks, grown by one
    at_bottom, at_right = rows.stop == height, cols.stop == width
    bg, bp = boundary_map(g, at_bottom, at_right), boundary_map(p, at_bottom, at_right)
    n_gt, n_pred = np.count_nonzero(bg), np.count_nonzero(bp)
    if n_gt == 0 or n_pred == 0:  # both (masks covering the image): F = 1; one: precision or recall is 0, F = 0
        return float(jaccard(g, p)), 1.0 if n_gt == n_pred else 0.0
    kernel = disk(boundary_radius(height, width))
    # cv2.dilate ignores pixels outside the array, so dilating the crop is exact.
    precision = np.count_nonzero(bp & cv2.dilate(bg.view(np.uint8), kernel).view(bool)) / float(n_pred)
    recall = np.count_nonzero(bg & cv2.dilate(bp.view(np.uint8), kernel).view(bool)) / float(n_gt)
    f = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return float(jaccard(g, p)), float(f)


class Statistics(NamedTuple):
    mean: float  # nanmean of the per-frame values
    recall: float  # fraction of frames with a value strictly above 0.5
    decay: float  # mean of the first bin minus mean of the last bin


def decay_bin_edges(n: int) -> np.ndarray:
    """round(linspace(1, n, 5) + 1e-10) - 1: bin k is ``values[edges[k] : edges[k + 1] + 1]`` (docs/metrics.md,
    "Statistics and tables"; the official uint8 cast, which would wrap above 256 frames, is not kept)."""
    return (np.round(np.linspace(1, n, N_DECAY_BINS + 1) + 1e-10) - 1).astype(np.int64)


def db_statistics(values: np.ndarray) -> Statistics:
    """Mean, Recall and Decay of one object's per-frame J or F; values: [T] float64, T >= 1."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"expected a non-empty 1-D array of per-frame values, got shape {values.shape}")
    edges = decay_bin_edges(values.size)
    bins = [values[edges[k] : edges[k + 1] + 1] for k in range(N_DECAY_BINS)]
    return Statistics(mean=float(np.nanmean(values)), recall=float(np.nanmean(values > 0.5)),
                      decay=float(np.nanmean(bins[0]) - np.nanmean(bins[-1])))
