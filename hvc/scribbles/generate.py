"""Plausible scribbles from ground-truth masks, deterministically (docs/scribbles.md, "A scribble
generator from masks"): longest paths through eroded skeletons, per object and on the background.
"""

from __future__ import annotations

from collections import deque

import numpy as np
from scipy import ndimage
from skimage.morphology import skeletonize

from hvc.scribbles.format import Stroke

_EIGHT = np.ones((3, 3), bool)  # 8-connectivity
_NEIGHBOURS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx]
# The settings, fixed after a comparison on DAVIS (docs/scribbles.md): strokes keep EROSION of their region's
# equivalent radius from its border, up to STROKES_PER_OBJECT per object, further ones at least MIN_LENGTH times
# the first's length; background strokes keep MARGIN of the shorter image side from every object, on at most
# MAX_BACKGROUND pieces of at least MIN_BACKGROUND of the largest. VOID pixels are nobody's.
EROSION, STROKES_PER_OBJECT, MIN_LENGTH, MARGIN, MIN_BACKGROUND, MAX_BACKGROUND, VOID = 0.15, 3, 0.25, 0.04, 0.1, 3, 255


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
