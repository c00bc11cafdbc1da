"""Training pairs: two cropped views of one image (:class:`StaticImagePairs`, the paper's setting) or of two nearby
frames of one video (:class:`VideoFramePairs`). A view is a random resized crop (no flip) with its coordinates:
box ``(i, j, h, w)`` -> ``[x0, y0, x1, y1]``, drawn as officially on the item's ``random.Random``
(docs/crop_coordinates.md). An item is ``(view1 [3, S, S] float32, view2, coord1 [4] float32, coord2 [4])``, or
``None`` (a warning names the file) for an undecodable image or one under 2 pixels on a side; ``collate_pairs`` drops
and counts those. Randomness: one generator per (seed, epoch, item), docs/training.md."""

from __future__ import annotations

import math
import os
import random
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from hvc.config import checks

if TYPE_CHECKING:  # the transform needs the training schema's fields, not its module
    from hvc.config.training import DataConfig

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
MIN_IMAGE_SIDE = 2

Pair = tuple[Tensor, Tensor, Tensor, Tensor]
Box = tuple[int, int, int, int]


def sample_crop_box(width: int, height: int, scale: tuple[float, float], ratio: tuple[float, float],
                    rng: random.Random) -> Box:
    """Draw ``(i, j, h, w)``: up to 10 tries of area ~ U(scale), log-aspect ~ U(log ratio), else the central crop
    clipped to the ratio range; the official sequence of ``rng`` calls (docs/crop_coordinates.md)."""
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = rng.uniform(*scale) * area
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return rng.randint(0, height - h), rng.randint(0, width - w), h, w  # i drawn before j
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        w, h = int(round(height * max(ratio))), height
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def crop_coords(box: Box, width: int, height: int) -> Tensor:
    """box (i, j, h, w) in a ``width x height`` image -> coord [4] float32 = [x0, y0, x1, y1]."""
    i, j, h, w = box
    return torch.tensor([j / (width - 1), i / (height - 1), (j + w - 1) / (width - 1), (i + h - 1) / (height - 1)],
                        dtype=torch.float32)


def resized_crop(img: Image.Image, box: Box, size: int) -> Image.Image:
    """Crop ``box`` (i, j, h, w) and resize to ``size x size`` with PIL bilinear (aspect not kept)."""
    i, j, h, w = box
    return img.crop((j, i, j + w, i + h)).resize((size, size), Image.BILINEAR)


def to_normalized_tensor(img: Image.Image, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """RGB PIL image -> [3, H, W] float32, ``(x / 255 - mean) / std`` (ToTensor + Normalize)."""
    x = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).float().div(255)
    m, s = (torch.tensor(v, dtype=torch.float32)[:, None, None] for v in (mean, std))
    return x.sub(m).div(s)


class RandomResizedCropCoord:
    """One training view, ``__call__(img, rng) -> (view [3, S, S] float32, coord [4] float32)``: a random resized
    crop to ``size`` x ``size`` (S), normalised, with its coordinates. ``scale``: range of the crop's area fraction,
    ``ratio``: of its aspect w / h (defaults: :class:`hvc.config.training.DataConfig`, :meth:`from_config`)."""

    def __init__(self, size: int, scale: tuple[float, float], ratio: tuple[float, float],
                 mean: Sequence[float], std: Sequence[float]):
        checks.crop(size, scale, ratio, mean, std)
        self.size, self.scale, self.ratio = size, tuple(scale), tuple(ratio)
        self.mean, self.std = tuple(mean), tuple(std)

    @classmethod
    def from_config(cls, cfg: "DataConfig") -> "RandomResizedCropCoord":
        return cls(cfg.size, cfg.scale, cfg.ratio, cfg.mean, cfg.std)

    def __call__(self, img: Image.Image, rng: random.Random) -> tuple[Tensor, Tensor]:
        width, height = img.size
        box = sample_crop_box(width, height, self.scale, self.ratio, rng)
        view = to_normalized_tensor(resized_crop(img, box, self.size), self.mean, self.std)
        return view, crop_coords(box, width, height)


