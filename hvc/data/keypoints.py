"""JHMDB's joints and the keypoint prediction file: what the pose propagation writes
(hvc.tasks.clips) and the PCK scorer reads (hvc.metrics.pck). Torch-free, so scoring is too."""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass

import numpy as np

from hvc.errors import InputError
from hvc.fileio import atomic_path

# JHMDB joint order of ``pos_img`` (the dataset's documentation; videowalk's skeleton
# drawing in ``code/utils/test_utils.py`` links them in this order too).
JOINT_NAMES = ("neck", "belly", "face", "right shoulder", "left shoulder", "right hip", "left hip", "right elbow",
               "left elbow", "right knee", "left knee", "right wrist", "left wrist", "right ankle", "left ankle")
NUM_JOINTS = len(JOINT_NAMES)


class KeypointFileError(InputError, ValueError):
    """A keypoint prediction file is missing or malformed; the message names it."""


@dataclass(frozen=True)
class Keypoints:
    """Predicted joints of one clip at feature resolution (videowalk's ``<i>.dat``, plus the map size)."""

    coords: np.ndarray  # [2, J, T] (x row 0, y row 1), -1 = lost
    feature_wh: tuple[int, int]  # (width, height) of the label maps the coordinates refer to


def save_keypoints(path: str | os.PathLike, coords: np.ndarray, feature_wh: tuple[int, int]) -> None:
    """Write ``<video>.npz`` with ``coords`` [2, J, T] and ``feature_wh``, atomically."""
    coords = np.asarray(coords)
    if coords.ndim != 3 or coords.shape[0] != 2:
        raise ValueError(f"{path}: expected coordinates [2, J, T], got shape {coords.shape}")
    with atomic_path(path) as tmp:
        np.savez(tmp, coords=coords, feature_wh=np.asarray(feature_wh, dtype=np.int64))


def load_keypoints(path: str | os.PathLike) -> Keypoints:
    """Read a file written by :func:`save_keypoints`; errors name the file."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise KeypointFileError(f"missing keypoint file {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            coords, size = data["coords"], data["feature_wh"]
    except KeyError as exc:
        raise KeypointFileError(f"{path}: no {exc} array (expected 'coords' and 'feature_wh')") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise KeypointFileError(f"{path}: corrupt or unreadable keypoint file ({exc})") from None
    if coords.ndim != 3 or coords.shape[0] != 2 or not np.issubdtype(coords.dtype, np.floating):
        raise KeypointFileError(f"{path}: 'coords' must be float [2, J, T], got {coords.dtype} {coords.shape}")
    if size.shape != (2,) or np.any(size <= 0):
        raise KeypointFileError(f"{path}: 'feature_wh' must be two positive sizes, got {size.tolist()}")
    if not np.all(np.isfinite(coords)):
        raise KeypointFileError(f"{path}: 'coords' holds NaN or infinite values")
    return Keypoints(coords, (int(size[0]), int(size[1])))
