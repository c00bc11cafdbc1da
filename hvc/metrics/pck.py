"""PCK of propagated keypoints, numerically identical to videowalk's ``code/eval/eval_pck.py``
(the protocol: docs/metrics.md, "JHMDB keypoints (PCK)")."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from hvc.data.jhmdb import KeypointFileError, jhmdb_videos, load_keypoints
from hvc.data.sequence import DatasetError
from hvc.metrics.davis import MetricsError

THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5)
BOX_FACTOR = 0.6  # normaliser = 0.6 x diagonal of the visible ground-truth joints' box
# The official box starts from min = 1e6 and max = -1, not +-inf: kept, they decide it for coordinates below -1.
BOX_MIN_START, BOX_MAX_START = 1e6, -1.0


@dataclass(frozen=True)
class PoseDistances:
    """Normalised joint errors of one video."""

    name: str
    distances: np.ndarray  # [J, T] float64: distance / normaliser (inf or NaN on a zero box)
    scored: np.ndarray  # [J, T] bool: visible prediction and t > 0


@dataclass(frozen=True)
class PCKResult:
    """PCK in percent at each threshold, per joint and their mean."""

    thresholds: tuple[float, ...]
    per_joint: np.ndarray  # [n_thresholds, J] float64, NaN for a joint never scored
    mean: np.ndarray  # [n_thresholds] float64: mean over joints (the reported number)
    counts: np.ndarray  # [J] int64: scored predictions per joint

    def table(self) -> np.ndarray:
        """[n_thresholds, J + 1]: per-joint PCK then the mean (the official printout's layout)."""
        return np.concatenate([self.per_joint, self.mean[:, None]], axis=1)


def normalised_distances(pos_img: np.ndarray, pred: np.ndarray, image_wh: tuple[int, int],
                         feature_wh: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Per joint and frame, distance / normaliser ([J, T] float64) and which entries are scored ([J, T] bool).
    pos_img: [2, J, T] ground truth, 1-based image pixels (as in joint_positions.mat). pred: [2, J, T] at feature
    resolution, x < 0 = invisible, scaled in its own dtype as the official code does (float32 stays float32 until
    the distance). image_wh, feature_wh: (width, height)."""
    gt = np.asarray(pos_img, dtype=np.float64) - 1
    pred = np.asarray(pred)
    if gt.shape != pred.shape or gt.ndim != 3 or gt.shape[0] != 2:
        raise ValueError(f"ground truth {gt.shape} and prediction {pred.shape} must both be [2, J, T]")
    visible = pred[0] >= 0  # the official test is on x only
    px = pred[0] / float(feature_wh[0]) * image_wh[0]
    py = pred[1] / float(feature_wh[1]) * image_wh[1]
    low = np.minimum(BOX_MIN_START, np.where(visible, gt, np.inf).min(axis=1))  # [2, T]: x and y
    high = np.maximum(BOX_MAX_START, np.where(visible, gt, -np.inf).max(axis=1))
    box = BOX_FACTOR * np.sqrt((high[0] - low[0]) ** 2 + (high[1] - low[1]) ** 2)  # [T]
    dx = px.astype(np.float64) - gt[0]
    dy = py.astype(np.float64) - gt[1]
    with np.errstate(divide="ignore", invalid="ignore"):  # a zero box gives inf / NaN, never correct
        distances = np.sqrt(dx * dx + dy * dy) / box[None, :]
    scored = visible.copy()
    scored[:, 0] = False  # frame 0 carries the given labels
    return distances, scored


def pck(videos: Sequence[PoseDistances], thresholds: Sequence[float] = THRESHOLDS) -> PCKResult:
    """PCK over all scored predictions of all videos. A joint without any scored prediction gets NaN and
    the mean is taken over the other joints (the official script stops with a ZeroDivisionError there)."""
    if not videos:
        raise ValueError("no video to score")
    num_joints = videos[0].distances.shape[0]
    per_joint_values = [np.concatenate([v.distances[j][v.scored[j]] for v in videos]) for j in range(num_joints)]
    counts = np.array([len(d) for d in per_joint_values], dtype=np.int64)
    table = np.full((len(thresholds), num_joints), np.nan)
    for j, values in enumerate(per_joint_values):
        if len(values):
            table[:, j] = [100.0 * np.count_nonzero(values <= threshold) / len(values) for threshold in thresholds]
    scored = counts > 0
    mean = np.full(len(thresholds), np.nan)
    if scored.any():  # row by row: np.mean of a 1-D array sums in the official order
        mean = np.array([np.mean(row[scored]) for row in table])
    return PCKResult(tuple(float(t) for t in thresholds), table, mean, counts)


def default_list(root: str | Path, list_file: Optional[str | Path]) -> Optional[Path]:
    """``list_file``, else ``<root>/splits`` (split 1 test: the protocol's 268 videos) if present, else None (all)."""
    if list_file is not None:
        return Path(list_file)
    splits = Path(root) / "splits"
    return splits if splits.is_dir() else None


def evaluate(root: str | Path, results: str | Path, list_file: Optional[str | Path] = None,
             videos: Sequence[str] = ()) -> list[PoseDistances]:
    """Normalised distances of every listed JHMDB video (layout: hvc.data.jhmdb); results holds
    ``<class>/<video>.npz`` keypoint files (hvc.data.jhmdb.save_keypoints). Raises MetricsError."""
    results = Path(results)
    try:
        clips = jhmdb_videos(root, list_file, videos)
    except DatasetError as exc:
        raise MetricsError(str(exc)) from None
    if not results.is_dir():
        raise MetricsError(f"results folder {results} not found")
    scored = []
    for clip in clips:
        path = results / f"{clip.name}.npz"  # clip.name: <class>/<video>
        try:
            gt = clip.joints()
            keypoints = load_keypoints(path)
            image_wh = clip.image_size()
        except (DatasetError, KeypointFileError) as exc:
            raise MetricsError(f"video {clip.name!r}: {exc}") from None
        if keypoints.coords.shape != gt.shape:
            raise MetricsError(f"video {clip.name!r}: {path} holds coordinates {keypoints.coords.shape} but "
                               f"{clip.joints_file} has {gt.shape} ([2, joints, frames])")
        distances, mask = normalised_distances(gt, keypoints.coords, image_wh, keypoints.feature_wh)
        scored.append(PoseDistances(clip.name, distances, mask))
    return scored
