"""Tiny synthetic DAVIS-2017 and YouTube-VOS trees for the dataset and inference tests.

Frames show coloured rectangles moving on a textured background, and the masks are the
rectangles, so propagation has something real to track.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from hvc.data.palette import save_indexed_png

H, W = 48, 80


def _scene(t: int, boxes: dict[int, tuple[int, int]], size=(H, W)) -> tuple[np.ndarray, np.ndarray]:
    """Frame t (uint8 [H, W, 3]) and its id map: object id -> (top, left) at t=0, moving right."""
    rng = np.random.default_rng(0)
    frame = (rng.random((*size, 3)) * 60 + 40).astype(np.uint8)
    ids = np.zeros(size, dtype=np.uint8)
    for obj, (top, left) in boxes.items():
        x = left + 2 * t
        frame[top:top + 14, x:x + 16] = (np.array([200, 60, 60]) if obj == 1 else np.array([60, 60, 220]))
        ids[top:top + 14, x:x + 16] = obj
    return frame, ids


DAVIS17_BOXES = {1: (5, 4), 2: (28, 30)}  # object id -> (top, left) of its 14x16 box at frame 0


def davis17_ids(t: int) -> np.ndarray:
    """The true id map (uint8 [H, W], no void) of frame t of every make_davis17 sequence."""
    return _scene(t, DAVIS17_BOXES)[1]


def make_davis17(root: Path, sequences=("alpha", "beta"), frames: int = 4) -> Path:
    """DAVIS-2017 tree: ImageSets/2017/val.txt, two objects per sequence, a void border in frame 0."""
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("\n".join(sequences) + "\n")
    for name in sequences:
        for t in range(frames):
            frame, ids = _scene(t, DAVIS17_BOXES)
            path = root / "JPEGImages" / "480p" / name / f"{t:05d}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(frame).save(path, quality=95)
            if t == 0:
                ids[4, 4:20] = 255  # void pixels
                save_indexed_png(root / "Annotations" / "480p" / name / f"{t:05d}.png", ids)
    return root


def make_ytvos(root: Path) -> Path:
    """YouTube-VOS tree (data/YTB/<year>): video ``vid_a`` (object 2 appears at frame 00004)
    and ``vid_b`` (frames before its first annotation at 00002), meta.json every 2nd frame."""
    videos = {
        # name: (all frame numbers, {object id: (first frame number, (top, left))})
        "vid_a": (range(0, 8), {1: (0, (5, 4)), 2: (4, (28, 10))}),
        "vid_b": (range(0, 7), {1: (2, (20, 8))}),
    }
    meta = {"videos": {}}
    for name, (numbers, objects) in videos.items():
        listed = [n for n in numbers if n % 2 == 0]
        meta["videos"][name] = {"objects": {
            str(obj): {"category": "box", "frames": [f"{n:05d}" for n in listed if n >= start]}
            for obj, (start, _) in objects.items()}}
        for n in numbers:
            present = {obj: box for obj, (start, box) in objects.items() if n >= start}
            frame, ids = _scene(n, present)
            path = root / "valid_all_frames" / "JPEGImages" / name / f"{n:05d}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(frame).save(path, quality=95)
            new = [obj for obj, (start, _) in objects.items() if start == n]
            if new:  # first-appearance annotation: only the objects that start here
                save_indexed_png(root / "valid" / "Annotations" / name / f"{n:05d}.png",
                                 np.where(np.isin(ids, new), ids, 0).astype(np.uint8))
    (root / "valid" / "meta.json").write_text(json.dumps(meta))
    return root
