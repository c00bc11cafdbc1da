"""The local kernel: the dense kernel's top-k from the long-term entry's full product and the other frames' in-radius
keys, scored tiled (key tiles against their query windows) or masked ([hw, hw], small maps): docs/local_kernel.md."""

from __future__ import annotations

import math
from collections import Counter
from typing import Optional, Sequence

import torch
from torch import Tensor

from hvc.config.propagation import PropagationConfig
from hvc.propagation.kernel import context_frames
from hvc.propagation.local.blocks import TileBlockMemory
from hvc.propagation.local.tables import MaskedTables, Tables, TiledTables, grid_tables

_BLOCK_ELEMENTS = 1 << 24  # the largest affinity block built at once, in elements (2^24 floats = 64 MiB)
_GROUP_BYTES = 512 << 20  # the largest product of a group of radius-limited frames (docs/local_kernel.md, "Groups")


class LocalKernel:
    """The :class:`~hvc.propagation.kernel.Kernel` from local windows, exact unless ``precision`` or ``search_dims``."""

    def __init__(self, radius: float, temperature: float, topk: int, tile: int = 4,
                 tiled: Optional[bool] = None, precision: str = "fp32", search_dims: Optional[int] = None,
                 candidates: float = 2.0):
        """Settings as PropagationConfig's, checked by its validate. tiled: None picks the tiled or the masked
        [hw, hw] product per grid size, whichever has fewer elements; True / False force one (both exact)."""
        self.radius, self.temperature, self.topk, self.candidates = radius, temperature, topk, candidates
        self.tile, self.tiled, self.search_dims = tile, tiled, search_dims
        # None: an exact search on the embeddings themselves; else the dtype of an approximate one, then rescored
        self._search_dtype = torch.bfloat16 if precision == "bf16" else None if search_dims is None else torch.float32
        self.approximate = self._search_dtype is not None
        self._tables: dict[tuple[int, int, torch.device], Tables] = {}
        self._buffers: dict[str, Tensor] = {}

    @classmethod
    def from_config(cls, cfg: PropagationConfig) -> "LocalKernel":
        """The kernel of validated settings: a setting added to the schema is passed on here only."""
        return cls(cfg.radius, cfg.temperature, cfg.topk, precision=cfg.precision, search_dims=cfg.search_dims,
                   candidates=cfg.candidates)

    def tables(self, h: int, w: int, device: torch.device) -> Tables:
        """The index tables of an h x w grid (built once per size)."""
        if (h, w, device) not in self._tables:
            self._tables[(h, w, device)] = grid_tables(h, w, self.tile, self.radius, self.tiled, device)
        return self._tables[(h, w, device)]

    def memory(self) -> TileBlockMemory:
        """Stored frames as flattened embeddings plus key tiles in blocks of frames."""
        return TileBlockMemory(self.tables, self._search_dtype, self.search_dims)

    def __call__(self, query: Tensor, memory: TileBlockMemory, context: Sequence[int]) -> tuple[Tensor, Tensor]:
        """See :class:`~hvc.propagation.kernel.Kernel`: (weights [hw, k], index [hw, k] = slot * hw + key)."""
        c, h, w = query.shape
        hw = h * w
        k = min(math.ceil(self.candidates * self.topk), hw) if self.approximate else self.topk  # searched for
        slot = {f: s for s, f in enumerate(context_frames(context))}
        queries = query.reshape(c, hw).t().contiguous()  # [hw, C]
        searched = memory.searched_queries(queries)  # [hw, C or d]: what the candidates are scored with
        tables = self.tables(h, w, query.device)
        # tiled product: the query of each product row, gathered once for every group
        rows = None
        if isinstance(tables, TiledTables):  # [R, C]
            out = self._buffer("rows", (tables.row_query.numel(), searched.shape[1]), searched)
            rows = torch.index_select(searched, 0, tables.row_query, out=out)
        v, position = self._long_term(searched, memory[context[0]].search, k)
        vals, index, copies = [v], [slot[context[0]] * hw + position], [torch.ones_like(position)]
        counts = Counter(context[1:])
        # frames per group: the most whose scores fit in _GROUP_BYTES (at least one part)
        max_frames = _GROUP_BYTES // (tables.frame_elements * searched.element_size())
        for parts in memory.groups(list(counts), max_frames):
            group = [f for part in parts for f in part]
            if rows is not None:
                tiles = [memory.tiles(part) for part in parts]
                scores = self._buffer("scores", (rows.shape[0], sum(t.shape[2] for t in tiles)), rows)
                v, which, position = tiled_topk(rows, tiles, tables, min(k, tables.pick.shape[1]), scores)
            else:
                v, which, position = masked_topk(searched, [memory[f].search for f in group], tables, k)
            vals.append(v)
            index.append(torch.as_tensor([slot[f] for f in group], device=v.device)[which] * hw + position)
            copies.append(torch.as_tensor([min(counts[f], k) for f in group], device=v.device)[which])
        v, index = self._merge(torch.cat(vals, dim=1), torch.cat(index, dim=1), torch.cat(copies, dim=1), k)
        if self.approximate:  # the exact top-k of the candidates, by their float32 scores
            exact = rescore(queries, [memory[f].flat for f in context_frames(context)], index)
            # a -inf candidate (fewer in-radius keys than searched for) is no candidate
            v, order = exact.masked_fill_(v == float("-inf"), float("-inf")).topk(self.topk, dim=1)
            index = index.gather(1, order)
        return torch.softmax(v / self.temperature, dim=1), index

    def _long_term(self, queries: Tensor, key: Tensor, k: int) -> tuple[Tensor, Tensor]:
        """queries: [hw, C], key: [C, hw] -> top-k (dot products, key positions) over all keys, [hw, k] each."""
        vals, idx = [], []
        for block in queries.split(max(1, _BLOCK_ELEMENTS // queries.shape[0])):
            out = self._buffer("long_term", (block.shape[0], key.shape[1]), queries)
            v, i = torch.matmul(block, key, out=out).topk(k, dim=1)
            vals.append(v)
            idx.append(i)
        return torch.cat(vals), torch.cat(idx)

    def _buffer(self, name: str, shape: tuple[int, int], like: Tensor) -> Tensor:
        """A [shape] scratch tensor of ``like``'s dtype and device, reused (grown when too small): a fresh one at
        every frame costs page faults on hundreds of MiB (docs/local_kernel.md, "Cost")."""
        numel = shape[0] * shape[1]
        buffer = self._buffers.get(name)
        if buffer is None or buffer.numel() < numel or buffer.dtype != like.dtype or buffer.device != like.device:
            buffer = self._buffers[name] = like.new_empty(numel)
        return buffer[:numel].view(shape)

    def _merge(self, v: Tensor, index: Tensor, copies: Tensor, k: int) -> tuple[Tensor, Tensor]:
        """The joint top-k (scores, index: [hw, k], best first) of the candidates (v, index: [hw, n]), each counted
        ``copies`` times: a group's best k distinct candidates hold the joint top-k's, so min(m, k) is exact."""
        most = int(copies.max())
        if most > 1:  # expand to `most` copies per candidate, the surplus ones at -inf
            surplus = torch.arange(most, device=copies.device) >= copies[:, :, None]
            v = v[:, :, None].expand(-1, -1, most).masked_fill(surplus, float("-inf")).flatten(1)
            index = index[:, :, None].expand(-1, -1, most).flatten(1)
        v, j = v.topk(k, dim=1)
        return v, torch.gather(index, 1, j)


def rescore(queries: Tensor, keys: list[Tensor], index: Tensor) -> Tensor:
    """queries [hw, C], keys: the context frames' embeddings [C, hw] by slot, index [hw, k] = slot * hw + position ->
    the dot products [hw, k], each frame's chosen keys gathered once (rows of ``key.t()``, contiguous if stored so)."""
    hw, k = index.shape
    slot = index.flatten().div(hw, rounding_mode="floor")
    order = slot.argsort(stable=True)  # entries frame by frame
    position = index.flatten().remainder(hw)[order]
    scores = queries.new_empty(hw * k)
    start = 0
    for key, n in zip(keys, torch.bincount(slot, minlength=len(keys)).tolist()):
        if n:
            entry = order[start:start + n]
            chosen = key.t().index_select(0, position[start:start + n])  # [n, C]
            scores[entry] = torch.linalg.vecdot(queries.index_select(0, entry.div(k, rounding_mode="floor")), chosen)
            start += n
    return scores.view(hw, k)


def tile_product(row_queries: Tensor, parts: list[Tensor], tables: TiledTables, out: Tensor) -> Tensor:
    """row_queries: [R, C] the query of each product row; parts: key tiles [T, C, F_p * tile²] of F_p frames each
    -> scores [R, F * tile²] written into ``out`` (column frame * tile² + key of the row's tile, F = sum of F_p)."""
    c, column = row_queries.shape[1], 0
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
    """scores [R, F * tile²] -> [R * tile² + 1]: each (row, key)'s best over the F frames, then the picks' -inf."""
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
    """The top-k of each query over its in-radius keys of a group's F frames (its parts' key tiles, scored by
    :func:`tile_product` into ``out``): (dot products, frame slot in the group, key position), [hw, k] each."""
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
    """queries [hw, C], keys: F frames' [C, hw] -> the in-radius top-k: (dot products, slot, key position) [hw, k]."""
    frames = len(keys)
    flat = torch.stack(keys, dim=2).flatten(1)  # [C, hw * F], column position * F + frame
    scores = (queries @ flat).view(*tables.far.shape, frames)
    v, j = scores.masked_fill_(tables.far[:, :, None], float("-inf")).flatten(1).topk(k, dim=1)
    return v, j % frames, j // frames
