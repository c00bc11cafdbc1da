"""Overlay images and an mp4 per sequence, for looking at propagated masks."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np
from PIL import Image

from hvc.data.palette import DAVIS_PALETTE
from hvc.exports.mp4 import Mp4Writer
from hvc.fileio import atomic_path


def overlay(frame: np.ndarray, labels: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend the palette colour of every object id into the frame and draw the object borders.

    frame: uint8 [H, W, 3] RGB; labels: uint8 [H, W] ids (0 = background) -> uint8 [H, W, 3].
    """
    colours = DAVIS_PALETTE[labels].astype(np.float32)
    fg = (labels > 0)[..., None]
    out = np.where(fg, (1 - alpha) * frame + alpha * colours, frame.astype(np.float32))
    # Border pixels: an id differs from its right or lower neighbour.
    edge = np.zeros(labels.shape, dtype=bool)
    edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    edge[:-1, :] |= labels[:-1, :] != labels[1:, :]
    out[edge] = 255.0
    return out.round().astype(np.uint8)


class SequenceVisualizer(contextlib.ExitStack):
    """Writes ``<folder>/<frame>.jpg`` overlays and ``<folder>.mp4`` (H.264, atomically, on exit)."""

    def __init__(self, folder: str | os.PathLike, fps: int = 24):
        super().__init__()
        self.folder, self.fps = Path(folder), fps
        self._video: Mp4Writer | None = None

    def add(self, frame_path: str | os.PathLike, labels: np.ndarray) -> None:
        """Overlay ``labels`` (uint8 [H, W]) on the frame file and append it to the video."""
        with Image.open(frame_path) as im:
            rgb = np.asarray(im.convert("RGB"))
        image = overlay(rgb, labels)
        with atomic_path(self.folder / f"{Path(frame_path).stem}.jpg") as tmp:
            Image.fromarray(image).save(tmp, format="JPEG", quality=90)
        if self._video is None:
            self._video = self.enter_context(Mp4Writer(self.folder.with_suffix(".mp4"), self.fps))
        self._video.write(image)
