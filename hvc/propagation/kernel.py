"""The affinity-kernel contract and its per-video :class:`KeyMemory` of stored frames (docs/design.md, "Label
propagation: two seams for later tasks"), and the dense reference kernel."""

from __future__ import annotations

from typing import Any, Protocol, Sequence

import torch
from torch import Tensor

from hvc.config.propagation import PropagationConfig

_BLOCK_ELEMENTS = 1 << 27  # the largest affinity block built at once, in elements (2^27 floats = 512 MiB)


class KeyMemory(dict):
    """Stored frames of one video: frame number -> the frame in a kernel's form (here: the embedding)."""

    def add(self, frame: int, emb: Tensor) -> None:
        """Store frame number ``frame``; emb: [C, h, w] its L2-normalised embedding."""
        if frame in self:
            raise ValueError(f"frame {frame} is already stored")
        self[frame] = self.form(frame, emb)

    def form(self, frame: int, emb: Tensor) -> Any:
        """What is kept of a frame; kernels with their own layout override this."""
        return emb

    def remove(self, frame: int) -> None:
        del self[frame]

    def embedding(self, frame: int, shape: tuple[int, int, int]) -> Tensor:
        """The embedding [C, h, w] (``shape``) that ``add`` stored as ``frame``."""
        return self[frame].reshape(shape)


class Kernel(Protocol):
    """Top-k neighbours of every query position over a context of stored frames (docs/local_kernel.md)."""

    def memory(self) -> KeyMemory:
        """An empty memory for the frames of one video."""

    def __call__(self, query: Tensor, memory: KeyMemory, context: Sequence[int]) -> tuple[Tensor, Tensor]:
        """query [C, h, w], context: frames in ``memory``, entry 0 the long-term one, the others radius-limited,
        repeats counted -> (softmax weights [hw, k], index [hw, k] = slot in :func:`context_frames` * hw + key)."""


def context_frames(context: Sequence[int]) -> list[int]:
    """The distinct frames of a context, in the order a kernel's ``index`` numbers them."""
    return sorted(set(context))


def far_mask(h: int, w: int, radius: float, device: torch.device) -> Tensor:
    """[h*w, h*w] bool (symmetric): True where the grid distance of the two cells is NOT < radius."""
    ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    grid = torch.stack([ys.flatten(), xs.flatten()], dim=1).double()
    return torch.cdist(grid, grid) >= radius


class DenseKernel:
    """The :class:`Kernel` from a full [hw, hw] affinity per context entry, the top-k joint over all: the official
    arithmetic, written to be read, not to be fast (docs/local_kernel.md, "What is computed")."""

    def __init__(self, radius: float, temperature: float, topk: int):
        self.radius, self.temperature, self.topk = radius, temperature, topk
        self._far: dict[tuple[int, int], Tensor] = {}

    @classmethod
    def from_config(cls, cfg: PropagationConfig) -> "DenseKernel":
        """The kernel of validated settings (PropagationConfig.validate)."""
        return cls(cfg.radius, cfg.temperature, cfg.topk)

    def memory(self) -> KeyMemory:
        return KeyMemory()  # the embeddings [C, h, w] as they are

    def __call__(self, query: Tensor, memory: KeyMemory, context: Sequence[int]) -> tuple[Tensor, Tensor]:
        """:class:`Kernel`'s: (weights [hw, k], index [hw, k] = slot * hw + key)."""
        c, h, w = query.shape
        hw, num = h * w, len(context)
        if (h, w) not in self._far:
            self._far[(h, w)] = far_mask(h, w, self.radius, query.device)
        far = self._far[(h, w)]
        entries = torch.cat([memory[f].reshape(c, hw) for f in context], dim=1)  # [C, E*hw], duplicates kept
        q = query.reshape(c, hw)
        chunk = max(1, _BLOCK_ELEMENTS // (num * hw))
        vals, idx = [], []
        for s in range(0, hw, chunk):
            aff = (q[:, s:s + chunk].t() @ entries).view(-1, num, hw)  # [chunk queries, E, hw keys]
            aff[:, 1:].masked_fill_(far[s:s + chunk, None, :], -1e10)
            aff.div_(self.temperature)
            v, i = aff.flatten(1).topk(self.topk, dim=1)  # joint over all entries
            vals.append(v)
            idx.append(i)
        v, i = torch.cat(vals), torch.cat(idx)  # [hw, k]
        slot = {f: s for s, f in enumerate(context_frames(context))}
        frame = torch.as_tensor([slot[f] for f in context], device=query.device)[i // hw]
        return torch.softmax(v, dim=1), frame * hw + i % hw
