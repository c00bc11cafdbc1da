"""Fast kernel: the same top-k as :mod:`hvc.propagation.dense` without the dense path's
[hw, (CXT+1)·hw] affinities.

Four facts make it exact:

* the top-k over a union of candidate sets is found among the union of the sets' own top-k,
  so context frames can be scored in groups and merged;
* a frame repeated m times in the context (early in a video) is scored once: the joint top-k
  over the duplicated list sees each of its candidates min(m, k) times;
* radius-limited frames only need the keys near each query. The keys are cut into ``tile`` x
  ``tile`` tiles and each tile is scored against the in-image queries its radius reaches
  (gathered once per query frame): per group of context frames, one batched matmul for each
  set of tiles that reach equally many queries;
* the k best (query, key, frame) scores of a group lie among the frames of the query's k keys
  whose best score over the group's frames is highest (k distinct candidates reach the k-th of
  those maxima). So each query ranks its in-radius keys (strict ``<``) by that maximum, a
  reduction over frames done once per product entry, and takes the exact top-k from the frames
  of its k best keys only: no query copies or sorts its whole candidate list.

Tiles are written, frame after frame, into shared blocks of ``_GROUP_FRAMES`` frames as the
frames are prepared, so a full block of consecutive frames is scored in place; other frames
are copied into a group.

Only the long-term entry is scored against every key, in query chunks. Time
O(CXT·hw·(tile + 2·radius)²), memory linear in hw. On maps so small that a tile's query window
is the whole image (hw² below the tiled product's size, e.g. 6x10 at radius 12), one masked
[hw, hw] product per frame is cheaper and is used instead (``tiled=None``).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

# Largest affinity block, in elements, built at once (2^24 floats = 64 MiB).
_BLOCK_ELEMENTS = 1 << 24
# Most context frames scored per batched matmul, and frames per tile block: wide groups keep the
# matmuls efficient (the product is 123 MiB at 60x107; memory stays linear in hw).
_GROUP_FRAMES = 10


@dataclass
class LocalKey:
    """Cached key/query form of one frame."""

    flat: Tensor  # [C, hw] the embedding, flattened
    # Tiled path: [T, C, _GROUP_FRAMES, tile²] tiles (in the grid's tile order, zero-padded) of
    # frames prepared in a row; this frame's are block[:, :, slot]. None on the [hw, hw] path.
    block: Optional[Tensor]
    slot: int
    size: tuple[int, int]  # (h, w)


@dataclass
class _Geometry:
    """Index tables of one (h, w) grid, shared by every frame of that size."""

    pad: tuple[int, int, int, int]  # F.pad amounts (left, right, top, bottom) up to whole tiles
    frame_elements: int  # size of one frame's product (tiled or [hw, hw])
    key_pos: Tensor  # [hw, D] image position of each query's candidate keys (0 outside the image)
    # Tiled path (None on the [hw, hw] path). Tiles are kept in order of decreasing query window
    # (the in-image queries their radius reaches); tiles with equal windows form one batched
    # matmul, and the product's R rows are each tile's window in turn.
    tile_order: Optional[Tensor]  # [T] tile (row-major over the padded grid) at each place
    batches: Optional[list[tuple[int, int, int, int]]]  # (first tile, tiles, first row, window size)
    window: Optional[Tensor]  # [R] image position of the query in each product row
    pick: Optional[Tensor]  # [hw, D] entry (row * tile² + position inside the tile) of each
    #                         query's in-radius keys in a frame group's per-key maxima [R*tile²];
    #                         R*tile² (an entry of -inf) for keys outside the image
    # [hw, hw] path (None on the tiled path): candidates are all hw keys (D = hw), masked here.
    far: Optional[Tensor]  # [hw, hw] bool, True where the key is NOT within the radius


def _grid(n_y: int, n_x: int, device: torch.device) -> tuple[Tensor, Tensor]:
    ys, xs = torch.meshgrid(torch.arange(n_y, device=device), torch.arange(n_x, device=device), indexing="ij")
    return ys.flatten(), xs.flatten()


class LocalKernel:
    """Top-k neighbours of every query position over a context list, from local windows."""

    def __init__(self, radius: float, temperature: float, topk: int, tile: int = 4,
                 tiled: Optional[bool] = None):
        """tiled: None picks the tiled or the masked [hw, hw] product per grid size, whichever
        has fewer elements; True / False force one (both are exact)."""
        self.radius = radius
        self.temperature = temperature
        self.topk = topk
        self.tile = tile
        self.tiled = tiled
        self.reach = math.ceil(radius) - 1  # largest integer offset strictly inside the radius
        self._geometry: dict[tuple[int, int], _Geometry] = {}
        self._block: Optional[Tensor] = None  # the block being filled by prepare()
        self._filled = 0

    def _inside(self, dy: Tensor, dx: Tensor) -> Tensor:
        return (dy**2 + dx**2).double() < self.radius**2

    def _geo(self, h: int, w: int, device: torch.device) -> _Geometry:
        if (h, w) in self._geometry:
            return self._geometry[(h, w)]
        a, r = self.tile, self.reach
        th, tw = -(-h // a), -(-w // a)
        # Query offsets from a tile origin that reach some key of the tile.
        dy, dx = _grid(a + 2 * r, a + 2 * r, device)
        dy, dx = dy - r, dx - r
        keep = self._inside(dy - dy.clamp(0, a - 1), dx - dx.clamp(0, a - 1))
        dy, dx, width = dy[keep], dx[keep], int(keep.sum())
        oy, ox = _grid(th, tw, device)
        qy, qx = oy[:, None] * a + dy, ox[:, None] * a + dx  # [T, W] queries of each tile's window
        in_image = (qy >= 0) & (qy < h) & (qx >= 0) & (qx < w)
        product_rows = int(in_image.sum()) * a * a  # of the tiled product of one frame
        pad = (0, tw * a - w, 0, th * a - h)
        y, x = _grid(h, w, device)
        if not (self.tiled or (self.tiled is None and product_rows < (h * w) ** 2)):
            far = ~self._inside(y[:, None] - y[None, :], x[:, None] - x[None, :])
            geo = _Geometry(pad, (h * w) ** 2, torch.arange(h * w, device=device).expand(h * w, -1),
                            None, None, None, None, far)
            self._geometry[(h, w)] = geo
            return geo
        sizes = in_image.sum(dim=1)
        order = sizes.argsort(descending=True, stable=True)
        size, count = torch.unique_consecutive(sizes[order], return_counts=True)
        first_tile = torch.cumsum(count, 0) - count
        first_row = torch.cumsum(size * count, 0) - size * count
        batches = list(zip(first_tile.tolist(), count.tolist(), first_row.tolist(), size.tolist()))
        kept = in_image[order]
        window = (qy * w + qx)[order][kept]  # [R]
        row = torch.empty_like(qy)
        row[order] = (kept.flatten().cumsum(0) - 1).view_as(kept)  # (tile, column) -> product row

        # Each query's in-radius keys (fixed offset list) and where their score lands.
        slot = torch.full((keep.numel(),), -1, dtype=torch.long, device=device)
        slot[keep] = torch.arange(width, device=device)  # offset -> column of the window
        ey, ex = _grid(2 * r + 1, 2 * r + 1, device)
        ey, ex = ey - r, ex - r
        disc = self._inside(ey, ex)
        ey, ex = ey[disc], ex[disc]  # [D]
        ky, kx = y[:, None] + ey, x[:, None] + ex  # [hw, D]
        valid = (ky >= 0) & (ky < h) & (kx >= 0) & (kx < w)
        tile_id = (ky.div(a, rounding_mode="floor")) * tw + kx.div(a, rounding_mode="floor")
        in_tile = (ky % a) * a + kx % a
        column = slot[(y[:, None] - (ky - ky % a) + r) * (a + 2 * r) + (x[:, None] - (kx - kx % a) + r)]
        entry = row[tile_id.clamp(0, th * tw - 1), column] * a * a + in_tile
        # Each query's picks in increasing product order: the gather then walks memory forwards.
        pick, order_d = torch.where(valid, entry, product_rows).sort(dim=1)
        geo = _Geometry(pad, product_rows, torch.where(valid, ky * w + kx, 0).gather(1, order_d),
                        order, batches, window, pick, None)
        self._geometry[(h, w)] = geo
        return geo

    def prepare(self, emb: Tensor) -> LocalKey:
        """emb: [C, h, w] -> the cached key/query form of this frame."""
        c, h, w = emb.shape
        a = self.tile
        geo = self._geo(h, w, emb.device)
        if geo.window is None:
            return LocalKey(flat=emb.reshape(c, h * w), block=None, slot=0, size=(h, w))
        tiles = F.pad(emb, geo.pad).unfold(1, a, a).unfold(2, a, a)  # [C, th, tw, a, a]
        tiles = tiles.permute(1, 2, 0, 3, 4).reshape(-1, c, a * a)[geo.tile_order]  # row-major inside
        block = self._block
        if (block is None or self._filled == _GROUP_FRAMES or block.shape[:2] != tiles.shape[:2]
                or block.dtype != tiles.dtype or block.device != tiles.device):
            block = self._block = tiles.new_empty(*tiles.shape[:2], _GROUP_FRAMES, a * a)
            self._filled = 0
        block[:, :, self._filled] = tiles
        self._filled += 1
        return LocalKey(flat=emb.reshape(c, h * w), block=block, slot=self._filled - 1, size=(h, w))

    def _long_term(self, query: Tensor, key: Tensor) -> tuple[Tensor, Tensor]:
        """query: [hw, C], key: [C, hw] -> top-k (dot products, key positions) over all keys:
        [hw, k] each."""
        hw = query.shape[0]
        chunk = max(1, _BLOCK_ELEMENTS // hw)
        vals, idx = [], []
        for s in range(0, hw, chunk):
            v, i = (query[s:s + chunk] @ key).topk(self.topk, dim=1)
            vals.append(v)
            idx.append(i)
        return torch.cat(vals), torch.cat(idx)

    @staticmethod
    def _in_row(keys: list[LocalKey]) -> bool:
        """True if the frames of ``keys`` sit in consecutive slots of one tile block."""
        return all(b.block is a.block and b.slot == a.slot + 1 for a, b in zip(keys, keys[1:]))

    @classmethod
    def _groups(cls, keys: list[LocalKey]) -> list[list[int]]:
        """Indices of ``keys`` in groups of at most ``_GROUP_FRAMES``: each full tile block met
        in order is a group of its own (scored in place), the other frames are pooled in groups
        of balanced sizes (no narrow last group)."""
        groups, pooled, start = [], [], 0
        for i in range(1, len(keys) + 1):
            if i < len(keys) and cls._in_row(keys[i - 1:i + 1]):
                continue
            (groups.append if i - start == _GROUP_FRAMES else pooled.extend)(list(range(start, i)))
            start = i
        n = -(-len(pooled) // _GROUP_FRAMES)
        return groups + [pooled[len(pooled) * g // n:len(pooled) * (g + 1) // n] for g in range(n)]

    def _group_topk(self, query: Tensor, windows: Optional[Tensor], keys: list[LocalKey],
                    geo: _Geometry) -> tuple[Tensor, Tensor, Tensor]:
        """query: [hw, C]; windows: [R, C] the query of each product row (tiled path) -> the
        top-k of each query over its in-radius keys of the F frames ``keys``: (dot products,
        frame slot in ``keys``, key position), [hw, k] each."""
        n, k = len(keys), self.topk
        if geo.far is not None:  # small map: every key is a candidate, the far ones masked
            flat = torch.stack([key.flat for key in keys], dim=2).flatten(1)  # [C, hw*F]
            out = (query @ flat).view(*geo.far.shape, n)
            v, j = out.masked_fill_(geo.far[:, :, None], float("-inf")).flatten(1).topk(k, dim=1)
            return v, j % n, j // n
        (rows, c), a2, first = windows.shape, self.tile**2, keys[0]
        if self._in_row(keys):
            tiles = first.block[:, :, first.slot:first.slot + n]  # in place: a view
        else:
            tiles = torch.stack([key.block[:, :, key.slot] for key in keys], dim=2)
        tiles = tiles.flatten(2)  # [T, C, F*tile²], column frame * tile² + key
        out = windows.new_empty(rows, n * a2)
        for t0, nt, r0, m in geo.batches:
            torch.bmm(windows[r0:r0 + nt * m].view(nt, m, c), tiles[t0:t0 + nt], out=out[r0:r0 + nt * m].view(nt, m, -1))
        best = out.new_empty(rows * a2 + 1)  # each (query, key)'s best frame, then -inf
        best[-1] = float("-inf")
        torch.amax(out.view(rows, n, a2), dim=1, out=best[:-1].view(rows, a2))
        v, j = best.index_select(0, geo.pick.flatten()).view_as(geo.pick).topk(k, dim=1)  # [hw, k] of D keys
        entry = geo.pick.gather(1, j).clamp_(max=rows * a2 - 1)
        # The F frames' scores of those k keys: [hw, k, F]; -inf where the key is not a candidate.
        at = (entry // a2 * (n * a2) + entry % a2)[:, :, None] + torch.arange(0, n * a2, a2, device=out.device)
        scores = out.view(-1).index_select(0, at.flatten()).view(*at.shape)
        scores.masked_fill_(v[:, :, None] == float("-inf"), float("-inf"))
        v, i = scores.flatten(1).topk(k, dim=1)  # [hw, k] of the k keys x F frames
        return v, i % n, torch.gather(geo.key_pos, 1, j.gather(1, i // n))

    def __call__(self, query: LocalKey, keys: list[LocalKey], context: list[int]) -> tuple[Tensor, Tensor]:
        """Same contract as :meth:`DenseKernel.__call__`: (weights [hw, k], index [hw, k]) with
        index = key_frame * hw + key_position, entry 0 of ``context`` unrestricted."""
        (h, w), k = query.size, self.topk
        hw = h * w
        geo = self._geo(h, w, query.flat.device)
        rows = query.flat.t().contiguous()  # [hw, C]
        windows = None if geo.window is None else rows.index_select(0, geo.window)  # [R, C]

        v, p = self._long_term(rows, keys[context[0]].flat)
        vals, index, copies = [v], [context[0] * hw + p], [torch.ones_like(p)]
        # Distinct frames are scored once, in groups; a group's best k distinct candidates hold
        # every candidate of the joint top-k, each then counted min(m, k) times for a frame
        # that appears m times in the context.
        counts = Counter(context[1:])
        frames = list(counts)
        for group in self._groups([keys[f] for f in frames]):
            part = [frames[g] for g in group]
            v, slot, pos = self._group_topk(rows, windows, [keys[f] for f in part], geo)
            vals.append(v)
            index.append(torch.as_tensor(part, device=v.device)[slot] * hw + pos)
            copies.append(torch.as_tensor([min(counts[f], k) for f in part], device=v.device)[slot])
        v, i, n = torch.cat(vals, dim=1), torch.cat(index, dim=1), torch.cat(copies, dim=1)
        most = int(n.max())
        if most > 1:  # expand to `most` copies per candidate, the surplus ones at -inf
            surplus = torch.arange(most, device=n.device) >= n[:, :, None]
            v = v[:, :, None].expand(-1, -1, most).masked_fill(surplus, float("-inf")).flatten(1)
            i = i[:, :, None].expand(-1, -1, most).flatten(1)
        v, j = v.topk(k, dim=1)
        weights = torch.softmax(v / self.temperature, dim=1)
        return weights, torch.gather(i, 1, j)
