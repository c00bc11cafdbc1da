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


def cutout(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """uint8 [H, W, 4]: ``rgb`` (uint8 [H, W, 3]) with alpha 255 where ``mask`` ([H, W] bool)."""
    alpha = np.where(mask, np.uint8(255), np.uint8(0))
    return np.concatenate([rgb, alpha[..., None]], axis=2)


def write_alpha(folder: Path, name: str, rgb: np.ndarray, labels: np.ndarray, objects: Sequence[int]) -> None:
    """Write ``folder/<id>/<name>.png`` for each id of ``objects``: the frame ``rgb`` cut out
    by ``labels == id`` (labels: uint8 [H, W] ids)."""
    for i in objects:
        with atomic_path(folder / str(i) / f"{name}.png") as tmp:
            Image.fromarray(cutout(rgb, labels == i), mode="RGBA").save(tmp, format="PNG")
