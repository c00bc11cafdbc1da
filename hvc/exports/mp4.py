"""The one mp4 writer of the package: H.264 video in yuv420p, which browsers play, through PyAV
(why not OpenCV: docs/segment.md): ``with Mp4Writer(path, fps) as video: video.write(rgb)``.
"""

from __future__ import annotations

import contextlib
import os
from fractions import Fraction
from pathlib import Path
from typing import Optional

import numpy as np

from hvc.errors import OutputError
from hvc.fileio import atomic_path

# Constant quality (x264's CRF; 18-23 is visually near-lossless to good) and a preset that
# keeps encoding a small share of a segmentation run's time.
CRF, PRESET = 20, "fast"


def frame_rate(fps: float) -> Fraction:
    """``fps`` as the fraction containers store (NTSC's 29.97002997... -> 30000/1001)."""
    if not fps > 0:
        raise ValueError(f"frame rate must be positive, got {fps}")
    return Fraction(fps).limit_denominator(1001)


class Mp4Writer(contextlib.AbstractContextManager):
    """Streams RGB frames (all one size) into an H.264 (yuv420p) mp4 at ``path``, which appears
    atomically when the block ends without an exception."""

    def __init__(self, path: str | os.PathLike, fps: float = 24.0):
        self.path, self.rate, self.frames = Path(path), frame_rate(fps), 0
        self._stack = contextlib.ExitStack()
        self._container = self._stream = None
        self._size: Optional[tuple[int, int]] = None

    def write(self, rgb: np.ndarray) -> None:
        """Append one frame: uint8 [H, W, 3] RGB (odd sizes are padded by one pixel)."""
        import av  # imported here: only writing a video needs it

        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"{self.path}: expected a uint8 [H, W, 3] RGB frame, got {rgb.dtype} {rgb.shape}")
        h, w = rgb.shape[:2]
        if self._size is None:
            self._size = h, w
            tmp = self._stack.enter_context(atomic_path(self.path))
            try:
                # faststart puts the index first, so a browser starts playing before the download ends
                self._container = av.open(tmp, mode="w", format="mp4", options={"movflags": "+faststart"})
                self._stream = self._container.add_stream("libx264", rate=self.rate)
            except (av.FFmpegError, OSError) as exc:
                raise OutputError(f"{self.path}: cannot write an H.264 mp4 ({exc})") from exc
            # yuv420p stores colour at half resolution, so H.264 in yuv420p needs even sizes
            self._stream.width, self._stream.height, self._stream.pix_fmt = w + w % 2, h + h % 2, "yuv420p"
            self._stream.options = {"crf": str(CRF), "preset": PRESET}
        elif (h, w) != self._size:
            raise ValueError(f"{self.path}: frame {self.frames} is {w}x{h}, the first {self._size[1]}x{self._size[0]}")
        if h % 2 or w % 2:  # repeat the last row / column
            rgb = np.pad(rgb, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        self._container.mux(self._stream.encode(frame))
        self.frames += 1

    def __exit__(self, *exc) -> bool | None:
        if exc[0] is not None:  # the caller failed: close what is open, the temporary goes
            with contextlib.suppress(Exception):
                if self._container is not None:
                    self._container.close()
            return self._stack.__exit__(*exc)
        with self._stack:  # renames the temporary onto the path, or removes it on an error here
            if self._container is None:
                raise OutputError(f"{self.path}: no frame to write")
            self._container.mux(self._stream.encode())  # flush the encoder's delayed frames
            self._container.close()
        return None
