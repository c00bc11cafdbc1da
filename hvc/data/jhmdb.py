"""JHMDB in its public layout, as videowalk reads it for pose tracking (the folders, the list files and which
videos are read: docs/tasks.md; a video is named ``<class>/<video>``), and the keypoint prediction file the pose
propagation writes (hvc.tasks.clips) and the PCK scorer reads (hvc.metrics.pck). Torch-free, so scoring is too."""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from hvc.data.sequence import DatasetError, image_size, list_frames, list_lines, require, select
from hvc.errors import InputError
from hvc.fileio import atomic_path
from hvc.names import check_name

FRAMES_DIR = "Rename_Images"
JOINTS_DIR = "joint_positions"
JOINTS_FILE = "joint_positions.mat"
# JHMDB joint order of ``pos_img`` (the dataset's documentation; videowalk's skeleton
# drawing in ``code/utils/test_utils.py`` links them in this order too).
JOINT_NAMES = ("neck", "belly", "face", "right shoulder", "left shoulder", "right hip", "left hip", "right elbow",
               "left elbow", "right knee", "left knee", "right wrist", "left wrist", "right ankle", "left ankle")
NUM_JOINTS = len(JOINT_NAMES)


@dataclass(frozen=True)
class JHMDBVideo:
    """One clip: its frames in order and the file with its ground-truth joints."""

    name: str  # "<class>/<video>"
    frames: tuple[Path, ...]  # [T] frame files, 00001.png first
    joints_file: Path

    def joints(self) -> np.ndarray:
        """Ground-truth joints ``pos_img``: [2, 15, T] float64, 1-based pixels (x row 0)."""
        return read_joints(self.joints_file)

    def image_size(self) -> tuple[int, int]:
        """(width, height) of the first frame (the evaluation reads only its size)."""
        return image_size(self.frames[0])[::-1]


def read_joints(path: str | os.PathLike) -> np.ndarray:
    """``pos_img`` of a JHMDB joint_positions.mat: [2, 15, T] float64, 1-based as stored."""
    from scipy.io import loadmat
    try:
        mat = loadmat(os.fspath(path))
    except Exception as exc:  # scipy raises OSError, ValueError, TypeError, MatReadError... for missing or broken files
        raise DatasetError(f"{path}: unreadable .mat file ({exc})") from None
    if "pos_img" not in mat:
        raise DatasetError(f"{path}: no 'pos_img' variable (found {sorted(k for k in mat if not k.startswith('__'))})")
    pos = np.asarray(mat["pos_img"], dtype=np.float64)
    if pos.ndim != 3 or pos.shape[:2] != (2, NUM_JOINTS) or pos.shape[2] == 0:
        raise DatasetError(f"{path}: 'pos_img' has shape {pos.shape}, expected (2, {NUM_JOINTS}, T)")
    if not np.all(np.isfinite(pos)):
        raise DatasetError(f"{path}: 'pos_img' holds NaN or infinite values")
    return pos


def _frames(folder: Path) -> tuple[Path, ...]:
    """The PNG frames of a clip, ordered by their number (as videowalk sorts them)."""
    frames = list_frames(folder, (".png",), DatasetError)
    bad = [p.name for p in frames if not p.stem.isdigit()]
    if bad:
        raise DatasetError(f"{folder}: frame names must be numbers (%05d.png), found {bad[:3]}")
    frames = sorted(frames, key=lambda p: int(p.stem))
    for a, b in zip(frames, frames[1:]):  # 1.png and 00001.png: which one is frame 1?
        if int(a.stem) == int(b.stem):
            raise DatasetError(f"{folder}: two files for frame {int(a.stem)}: {a.name} and {b.name}")
    return tuple(frames)


def read_video_list(path: str | os.PathLike) -> list[str]:
    """Video names of a list file, one a line: ``<frames dir> <joint_positions.mat>`` (videowalk's test list,
    absolute or relative paths: the last two folder names are used) or ``<class>/<video>``; or of a folder of
    official split files (:func:`read_split_folder`)."""
    path = Path(path)
    if path.is_dir():
        return read_split_folder(path)
    names = []
    for where, fields, text in list_lines(path):
        if len(fields) > 2:
            raise DatasetError(f"{where}: expected '<frames dir> <joints .mat>' or '<class>/<video>', got {text!r}")
        parts = Path(fields[0].rstrip("/")).parts  # a frames folder, a joints file or <class>/<video>
        if parts and parts[-1].endswith(".mat"):
            parts = parts[:-1]
        if len(parts) < 2:
            raise DatasetError(f"{where}: {fields[0]!r} does not name <class>/<video>")
        names.append(check_name(f"{parts[-2]}/{parts[-1]}", where, parts=2, error=DatasetError))
    return names


def read_split_folder(folder: str | os.PathLike) -> list[str]:
    """Test videos of JHMDB split 1 (the protocol's), classes in name order: the ``<video>.avi 2`` lines of
    ``<class>_test_split1.txt`` (1 = train)."""
    folder = Path(folder)
    files = sorted(folder.glob("*_test_split1.txt"))
    if not files:
        raise DatasetError(f"no *_test_split1.txt files in {folder}")
    names = []
    for file in files:
        cls = file.name.removesuffix("_test_split1.txt")
        for where, fields, text in list_lines(file):
            if len(fields) != 2 or fields[1] not in ("1", "2"):
                raise DatasetError(f"{where}: expected '<video>.avi 1|2', got {text!r}")
            if fields[1] == "2":  # 1 = train, 2 = test
                names.append(check_name(f"{cls}/{Path(fields[0]).stem}", where, parts=2, error=DatasetError))
    return names


def listed_videos(root: Path) -> list[str]:
    """Every ``<class>/<video>`` of ``root`` with a joints file, sorted."""
    return sorted(f"{p.parent.parent.name}/{p.parent.name}" for p in (root / JOINTS_DIR).glob(f"*/*/{JOINTS_FILE}"))


def jhmdb_videos(root: str | os.PathLike, list_file: Optional[str | os.PathLike] = None,
                 wanted: Sequence[str] = ()) -> list[JHMDBVideo]:
    """The clips of ``list_file`` (default: :func:`listed_videos`), restricted to ``wanted`` if given."""
    root = Path(root)
    joints = require(root / JOINTS_DIR, root, "JHMDB")
    listed = listed_videos(root) if list_file is None else read_video_list(list_file)
    names = select(listed, wanted, list_file or joints)
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise DatasetError(f"{list_file}: lists {', '.join(repeated)} more than once")
    videos = []
    for name in names:
        video = JHMDBVideo(name, _frames(root / FRAMES_DIR / name), root / JOINTS_DIR / name / JOINTS_FILE)
        if not video.joints_file.is_file():
            raise DatasetError(f"{video.joints_file}: joints file not found")
        videos.append(video)
    return videos


def check_frame_count(video: JHMDBVideo, joints: np.ndarray) -> None:
    """The joints file must describe every frame of the clip."""
    if joints.shape[2] != len(video.frames):
        raise DatasetError(f"{video.joints_file}: 'pos_img' covers {joints.shape[2]} frames but "
                           f"{video.frames[0].parent} holds {len(video.frames)}")


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
    if not os.path.isfile(path):
        raise KeypointFileError(f"{path}: missing keypoint file")
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
