"""Context policies: which stored frames each step reads, which frames are stored, which evicted
(docs/memory.md)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Sequence

from torch import Tensor


class ContextPolicy(ABC):
    """Decides the context of every step and the lifetime of stored frames."""

    def reset(self) -> None:
        """Forget the current video (policies with state override this)."""

    def state(self) -> dict:
        """What the policy remembers of the current video, JSON-able (to resume it later)."""
        return {}

    def load_state(self, state: dict) -> None:
        """Continue a video from :meth:`state`'s result."""

    @abstractmethod
    def context(self, reference: int, t: int) -> list[int]:
        """Frames read to predict frame t for the objects that started at frame ``reference``: entry 0
        is ``reference`` (every key a candidate), the others radius-limited, any stored frames (docs/memory.md)."""

    def store(self, t: int, soft: Tensor) -> bool:
        """After frame t is predicted (frame 0: given), whether it is kept for later steps; ``soft``
        [K, hw] is its soft mask, to judge its quality. Reference frames are kept whatever the answer."""
        return True

    @abstractmethod
    def evict(self, stored: Sequence[int], t: int) -> list[int]:
        """The frames of ``stored`` that no step after frame t reads (reference frames are never dropped)."""


class RecentFrames(ContextPolicy):
    """The paper's context: the reference frame, then the ``size`` frames before t, frames
    before the reference replaced by it (duplicates kept, as the official code does):
    ``[t0] + [max(s, t0) for s in range(t - size, t)]``."""

    def __init__(self, size: int):
        self.size = size  # >= 1, checked by PropagationConfig.validate

    def context(self, reference: int, t: int) -> list[int]:
        return [reference] + [max(s, reference) for s in range(t - self.size, t)]

    def evict(self, stored: Sequence[int], t: int) -> list[int]:
        oldest = t + 1 - self.size  # the next step's window starts here
        return [f for f in stored if f < oldest]
