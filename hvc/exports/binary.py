"""Per-object binary masks: ``<folder>/<object id>/<frame>.png``, greyscale 0 / 255.

One file per object and frame, an object absent from a frame included (all 0), so every
object folder holds every frame and tools that read one mask per object find them all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from hvc.fileio import atomic_path


def write_binary(folder: Path, name: str, labels: np.ndarray, objects: Sequence[int]) -> None:
    """Write ``folder/<id>/<name>.png`` for each id of ``objects``: 255 where ``labels``
    (uint8 [H, W] ids) equals the id, 0 elsewhere."""
    for i in objects:
        mask = np.where(labels == i, np.uint8(255), np.uint8(0))
        with atomic_path(folder / str(i) / f"{name}.png") as tmp:
            Image.fromarray(mask, mode="L").save(tmp, format="PNG")
