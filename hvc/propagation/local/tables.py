"""The local kernel's index tables of one h x w grid: tiles, query windows, batches, picks (docs/local_kernel.md)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Union

import torch
from torch import Tensor


@dataclass(frozen=True)
class TiledTables:
    """Layout of the tiled product of one grid (R rows, each holding ``tile²`` keys)."""

    tile: int
    pad: tuple[int, int, int, int]  # F.pad amounts (left, right, top, bottom) up to whole tiles
    tile_order: Tensor  # [T] tile (row-major over the padded grid) at each place of the product
    # tiles with equally large query windows, one batched matmul each: (place of the first tile in the tile order,
    # tiles, product row of the first tile's first query, queries per tile)
    batches: list[tuple[int, int, int, int]]
    row_query: Tensor  # [R] image position of the query of each product row
    # [hw, D] where each query's in-radius keys land in a frame group's per-key maxima (row * tile² + position
    # inside the tile), in increasing order; R * tile² (one past the end, holding -inf) for keys outside the image
    pick: Tensor
    key_position: Tensor  # [hw, D] image position of each picked key (0 outside the image)

    @property
    def frame_elements(self) -> int:  # size of one frame's product
        return self.row_query.numel() * self.tile**2


@dataclass(frozen=True)
class MaskedTables:
    """Layout of the masked [hw, hw] product used on maps so small that tiling saves nothing."""

    far: Tensor  # [hw, hw] bool, True where the key is NOT within the radius of the query

    @property
    def frame_elements(self) -> int:
        return self.far.numel()


Tables = Union[TiledTables, MaskedTables]


def _grid(n_y: int, n_x: int, device: torch.device) -> tuple[Tensor, Tensor]:
    return torch.cartesian_prod(torch.arange(n_y, device=device), torch.arange(n_x, device=device)).unbind(1)


def _centred_square(half: int, extra: int, device: torch.device) -> tuple[Tensor, Tensor]:
    dy, dx = _grid(2 * half + 1 + extra, 2 * half + 1 + extra, device)  # from -half to half + extra, row-major
    return dy - half, dx - half


def within(dy: Tensor, dx: Tensor, radius: float) -> Tensor:
    return (dy**2 + dx**2).double() < radius**2  # strictly inside radius, exact: squared, in float64


def reach(radius: float) -> int:
    return math.ceil(radius) - 1  # the largest integer offset strictly inside radius


def tile_windows(h: int, w: int, tile: int, radius: float, device: torch.device) -> tuple[Tensor, ...]:
    """Each tile's window, the offsets from its origin that reach a key of it: (query_y, query_x, in_image) [T, W]
    for T tiles and W offsets, and the window column of each offset, [(tile + 2·reach)²] (-1: out of reach)."""
    r = reach(radius)
    dy, dx = _centred_square(r, tile - 1, device)
    # distance from the query to the nearest key of the tile (0 inside it)
    keep = within(dy - dy.clamp(0, tile - 1), dx - dx.clamp(0, tile - 1), radius)
    column = torch.full((keep.numel(),), -1, dtype=torch.long, device=device)
    column[keep] = torch.arange(int(keep.sum()), device=device)
    origin_y, origin_x = _grid(-(-h // tile), -(-w // tile), device)
    query_y = origin_y[:, None] * tile + dy[keep]
    query_x = origin_x[:, None] * tile + dx[keep]
    in_image = (query_y >= 0) & (query_y < h) & (query_x >= 0) & (query_x < w)
    return query_y, query_x, in_image, column


def _key_picks(h: int, w: int, tile: int, radius: float, column: Tensor, row: Tensor,
               end: int) -> tuple[Tensor, Tensor]:
    """(pick, key_position) of :class:`TiledTables` from the window ``column`` of each offset (:func:`tile_windows`)
    and the product ``row`` [T, W] of each; ``end`` = R * tile², the -inf entry."""
    r, device = reach(radius), row.device
    dy, dx = _centred_square(r, 0, device)
    inside = within(dy, dx, radius)
    y, x = _grid(h, w, device)
    key_y, key_x = y[:, None] + dy[inside], x[:, None] + dx[inside]  # [hw, D] in-radius keys
    valid = (key_y >= 0) & (key_y < h) & (key_x >= 0) & (key_x < w)
    tile_y, tile_x = key_y.div(tile, rounding_mode="floor"), key_x.div(tile, rounding_mode="floor")
    tile_id = (tile_y * -(-w // tile) + tile_x).clamp(0, row.shape[0] - 1)
    # the query's offset from the key's tile origin gives its column in that tile's window
    offset = (y[:, None] - tile_y * tile + r) * (tile + 2 * r) + (x[:, None] - tile_x * tile + r)
    entry = row[tile_id, column[offset]] * tile**2 + (key_y % tile) * tile + key_x % tile
    # in increasing product order: the gather of a query's picks then walks memory forwards
    pick, order = torch.where(valid, entry, end).sort(dim=1)
    return pick, torch.where(valid, key_y * w + key_x, 0).gather(1, order)


def grid_tables(h: int, w: int, tile: int, radius: float, tiled: bool | None, device: torch.device) -> Tables:
    """The tables of an h x w grid. tiled: None takes the product with fewer elements (the masked one when a
    tile's window covers about the whole image), True / False force one."""
    query_y, query_x, in_image, column = tile_windows(h, w, tile, radius, device)
    rows = int(in_image.sum())
    if tiled is False or (tiled is None and rows * tile**2 >= (h * w) ** 2):
        y, x = _grid(h, w, device)
        return MaskedTables(far=~within(y[:, None] - y[None, :], x[:, None] - x[None, :], radius))
    # tiles by decreasing window size (stable): the tiles of each window size are one batch
    sizes = in_image.sum(dim=1)
    order = sizes.argsort(descending=True, stable=True)
    size, count = torch.unique_consecutive(sizes[order], return_counts=True)
    first_tile, first_row = torch.cumsum(count, 0) - count, torch.cumsum(size * count, 0) - size * count
    batches = list(zip(first_tile.tolist(), count.tolist(), first_row.tolist(), size.tolist()))
    # each product row's query position, and each tile window column's product row (meaningless outside the image)
    kept = in_image[order]
    row_query = (query_y * w + query_x)[order][kept]
    row = torch.empty_like(query_y)
    row[order] = (kept.flatten().cumsum(0) - 1).view_as(kept)
    pick, key_position = _key_picks(h, w, tile, radius, column, row, rows * tile**2)
    pad = (0, -(-w // tile) * tile - w, 0, -(-h // tile) * tile - h)
    return TiledTables(tile, pad, order, batches, row_query, pick, key_position)
