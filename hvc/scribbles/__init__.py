"""Scribble prompts (docs/scribbles.md): their files, indexed PNGs and the DAVIS interactive JSON, read into one map
(int64 [H, W]: -1 unlabelled, 0 background, 1..254 objects), and scribbles generated from ground-truth masks: longest
paths through eroded skeletons, per object and on the background. Filling frame 0 from them: hvc.scribbles.fill."""

from __future__ import annotations

import json
import os
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from scipy import ndimage
from skimage.morphology import skeletonize

from hvc.data.palette import save_indexed_png
from hvc.errors import InputError
from hvc.fileio import atomic_write_text

UNLABELLED = -1  # in memory
BACKGROUND_PNG = 255  # background scribbles in a PNG file
MAX_OBJECT_ID = 254
_EIGHT = np.ones((3, 3), bool)  # 8-connectivity
_NEIGHBOURS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx]
# The generator, as fixed after a comparison on DAVIS (docs/scribbles.md): object strokes keep EROSION of the region's
# equivalent radius from its border, at most STROKES_PER_OBJECT, later ones >= MIN_LENGTH of the first; background
# strokes keep MARGIN of the shorter side from objects, on up to MAX_BACKGROUND pieces >= MIN_BACKGROUND of the largest.
EROSION, STROKES_PER_OBJECT, MIN_LENGTH, MARGIN, MIN_BACKGROUND, MAX_BACKGROUND, VOID = 0.15, 3, 0.25, 0.04, 0.1, 3, 255


class ScribbleError(InputError, ValueError):
    """A scribble file is unreadable or does not describe a usable prompt."""


@dataclass(frozen=True)
class Stroke:
    """One scribbled line: ``object_id`` (0 = background) and its points, int [n, 2] (x, y) pixels."""

    object_id: int
    points: np.ndarray


