"""What a benchmark's reader returns: one :class:`VideoSequence` per video, or a :class:`DatasetError`.
Torch-free, for the readers and the scorers (hvc.metrics); :mod:`hvc.data.vos` makes tensors."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional, Sequence

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


def check_no_gaps(frames: Sequence[Path], name: str, last: Optional[int] = None) -> None:
    """Refuse numbered frames ``0..last`` (default all) that are not a constant step apart
    (``00000, 00001, ...`` or ``00000, 00005, ...``): propagating across a hole would treat distant
    frames as neighbours and leave out predictions. Names not all numbers are not checked."""
    stems = [p.stem for p in frames[: None if last is None else last + 1]]
    if len(stems) < 3 or not all(s.isdigit() for s in stems):
        return
    numbers = [int(s) for s in stems]
    steps = [b - a for a, b in zip(numbers, numbers[1:])]
    step = min(steps)
    for i, d in enumerate(steps):
        if d != step:
            raise DatasetError(f"{frames[0].parent}: frames missing in sequence {name}: {stems[i]} is followed by "
                               f"{stems[i + 1]}, the other frames are {step} apart; restore the missing frames")
