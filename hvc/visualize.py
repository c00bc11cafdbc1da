"""Overlay images and an mp4 per sequence, for looking at propagated masks."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from hvc.data.palette import DAVIS_PALETTE
from hvc.errors import OutputError
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


class SequenceVisualizer(contextlib.AbstractContextManager):
    """Writes ``<folder>/<frame>.jpg`` overlays and ``<folder>.mp4`` (atomically, on exit)."""

    def __init__(self, folder: str | os.PathLike, fps: int = 24):
        self.folder = Path(folder)
        self.fps = fps
        self._stack = contextlib.ExitStack()
        self._video: cv2.VideoWriter | None = None
        self._video_tmp = ""

    def add(self, frame_path: str | os.PathLike, labels: np.ndarray) -> None:
        """Overlay ``labels`` (uint8 [H, W]) on the frame file and append it to the video."""
        with Image.open(frame_path) as im:
            rgb = np.asarray(im.convert("RGB"))
        image = overlay(rgb, labels)
        with atomic_path(self.folder / f"{Path(frame_path).stem}.jpg") as tmp:
            Image.fromarray(image).save(tmp, format="JPEG", quality=90)
        if self._video is None:
            self._video_tmp = self._stack.enter_context(atomic_path(self.folder.with_suffix(".mp4")))
            h, w = image.shape[:2]
            self._video = cv2.VideoWriter(self._video_tmp, cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (w, h))
            if not self._video.isOpened():
                raise OutputError(f"{self.folder.with_suffix('.mp4')}: OpenCV cannot write this mp4 video")
        self._video.write(np.ascontiguousarray(image[..., ::-1]))  # OpenCV wants BGR

    def __exit__(self, *exc) -> bool | None:
        if self._video is not None:
            self._video.release()
        return self._stack.__exit__(*exc)
