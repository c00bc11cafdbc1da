"""Schema of label propagation: its settings, their defaults and the one check of their values.

:meth:`PropagationConfig.validate` is the only place that says which values can run; ``test.py``, ``hvc.segment``
and :class:`~hvc.propagation.LabelPropagator` call it (docs/design.md, "Adding a propagation setting")."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal, Optional

from hvc.config import checks
from hvc.config.core import ConfigError, check_fields

# Largest num_classes: label maps are written as uint8 PNGs.
MAX_CLASSES = 256


@dataclass
class QualityConfig:
    """Settings of the ``quality`` context policy (their rules: docs/memory.md)."""

    recent: int = 3  # The most recent frames, always read (the short-term part of the context).
    threshold: float = 0.8  # Confidence, relative to frame 0's, that makes a frame a long-term context frame.
    gap: int = 5  # At least this many frames between two long-term frames (QDMN writes every 5th at most).
    # Which long-term frame leaves when they exceed context - recent: "rank", "oldest" or "worst" (docs/memory.md).
    evict: Literal["rank", "oldest", "worst"] = "rank"


@dataclass
class PropagationConfig:
    # Paper values: docs/propagation.md. Short-term context keys count only within this grid distance (feature cells,
    # strictly below) of the query; the long-term reference frame has no limit.
    radius: float = 12.0
    temperature: float = 0.1  # Softmax temperature applied to the selected neighbours' cosine affinities.
    topk: int = 15  # Neighbours per query position, chosen jointly over all context entries.
    # Previous frames in the short-term context (duplicates kept early on); under memory=quality the most context
    # frames read besides the reference.
    context: int = 50
    num_classes: int = 20  # Mask channels: object ids 0..num_classes-1, 0 = background (the official code uses 20).
    # "local": windowed kernel, memory linear in positions; "dense": the official full-affinity form (slow, to check).
    impl: Literal["local", "dense"] = "local"
    # Arithmetic of the local kernel's candidate search: "fp32" exact (the golden tests run it), "bf16" an opt-in
    # approximation whose labels can differ (docs/local_kernel.md, "bf16 mode"; docs/speed.md).
    precision: Literal["fp32", "bf16"] = "fp32"
    # Channels the local kernel's candidate search scores: None all; d an opt-in approximation on the first frame's
    # d leading principal axes (docs/local_kernel.md, "Reduced search").
    search_dims: Optional[int] = None
    # Candidates an approximate search keeps per query, ceil(candidates * topk), rescored exactly in float32 for the
    # best topk (docs/local_kernel.md, "Candidates").
    candidates: float = 2.0
    # Which frames form the context (docs/memory.md): "recent" (the paper's: the last ``context`` frames) or
    # "quality" (a few recent frames plus confident earlier ones, at most ``context``).
    memory: Literal["recent", "quality"] = "recent"
    quality: QualityConfig = field(default_factory=QualityConfig)

    def validate(self, key: Callable[[str], str] = lambda name: f"prop.{name}") -> "PropagationConfig":
        """Raise :class:`ConfigError` naming the key if these settings cannot run; ``key(field)``
        is the name the error shows for a field (``prop.candidates``; ``hvc.segment``: its flags)."""
        check_fields(self, key)  # types and choices, for configs built in code
        checks.positive(key("radius"), self.radius)
        checks.positive(key("temperature"), self.temperature)
        checks.minima(self, {"topk": 1, "context": 1, "num_classes": 1, "candidates": 1, "quality.recent": 0,
                             "quality.gap": 1, "quality.threshold": 0.0}, key)
        checks.at_least(key("search_dims"), self.search_dims, 1, allow_none=True)
        if self.num_classes > MAX_CLASSES:
            raise ConfigError(f"{key('num_classes')}: must be <= {MAX_CLASSES} (uint8 PNGs), got {self.num_classes}")
        if self.impl != "local" and self.precision != "fp32":
            raise ConfigError(f"{key('precision')}: {self.precision} is a mode of the local kernel, "
                              f"not {key('impl')}={self.impl}")
        if self.impl != "local" and self.search_dims is not None:
            raise ConfigError(f"{key('search_dims')}: the reduced search is a mode of the local kernel, "
                              f"not {key('impl')}={self.impl}")
        if self.memory == "quality" and self.quality.recent > self.context:
            raise ConfigError(f"{key('quality.recent')}: must be <= {key('context')} ({self.context}) "
                              f"under memory=quality, got {self.quality.recent}")
        return self
