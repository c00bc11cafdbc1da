"""Mask exports in the formats other tools read (``python -m hvc.segment --save``; formats and files:
docs/segment.md), made from a run's palette PNGs after its last frame. Not :mod:`hvc.export` (encoders).
"""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np
from PIL import Image

from hvc.errors import InputError
from hvc.exports.mp4 import Mp4Writer
from hvc.exports.overlay import overlay
from hvc.fileio import atomic_path, atomic_write_text

TARGETS = {"palette": "masks", "binary": "binary", "alpha": "alpha", "rle": "rle.json", "mp4": "overlay.mp4"}
FORMATS = tuple(TARGETS)
NEEDS_FRAMES = ("alpha", "mp4")  # the others need only the masks
RLE_FORMAT = "hvc-video-rle/1"

__all__ = ["FORMATS", "TARGETS", "Mp4Writer", "export_masks", "remove_exports", "write_object_pngs"]


def write_object_pngs(folder: Path, name: str, labels: np.ndarray, objects: Sequence[int],
                      rgb: Optional[np.ndarray] = None) -> None:
    """Write ``folder/<id>/<name>.png`` for each id of ``objects`` (an absent one too: every object
    folder holds every frame): 255 where ``labels`` (uint8 [H, W] ids) is the id, 0 elsewhere, as a
    greyscale mask (binary) or, with the frame ``rgb`` (uint8 [H, W, 3]), as its alpha (RGBA [H, W, 4])."""
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
    """Write ``formats`` (any of :data:`FORMATS` but palette) into ``output`` from the palette PNGs
    ``output/masks/<name>.png`` of frames ``names`` (in order), every file atomically; returns {format: path}.

    size: (H, W) of the frames; fps: the overlay's frame rate; objects: the ids to export; frames:
    ``(t, rgb uint8 [H, W, 3])`` in order, for alpha and mp4 (e.g. a :class:`hvc.data.frames.FrameSource`).
    A format's earlier files are removed first, so a format is either complete or being rewritten.
    """
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
            rgb = None
            if rgb_frames is not None:
                got, rgb = next(rgb_frames, (None, None))
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
        header = {"format": RLE_FORMAT, "video": video, "height": int(size[0]), "width": int(size[1]),
                  "fps": float(fps), "object_ids": [int(i) for i in objects]}
        atomic_write_text(paths["rle"], json.dumps({**header, "annotations": annotations}))
    return paths
