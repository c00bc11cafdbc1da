"""The ``quality`` context policy, a training-free analogue of QDMN's quality-aware memory: recent
frames plus confident long-term ones (docs/memory.md, "`quality`")."""

from __future__ import annotations

from typing import Sequence

from torch import Tensor

from hvc.config.propagation import QualityConfig
from hvc.propagation.context import ContextPolicy


def confidence(soft: Tensor) -> float:
    """Mean top-1 probability of ``soft`` [K, hw] over the positions whose argmax is an object
    (not channel 0); 0.0 where no position is."""
    top, label = soft.max(dim=0)
    inside = label != 0
    return float(top[inside].mean()) if bool(inside.any()) else 0.0


class QualityFrames(ContextPolicy):
    """Reference + ``recent`` last frames + confident long-term frames, ``size`` frames at most."""

    def __init__(self, size: int, cfg: QualityConfig = QualityConfig()):
        self.size = size
        self.cfg = cfg
        self.reset()

    def reset(self) -> None:
        self.base = 0.0  # frame 0's score
        self.last = 0.0  # the last frame's score relative to frame 0's
        self.long_term: list[int] = []  # long-term frames, ascending
        self.scores: dict[int, float] = {}  # long-term frame -> its relative score
        self.last_kept = -self.cfg.gap  # the last frame that became long-term

    def state(self) -> dict:
        return {"base": self.base, "last": self.last, "long_term": list(self.long_term),
                "scores": [[f, s] for f, s in self.scores.items()], "last_kept": self.last_kept}

    def load_state(self, state: dict) -> None:
        self.base, self.last, self.last_kept = state["base"], state["last"], state["last_kept"]
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
        relative = self.last = score / self.base if self.base > 0 else 0.0
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
