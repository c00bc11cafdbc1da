"""Cut-outs with transparency: ``<folder>/<object id>/<frame>.png``, RGBA.

The frame's colours everywhere and alpha 255 on the object, 0 elsewhere: the object alone
when laid over anything, as video editors and compositing tools expect a matte.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from hvc.fileio import atomic_path


def write_alpha(folder: Path, name: str, rgb: np.ndarray, labels: np.ndarray, objects: Sequence[int]) -> None:
    """Write ``folder/<id>/<name>.png`` for each id of ``objects``: the frame ``rgb`` (uint8 [H, W, 3])
    with alpha 255 where ``labels`` (uint8 [H, W] ids) is the id: uint8 [H, W, 4]."""
    for i in objects:
        rgba = np.concatenate([rgb, np.where(labels == i, np.uint8(255), np.uint8(0))[..., None]], axis=2)
        with atomic_path(folder / str(i) / f"{name}.png") as tmp:
            Image.fromarray(rgba, mode="RGBA").save(tmp, format="PNG")
