"""VIP (Video Instance-level Parsing) for part propagation, as the paper's list file reads it (layout and
list: docs/tasks.md). Only every 25th frame is annotated: a video here is its annotated frames in order."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from hvc.data.sequence import DatasetError, list_lines, read_label_png, require, select
from hvc.names import check_name

IMAGES_DIR = "Images"
LABELS_DIR = Path("Annotations") / "Category_ids"
NUM_CLASSES = 20  # background + 19 human parts
IGNORE_ID = 255  # never a class; left out of the scores


@dataclass(frozen=True)
class VIPVideo:
    """The annotated frames of one video, in order, with their class-id maps."""

    name: str
    frames: tuple[Path, ...]  # [T] JPEG frames
    annotations: tuple[Path, ...]  # [T] class-id PNGs, annotations[0] starts the propagation

    def frame_names(self) -> tuple[str, ...]:
        return tuple(p.stem for p in self.frames)


def read_class_ids(path: str | os.PathLike) -> np.ndarray:
    """Class ids of a VIP annotation, a greyscale or palette PNG read as DAVIS labels are: [H, W] uint8 in
    0..NUM_CLASSES-1 (IGNORE_ID allowed)."""
    ids = read_label_png(Path(path), DatasetError)
    bad = np.unique(ids[(ids >= NUM_CLASSES) & (ids != IGNORE_ID)])
    if bad.size:
        raise DatasetError(f"{path}: class ids {bad.tolist()} outside 0..{NUM_CLASSES - 1}")
    return ids


def read_frame_list(path: str | os.PathLike) -> list[tuple[str, str]]:
    """(video, frame) pairs of a VIP list file, in file order."""
    pairs = []
    for where, fields, text in list_lines(Path(path)):
        paths = [f for f in fields if "/" in f]
        parts = Path(paths[-1]).parts if paths else ()
        if len(parts) < 2:
            raise DatasetError(f"{where}: expected '[n] <...>/<video>/<frame>.jpg <...>/<video>/<frame>.png', "
                               f"got {text!r}")
        pairs.append((check_name(parts[-2], where, error=DatasetError),
                      check_name(Path(parts[-1]).stem, where, error=DatasetError)))
    return pairs


def vip_videos(root: str | os.PathLike, list_file: Optional[str | os.PathLike] = None,
               wanted: Sequence[str] = ()) -> list[VIPVideo]:
    """The videos of ``list_file`` (default: every annotated video under ``root``, its annotated frames sorted),
    restricted to ``wanted`` if given; every frame must have its JPEG and its annotation."""
    root = Path(root)
    labels = require(root / LABELS_DIR, root, "VIP")
    by_video: dict[str, list[str]] = {}
    if list_file is not None:
        for video, frame in read_frame_list(list_file):
            by_video.setdefault(video, []).append(frame)
    else:
        for folder in sorted(p for p in labels.iterdir() if p.is_dir()):
            by_video[folder.name] = sorted(p.stem for p in folder.glob("*.png"))
    videos = []
    for name in select([v for v, frames in by_video.items() if frames], wanted, list_file or labels):
        frames = by_video[name]
        if len(set(frames)) != len(frames):
            raise DatasetError(f"video {name!r}: frames listed more than once in {list_file}")
        images = tuple(root / IMAGES_DIR / name / f"{f}.jpg" for f in frames)
        annotations = tuple(labels / name / f"{f}.png" for f in frames)
        for path in (*images, *annotations):
            if not path.is_file():
                raise DatasetError(f"video {name!r}: {path} not found")
        videos.append(VIPVideo(name, images, annotations))
    return videos
