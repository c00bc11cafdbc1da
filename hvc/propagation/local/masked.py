"""The masked small-map product: one [hw, hw] product per frame, keys beyond the radius masked, for
maps so small that tiling would score more pairs (docs/local_kernel.md, "Layout")."""

from __future__ import annotations

import torch
from torch import Tensor

from hvc.propagation.local.tables import MaskedTables


def masked_topk(queries: Tensor, keys: list[Tensor], tables: MaskedTables, k: int) -> tuple[Tensor, Tensor, Tensor]:
    """queries: [hw, C]; keys: F frames' flattened embeddings [C, hw] -> the top-k of each
    query over its in-radius keys of those frames: (dot products, frame slot in ``keys``, key
    position), [hw, k] each."""
    frames = len(keys)
    flat = torch.stack(keys, dim=2).flatten(1)  # [C, hw * F], column position * F + frame
    scores = (queries @ flat).view(*tables.far.shape, frames)
    v, j = scores.masked_fill_(tables.far[:, :, None], float("-inf")).flatten(1).topk(k, dim=1)
    return v, j % frames, j // frames
