"""Tile-block storage: frame t's key tiles in block t // GROUP_FRAMES, slot t % GROUP_FRAMES (docs/local_kernel.md)."""

from __future__ import annotations

import itertools
from typing import Callable, NamedTuple, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from hvc.propagation.kernel import KeyMemory
from hvc.propagation.local.tables import Tables, TiledTables

# Frames per block, and most frames per batched matmul (a part): wide parts keep the matmuls efficient (the
# product is 123 MiB at 60x107; memory stays linear in hw).
GROUP_FRAMES = 10


class StoredFrame(NamedTuple):
    flat: Tensor  # [C, hw] the embedding, flattened
    tiled: bool  # whether its tiles are in a block
    search: Tensor  # [C or d, hw] its keys as the search scores them (TileBlockMemory.searched), computed once


class TileBlockMemory(KeyMemory):
    """Stored frames of one video: flattened embeddings, and key tiles in blocks of frames."""

    def __init__(self, tables_of: Callable[[int, int, torch.device], Tables], dtype: Optional[torch.dtype] = None,
                 dims: Optional[int] = None):
        """dtype: None (exact search) or an approximate search's (bf16, or float32 with ``dims``, docs/local_kernel.md):
        tiles of keys minus ``center`` (the first frame's mean key), with ``dims`` = d < C on ``basis`` (its d principal
        axes); the embeddings stay, position-major ([C, hw] views of [hw, C]), for kernel.rescore."""
        self._tables_of, self.dtype, self.dims = tables_of, dtype, dims
        self.center: Optional[Tensor] = None  # [C, 1], with a dtype: set by the first frame stored
        self.basis: Optional[Tensor] = None  # [C, d], with dims < C: set by the first frame stored
        self.blocks: dict[int, Tensor] = {}  # block number -> [T, C, n, tile²], slots first..first+n-1
        self._first: dict[int, int] = {}  # block number -> its first slot
        self._stored: dict[int, int] = {}  # block number -> frames stored in it

    def form(self, frame: int, emb: Tensor) -> StoredFrame:
        c, h, w = emb.shape
        tables = self._tables_of(h, w, emb.device)
        flat = emb.reshape(c, h * w)
        if self.dtype is not None and self.center is None:
            self.center = flat.mean(dim=1, keepdim=True)
            if self.dims is not None and self.dims < c:
                self.basis = principal_axes(flat - self.center, self.dims)
        search = self.searched(flat)
        if isinstance(tables, TiledTables):
            self._write_tiles(frame, key_tiles(search.view(-1, h, w), tables))
        if self.dtype is not None:  # keys position-major: the approximate search rescores chosen keys by row
            flat = flat.t().contiguous().t()
        return StoredFrame(flat, isinstance(tables, TiledTables), search)  # search is flat itself if exact

    def embedding(self, frame: int, shape: tuple[int, int, int]) -> Tensor:
        return self[frame].flat.reshape(shape)  # the flattened embedding, perhaps position-major

    def searched(self, flat: Tensor) -> Tensor:
        """[C, hw] keys as the search scores them: as they are, or centred, projected ([d, hw]), in ``dtype``."""
        if self.dtype is None:
            return flat
        centred = flat - self.center
        return (centred if self.basis is None else self.basis.t() @ centred).to(self.dtype)

    def searched_queries(self, queries: Tensor) -> Tensor:
        """[hw, C] queries as the search scores them: as they are, or projected ([hw, d]), in ``dtype`` (not
        centred: that would shift all of a query's scores alike)."""
        if self.dtype is None:
            return queries
        return (queries if self.basis is None else queries @ self.basis).to(self.dtype)

    def _write_tiles(self, frame: int, tiles: Tensor) -> None:
        """Write a frame's tiles [T, C, tile²] into its block. A block too narrow for the slot is widened, at least
        doubled (at most GROUP_FRAMES slots): frames arriving one by one copy its tiles a few times, not ten."""
        number, slot = divmod(frame, GROUP_FRAMES)
        old, first = self.blocks.get(number), self._first.get(number, slot)
        n = 0 if old is None else old.shape[2]
        if not first <= slot < first + n:
            if slot >= first + n:  # growing upwards (frames in order): room for the next ones too
                lo, hi = first, max(slot + 1, min(GROUP_FRAMES, first + 2 * n))
            else:
                lo, hi = min(slot, max(0, first - n)), first + n
            self.blocks[number] = tiles.new_empty(*tiles.shape[:2], hi - lo, tiles.shape[2])
            if old is not None:
                self.blocks[number][:, :, first - lo:first - lo + n] = old
            self._first[number] = first = lo
        self.blocks[number][:, :, slot - first] = tiles
        self._stored[number] = self._stored.get(number, 0) + 1

    def remove(self, frame: int) -> None:
        number = frame // GROUP_FRAMES
        if self[frame].tiled:
            self._stored[number] -= 1
            if not self._stored[number]:  # the block's last frame: free it
                del self.blocks[number], self._stored[number], self._first[number]
        super().remove(frame)

    def is_block(self, frames: Sequence[int]) -> bool:
        """Whether ``frames`` are exactly the frames of one block, in order (scored in place)."""
        first = frames[0] if frames else -1
        return (len(frames) == GROUP_FRAMES and first % GROUP_FRAMES == 0
                and list(frames) == list(range(first, first + GROUP_FRAMES))
                and all(f in self for f in frames) and self[first].tiled)

    def parts(self, frames: Sequence[int]) -> list[list[int]]:
        """``frames`` (distinct, stored) in parts of at most GROUP_FRAMES: a whole block met in order is a part
        (scored in place), the other frames are pooled in parts of balanced sizes (copied; no narrow last part)."""
        parts, pooled = [], []
        for _, run in itertools.groupby(frames, key=lambda f: f // GROUP_FRAMES):  # runs of one block
            run = list(run)
            (parts.append if self.is_block(run) else pooled.extend)(run)
        n = -(-len(pooled) // GROUP_FRAMES)
        return parts + [pooled[len(pooled) * g // n:len(pooled) * (g + 1) // n] for g in range(n)]

    def groups(self, frames: Sequence[int], max_frames: int = GROUP_FRAMES) -> list[list[list[int]]]:
        """The :meth:`parts` packed in order into groups of at most ``max_frames`` frames: one product each."""
        groups: list[list[list[int]]] = []
        for part in self.parts(frames):
            if groups and sum(map(len, groups[-1])) + len(part) <= max_frames:
                groups[-1].append(part)
            else:
                groups.append([part])
        return groups

    def tiles(self, part: Sequence[int]) -> Tensor:
        """[T, C, F * tile²] key tiles of a part's F frames (column frame * tile² + key): a block's view or a copy."""
        if self.is_block(part):
            return self.blocks[part[0] // GROUP_FRAMES].flatten(2)
        slots = [divmod(f, GROUP_FRAMES) for f in part]  # (block number, slot) of each frame
        return torch.stack([self.blocks[n][:, :, slot - self._first[n]] for n, slot in slots], dim=2).flatten(2)


def key_tiles(emb: Tensor, tables: TiledTables) -> Tensor:
    """emb: [C, h, w] -> [T, C, tile²] its key tiles (zero-padded, row-major inside a tile), in product order."""
    c, a = emb.shape[0], tables.tile
    tiles = F.pad(emb, tables.pad).unfold(1, a, a).unfold(2, a, a)  # [C, th, tw, a, a]
    return tiles.permute(1, 2, 0, 3, 4).reshape(-1, c, a * a)[tables.tile_order]


def principal_axes(centred: Tensor, dims: int) -> Tensor:
    """centred [C, n] zero-mean -> [C, dims]: orthonormal axes of the largest variances (eigh in float64)."""
    scatter = centred.double() @ centred.double().t()
    _, vectors = torch.linalg.eigh(scatter)  # eigenvalues ascending
    return vectors[:, -dims:].flip(1).to(centred.dtype).contiguous()
