"""The local kernel: the dense kernel's top-k without its [hw, (CXT+1)·hw] affinities.

The long-term entry is scored against every key, in query chunks. The other context frames
are scored once each, in groups, against their in-radius keys only (the tiled product, or the
masked small-map product); each group's top-k candidates are merged with the long-term ones,
counting a frame repeated m times min(m, k) times. Why this equals the dense top-k, the tile
layout and the cost: docs/local_kernel.md. Time O(CXT·hw·(tile + 2·radius)²), memory linear
in hw.
"""

from __future__ import annotations

from collections import Counter
from typing import Optional, Sequence

import torch
from torch import Tensor

from hvc.propagation.kernel import context_frames
from hvc.propagation.local.blocks import TileBlockMemory
from hvc.propagation.local.masked import masked_topk
from hvc.propagation.local.tables import Tables, TiledTables, grid_tables
from hvc.propagation.local.tiled import tiled_topk

# Largest affinity block, in elements, built at once (2^24 floats = 64 MiB).
_BLOCK_ELEMENTS = 1 << 24


class LocalKernel:
    """Top-k neighbours of every query position over a context of stored frames, from local
    windows; same contract as :class:`~hvc.propagation.dense.DenseKernel`."""

    def __init__(self, radius: float, temperature: float, topk: int, tile: int = 4,
                 tiled: Optional[bool] = None):
        """tiled: None picks the tiled or the masked [hw, hw] product per grid size, whichever
        has fewer elements; True / False force one (both are exact)."""
        self.radius = radius
        self.temperature = temperature
        self.topk = topk
        self.tile = tile
        self.tiled = tiled
        self._tables: dict[tuple[int, int, torch.device], Tables] = {}

    def tables(self, h: int, w: int, device: torch.device) -> Tables:
        """The index tables of an h x w grid (built once per size)."""
        if (h, w, device) not in self._tables:
            self._tables[(h, w, device)] = grid_tables(h, w, self.tile, self.radius, self.tiled, device)
        return self._tables[(h, w, device)]

    def memory(self) -> TileBlockMemory:
        """Stored frames as flattened embeddings plus key tiles in blocks of frames."""
        return TileBlockMemory(self.tables)

    def __call__(self, query: Tensor, memory: TileBlockMemory, context: Sequence[int]) -> tuple[Tensor, Tensor]:
        """query: [C, h, w]; context: frame numbers in ``memory``, entry 0 unrestricted. Returns
        (weights [hw, k], index [hw, k] = slot * hw + key position), see :mod:`hvc.propagation.kernel`."""
        c, h, w = query.shape
        hw, k = h * w, self.topk
        slot = {f: s for s, f in enumerate(context_frames(context))}
        queries = query.reshape(c, hw).t().contiguous()  # [hw, C]
        tables = self.tables(h, w, query.device)
        # tiled product: the query of each product row, gathered once for every group
        rows = queries.index_select(0, tables.row_query) if isinstance(tables, TiledTables) else None  # [R, C]
        v, position = self._long_term(queries, memory[context[0]].flat)
        vals, index, copies = [v], [slot[context[0]] * hw + position], [torch.ones_like(position)]
        counts = Counter(context[1:])
        for group in memory.groups(list(counts)):
            if rows is not None:
                v, which, position = tiled_topk(rows, memory.tiles(group), tables, len(group), k)
            else:
                v, which, position = masked_topk(queries, [memory[f].flat for f in group], tables, k)
            vals.append(v)
            index.append(torch.as_tensor([slot[f] for f in group], device=v.device)[which] * hw + position)
            copies.append(torch.as_tensor([min(counts[f], k) for f in group], device=v.device)[which])
        return self._merge(torch.cat(vals, dim=1), torch.cat(index, dim=1), torch.cat(copies, dim=1))

    def _long_term(self, queries: Tensor, key: Tensor) -> tuple[Tensor, Tensor]:
        """queries: [hw, C], key: [C, hw] -> top-k (dot products, key positions) over all keys:
        [hw, k] each."""
        chunk = max(1, _BLOCK_ELEMENTS // queries.shape[0])
        vals, idx = [], []
        for s in range(0, queries.shape[0], chunk):
            v, i = (queries[s:s + chunk] @ key).topk(self.topk, dim=1)
            vals.append(v)
            idx.append(i)
        return torch.cat(vals), torch.cat(idx)

    def _merge(self, v: Tensor, index: Tensor, copies: Tensor) -> tuple[Tensor, Tensor]:
        """The joint top-k of the candidates (v, index: [hw, n]), each counted ``copies`` times:
        (softmax weights, index), [hw, k] each. Every group's best k distinct candidates hold
        the joint top-k's, so counting each min(m, k) times is exact."""
        most = int(copies.max())
        if most > 1:  # expand to `most` copies per candidate, the surplus ones at -inf
            surplus = torch.arange(most, device=copies.device) >= copies[:, :, None]
            v = v[:, :, None].expand(-1, -1, most).masked_fill(surplus, float("-inf")).flatten(1)
            index = index[:, :, None].expand(-1, -1, most).flatten(1)
        v, j = v.topk(self.topk, dim=1)
        return torch.softmax(v / self.temperature, dim=1), torch.gather(index, 1, j)
