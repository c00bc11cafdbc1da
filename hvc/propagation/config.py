"""Settings of label propagation (the schema; YAML files in configs/ only list changes)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass
class PropagationConfig:
    # Keys of short-term context frames count only if their grid distance (feature cells) to the
    # query is strictly below this; the long-term reference frame has no limit. Paper: 12.
    radius: float = 12.0
    # Softmax temperature applied to the cosine affinities of the selected neighbours. Paper: 0.1.
    temperature: float = 0.1
    # Neighbours per query position, chosen jointly over all context entries. Paper: 15.
    topk: int = 15
    # Number of previous frames in the short-term context (duplicates kept early on). Paper: 50.
    context: int = 50
    # Mask channels: object ids 0..num_classes-1, 0 = background (the official code uses 20).
    num_classes: int = 20
    # "local": windowed kernel, memory linear in positions (default); "dense": the full-affinity
    # reference that mirrors the official code (slow, for checking).
    impl: Literal["local", "dense"] = "local"
