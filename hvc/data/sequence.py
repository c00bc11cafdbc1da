"""What a benchmark's reader returns: one :class:`VideoSequence` per video, or a :class:`DatasetError`.

Torch-free, so the readers of JHMDB, VIP and VOST, and the scorers that use them
(hvc.metrics), import no torch; :mod:`hvc.data.vos` turns a sequence into tensors.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from hvc.errors import InputError

# How an annotation PNG stores ids: "binary" (DAVIS 2016, 0/255) or "palette" (palette indices).
MaskFormat = Literal["binary", "palette"]


class DatasetError(InputError, ValueError):
    """A dataset folder, file list or annotation is missing or malformed."""


@dataclass(frozen=True)
class VideoSequence:
    """One video: ``frames[0]`` is annotated; ids first seen in ``annotations[t]`` start at t."""

    name: str
    frames: tuple[Path, ...]         # in temporal order
    annotations: dict[int, Path]     # frame index -> label-map file
    outputs: tuple[int, ...]         # frame indices whose prediction is written
    mask_format: MaskFormat

    def frame_name(self, t: int) -> str:
        return self.frames[t].stem
