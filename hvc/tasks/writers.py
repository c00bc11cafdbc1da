"""Output writers of the benchmarks: what each benchmark's scorer reads (docs/tasks.md). A writer gets a clip's
propagated soft masks frame after frame (``add(t, soft)``) and writes its files atomically into the clip's staging
folder; ``close`` ends the clip (:mod:`hvc.completion`)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from PIL import Image
from torch import Tensor

from hvc.data.jhmdb import save_keypoints
from hvc.data.palette import save_indexed_png
from hvc.exports.overlay import SequenceVisualizer
from hvc.fileio import atomic_path
from hvc.propagation import upsample_argmax
from hvc.tasks.pose import decode_keypoints


class LabelPngWriter:
    """VOS and VIP: the labels of the frames ``names`` (t -> file stem) as PNGs ``<folder>/<name>.png`` at
    ``size`` (H, W), the argmax of the bilinearly up-sampled soft masks. ``palette``: VOS's object ids as indexed
    palette PNGs, each also handed to the overlay writer ``vis`` when given, with its frame from ``images``; else
    VIP's class ids in greyscale, at the ground truth's size (videowalk instead takes the argmax at its 560x560
    input size and the scorer resizes it with nearest neighbours; docs/tasks.md)."""

    def __init__(self, folder: Path, names: dict[int, str], size: tuple[int, int], palette: bool,
                 vis: Optional[SequenceVisualizer] = None, images: Sequence[Path] = ()):
        self.folder, self.names, self.size, self.palette = folder, names, size, palette
        self.vis, self.images = vis, images
        self.written = 0

    def add(self, t: int, soft: Tensor) -> None:
        """soft: [num_classes, h, w] propagated masks of frame t."""
        if t not in self.names:
            return
        pred = upsample_argmax(soft, self.size).cpu().numpy()
        if self.palette:
            save_indexed_png(self.folder / f"{self.names[t]}.png", pred)
        else:
            with atomic_path(self.folder / f"{self.names[t]}.png") as tmp:
                Image.fromarray(pred).save(tmp, format="PNG")  # uint8 [H, W] -> mode L
        if self.vis is not None:
            self.vis.add(self.images[t], pred)
        self.written += 1

    def close(self) -> None:
        if self.written != len(self.names):  # never end a clip that stopped half-way
            raise RuntimeError(f"{self.folder}: {self.written} of {len(self.names)} frames propagated")


class KeypointWriter:
    """JHMDB: decodes every propagated frame (frame 0 included, as videowalk's ``test.py``) to
    joint coordinates at feature resolution and, at ``close``, saves the clip's [2, J, T] array
    as ``path`` with the label-map size (:func:`hvc.data.jhmdb.save_keypoints`)."""

    def __init__(self, path: Path, num_frames: int):
        self.path, self.num_frames = path, num_frames
        self.coords: list[np.ndarray] = []  # per frame: [2, J] (x row 0, y row 1), -1 = lost
        self.feature_wh: tuple[int, int] | None = None

    def add(self, t: int, soft: Tensor) -> None:
        """soft: [1 + J, h, w] propagated maps of frame t, channel 0 the background."""
        self.feature_wh = (soft.shape[2], soft.shape[1])
        self.coords.append(decode_keypoints(soft.cpu()))

    def close(self) -> None:
        if len(self.coords) != self.num_frames:  # never write a clip that stopped half-way
            raise RuntimeError(f"{self.path}: {len(self.coords)} of {self.num_frames} frames propagated")
        save_keypoints(self.path, np.stack(self.coords, axis=-1), self.feature_wh)
