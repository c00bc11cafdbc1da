"""What the propagator asks of an affinity kernel, and the memory of stored frames it reads, one
:class:`KeyMemory` per video (docs/design.md, "Label propagation: two seams for later tasks")."""

from __future__ import annotations

from typing import Any, Protocol, Sequence

from torch import Tensor


class KeyMemory:
    """Stored frames of one video, by frame number, in a kernel's form (here: the embedding)."""

    def __init__(self) -> None:
        self._forms: dict[int, Any] = {}

    def add(self, frame: int, emb: Tensor) -> None:
        """Store frame number ``frame``; emb: [C, h, w] its L2-normalised embedding."""
        if frame in self._forms:
            raise ValueError(f"frame {frame} is already stored")
        self._forms[frame] = self.form(frame, emb)

    def form(self, frame: int, emb: Tensor) -> Any:
        """What is kept of a frame; kernels with their own layout override this."""
        return emb

    def remove(self, frame: int) -> None:
        del self._forms[frame]

    def embedding(self, frame: int, shape: tuple[int, int, int]) -> Tensor:
        """The embedding [C, h, w] (``shape``) that ``add`` stored as ``frame``."""
        return self._forms[frame].reshape(shape)

    def __getitem__(self, frame: int) -> Any:
        return self._forms[frame]

    def __contains__(self, frame: object) -> bool:
        return frame in self._forms


class Kernel(Protocol):
    """The top-k neighbours of every query position over a context of stored frames: entry 0 the long-term
    frame, the others radius-limited, repeats counted (docs/local_kernel.md, "What is computed")."""

    topk: int

    def memory(self) -> KeyMemory:
        """An empty memory for the frames of one video."""

    def __call__(self, query: Tensor, memory: KeyMemory, context: Sequence[int]) -> tuple[Tensor, Tensor]:
        """query: [C, h, w] embedding of the current frame; context: frame numbers in ``memory``. Returns
        (weights [hw, k], index [hw, k]): the neighbours' softmax weights and ``slot * hw + key position``,
        slot = the neighbour frame's place in ``context_frames(context)``."""


def context_frames(context: Sequence[int]) -> list[int]:
    """The distinct frames of a context, in the order a kernel's ``index`` numbers them."""
    return sorted(set(context))
