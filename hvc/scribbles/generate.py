"""Plausible scribbles from ground-truth masks, deterministically (docs/scribbles.md): per object
the longest path through the skeleton of its eroded largest piece, and the same on the background
kept away from every object by a margin, one stroke per large piece.
"""

from __future__ import annotations

from collections import deque

import numpy as np
from scipy import ndimage
from skimage.morphology import skeletonize

from hvc.scribbles.format import Stroke

_NEIGHBOURS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx]


def _largest_piece(mask: np.ndarray) -> np.ndarray:
    pieces, n = ndimage.label(mask, structure=np.ones((3, 3)))
    if n <= 1:
        return mask
    sizes = np.bincount(pieces.ravel())[1:]
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
    last = start
    while queue:
        last = queue.popleft()
        y, x = last
        for dy, dx in _NEIGHBOURS:
            nb = (y + dy, x + dx)
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


def skeleton_strokes(mask: np.ndarray, max_strokes: int = 1, min_length: float = 0.25) -> list[np.ndarray]:
    """Strokes along the skeleton of ``mask`` (one connected piece): int [n, 2] (x, y) pixels each.

    The first is a longest path through the skeleton; each further one the longest through what
    is left once the pixels drawn so far and their neighbours are taken out, kept if at least
    ``min_length`` times the first's length: a person drawing the body, then the neck, a wing.
    """
    skeleton = skeletonize(mask)
    ys, xs = np.nonzero(skeleton)
    if len(ys) == 0:  # skeletonize keeps a pixel of any non-empty shape; be safe anyway
        ys, xs = np.nonzero(mask)
    left = set(zip(ys.tolist(), xs.tolist()))
    strokes: list[np.ndarray] = []
    while left and len(strokes) < max_strokes:
        pieces = []
        for start in sorted(left):  # the pieces of what is left, deterministic order
            if any(start in p for p in pieces):
                continue
            pieces.append(set(_farthest(start, left)[1]))
        path = max((_longest_path(p) for p in pieces), key=len)
        if strokes and len(path) < min_length * len(strokes[0]):
            break
        strokes.append(np.array([(x, y) for y, x in path], dtype=np.int64))
        for y, x in path:
            for dy, dx in [(0, 0), *_NEIGHBOURS]:
                left.discard((y + dy, x + dx))
    return strokes


def scribbles_from_mask(labels: np.ndarray, erosion: float = 0.15, margin: float = 0.04, strokes_per_object: int = 3,
                        min_background: float = 0.1, max_background: int = 3, void: int = 255) -> list[Stroke]:
    """Strokes for ground-truth ids ``labels`` (uint8/int [H, W], 0 background, ``void`` ignored):
    object strokes (ids ascending), then background strokes (object_id 0).

    erosion: strokes keep this fraction of their region's equivalent radius from its border;
    strokes_per_object: most skeleton strokes per object (:func:`skeleton_strokes`); margin:
    background strokes keep this fraction of the shorter image side from every object; background
    pieces under ``min_background`` of the largest get no stroke, at most ``max_background`` do.
    """
    labels = np.asarray(labels)
    strokes = []
    for obj in sorted(int(i) for i in np.unique(labels) if i not in (0, void)):
        core = _eroded(_largest_piece(labels == obj), erosion)
        strokes += [Stroke(obj, p) for p in skeleton_strokes(core, strokes_per_object)]
    away = int(round(margin * min(labels.shape)))
    occupied = labels != 0
    if away > 0 and occupied.any():
        occupied = ndimage.distance_transform_edt(~occupied) <= away
    pieces, n = ndimage.label(~occupied, structure=np.ones((3, 3)))
    if n == 0:
        return strokes
    sizes = np.bincount(pieces.ravel())[1:]
    order = np.argsort(-sizes, kind="stable")[:max_background]
    for p in order:
        if sizes[p] < min_background * sizes[order[0]]:
            break
        core = _eroded(pieces == p + 1, erosion)
        strokes += [Stroke(0, p) for p in skeleton_strokes(core)]
    return strokes
