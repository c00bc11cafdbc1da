"""Label maps <-> soft masks: one-hot, resizing, argmax (:func:`upsample_argmax`: fast, bit for bit: docs/speed.md)."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor


def resize_masks(masks: Tensor, size: tuple[int, int]) -> Tensor:
    """masks: [K, H, W] float -> [K, *size], bilinear with align_corners=True (the official choice)."""
    return F.interpolate(masks[None], size=size, mode="bilinear", align_corners=True)[0]


def one_hot(labels: Tensor, ids: list[int], num_classes: int) -> Tensor:
    """labels: [H, W] int id map -> [num_classes, H, W] float32 holding only the channels in ``ids``."""
    out = torch.zeros((num_classes, *labels.shape), dtype=torch.float32, device=labels.device)
    for i in ids:
        out[i] = labels == i
    return out


def upsample_labels(soft: Tensor, size: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """soft: [K, h, w] -> (labels [H, W] uint8 = argmax of the bilinear up-sampling, confidence [H, W])."""
    if soft.dim() != 3:
        raise ValueError(f"soft mask must be [K, h, w], got shape {tuple(soft.shape)}")
    conf, labels = resize_masks(soft, size).max(dim=0)
    return labels.to(torch.uint8), conf


def present_channels(soft: Tensor) -> Optional[list[int]]:
    """Channels of ``soft`` [K, h, w] not zero everywhere, and channel 0; None if ``soft`` has a negative or
    non-finite value (docs/speed.md's argument needs finite values >= 0)."""
    lo, hi = soft.flatten(1).aminmax(dim=1)  # [K] each: one pass over the low-resolution masks
    if not bool(torch.isfinite(lo).all() & torch.isfinite(hi).all() & (lo >= 0).all()):
        return None
    present = (lo != 0) | (hi != 0)
    present[0] = True
    return present.nonzero().flatten().tolist()


def upsample_argmax(soft: Tensor, size: tuple[int, int]) -> Tensor:
    """soft: [K, h, w] non-negative soft masks -> labels [H, W] uint8 = ``upsample_labels(soft, size)[0]``.
    Few, large operations: on a shared machine each multi-threaded one can wait for a descheduled thread."""
    if soft.dim() != 3:
        raise ValueError(f"soft mask must be [K, h, w], got shape {tuple(soft.shape)}")
    ids = present_channels(soft)
    if ids is None:
        return upsample_labels(soft, size)[0]
    if len(ids) == 1:
        return torch.full(size, ids[0], dtype=torch.uint8, device=soft.device)
    up = resize_masks(soft[ids], size)  # [len(ids), H, W]
    if len(ids) == 2:  # the DAVIS 2016 case: one comparison; strict, so a tie stays with the first channel
        wins = (up[1] > up[0]).view(torch.uint8)  # bool is stored as 0 / 1
        return wins if ids == [0, 1] else wins.mul_(ids[1] - ids[0]).add_(ids[0])
    index = up.max(dim=0)[1]  # the first maximal channel, as in upsample_labels
    return torch.tensor(ids, dtype=torch.uint8, device=soft.device)[index]
