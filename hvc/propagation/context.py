"""Context policies, which frames each step reads, stores and evicts: ``recent`` and ``quality`` (docs/memory.md)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Sequence

from torch import Tensor

from hvc.config.propagation import QualityConfig


class ContextPolicy(ABC):
    """Decides the context of every step and the lifetime of stored frames."""

    def reset(self) -> None:
        """Forget the current video; :meth:`state` (JSON-able) and :meth:`load_state` resume it later."""

    def state(self) -> dict:
        return {}

    def load_state(self, state: dict) -> None:
        pass

    @abstractmethod
    def context(self, reference: int, t: int) -> list[int]:
        """Frames read to predict frame t for the objects that started at frame ``reference``: entry 0 is
        ``reference`` (every key a candidate), the others radius-limited, any stored frames (docs/memory.md)."""

    def store(self, t: int, soft: Tensor) -> bool:
        """Whether to keep frame t (frame 0: given), judged by its soft mask [K, hw]; references are kept anyway."""
        return True

    @abstractmethod
    def evict(self, stored: Sequence[int], t: int) -> list[int]:
        """The frames of ``stored`` that no step after frame t reads (reference frames are never dropped)."""


class RecentFrames(ContextPolicy):
    """The paper's context ``[t0] + [max(s, t0) for s in range(t - size, t)]``, repeats kept like the official code."""

    def __init__(self, size: int):
        self.size = size  # >= 1, checked by PropagationConfig.validate

    def context(self, reference: int, t: int) -> list[int]:
        return [reference] + [max(s, reference) for s in range(t - self.size, t)]

    def evict(self, stored: Sequence[int], t: int) -> list[int]:
        return [f for f in stored if f < t + 1 - self.size]  # the next step's window starts at t + 1 - size


def confidence(soft: Tensor) -> float:
    """Mean top-1 probability of ``soft`` [K, hw] where the argmax is an object (not channel 0); else 0.0."""
    top, label = soft.max(dim=0)
    inside = label != 0
    return float(top[inside].mean()) if bool(inside.any()) else 0.0


class QualityFrames(ContextPolicy):
    """Reference + ``recent`` last frames + confident long-term frames, ``size`` frames at most."""

    def __init__(self, size: int, cfg: QualityConfig = QualityConfig()):
        self.size, self.cfg = size, cfg
        self.reset()

    def reset(self) -> None:
        self.base = 0.0  # frame 0's score
        self.long_term: list[int] = []  # long-term frames, ascending
        self.scores: dict[int, float] = {}  # long-term frame -> its relative score
        self.last_kept = -self.cfg.gap  # the last frame that became long-term

    def state(self) -> dict:
        return {"base": self.base, "long_term": list(self.long_term),
                "scores": [[f, s] for f, s in self.scores.items()], "last_kept": self.last_kept}

    def load_state(self, state: dict) -> None:
        self.base, self.last_kept = state["base"], state["last_kept"]
        self.long_term = list(state["long_term"])
        self.scores = {int(f): s for f, s in state["scores"]}

    def context(self, reference: int, t: int) -> list[int]:
        window = [s for s in range(t - self.cfg.recent, t) if s > reference]
        older = [f for f in self.long_term if reference < f < t - self.cfg.recent]
        # places no frame fills yet repeat the reference, as the paper's window does early in a video
        return [reference] * (1 + self.size - len(older) - len(window)) + older + window

    def store(self, t: int, soft: Tensor) -> bool:
        score = confidence(soft)
        if t == 0:
            self.base = score
        relative = score / self.base if self.base > 0 else 0.0
        if t > 0 and relative >= self.cfg.threshold and t - self.last_kept >= self.cfg.gap:
            self.long_term.append(t)
            self.scores[t] = relative
            if len(self.long_term) > self.size - self.cfg.recent:
                leaving = self._leaving()
                self.long_term.remove(leaving)
                del self.scores[leaving]
            if t in self.long_term:
                self.last_kept = t
        return self.cfg.recent > 0 or t in self.long_term

    def _leaving(self) -> int:
        """The long-term frame to drop (the list is one over capacity, ascending)."""
        frames = self.long_term
        if self.cfg.evict == "oldest":
            return frames[0]
        if self.cfg.evict == "worst":  # lowest score, the older of equals
            return min(frames, key=lambda f: (self.scores[f], f))
        # rank: 0 = best quality / newest; the worst sum leaves, the older of equals
        by_quality = sorted(frames, key=lambda f: (-self.scores[f], -f))
        rank = {f: by_quality.index(f) + (len(frames) - 1 - i) for i, f in enumerate(frames)}
        return max(frames, key=lambda f: (rank[f], -f))

    def evict(self, stored: Sequence[int], t: int) -> list[int]:
        needed = set(self.long_term) | set(range(t + 1 - self.cfg.recent, t + 1))
        return [f for f in stored if f not in needed]
