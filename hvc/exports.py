"""Masks to view and export: the overlay, the one mp4 writer (H.264 yuv420p), the --save formats (docs/segment.md)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np
from PIL import Image

from hvc.data.palette import DAVIS_PALETTE
from hvc.errors import InputError, OutputError
from hvc.fileio import atomic_path, atomic_write_text

TARGETS = {"palette": "masks", "binary": "binary", "alpha": "alpha", "rle": "rle.json", "mp4": "overlay.mp4"}
FORMATS = tuple(TARGETS)
NEEDS_FRAMES = ("alpha", "mp4")  # the others need only the masks


class Mp4Writer(contextlib.AbstractContextManager):
    """``with Mp4Writer(path, fps) as video: video.write(rgb)``: an mp4 that appears, atomically, on success."""

    def __init__(self, path: str | os.PathLike, fps: float = 24.0):
        if not fps > 0:
            raise ValueError(f"{path}: frame rate must be positive, got {fps}")
        # the fraction containers store (NTSC's 29.97002997... -> 30000/1001)
        self.path, self.rate, self.frames = Path(path), Fraction(fps).limit_denominator(1001), 0
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
            # constant quality (x264's CRF; 18-23: near-lossless to good), a preset keeping encoding a small share
            self._stream.options = {"crf": "20", "preset": "fast"}
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


def overlay(frame: np.ndarray, labels: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """The frame (uint8 [H, W, 3] RGB) with the palette colour of each object of ``labels`` (uint8 [H, W] ids)
    blended in and the objects' borders white: uint8 [H, W, 3]."""
    colours = DAVIS_PALETTE[labels].astype(np.float32)
    out = np.where((labels > 0)[..., None], (1 - alpha) * frame + alpha * colours, frame.astype(np.float32))
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


def write_object_pngs(folder: Path, name: str, labels: np.ndarray, objects: Sequence[int],
                      rgb: Optional[np.ndarray] = None) -> None:
    """``folder/<id>/<name>.png`` for each id of ``objects``, absent or not: 255 where ``labels`` (uint8 [H, W])
    is the id, else 0, as a greyscale mask or, with the frame ``rgb`` (uint8 [H, W, 3]), as its alpha (RGBA)."""
    for i in objects:
        mask = np.where(labels == i, np.uint8(255), np.uint8(0))
        image = Image.fromarray(mask, mode="L") if rgb is None else Image.fromarray(np.dstack([rgb, mask]), mode="RGBA")
        with atomic_path(folder / str(i) / f"{name}.png") as tmp:
            image.save(tmp, format="PNG")


def rle_segment(i: int, mask: np.ndarray) -> dict:
    """Object ``i``'s segment in rle.json (DEVA's layout for a video, docs/segment.md) from its non-empty
    [H, W] bool mask: its area, COCO box [x, y, width, height] and COCO compressed RLE (``counts`` a str)."""
    from pycocotools import mask as coco_mask  # imported here: only this export needs it
    rle = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))  # pycocotools wants column order
    return {"id": int(i), "area": int(coco_mask.area(rle)), "bbox": [int(v) for v in coco_mask.toBbox(rle)],
            "segmentation": {"size": [int(n) for n in rle["size"]], "counts": rle["counts"].decode("ascii")}}


def remove_exports(output: Path, formats: Iterable[str] = FORMATS) -> None:
    """Delete the files / folders of ``formats`` in ``output`` (a run's earlier exports)."""
    for fmt in formats:
        target = output / TARGETS[fmt]
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)


def export_masks(formats: Sequence[str], output: Path, names: Sequence[str], *, size: tuple[int, int],
                 fps: float, objects: Sequence[int], frames: Optional[Iterable[tuple[int, np.ndarray]]] = None,
                 video: str = "") -> dict[str, Path]:
    """Write ``formats`` (palette: already there) into ``output`` from ``output/masks/<name>.png`` of frames
    ``names``, each file atomically, a format's earlier files removed first; returns {format: path}. size: (H, W);
    frames: ``(t, rgb uint8 [H, W, 3])`` in order, for alpha and mp4 (e.g. a FrameSource)."""
    wanted = [f for f in formats if f != "palette"]
    if not wanted:
        return {}
    needs_frames = [f for f in wanted if f in NEEDS_FRAMES]
    if frames is None and needs_frames:
        raise ValueError(f"exports {needs_frames} need the video's frames")
    remove_exports(output, wanted)
    paths = {f: output / TARGETS[f] for f in wanted}
    rgb_frames = iter(frames) if needs_frames else None
    annotations = []  # rle.json's, one per frame
    with contextlib.ExitStack() as stack:
        if rgb_frames is not None and hasattr(rgb_frames, "close"):
            stack.callback(rgb_frames.close)  # a decoder generator: release the video file
        video_out = stack.enter_context(Mp4Writer(paths["mp4"], fps)) if "mp4" in wanted else None
        for t, name in enumerate(names):
            with Image.open(output / TARGETS["palette"] / f"{name}.png") as im:
                labels = np.array(im)
            got, rgb = next(rgb_frames, (None, None)) if rgb_frames is not None else (t, None)
            if got != t:
                raise InputError(f"{video}: has no frame {t}, but the masks have (was the video changed?)")
            if "binary" in wanted:
                write_object_pngs(paths["binary"], name, labels, objects)
            if "alpha" in wanted:
                write_object_pngs(paths["alpha"], name, labels, objects, rgb)
            if "rle" in wanted:
                masks = [(i, labels == i) for i in objects]
                annotations.append({"frame": t, "file_name": f"{name}.png",
                                    "segmentations": [rle_segment(i, mask) for i, mask in masks if mask.any()]})
            if video_out is not None:
                video_out.write(overlay(rgb, labels))
    if "rle" in wanted:
        header = {"format": "hvc-video-rle/1", "video": video, "height": int(size[0]), "width": int(size[1]),
                  "fps": float(fps), "object_ids": [int(i) for i in objects]}
        atomic_write_text(paths["rle"], json.dumps({**header, "annotations": annotations}))
    return paths