def render(strokes: list[Stroke], size: tuple[int, int], thickness: int = 1) -> np.ndarray:
    """Draw ``strokes`` into a scribble map int64 [H, W] (-1 unlabelled); later strokes on top."""
    out = np.full(size, UNLABELLED, dtype=np.int16)
    for s in strokes:
        pts = np.asarray(s.points, dtype=np.int32).reshape(-1, 1, 2)
        # 8-connected lines of width 1: the pixels Bresenham's algorithm visits
        cv2.polylines(out, [pts], isClosed=False, color=int(s.object_id), thickness=thickness, lineType=cv2.LINE_8)
        if len(pts) == 1:  # a dot: polylines draws nothing for a single point at width 1
            cv2.circle(out, tuple(int(v) for v in pts[0, 0]), max(thickness // 2, 0), int(s.object_id), -1)
    return out.astype(np.int64)


def save_png(path: str | os.PathLike, scribbles: np.ndarray) -> None:
    """Write a scribble map as a DAVIS palette PNG: unlabelled 0, background 255 (224, 224, 192), objects their ids."""
    save_indexed_png(path, np.where(scribbles == 0, BACKGROUND_PNG, np.maximum(scribbles, 0)).astype(np.uint8))


def read_png(path: str | os.PathLike) -> np.ndarray:
    """Scribble map int64 [H, W] of a PNG (indexed or greyscale: the value is the id)."""
    try:
        with Image.open(path) as im:
            mode, ids = im.mode, np.array(im) if im.mode in ("P", "L") else None
    except (OSError, ValueError) as exc:
        raise ScribbleError(f"{path}: unreadable scribble image ({exc})") from None
    if ids is None:
        raise ScribbleError(f"{path}: mode {mode}; expected an indexed or greyscale PNG of ids (docs/scribbles.md)")
    return np.select([ids == 0, ids == BACKGROUND_PNG], [UNLABELLED, 0], ids.astype(np.int64))


def read_davis_json(path: str | os.PathLike, size: tuple[int, int]) -> tuple[int, np.ndarray]:
    """(frame, scribble map [H, W]) of a DAVIS interactive scribble file drawn at ``size`` = (H, W); the
    frame is ``annotated_frame`` or the first frame holding strokes."""
    try:
        data = json.loads(Path(path).read_text())
        if not isinstance(data["scribbles"], list):
            raise TypeError("'scribbles' is not a list of frames")
        drawn = [t for t, f in enumerate(data["scribbles"]) if f]
        frame = int(data.get("annotated_frame", drawn[0] if drawn else -1))
        strokes = [(int(s["object_id"]), np.asarray(s["path"], dtype=np.float64).reshape(-1, 2))
                   for s in (data["scribbles"][frame] if drawn else [])]
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise ScribbleError(f"{path}: not a DAVIS interactive scribble file ({type(exc).__name__}: {exc})") from None
    if not drawn:
        raise ScribbleError(f"{path}: no strokes in any frame")
    if any(not np.isfinite(xy).all() or xy.min(initial=0) < 0 or xy.max(initial=0) > 1 for _, xy in strokes):
        raise ScribbleError(f"{path}: frame {frame}: stroke points must be normalised to [0, 1]")
    bad = sorted({obj for obj, _ in strokes if not 0 <= obj <= MAX_OBJECT_ID})
    if bad:
        raise ScribbleError(f"{path}: object ids {bad} outside 0..{MAX_OBJECT_ID}")
    h, w = size  # points to pixels truncated, as davis-interactive does
    return frame, render([Stroke(obj, (xy * [w - 1, h - 1]).astype(np.int64)) for obj, xy in strokes], size)


def save_davis_json(path: str | os.PathLike, strokes: list[Stroke], size: tuple[int, int], num_frames: int,
                    sequence: str) -> None:
    """Write ``strokes`` (pixel coordinates at ``size``) on frame 0 as a DAVIS interactive file."""
    h, w = size
    # Points at the pixel centres' normalised positions; reading truncates back to the same pixel
    # (the +0.5 keeps float rounding from landing just below an integer).
    lines = [{"path": [[(x + 0.5) / (w - 1) if x < w - 1 else 1.0, (y + 0.5) / (h - 1) if y < h - 1 else 1.0]
                       for x, y in np.asarray(s.points).tolist()],
              "object_id": int(s.object_id), "start_time": 0, "end_time": 0} for s in strokes]
    frames = [lines] + [[] for _ in range(num_frames - 1)]
    atomic_write_text(path, json.dumps({"scribbles": frames, "sequence": sequence, "annotated_frame": 0}))


def read_scribbles(path: str | os.PathLike, size: tuple[int, int] | None = None) -> np.ndarray:
    """Scribble map of a ``.png`` or ``.json`` file (``size``: (H, W), needed for JSON), checked: an object stroke and a
    background stroke."""
    path = Path(path)
    if not path.is_file():
        raise ScribbleError(f"{path}: scribble file not found")
    if path.suffix.lower() == ".json":
        frame, scribbles = read_davis_json(path, size)
        if frame != 0:
            raise ScribbleError(f"{path}: the strokes are on frame {frame}, not 0: trim the video to start there")
    else:
        scribbles = read_png(path)
    check(scribbles, str(path))
    return scribbles


def check(scribbles: np.ndarray, where: str) -> None:
    """A usable prompt has at least one object stroke and one background stroke."""
    if not (scribbles > 0).any():
        raise ScribbleError(f"{where}: no object scribbled (ids 1..{MAX_OBJECT_ID})")
    if not (scribbles == 0).any():
        raise ScribbleError(f"{where}: no background scribbled: draw one (id {BACKGROUND_PNG} in a PNG, 0 in JSON)")


def _pieces(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 8-connected pieces of ``mask``: ids [H, W] (1.. in raster order of their first pixel, 0 outside) and
    sizes (piece i + 1's at index i)."""
    pieces, _ = ndimage.label(mask, structure=_EIGHT)
    return pieces, np.bincount(pieces.ravel())[1:]


def _largest_piece(mask: np.ndarray) -> np.ndarray:
    pieces, sizes = _pieces(mask)
    return pieces == 1 + int(np.argmax(sizes))  # argmax: the first of equal sizes, deterministic


def _eroded(mask: np.ndarray, fraction: float) -> np.ndarray:
    """Erode by ``fraction`` of the piece's equivalent radius, less if that would empty it."""
    radius = fraction * np.sqrt(mask.sum() / np.pi)
    depth = ndimage.distance_transform_edt(mask)  # distance to the nearest pixel outside
    while radius >= 1:
        core = depth > radius
        if core.any():
            return _largest_piece(core)
        radius /= 2
    return mask


def _farthest(start: tuple[int, int], pixels: set[tuple[int, int]]) -> tuple[tuple[int, int], dict]:
    """Breadth-first search over 8-connected ``pixels``: (a farthest pixel, parent links)."""
    parent = {start: start}
    queue = deque([start])
    while queue:
        last = queue.popleft()
        for nb in ((last[0] + dy, last[1] + dx) for dy, dx in _NEIGHBOURS):
            if nb in pixels and nb not in parent:
                parent[nb] = last
                queue.append(nb)
    return last, parent


def _longest_path(pixels: set[tuple[int, int]]) -> list[tuple[int, int]]:
    """A longest path (y, x) through 8-connected ``pixels`` (one piece): the ends of a double
    breadth-first search, the classic diameter estimate (exact on a tree, as a skeleton nearly is)."""
    a, _ = _farthest(min(pixels), pixels)  # deterministic start: the top-left pixel
    b, parent = _farthest(a, pixels)
    path = [b]
    while path[-1] != a:
        path.append(parent[path[-1]])
    return path


def skeleton_strokes(mask: np.ndarray, max_strokes: int = 1) -> list[np.ndarray]:
    """Strokes int [n, 2] (x, y) along the skeleton of ``mask`` (one piece): a longest path through it, then the
    longest through what is left without the drawn pixels and their neighbours: the body, then the neck, a wing."""
    left = skeletonize(mask)
    if not left.any():  # skeletonize keeps a pixel of any non-empty shape; be safe anyway
        left = mask
    strokes: list[np.ndarray] = []
    while left.any() and len(strokes) < max_strokes:
        pieces, sizes = _pieces(left)
        # max: the first of equal lengths, pieces in raster order
        path = max((_longest_path(set(zip(*np.nonzero(pieces == i + 1)))) for i in range(len(sizes))), key=len)
        if strokes and len(path) < MIN_LENGTH * len(strokes[0]):
            break
        strokes.append(np.array([(x, y) for y, x in path], dtype=np.int64))
        drawn = np.zeros_like(left)
        drawn[tuple(np.array(path).T)] = True
        left = left & ~ndimage.binary_dilation(drawn, _EIGHT)  # the path and its neighbours
    return strokes


def scribbles_from_mask(labels: np.ndarray) -> list[Stroke]:
    """Strokes for ground-truth ids ``labels`` (int [H, W], 0 background, 255 void): objects' (ids ascending), then
    the background's (object_id 0)."""
    labels = np.asarray(labels)
    strokes = []
    for obj in sorted(int(i) for i in np.unique(labels) if i not in (0, VOID)):
        core = _eroded(_largest_piece(labels == obj), EROSION)
        strokes += [Stroke(obj, p) for p in skeleton_strokes(core, STROKES_PER_OBJECT)]
    away = int(round(MARGIN * min(labels.shape)))
    occupied = labels != 0
    if away > 0 and occupied.any():
        occupied = ndimage.distance_transform_edt(~occupied) <= away
    pieces, sizes = _pieces(~occupied)
    for p in np.argsort(-sizes, kind="stable")[:MAX_BACKGROUND]:
        if sizes[p] < MIN_BACKGROUND * sizes.max():
            break
        strokes += [Stroke(0, s) for s in skeleton_strokes(_eroded(pieces == p + 1, EROSION))]
    return strokes
