"""Fast kernel: the same top-k as :mod:`hvc.propagation.dense` without any [hw, hw] matrix.

Three facts make it exact:

* the top-k over a union of candidate sets equals the top-k over the union of each set's own
  top-k, so every context frame contributes only its k best keys per query;
* a frame repeated m times in the context contributes its candidates min(m, k) times, which is
  what the joint top-k over the duplicated list sees;
* radius-limited frames only need the keys near each query: queries are cut into ``tile`` x
  ``tile`` tiles, each scored against the keys its radius can reach (one batched matmul,
  masked by the exact strict radius). Only the long-term entry is scored against every key,
  in query chunks.

Time O(CXT·hw·window), memory linear in hw.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

# Largest long-term affinity block, in elements, built at once (2^24 floats = 64 MiB).
_BLOCK_ELEMENTS = 1 << 24


@dataclass
class LocalKey:
    """Cached key/query form of one frame."""

    flat: Tensor  # [C, hw] the embedding, flattened
    padded: Tensor  # [(th*tile + 2R) * (tw*tile + 2R), C] channels-last, zero-padded by R (and to whole tiles)
    size: tuple[int, int]  # (h, w)


@dataclass
class _Geometry:
    """Index tables of one (h, w) grid, shared by every frame of that size."""

    pad: tuple[int, int, int, int]  # F.pad amounts (left, right, top, bottom)
    query_rows: Tensor  # [T*tile²] image position of each tiled query, hw for padding queries
    image_rows: Tensor  # [hw] row in the tiled query order of each image position
    window: Tensor  # [T, W] padded-grid index of each window key of each tile
    window_pos: Tensor  # [T, W] image position of each window key (0 where outside the image)
    bias: Tensor  # [T, tile², W] 0 where the key is inside the image and the radius, else -inf


class LocalKernel:
    """Top-k neighbours of every query position over a context list, from local windows."""

    def __init__(self, radius: float, temperature: float, topk: int, tile: int = 8):
        self.radius = radius
        self.temperature = temperature
        self.topk = topk
        self.tile = tile
        self.reach = math.ceil(radius) - 1  # largest integer offset strictly inside the radius
        self._geometry: dict[tuple[int, int], _Geometry] = {}

    def _geo(self, h: int, w: int, device: torch.device) -> _Geometry:
        if (h, w) in self._geometry:
            return self._geometry[(h, w)]
        a, r = self.tile, self.reach
        th, tw = -(-h // a), -(-w // a)
        wp = tw * a + 2 * r
        # Window offsets relative to the tile origin: those some query of the tile can reach.
        d = torch.arange(-r, a + r, device=device)
        dy, dx = torch.meshgrid(d, d, indexing="ij")
        ny, nx = dy.clamp(0, a - 1), dx.clamp(0, a - 1)  # nearest query of the tile
        keep = ((dy - ny) ** 2 + (dx - nx) ** 2).double() < self.radius**2
        dy, dx = dy[keep], dx[keep]  # [W]
        q = torch.arange(a, device=device)
        qy, qx = torch.meshgrid(q, q, indexing="ij")
        qy, qx = qy.flatten(), qx.flatten()  # [tile²]
        inside = ((dy[None] - qy[:, None]) ** 2 + (dx[None] - qx[:, None]) ** 2).double() < self.radius**2

        oy, ox = torch.meshgrid(torch.arange(th, device=device) * a, torch.arange(tw, device=device) * a, indexing="ij")
        oy, ox = oy.flatten(), ox.flatten()  # [T] tile origins
        ky, kx = oy[:, None] + dy[None], ox[:, None] + dx[None]  # [T, W] key coordinates
        in_image = (ky >= 0) & (ky < h) & (kx >= 0) & (kx < w)
        bias = torch.zeros(in_image.shape[0], a * a, dy.numel(), device=device)
        bias.masked_fill_(~(in_image[:, None, :] & inside[None]), float("-inf"))

        yy, xx = oy[:, None] + qy[None], ox[:, None] + qx[None]  # [T, tile²] query coordinates
        valid = (yy < h) & (xx < w)
        query_rows = torch.where(valid, yy * w + xx, h * w).flatten()
        image_rows = torch.empty(h * w, dtype=torch.long, device=device)
        image_rows[query_rows[valid.flatten()]] = torch.nonzero(valid.flatten()).squeeze(1)
        geo = _Geometry(
            pad=(r, r + tw * a - w, r, r + th * a - h),
            query_rows=query_rows,
            image_rows=image_rows,
            window=(ky + r) * wp + (kx + r),
            window_pos=torch.where(in_image, ky * w + kx, 0),
            bias=bias,
        )
        self._geometry[(h, w)] = geo
        return geo

    def prepare(self, emb: Tensor) -> LocalKey:
        """emb: [C, h, w] -> the cached key/query form of this frame."""
        c, h, w = emb.shape
        geo = self._geo(h, w, emb.device)
        padded = F.pad(emb, geo.pad).permute(1, 2, 0).reshape(-1, c)
        return LocalKey(flat=emb.reshape(c, h * w), padded=padded, size=(h, w))

    def _long_term(self, query: Tensor, key: Tensor) -> tuple[Tensor, Tensor]:
        """query, key: [C, hw] -> top-k (dot products, key positions) over all keys: [hw, k] each."""
        hw = query.shape[1]
        chunk = max(1, _BLOCK_ELEMENTS // hw)
        vals, idx = [], []
        for s in range(0, hw, chunk):
            v, i = (query[:, s:s + chunk].t() @ key).topk(self.topk, dim=1)
            vals.append(v)
            idx.append(i)
        return torch.cat(vals), torch.cat(idx)

    def _windowed(self, tiles: Tensor, key: LocalKey, geo: _Geometry) -> tuple[Tensor, Tensor]:
        """tiles: [T, tile², C] queries -> top-k (dot products, key positions) within the radius: [hw, k]."""
        t, w = geo.window.shape
        win = key.padded.index_select(0, geo.window.flatten()).view(t, w, -1)  # [T, W, C]
        aff = torch.baddbmm(geo.bias, tiles, win.transpose(1, 2))  # [T, tile², W]
        v, j = aff.topk(self.topk, dim=2)
        pos = torch.gather(geo.window_pos[:, None, :].expand_as(aff), 2, j)
        k = self.topk
        return v.reshape(-1, k)[geo.image_rows], pos.reshape(-1, k)[geo.image_rows]

    def __call__(self, query: LocalKey, keys: list[LocalKey], context: list[int]) -> tuple[Tensor, Tensor]:
        """Same contract as :meth:`DenseKernel.__call__`: (weights [hw, k], index [hw, k]) with
        index = key_frame * hw + key_position, entry 0 of ``context`` unrestricted."""
        h, w = query.size
        hw = h * w
        geo = self._geo(h, w, query.flat.device)
        padded_q = torch.cat([query.flat.t(), query.flat.new_zeros(1, query.flat.shape[0])])
        tiles = padded_q.index_select(0, geo.query_rows).view(geo.bias.shape[0], self.tile**2, -1)

        v, p = self._long_term(query.flat, keys[context[0]].flat)
        vals, index = [v], [context[0] * hw + p]
        for frame, count in Counter(context[1:]).items():
            v, p = self._windowed(tiles, keys[frame], geo)
            reps = min(count, self.topk)  # enough copies for the joint top-k to see
            vals.append(v.repeat(1, reps))
            index.append((frame * hw + p).repeat(1, reps))
        v, j = torch.cat(vals, dim=1).topk(self.topk, dim=1)
        weights = torch.softmax(v / self.temperature, dim=1)
        return weights, torch.gather(torch.cat(index, dim=1), 1, j)
