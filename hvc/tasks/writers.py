"""Output writers of the benchmarks: what each benchmark's scorer reads (docs/tasks.md). A writer
gets a clip's propagated soft masks frame after frame (``add(t, soft)``) and writes its files
atomically into the clip's staging folder; ``close`` ends the clip (:mod:`hvc.completion`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from PIL import Image
from torch import Tensor

from hvc.data.keypoints import save_keypoints
from hvc.data.palette import save_indexed_png
from hvc.data.sequence import VideoSequence
from hvc.exports.overlay import SequenceVisualizer
from hvc.fileio import atomic_path
from hvc.propagation import upsample_argmax, upsample_labels
from hvc.tasks.pose import decode_keypoints


class IndexedPngWriter:
    """VOS: the object ids of the frames ``seq.outputs`` as indexed palette PNGs
    ``<folder>/<frame>.png`` at the frame size ``size`` (H, W), the argmax of the bilinearly
    up-sampled soft masks; each also goes to the overlay writer ``vis`` when given."""

    def __init__(self, folder: Path, seq: VideoSequence, size: tuple[int, int], vis: Optional[SequenceVisualizer]):
        self.folder, self.seq, self.size, self.vis = folder, seq, size, vis
        self.outputs = set(seq.outputs)

    def add(self, t: int, soft: Tensor) -> None:
        """soft: [num_classes, h, w] propagated masks of frame t."""
        if t in self.outputs:
            pred = upsample_argmax(soft, self.size).cpu().numpy()
            save_indexed_png(self.folder / f"{self.seq.frame_name(t)}.png", pred)
            if self.vis is not None:
                self.vis.add(self.seq.frames[t], pred)

    def close(self) -> None:
        """Every output frame was written as it came."""


class KeypointWriter:
    """JHMDB: decodes every propagated frame (frame 0 included, as videowalk's ``test.py``) to
    joint coordinates at feature resolution and, at ``close``, saves the clip's [2, J, T] array
    as ``path`` with the label-map size (:func:`hvc.data.keypoints.save_keypoints`)."""

    def __init__(self, path: str | os.PathLike, num_frames: int):
        self.path = Path(path)
        self.num_frames = num_frames
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


class ClassIdWriter:
    """VIP: the class ids of every frame as a greyscale PNG ``<folder>/<frame>.png`` at the
    ground truth's size ``size`` (H, W): argmax of the bilinearly up-sampled soft masks, as the
    VOS writes its masks (videowalk instead takes the argmax at its 560x560 input size and
    the scorer resizes it with nearest neighbours; docs/tasks.md)."""

    def __init__(self, folder: str | os.PathLike, frame_names: Sequence[str], size: tuple[int, int]):
        self.folder = Path(folder)
        self.names = list(frame_names)
        self.size = size
        self.t = 0

    def add(self, t: int, soft: Tensor) -> None:
        """soft: [num_classes, h, w] propagated masks of frame t (the next one)."""
        labels, _ = upsample_labels(soft, self.size)
        with atomic_path(self.folder / f"{self.names[self.t]}.png") as tmp:
            Image.fromarray(labels.cpu().numpy()).save(tmp, format="PNG")  # uint8 [H, W] -> mode L
        self.t += 1

    def close(self) -> None:
        if self.t != len(self.names):
            raise RuntimeError(f"{self.folder}: {self.t} of {len(self.names)} frames propagated")

