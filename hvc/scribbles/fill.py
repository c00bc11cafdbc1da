"""Frame 0's labels from scribbles: a top-k propagation step inside it from the scribbled cells (docs/scribbles.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from torch import Tensor


@dataclass(frozen=True)
class FillConfig:
    # Neighbours and softmax temperature of the fill: the propagation protocol's (paper: 15, 0.1).
    topk: int = 15
    temperature: float = 0.1
    # Second stage: cells whose top-1 probability reaches this become scribbles; None = one stage.
    reliable: Optional[float] = None


@dataclass
class Fill:
    """A fill: soft labels of every cell and where they came from."""

    soft: Tensor  # [K, h, w] per-cell label distribution (each column sums to 1)
    scribbled: Tensor  # [h, w] bool, cells under a scribble
    reliable: Optional[Tensor]  # [h, w] bool, cells added by the second stage (None: one stage)


def scribble_cells(scribbles: np.ndarray, size: tuple[int, int], num_classes: int) -> Tensor:
    """Per-cell counts [K, h*w] of the scribbled pixels of each id at feature size (h, w): a pixel of the [H, W]
    map falls in the nearest cell as masks align (align_corners=True: cell i <-> pixel i * (H - 1) / (h - 1))."""
    (big_h, big_w), (h, w) = scribbles.shape, size
    ys, xs = np.nonzero(scribbles >= 0)
    ids = scribbles[ys, xs]
    if ids.size and ids.max() >= num_classes:
        raise ValueError(f"scribble id {ids.max()} outside 0..{num_classes - 1} (raise num_classes)")
    cy = np.rint(ys * ((h - 1) / max(big_h - 1, 1))).astype(np.int64)
    cx = np.rint(xs * ((w - 1) / max(big_w - 1, 1))).astype(np.int64)
    flat = ids * (h * w) + cy * w + cx
    return torch.from_numpy(np.bincount(flat, minlength=num_classes * h * w).reshape(num_classes, h * w)).float()


def _propagate(queries: Tensor, keys: Tensor, labels: Tensor, topk: int, temperature: float) -> Tensor:
    """queries [C, N], keys [C, L], labels [K, L] -> [K, N]: top-k softmax-weighted key labels."""
    v, i = (queries.t() @ keys).topk(min(topk, keys.shape[1]), dim=1)  # [N, k]
    return (labels[:, i] * torch.softmax(v / temperature, dim=1)).sum(dim=2)


def fill_from_scribbles(emb: Tensor, scribbles: np.ndarray, num_classes: int, cfg: FillConfig = FillConfig()) -> Fill:
    """emb: [C, h, w] L2-normalised frame-0 embedding; scribbles: int [H, W] (-1 unlabelled, 0 background, 1..
    objects) -> the filled soft labels of frame 0."""
    c, h, w = emb.shape
    counts = scribble_cells(scribbles, (h, w), num_classes).to(emb.device)
    total = counts.sum(dim=0)
    scribbled = total > 0
    if not scribbled.any():
        raise ValueError("no scribbled pixel")
    dist = counts / total.clamp(min=1)  # [K, hw] label distribution of each scribbled cell
    flat = emb.reshape(c, h * w)
    soft = _propagate(flat, flat[:, scribbled], dist[:, scribbled], cfg.topk, cfg.temperature)
    soft[:, scribbled] = dist[:, scribbled]
    reliable = None
    if cfg.reliable is not None:
        conf, top = soft.max(dim=0)
        reliable = (conf >= cfg.reliable) & ~scribbled
        keys = scribbled | reliable
        labels = dist.clone()  # zero at every cell not scribbled
        labels[top[reliable], reliable.nonzero().flatten()] = 1  # one-hot: taken as if scribbled
        soft = _propagate(flat, flat[:, keys], labels[:, keys], cfg.topk, cfg.temperature)
        soft[:, scribbled] = dist[:, scribbled]
        reliable = reliable.view(h, w)
    return Fill(soft.view(num_classes, h, w), scribbled.view(h, w), reliable)


def labels_from_scribbles(emb: Tensor, scribbles: np.ndarray, num_classes: int,
                          cfg: FillConfig = FillConfig()) -> Tensor:
    """Id map int64 [H, W] of frame 0 from its scribbles [H, W]: the argmax of the bilinearly up-sampled fill, as
    every propagated frame's labels are made."""
    from hvc.propagation.masks import upsample_labels

    return upsample_labels(fill_from_scribbles(emb, scribbles, num_classes, cfg).soft, scribbles.shape)[0].long()
