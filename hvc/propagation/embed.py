"""Per-frame embeddings used as keys and queries of label propagation."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def embed(feats: Tensor, merge_feats: Tensor | None = None, merge_lambda: float = 1.05) -> Tensor:
    """L2-normalise features over channels, optionally merged with a second feature set.
    feats: [C, h, w] or [T, C, h, w] raw features; merge_feats: [C2, h, w] / [T, C2, h, w].
    Returns normalize(feats), or normalize(cat(merge_lambda * normalize(feats), normalize(merge_feats)))
    over channels: [C(+C2), h, w] / [T, C(+C2), h, w]."""
    if feats.dim() not in (3, 4):
        raise ValueError(f"feats must be [C, h, w] or [T, C, h, w], got shape {tuple(feats.shape)}")
    dim = feats.dim() - 3  # channel axis
    out = F.normalize(feats, dim=dim)
    if merge_feats is None:
        return out
    if merge_feats.dim() != feats.dim() or merge_feats.shape[:dim] + merge_feats.shape[dim + 1:] != (
            feats.shape[:dim] + feats.shape[dim + 1:]):
        raise ValueError(f"merge_feats {tuple(merge_feats.shape)} must match feats {tuple(feats.shape)} "
                         "in all but channels")
    merged = torch.cat([merge_lambda * out, F.normalize(merge_feats, dim=dim)], dim=dim)
    return F.normalize(merged, dim=dim)
