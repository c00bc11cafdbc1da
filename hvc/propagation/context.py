"""Context policies: which stored frames each step reads, which frames are stored, which evicted.

The propagator asks its policy three things, frame after frame (docs/propagation.md):

* ``context(reference, t)``: the frames read to predict frame t for the objects that started
  at frame ``reference``. Entry 0 must be ``reference`` (the long-term entry: every key is a
  candidate); the other entries are radius-limited, may repeat (a frame listed m times offers
  its keys m times) and may be any stored frames, in any order.
* ``store(t, soft)``: after frame t is predicted, whether to keep it for later steps. ``soft``
  is its soft mask [K, hw] (frame 0: the given labels), so a policy can judge its quality.
  Reference frames are kept whatever the answer.
* ``evict(stored, t)``: after frame t, the stored frames no later step will read (reference
  frames are never dropped).

A policy that stores selectively (e.g. by the confidence of a frame's prediction, with a cap
on stored frames) subclasses :class:`ContextPolicy`; the kernels accept any context.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Sequence

from torch import Tensor


class ContextPolicy(ABC):
    """Decides the context of every step and the lifetime of stored frames (see module doc)."""

    def reset(self) -> None:
        """Forget the current video (policies with state override this)."""

    def state(self) -> dict:
        """What the policy remembers of the current video, JSON-able (to resume it later)."""
        return {}

    def load_state(self, state: dict) -> None:
        """Continue a video from :meth:`state`'s result."""

    @abstractmethod
    def context(self, reference: int, t: int) -> list[int]:
        """Frames read for frame t by reference ``reference``'s objects; entry 0 is ``reference``."""

    def store(self, t: int, soft: Tensor) -> bool:
        """Whether frame t, whose soft mask is ``soft`` [K, hw], is kept for later steps."""
        return True

    @abstractmethod
    def evict(self, stored: Sequence[int], t: int) -> list[int]:
        """The frames of ``stored`` that no step after frame t reads."""


class RecentFrames(ContextPolicy):
    """The paper's context: the reference frame, then the ``size`` frames before t, frames
    before the reference replaced by it (duplicates kept, as the official code does):
    ``[t0] + [max(s, t0) for s in range(t - size, t)]``."""

    def __init__(self, size: int):
        if size < 1:
            raise ValueError(f"context size must be >= 1, got {size}")
        self.size = size

    def context(self, reference: int, t: int) -> list[int]:
        return [reference] + [max(s, reference) for s in range(t - self.size, t)]

    def evict(self, stored: Sequence[int], t: int) -> list[int]:
        oldest = t + 1 - self.size  # the next step's window starts here
        return [f for f in stored if f < oldest]
