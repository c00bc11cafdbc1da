"""Random resized crops that remember where they came from. A crop is the box ``(i, j, h, w)`` (top row,
left column, height, width in pixels); its coordinates ``[x0, y0, x1, y1]`` and the official draw, repeated
on a caller's ``random.Random``, are fixed in docs/crop_coordinates.md. There is no flip."""

from __future__ import annotations

import math
import random
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from hvc.config import checks

if TYPE_CHECKING:  # the transform needs the training schema's fields, not its module
    from hvc.config.training import DataConfig

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
    crop to ``size`` x ``size`` (S), normalised by ``mean`` and ``std``, with its crop coordinates. ``scale``: range
    of the crop area as a fraction of the image's, ``ratio``: of its aspect ratio w / h; the paper's (0, 1) and
    (3/4, 4/3) are the defaults of :class:`hvc.config.training.DataConfig` (:meth:`from_config`)."""

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
