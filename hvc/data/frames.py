"""Frames of anyone's video, read lazily, one frame in memory at a time: ``open_frames(path)`` of a video file
(mp4, avi, anything OpenCV decodes) or a folder of images has ``size`` (H, W), ``fps``, ``count`` (an estimate for
files) and ``name(t)`` (the file stem of frame t's outputs); ``for t, rgb in source`` decodes uint8 [H, W, 3] RGB."""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Iterator, Union

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from hvc.data.sequence import list_frames
from hvc.errors import InputError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


class VideoError(InputError, ValueError):
    """A video cannot be read, or is not a video this tool can segment."""


class VideoFile:
    """A video file decoded by OpenCV (FFmpeg backend), frame after frame; frame t's output stem is ``%05d``."""

    def __init__(self, path: Path):
        self.path = path
        capture = cv2.VideoCapture(str(path))
        try:
            ok, first = capture.read()  # False for a file OpenCV cannot open too
            if not ok:
                raise VideoError(f"{path}: cannot decode a frame (not a video, or a codec OpenCV lacks)")
            self.size, self.fps = first.shape[:2], capture.get(cv2.CAP_PROP_FPS) or 24.0
            self.count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))  # from the header: may be off
            if not capture.read()[0]:
                raise VideoError(f"{path}: the video has one frame; propagation needs at least two")
        finally:
            capture.release()

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        capture = cv2.VideoCapture(str(self.path))
        try:
            for t in itertools.count():
                ok, bgr = capture.read()
                if not ok:
                    return
                if bgr.shape[:2] != self.size:
                    raise VideoError(f"{self.path}: frame {t} is {bgr.shape[1]}x{bgr.shape[0]}, the first "
                                     f"{self.size[1]}x{self.size[0]}")
                yield t, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        finally:
            capture.release()

    def name(self, t: int) -> str:
        return f"{t:05d}"


class ImageFolder:
    """A folder of images, in file-name order; outputs keep the images' names."""

    def __init__(self, path: Path):
        self.path = path
        self.files = list_frames(path, IMAGE_SUFFIXES, VideoError, "; keep one")  # both would write masks/<stem>.png
        if len(self.files) == 1:
            raise VideoError(f"{path}: the folder holds one frame; propagation needs at least two")
        self.size, self.fps, self.count = read_rgb(self.files[0]).shape[:2], 24.0, len(self.files)

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        return ((t, self.frame(t)) for t in range(self.count))

    def frame(self, t: int) -> np.ndarray:
        """Frame t alone, uint8 [H, W, 3] RGB (a backward pass reads them so)."""
        rgb = read_rgb(self.files[t])
        if rgb.shape[:2] != self.size:
            raise VideoError(f"{self.files[t]}: frame size {rgb.shape[1]}x{rgb.shape[0]} differs from the first "
                             f"frame's {self.size[1]}x{self.size[0]}")
        return rgb

    def name(self, t: int) -> str:
        return self.files[t].stem


FrameSource = Union[VideoFile, ImageFolder]  # what open_frames returns


# Modes PIL converts to RGB without losing what the picture shows (alpha is dropped).
_RGB_MODES = ("RGB", "RGBA", "RGBX", "L", "LA", "P", "PA", "1", "CMYK", "YCbCr", "LAB", "HSV")
_WIDE_GREY = ("I;16", "I;16L", "I;16B", "I;16N", "I")  # 16-bit greyscale PNGs open as one of these


def read_rgb(path: Path, error: type[Exception] = VideoError, what: str = "image") -> np.ndarray:
    """An image file as uint8 [H, W, 3] RGB, a writable copy; 16-bit greyscale scaled to 8 bits (``v / 257``,
    rounded: PIL's own conversion clips all above 255 to white). Unreadable files and modes not faithfully
    RGB (32-bit floats, integers outside 0..65535): ``error`` naming the file (``what``: the word for it)."""
    try:
        with Image.open(path) as im:
            if im.mode in _RGB_MODES:
                return np.array(im.convert("RGB"))
            mode, values = im.mode, np.array(im) if im.mode in _WIDE_GREY else None
    except (OSError, ValueError) as exc:
        raise error(f"{path}: unreadable {what} ({exc})") from None
    if values is None or values.ndim != 2 or (values.size and (values.min() < 0 or values.max() > 65535)):
        raise error(f"{path}: image mode {mode} cannot be read as RGB faithfully; save the frames as 8-bit RGB or "
                    f"greyscale (or 16-bit greyscale PNG)")
    grey = np.rint(values.astype(np.float64) / 257.0).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=2)


def open_frames(path: str | os.PathLike) -> FrameSource:
    """The frames of a video file or an image folder (24 frames per second); VideoError for a missing or
    unreadable input or one of fewer than two frames."""
    path = Path(path)
    if path.is_dir():
        return ImageFolder(path)
    if not path.is_file():
        raise VideoError(f"{path}: no such video file or frame folder")
    return VideoFile(path)


def to_input(rgb: np.ndarray, size: tuple[int, int], mean: Tensor, std: Tensor, align_corners: bool = True) -> Tensor:
    """uint8 [H, W, 3] RGB -> the encoder's input [3, h, w] float32: [0, 1], resized to ``size`` (bilinear;
    align_corners=True: the test protocol's), normalised by ``mean``/``std`` ([3, 1, 1])."""
    x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float().div_(255.0)
    if tuple(size) != tuple(rgb.shape[:2]):
        x = F.interpolate(x[None], size=size, mode="bilinear", align_corners=align_corners)[0]
    return (x - mean) / std
