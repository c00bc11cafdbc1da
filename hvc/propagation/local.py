"""Fast kernel: the same top-k as :mod:`hvc.propagation.dense` without the dense path's
[hw, (CXT+1)·hw] affinities.

Three facts make it exact:

* the top-k over a union of candidate sets is found among the union of the sets' own top-k,
  so context frames can be scored in groups and merged;
* a frame repeated m times in the context (early in a video) is scored once: the joint top-k
  over the duplicated list sees each of its candidates min(m, k) times;
* radius-limited frames only need the keys near each query. The keys are cut into ``tile`` x
  ``tile`` tiles (a layout cached once per frame) and each tile is scored against the queries
  its radius reaches (gathered once per query frame), one batched matmul per group of context
  frames; every query then picks out its exact in-radius keys (strict ``<``) from that product.
  The frames of a group are interleaved (frame index fastest), so each pick copies one
  contiguous row of the group's scores.

Only the long-term entry is scored against every key, in query chunks. Time
O(CXT·hw·(tile + 2·radius)²), memory linear in hw. On maps so small that a tile's query window
is about the whole image (hw² below the tiled product's size, e.g. 15x27 at radius 12), one
masked [hw, hw] product per frame is cheaper and is used instead (``tiled=None``).
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
# Most context frames scored per batched matmul: wide groups keep the matmuls and the top-k rows
# long, which is where the time goes (the product is 144 MiB at 60x107; memory stays linear in hw).
_GROUP_FRAMES = 10


@dataclass
class LocalKey:
    """Cached key/query form of one frame."""

    flat: Tensor  # [C, hw] the embedding, flattened
    tiles: Optional[Tensor]  # [T, C, tile²] the embedding cut into zero-padded tiles (tiled path)
    size: tuple[int, int]  # (h, w)


@dataclass
class _Geometry:
    """Index tables of one (h, w) grid, shared by every frame of that size."""

    pad: tuple[int, int, int, int]  # F.pad amounts (left, right, top, bottom) up to whole tiles
    frame_elements: int  # size of one frame's product (tiled or [hw, hw])
    key_pos: Tensor  # [hw, D] image position of each query's candidate keys (0 outside the image)
    # Tiled path (None on the [hw, hw] path):
    window: Optional[Tensor]  # [T, W] image position of the queries each key tile can reach (hw = outside)
    pick: Optional[Tensor]  # [hw, D] row ((tile * W + window column) * tile² + position inside the
    #                         tile) of each query's in-radius keys in the [T*W*tile², F] product of a
    #                         frame group; T*W*tile² (a row of -inf) for keys outside the image
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
        product_rows = th * tw * width * a * a  # of the tiled product of one frame, -inf row excluded
        pad = (0, tw * a - w, 0, th * a - h)
        y, x = _grid(h, w, device)
        if not (self.tiled or (self.tiled is None and product_rows < (h * w) ** 2)):
            far = ~self._inside(y[:, None] - y[None, :], x[:, None] - x[None, :])
            geo = _Geometry(pad, (h * w) ** 2, torch.arange(h * w, device=device).expand(h * w, -1), None, None, far)
            self._geometry[(h, w)] = geo
            return geo
        slot = torch.full((keep.numel(),), -1, dtype=torch.long, device=device)
        slot[keep] = torch.arange(width, device=device)  # offset -> column of the window
        oy, ox = _grid(th, tw, device)
        qy, qx = oy[:, None] * a + dy, ox[:, None] * a + dx  # [T, W]
        in_image = (qy >= 0) & (qy < h) & (qx >= 0) & (qx < w)
        window = torch.where(in_image, qy * w + qx, h * w)

        # Each query's in-radius keys (fixed offset list) and where their score lands.
        ey, ex = _grid(2 * r + 1, 2 * r + 1, device)
        ey, ex = ey - r, ex - r
        disc = self._inside(ey, ex)
        ey, ex = ey[disc], ex[disc]  # [D]
        ky, kx = y[:, None] + ey, x[:, None] + ex  # [hw, D]
        valid = (ky >= 0) & (ky < h) & (kx >= 0) & (kx < w)
        tile_id = (ky.div(a, rounding_mode="floor")) * tw + kx.div(a, rounding_mode="floor")
        in_tile = (ky % a) * a + kx % a
        column = slot[(y[:, None] - (ky - ky % a) + r) * (a + 2 * r) + (x[:, None] - (kx - kx % a) + r)]
        # Each query's picks in increasing product order: the gather then walks memory forwards.
        pick, order = torch.where(valid, (tile_id * width + column) * a * a + in_tile, product_rows).sort(dim=1)
        geo = _Geometry(pad, product_rows, torch.where(valid, ky * w + kx, 0).gather(1, order), window, pick, None)
        self._geometry[(h, w)] = geo
        return geo

    def prepare(self, emb: Tensor) -> LocalKey:
        """emb: [C, h, w] -> the cached key/query form of this frame."""
        c, h, w = emb.shape
        a = self.tile
        geo = self._geo(h, w, emb.device)
        tiles = None
        if geo.window is not None:
            tiles = F.pad(emb, geo.pad).unfold(1, a, a).unfold(2, a, a)  # [C, th, tw, a, a]
            tiles = tiles.permute(1, 2, 0, 3, 4).reshape(-1, c, a * a)  # tile-major, row-major inside
        return LocalKey(flat=emb.reshape(c, h * w), tiles=tiles, size=(h, w))

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

    def _in_radius(self, query: Tensor, windows: Optional[Tensor], keys: list[LocalKey], geo: _Geometry) -> Tensor:
        """query: [hw, C]; windows: [T, W, C] its tile windows (tiled path) -> [hw, D*F] dot
        products of each query with its D candidate keys in each of the F frames, column d*F + f
        for key d of frame f (-inf where the key is outside the image or the radius)."""
        n = len(keys)
        if geo.far is not None:  # small map: every key is a candidate, the far ones masked
            flat = torch.stack([key.flat for key in keys], dim=2).flatten(1)  # [C, hw*F]
            out = (query @ flat).view(*geo.far.shape, n)
            return out.masked_fill_(geo.far[:, :, None], float("-inf")).flatten(1)
        t, width, _ = windows.shape
        a2 = self.tile**2
        tiles = torch.stack([key.tiles for key in keys], dim=3).view(t, -1, a2 * n)  # [T, C, tile²*F]
        out = windows.new_empty(t * width * a2 + 1, n)
        out[-1] = float("-inf")
        torch.bmm(windows, tiles, out=out[:-1].view(t, width, a2 * n))
        return out.index_select(0, geo.pick.flatten()).view(-1, geo.pick.shape[1] * n)

    def __call__(self, query: LocalKey, keys: list[LocalKey], context: list[int]) -> tuple[Tensor, Tensor]:
        """Same contract as :meth:`DenseKernel.__call__`: (weights [hw, k], index [hw, k]) with
        index = key_frame * hw + key_position, entry 0 of ``context`` unrestricted."""
        (h, w), k = query.size, self.topk
        c, hw = query.flat.shape
        geo = self._geo(h, w, query.flat.device)
        rows = torch.cat([query.flat.t(), query.flat.new_zeros(1, c)])  # [hw + 1, C], last: outside the image
        windows = None
        if geo.window is not None:
            windows = rows.index_select(0, geo.window.flatten()).view(*geo.window.shape, c)  # [T, W, C]

        v, p = self._long_term(rows[:hw], keys[context[0]].flat)
        vals, index, copies = [v], [context[0] * hw + p], [torch.ones_like(p)]
        # Distinct frames are scored once, in groups; a group's best k distinct candidates hold
        # every candidate of the joint top-k, each then counted min(m, k) times for a frame
        # that appears m times in the context.
        counts = Counter(context[1:])
        frames = list(counts)
        groups = -(-len(frames) // _GROUP_FRAMES)  # of balanced sizes: no narrow last group
        for g in range(groups):
            part = frames[len(frames) * g // groups:len(frames) * (g + 1) // groups]
            scores = self._in_radius(rows[:hw], windows, [keys[f] for f in part], geo)  # [hw, D*F]
            v, j = scores.topk(min(k, scores.shape[1]), dim=1)
            slot = j % len(part)
            vals.append(v)
            index.append(torch.as_tensor(part, device=j.device)[slot] * hw + torch.gather(geo.key_pos, 1, j // len(part)))
            copies.append(torch.as_tensor([min(counts[f], k) for f in part], device=j.device)[slot])
        v, i, n = torch.cat(vals, dim=1), torch.cat(index, dim=1), torch.cat(copies, dim=1)
        most = int(n.max())
        if most > 1:  # expand to `most` copies per candidate, the surplus ones at -inf
            surplus = torch.arange(most, device=n.device) >= n[:, :, None]
            v = v[:, :, None].expand(-1, -1, most).masked_fill(surplus, float("-inf")).flatten(1)
            i = i[:, :, None].expand(-1, -1, most).flatten(1)
        v, j = v.topk(k, dim=1)
        weights = torch.softmax(v / self.temperature, dim=1)
        return weights, torch.gather(i, 1, j)
