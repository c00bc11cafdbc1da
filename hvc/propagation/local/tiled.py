"""The local kernel's two products, each query's top-k over its in-radius keys of a group of F frames: tiled,
every key tile scored against its query window only, or masked, one [hw, hw] product per frame with the keys
beyond the radius masked, on maps so small that tiling would score more pairs (docs/local_kernel.md, "Layout")."""

from __future__ import annotations

import torch
from torch import Tensor

from hvc.propagation.local.tables import MaskedTables, TiledTables


def tile_product(row_queries: Tensor, parts: list[Tensor], tables: TiledTables, out: Tensor) -> Tensor:
    """row_queries: [R, C] the query of each product row; parts: key tiles [T, C, F_p * tile²]
    of F_p frames each -> scores [R, F * tile²] written into ``out``, F = sum of F_p (column
    frame * tile² + key of the row's tile, frames numbered part after part)."""
    c = row_queries.shape[1]
    column = 0
    for tiles in parts:
        # each part's matmuls write straight into its columns (strided output, no copy)
        columns = out[:, column:column + tiles.shape[2]]
        for first_tile, count, first_row, window in tables.batches:
            queries = row_queries[first_row:first_row + count * window].view(count, window, c)
            torch.bmm(queries, tiles[first_tile:first_tile + count],
                      out=columns[first_row:first_row + count * window].unflatten(0, (count, window)))
        column += tiles.shape[2]
    return out


def best_over_frames(scores: Tensor, frames: int, tile_keys: int) -> Tensor:
    """scores: [R, F * tile²] -> [R * tile² + 1]: each (row, key)'s best score over the F
    frames, then one -inf entry (where the picks of keys outside the image point)."""
    rows = scores.shape[0]
    best = scores.new_empty(rows * tile_keys + 1)
    best[-1] = float("-inf")
    out = best[:-1].view(rows, tile_keys)
    # a running maximum over the frames' column blocks: amax over the middle dimension of the
    # [rows, frames, tile²] view gives the same values, unvectorised on CPU (docs/local_kernel.md, "Cost")
    out.copy_(scores[:, :tile_keys])
    for f in range(1, frames):
        torch.maximum(out, scores[:, f * tile_keys:(f + 1) * tile_keys], out=out)
    return best


def tiled_topk(row_queries: Tensor, parts: list[Tensor], tables: TiledTables, k: int,
               out: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The top-k of each query over its in-radius keys of a group's F frames (the key tiles of
    its parts, scored by :func:`tile_product` into ``out``): (dot products, frame slot in the
    group, key position), [hw, k] each."""
    tile_keys = tables.tile**2
    scores = tile_product(row_queries, parts, tables, out)
    frames = scores.shape[1] // tile_keys
    best = best_over_frames(scores, frames, tile_keys)
    # the k keys with the best maxima: [hw, k] of each query's D in-radius keys
    top, key = best.index_select(0, tables.pick.flatten()).view_as(tables.pick).topk(k, dim=1)
    entry = tables.pick.gather(1, key).clamp_(max=best.numel() - 2).flatten()
    # the F frames' scores of those k keys: [hw, k, F], -inf where the key is no candidate; by (row, key)
    # of a [R, tile², F] view, not a flat gather of hw·k·F indices (docs/local_kernel.md, "Layout")
    by_key = scores.view(-1, frames, tile_keys).transpose(1, 2)  # [R, tile², F], a view
    candidates = by_key[entry // tile_keys, entry % tile_keys].view(*key.shape, frames)
    if bool(top[:, -1].eq(float("-inf")).any()):  # (sorted: the last is the least) only on small grids
        candidates.masked_fill_(top[:, :, None] == float("-inf"), float("-inf"))
    v, i = candidates.flatten(1).topk(k, dim=1)  # [hw, k] of the k keys x F frames
    return v, i % frames, torch.gather(tables.key_position, 1, key.gather(1, i // frames))


def masked_topk(queries: Tensor, keys: list[Tensor], tables: MaskedTables, k: int) -> tuple[Tensor, Tensor, Tensor]:
    """queries: [hw, C]; keys: F frames' flattened embeddings [C, hw] -> the top-k of each
    query over its in-radius keys of those frames: (dot products, frame slot in ``keys``, key
    position), [hw, k] each."""
    frames = len(keys)
    flat = torch.stack(keys, dim=2).flatten(1)  # [C, hw * F], column position * F + frame
    scores = (queries @ flat).view(*tables.far.shape, frames)
    v, j = scores.masked_fill_(tables.far[:, :, None], float("-inf")).flatten(1).topk(k, dim=1)
    return v, j % frames, j // frames
