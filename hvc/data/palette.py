"""The DAVIS colour palette (the PASCAL VOC map: an id's bits spread over the three channels, most significant
first; 1 -> dark red, 2 -> green, 255 -> the void colour (224, 224, 192)) and indexed ('P' mode) PNG masks."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from hvc.fileio import atomic_path


def davis_palette() -> np.ndarray:
    """The 256-colour DAVIS palette: uint8 [256, 3]."""
    bits = (np.arange(256)[:, None, None] >> (3 * np.arange(8)[:, None] + np.arange(3))) & 1  # [id, bit, channel]
    return (bits << (7 - np.arange(8))[:, None]).sum(axis=1).astype(np.uint8)


DAVIS_PALETTE = davis_palette()


def save_indexed_png(path: str | os.PathLike, labels: np.ndarray, durable: bool = False) -> None:
    """Write ``labels`` (uint8 [H, W] ids) as a palette PNG, atomically (``durable``: hvc/fileio.py)."""
    if labels.dtype != np.uint8 or labels.ndim != 2:
        raise ValueError(f"{path}: expected a uint8 [H, W] label map, got {labels.dtype} {labels.shape}")
    image = Image.fromarray(labels)
    image.putpalette(DAVIS_PALETTE.reshape(-1).tolist())  # turns the 'L' image into 'P' mode
    with atomic_path(path, durable) as tmp:
        image.save(tmp, format="PNG")
