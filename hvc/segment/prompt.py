"""The first-frame prompt of ``python -m hvc.segment``: a mask of object ids, or scribbles."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from hvc.errors import InputError
from hvc.scribbles import ScribbleError, read_scribbles
from hvc.scribbles.format import check as check_scribbles


class PromptError(InputError, ValueError):
    """A first-frame mask or scribble file is unusable."""


def _fit(ids: np.ndarray, size: tuple[int, int], resize: bool, path: Path, what: str) -> np.ndarray:
    """``ids`` at the frames' size: as it is, nearest-neighbour resized if ``resize``, else an error."""
    if ids.shape == tuple(size):
        return ids
    if not resize:
        raise PromptError(f"{path}: {what} size {ids.shape[1]}x{ids.shape[0]} differs from the video's frames "
                          f"{size[1]}x{size[0]}; pass --resize-mask to scale it (nearest neighbour)")
    return cv2.resize(ids, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)


def read_mask(path: str | Path, size: tuple[int, int], resize: bool = False) -> np.ndarray:
    """Object ids int64 [H, W] of a first-frame mask PNG: an indexed (DAVIS palette) or
    greyscale image of ids, 0 background and 255 void (counted as background); a 0/255
    greyscale image is one object."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            if im.mode == "1":
                im = im.convert("L")
            if im.mode not in ("P", "L"):
                raise PromptError(f"{path}: the mask is a {im.mode} image; save it as an indexed (palette) or "
                                  f"greyscale PNG of object ids (0 = background)")
            ids, grey = np.array(im), im.mode == "L"
    except FileNotFoundError:
        raise PromptError(f"{path}: mask file not found") from None
    except (OSError, ValueError) as exc:
        if isinstance(exc, PromptError):
            raise
        raise PromptError(f"{path}: unreadable mask ({exc})") from None
    if grey and set(np.unique(ids).tolist()) == {0, 255}:
        ids = (ids == 255).astype(np.uint8)  # a binary 0/255 greyscale mask: one object
    ids = _fit(ids, size, resize, path, "mask").astype(np.int64)
    ids[ids == 255] = 0
    if not (ids > 0).any():
        raise PromptError(f"{path}: no object in the mask (every pixel is 0 = background or 255 = void)")
    return ids


def read_scribble(path: str | Path, size: tuple[int, int], resize: bool = False) -> np.ndarray:
    """Scribble map int64 [H, W] (-1 unlabelled, 0 background, 1.. objects) of a scribble PNG
    or DAVIS interactive JSON (docs/scribbles.md), at the frames' size."""
    path = Path(path)
    try:
        scribbles = read_scribbles(path, size)
    except ScribbleError as exc:
        raise PromptError(str(exc)) from None
    shifted = _fit((scribbles + 1).astype(np.uint8), size, resize, path, "scribble")  # -1..254 -> 0..255
    scribbles = shifted.astype(np.int64) - 1
    try:
        check_scribbles(scribbles, str(path))  # strokes can vanish when a scribble is shrunk
    except ScribbleError as exc:
        raise PromptError(str(exc)) from None
    return scribbles
