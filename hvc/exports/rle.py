"""One COCO run-length-encoded JSON file for a whole video, via pycocotools, in the layout DEVA
writes for a video (docs/segment.md shows it): one entry per frame, each object present there a
segment with its id and a COCO RLE ``{"size": [H, W], "counts": str}``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from hvc.fileio import atomic_write_text

FORMAT = "hvc-video-rle/1"


def segment(i: int, mask: np.ndarray) -> dict:
    """Object ``i``'s segment on a non-empty [H, W] bool mask: its area, COCO box [x, y, width, height]
    and COCO compressed RLE, JSON-ready (``counts`` a str)."""
    from pycocotools import mask as coco_mask  # imported here: only this export needs it

    rle = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))  # pycocotools wants column order
    return {"id": int(i), "area": int(coco_mask.area(rle)), "bbox": [int(v) for v in coco_mask.toBbox(rle)],
            "segmentation": {"size": [int(n) for n in rle["size"]], "counts": rle["counts"].decode("ascii")}}


class RleWriter:
    """Collects every frame's segments (a few bytes per object and frame) and writes the file
    once, atomically, in :meth:`save`."""

    def __init__(self, path: Path, video: str, size: tuple[int, int], fps: float, objects: Sequence[int]):
        self.path, self.objects, self.annotations = path, list(objects), []
        self.header = {"format": FORMAT, "video": video, "height": int(size[0]), "width": int(size[1]),
                       "fps": float(fps), "object_ids": [int(i) for i in objects]}

    def add(self, name: str, labels: np.ndarray) -> None:
        """Append frame ``name`` (the next in order) with ``labels`` (uint8 [H, W] ids)."""
        masks = ((i, labels == i) for i in self.objects)
        segments = [segment(i, mask) for i, mask in masks if mask.any()]
        self.annotations.append({"frame": len(self.annotations), "file_name": f"{name}.png", "segmentations": segments})

    def save(self) -> None:
        atomic_write_text(self.path, json.dumps({**self.header, "annotations": self.annotations}))
