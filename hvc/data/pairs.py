"""What the static-image and video training sets share: file listing, robust image
loading, per-sample random generators, the two-view item and its collate function.

Item format: ``(view1 [3, S, S] float32, view2 [3, S, S], coord1 [4] float32, coord2 [4])``,
or ``None`` when a source file cannot be decoded or is degenerate (under 2 pixels on a side,
where crop coordinates divide by zero); a warning names the file. ``collate_pairs`` drops
the ``None`` items and counts them.

Randomness: item ``index`` of epoch ``epoch`` draws everything (frame choice, both crops)
from its own ``random.Random`` seeded by ``SeedSequence([seed, epoch, index])``. The item
therefore depends on nothing else: not on the worker that loads it, the order of loading,
or what happened before a resume. ``set_epoch`` must be called before the epoch's
DataLoader iterator is created (workers receive a copy of the dataset then; with
``persistent_workers=True`` they would keep the old epoch).
"""

from __future__ import annotations

import os
import random
import warnings
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from hvc.data.transforms import RandomResizedCropCoord

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
# Crop coordinates are j / (W - 1) and i / (H - 1) (hvc.data.transforms): a side of 1 pixel has none.
MIN_IMAGE_SIDE = 2

Pair = tuple[Tensor, Tensor, Tensor, Tensor]


def list_images(folder: str | os.PathLike, recursive: bool = True) -> list[str]:
    """Image files (by extension, any case) under ``folder``, sorted by path."""
    found = Path(folder).glob("**/*" if recursive else "*")
    return sorted(str(p) for p in found if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def load_rgb(path: str) -> Optional[Image.Image]:
    """Decode an image as RGB; ``None`` (after a warning naming the file) if it is unreadable
    or degenerate (a side under MIN_IMAGE_SIDE pixels)."""
    try:
        with Image.open(path) as img:
            img.load()  # decode now: truncated files fail here, not later in a worker
            rgb = img.convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        warnings.warn(f"skipping unreadable image {path}: {err}", RuntimeWarning, stacklevel=2)
        return None
    if min(rgb.size) < MIN_IMAGE_SIDE:
        warnings.warn(f"skipping degenerate image {path}: {rgb.width}x{rgb.height} pixels, crops need at "
                      f"least {MIN_IMAGE_SIDE} on each side", RuntimeWarning, stacklevel=2)
        return None
    return rgb


def item_rng(seed: int, epoch: int, index: int) -> random.Random:
    """The generator of one item, a function of (seed, epoch, index) only."""
    state = np.random.SeedSequence([seed, epoch, index]).generate_state(2, dtype=np.uint64)
    return random.Random(int(state[0]) << 64 | int(state[1]))


class PairDataset(Dataset):
    """Base class: two independently cropped views with their coordinates (see module doc);
    ``crop`` is the view transform, ``seed`` (>= 0) the base seed of the per-item generators."""

    def __init__(self, crop: RandomResizedCropCoord, seed: int):
        if seed < 0:
            raise ValueError(f"seed must be non-negative, got {seed}")
        self.crop = crop
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the crops of ``epoch`` (call before building the epoch's DataLoader iterator)."""
        if epoch < 0:
            raise ValueError(f"epoch must be non-negative, got {epoch}")
        self.epoch = epoch

    def rng(self, index: int) -> random.Random:
        return item_rng(self.seed, self.epoch, index)

    def make_pair(self, img1: Image.Image, img2: Image.Image, rng: random.Random) -> Pair:
        """One independent crop of each image (view 1 drawn first)."""
        view1, coord1 = self.crop(img1, rng)
        view2, coord2 = self.crop(img2, rng)
        return view1, view2, coord1, coord2


def collate_pairs(items: list[Optional[Pair]]) -> tuple[Tensor, Tensor, Tensor, Tensor, int]:
    """Stack the non-None items: (view1 [B, 3, S, S], view2, coord1 [B, 4], coord2 [B, 4], n_skipped);
    B = 0 if every item is None (the caller skips the step)."""
    kept = [item for item in items if item is not None]
    skipped = len(items) - len(kept)
    if not kept:
        views = torch.empty(0, 3, 0, 0)
        return views, views.clone(), torch.empty(0, 4), torch.empty(0, 4), skipped
    return (*(torch.stack(parts) for parts in zip(*kept)), skipped)
