"""Label maps <-> soft masks: one-hot encoding, bilinear down/up-sampling, argmax."""

from __future__ import annotations

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
