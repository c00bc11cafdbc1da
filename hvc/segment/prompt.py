"""The prompts of ``python -m hvc.segment --mask / --scribble [FRAME:]PATH`` (docs/segment.md)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence

import cv2
import numpy as np
from PIL import Image

from hvc.data.palette import DAVIS_PALETTE
from hvc.errors import InputError, UsageError
from hvc.scribbles import ScribbleError, read_scribbles
from hvc.scribbles import check as check_scribbles

KINDS = ("mask", "scribble")
MAX_OBJECTS = 254  # ids 1..254: 0 is the background and 255 void in every label PNG
_FRAME_PREFIX = re.compile(r"^(-?[0-9]+):(.*)$", re.DOTALL)


class PromptError(InputError, ValueError):
    """A mask or scribble file is unusable."""


@dataclass(frozen=True)
class PromptSpec:
    """One prompt: a mask or scribble file for one frame."""

    frame: int
    kind: str  # "mask" | "scribble"
    path: Path

    def __str__(self) -> str:
        return f"--{self.kind} {self.frame}:{self.path}"


def parse_prompt(text: str, kind: str) -> PromptSpec:
    """``FRAME:PATH`` or ``PATH`` (frame 0) of ``--mask`` / ``--scribble``. Only ASCII digits before the first
    colon make a frame number: ``C:/a.png`` and ``a:b.png`` stay paths, ``0:a:b.png`` is frame 0 of ``a:b.png``."""
    found = _FRAME_PREFIX.match(text)
    frame, path = (int(found.group(1)), found.group(2)) if found else (0, text)
    if frame < 0:
        raise UsageError(f"--{kind} {text}: the frame number must be 0 or more (frames count from 0)")
    if not path:
        raise UsageError(f"--{kind} {text}: no file after the frame number (expected FRAME:PATH)")
    return PromptSpec(frame, kind, Path(path))


def check_prompts(specs: Iterable[PromptSpec], count: Optional[int] = None) -> list[PromptSpec]:
    """The prompts in frame order: at least one, at most one per frame (else UsageError) and, with ``count``
    (the video's frame count, when known exactly), on frames of the video (else PromptError)."""
    specs = sorted(specs, key=lambda s: s.frame)
    if not specs:
        raise UsageError("give a prompt: --mask [FRAME:]MASK.png or --scribble [FRAME:]S.png")
    for a, b in zip(specs, specs[1:]):
        if a.frame == b.frame:
            raise UsageError(f"two prompts for frame {a.frame} ({a} and {b}); give one per frame")
    if count is not None and specs[-1].frame >= count:
        raise PromptError(f"{specs[-1].path}: for frame {specs[-1].frame}, but the video has frames 0..{count - 1}")
    return specs


def _fit(ids: np.ndarray, size: tuple[int, int], resize: bool, path: Path, what: str) -> np.ndarray:
    """``ids`` at the frames' size: as it is, nearest-neighbour resized if ``resize``, else an error."""
    if ids.shape == tuple(size):
        return ids
    if not resize:
        raise PromptError(f"{path}: {what} size {ids.shape[1]}x{ids.shape[0]} differs from the video's frames "
                          f"{size[1]}x{size[0]}; pass --resize-mask to scale it (nearest neighbour)")
    return cv2.resize(ids, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)


def _open_mask(path: Path) -> tuple[np.ndarray, str]:
    """(values, mode): [H, W] ids ("P", "L") or [H, W, 3] colours of an RGB(A) mask, transparent black ("RGB")."""
    try:
        with Image.open(path) as im:
            mode = {"1": "L", "RGBA": "RGB", "LA": "RGB"}.get(im.mode, im.mode)
            values = np.array(im.convert("RGBA" if mode == "RGB" else mode)) if mode in ("P", "L", "RGB") else None
    except FileNotFoundError:
        raise PromptError(f"{path}: mask file not found") from None
    except (OSError, ValueError) as exc:
        raise PromptError(f"{path}: unreadable mask ({exc})") from None
    if values is None:
        raise PromptError(f"{path}: the mask is a {mode} image; save it as an indexed (palette) or greyscale PNG of "
                          f"object ids (0 = background), or an RGB image of flat colours")
    if mode == "RGB":
        values[values[..., 3] < 128] = 0  # transparent: background
        values = values[..., :3]
    return values, mode


def _colours(path: Path, rgb: np.ndarray) -> list[tuple[int, int, int]]:
    """The colours of ``rgb`` other than black, in the order they first appear (row by row)."""
    packed = _pack(rgb).reshape(-1)
    values, first = np.unique(packed, return_index=True)
    order = [(int(v) >> 16, (int(v) >> 8) & 255, int(v) & 255) for v in values[np.argsort(first)] if v]
    if len(order) > MAX_OBJECTS:
        raise PromptError(f"{path}: {len(order)} colours, but a mask holds at most {MAX_OBJECTS} objects; is it "
                          f"smoothed (anti-aliased edges) or a JPEG? Save flat colours without smoothing as PNG")
    return order


def _pack(rgb: np.ndarray) -> np.ndarray:
    """uint8 [..., 3] colours as int32 [...] 0xRRGGBB: one comparison per pixel instead of three."""
    rgb = rgb.astype(np.int32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def colour_ids(colours: Sequence[tuple[int, int, int]]) -> dict[tuple[int, int, int], int]:
    """Object ids of mask colours: their DAVIS palette indices if all are in the palette, else 1, 2, ... in order."""
    palette = {tuple(int(v) for v in DAVIS_PALETTE[i]): i for i in range(1, 256)}
    if all(c in palette for c in colours):
        return {c: palette[c] for c in colours}
    if len(colours) > MAX_OBJECTS:
        raise PromptError(f"{len(colours)} colours in the masks together, but at most {MAX_OBJECTS} objects")
    return {c: i + 1 for i, c in enumerate(colours)}


def read_masks(paths: Sequence[str | Path], size: tuple[int, int],
               resize: bool = False) -> tuple[list[np.ndarray], dict[tuple[int, int, int], int]]:
    """Object ids int64 [H, W] of mask files (255 void counted as background; a 0/255 greyscale image is one
    object), and the colour -> id mapping of the RGB(A) ones, one for all files (:func:`colour_ids`)."""
    opened = [(Path(p), *_open_mask(Path(p))) for p in paths]
    seen: dict[tuple[int, int, int], None] = {}
    for path, values, mode in opened:
        if mode == "RGB":
            seen.update(dict.fromkeys(_colours(path, values)))
    mapping = colour_ids(list(seen))
    out = []
    for path, values, mode in opened:
        if mode == "RGB":
            packed = _pack(values)
            ids = np.zeros(values.shape[:2], np.uint8)
            for (r, g, b), i in mapping.items():
                ids[packed == (r << 16 | g << 8 | b)] = i
        else:
            ids = values
            if mode == "L" and set(np.unique(ids).tolist()) == {0, 255}:
                ids = (ids == 255).astype(np.uint8)  # a binary 0/255 greyscale mask: one object
        ids = _fit(ids, size, resize, path, "mask").astype(np.int64)
        ids[ids == 255] = 0
        if not (ids > 0).any():
            raise PromptError(f"{path}: no object in the mask (every pixel is 0 = background or 255 = void)")
        out.append(ids)
    return out, mapping


def describe_colours(mapping: dict[tuple[int, int, int], int]) -> list[str]:
    """One line per colour: ``colour #rrggbb (r, g, b) -> object i``."""
    return [f"colour #{r:02x}{g:02x}{b:02x} ({r}, {g}, {b}) -> " + (f"object {i}" if i < 255 else "void (background)")
            for (r, g, b), i in sorted(mapping.items(), key=lambda kv: kv[1])]


def read_scribble(path: str | Path, size: tuple[int, int], resize: bool = False) -> np.ndarray:
    """Scribble map int64 [H, W] (-1 unlabelled, 0 background, 1.. objects) of a PNG or DAVIS JSON file."""
    path = Path(path)
    try:
        shifted = _fit((read_scribbles(path, size) + 1).astype(np.uint8), size, resize, path, "scribble")  # -1..254
        scribbles = shifted.astype(np.int64) - 1
        check_scribbles(scribbles, str(path))  # strokes can vanish when a scribble is shrunk
    except ScribbleError as exc:
        raise PromptError(str(exc)) from None
    return scribbles