def list_images(folder: str | os.PathLike, recursive: bool = True) -> list[str]:
    """Image files (by extension, any case) under ``folder``, sorted by path."""
    found = Path(folder).glob("**/*" if recursive else "*")
    return sorted(str(p) for p in found if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def load_rgb(path: str) -> Optional[Image.Image]:
    """The image decoded as RGB (now: a truncated file fails here, not later in a worker); ``None``, after a
    warning naming the file, if it is unreadable or under MIN_IMAGE_SIDE pixels on a side."""
    try:
        with Image.open(path) as img:
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
    """Base of the pair datasets (module doc): ``crop``, the view transform; ``seed`` (>= 0), the base seed."""

    def __init__(self, crop: RandomResizedCropCoord, seed: int):
        checks.at_least("runtime.seed", seed, 0)
        self.crop, self.seed, self.epoch = crop, seed, 0

    def set_epoch(self, epoch: int) -> None:
        """Select the crops of ``epoch`` (call before building the epoch's DataLoader iterator)."""
        checks.at_least("epoch", epoch, 0)
        self.epoch = epoch

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


class StaticImagePairs(PairDataset):
    """Two independent crops of each image file under ``roots`` (folders searched recursively, or one; each must
    exist and hold an image, else ValueError naming it)."""

    def __init__(self, roots: Sequence[str] | str | os.PathLike, crop: RandomResizedCropCoord, seed: int):
        super().__init__(crop, seed)
        roots = [roots] if isinstance(roots, (str, os.PathLike)) else list(roots)
        if not roots:
            raise ValueError("no training image folder given (roots is empty)")
        self.files: list[str] = []
        for root in roots:
            if not os.path.isdir(root):
                raise ValueError(f"training image folder {root} does not exist or is not a folder")
            found = list_images(root)
            if not found:
                raise ValueError(f"no images ({'/'.join(IMAGE_EXTENSIONS)}) found under training folder {root}")
            self.files += found

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> Optional[Pair]:
        img = load_rgb(self.files[index])
        return None if img is None else self.make_pair(img, img, item_rng(self.seed, self.epoch, index))


class VideoFramePairs(PairDataset):
    """Two frames of one video, at most ``max_gap`` (>= 1) apart, each with its own crop. ``root`` holds a folder
    of frames per video, in name order (``<root>/<video>/<frame>.jpg``: YouTube-VOS ``train_all_frames/JPEGImages``,
    DAVIS ``JPEGImages/480p``), one at least, else ValueError (empty ones: ignored, one warning). Item i is video i:
    t1 uniform among its frames, t2 != t1 uniform within ``max_gap`` of t1 (t1 if there is none)."""

    def __init__(self, root: str | os.PathLike, crop: RandomResizedCropCoord, max_gap: int, seed: int):
        super().__init__(crop, seed)
        checks.at_least("data.max_gap", max_gap, 1)
        if not os.path.isdir(root):
            raise ValueError(f"video frame folder {root} does not exist or is not a folder")
        self.max_gap = max_gap
        folders = sorted((e for e in os.scandir(root) if e.is_dir()), key=lambda e: e.name)
        listed = [(e.name, list_images(e.path, recursive=False)) for e in folders]
        self.videos = [(name, frames) for name, frames in listed if frames]
        empty = [name for name, frames in listed if not frames]
        if not self.videos:
            raise ValueError(f"no <video>/<frame> image folders found under video frame folder {root}")
        if empty:
            warnings.warn(f"{len(empty)} folder(s) without frames under {root} ignored, e.g. {empty[0]}",
                          RuntimeWarning, stacklevel=2)

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, index: int) -> Optional[Pair]:
        rng = item_rng(self.seed, self.epoch, index)
        frames = self.videos[index][1]
        t1 = rng.randrange(len(frames))
        near = [t for t in range(max(0, t1 - self.max_gap), min(len(frames), t1 + self.max_gap + 1)) if t != t1]
        t2 = rng.choice(near) if near else t1
        img1 = load_rgb(frames[t1])
        img2 = load_rgb(frames[t2]) if img1 is not None else None
        return None if img2 is None else self.make_pair(img1, img2, rng)
