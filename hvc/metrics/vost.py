"""VOST evaluation (J-Mean and J_last), as the benchmark's ``evaluation/evaluation_method.py``: DAVIS's
on the annotated frames, J only, ids above the object count truncated (docs/tasks.md, "VOST")."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np

from hvc.metrics.davis import MetricsError, ObjectJ, check_sequence_folders, count_objects, map_sequences, read_frame
from hvc.metrics.measures import Statistics, db_statistics, jaccard
from hvc.names import read_name_list

LAST_FRACTION = 0.75  # J_last: the frames from floor(0.75 n) on


class TruncatedIdsWarning(UserWarning):
    """A prediction held object ids above the sequence's object count; they were ignored."""


@dataclass(frozen=True)
class VOSTObject(ObjectJ):
    """Per-frame J of one object over the evaluated (annotated, not first or last) frames."""

    @property
    def last_start(self) -> int:
        """First index of the last quarter: floor(0.75 T)."""
        return int(len(self.J) * LAST_FRACTION)

    @property
    def j_last_stats(self) -> Statistics:
        return db_statistics(self.J[self.last_start:])

    @property
    def stats(self) -> dict[str, Statistics]:
        """The measures of the official tables, in their order."""
        return {"J": self.j_stats, "J_last": self.j_last_stats}


def evaluate_sequence(gt_dir: Path, pred_dir: Path) -> tuple[list[VOSTObject], Optional[str]]:
    """J of every object of one sequence on its annotated frames (folder names = sequence name), and why ids were
    truncated (None if they were not): a worker's warning would not reach the caller."""
    # Sorted by file name, as the official glob + sort.
    frames = [p.name[: -len(".png")] for p in sorted(gt_dir.glob("*.png"), key=lambda p: p.name)]
    num_objects = count_objects(gt_dir, frames, binary=False)
    evaluated = tuple(frames[1:-1])
    j = np.zeros((num_objects, len(evaluated)))
    above: dict[str, int] = {}  # frame -> its largest id, where above num_objects
    for t, frame in enumerate(evaluated):
        gt, pred, _ = read_frame(gt_dir, pred_dir, frame, binary=False)
        top = int(pred.max())
        if top > num_objects:
            above[frame] = top
        for k in range(num_objects):  # ids above num_objects are never compared: truncated
            j[k, t] = jaccard(gt == k + 1, pred == k + 1)
    truncated = None
    if above:
        truncated = (f"sequence {gt_dir.name!r}: predictions hold ids up to {max(above.values())} for {num_objects} "
                     f"object(s) (frames {', '.join(above)}); the extra ids are ignored, as VOST does")
    return [VOSTObject(gt_dir.name, k + 1, evaluated, j[k]) for k in range(num_objects)], truncated


def evaluate(root: str | Path, results: str | Path, split: str = "val", sequences: Optional[Iterable[str]] = None,
             workers: int = 1, progress: bool = True) -> list[VOSTObject]:
    """Score ``<results>/<seq>/<frame>.png`` against a VOST root (``Annotations/<seq>/``, ``ImageSets/<split>.txt``):
    one VOSTObject per object in list then id order. Truncated ids: TruncatedIdsWarning; bad input: MetricsError."""
    root, results, listing = Path(root), Path(results), Path(root) / "ImageSets" / f"{split}.txt"
    if sequences is None and not listing.is_file():
        raise MetricsError(f"sequence list {listing} not found (is {root} a VOST root?)")
    names = list(sequences) if sequences is not None else read_name_list(listing, MetricsError)  # plain names
    check_sequence_folders(root / "Annotations", results, names)
    jobs = [(root / "Annotations" / n, results / n) for n in names]
    per_sequence = map_sequences(evaluate_sequence, jobs, workers, f"J VOST {split}", progress)
    for _, truncated in per_sequence:
        if truncated:
            warnings.warn(truncated, TruncatedIdsWarning, stacklevel=2)
    objects = [obj for sequence_objects, _ in per_sequence for obj in sequence_objects]
    if not objects:
        raise MetricsError(f"no object to score: the first annotation of every sequence in {names} is empty")
    return objects


def raw_results(objects: Sequence[VOSTObject]) -> dict:
    """The official ``metrics_res`` (M, R, D lists, per-object means of J and J_last) and each object's J per frame."""
    out: dict = {}
    for key in ("J", "J_last"):
        stats = [o.stats[key] for o in objects]
        out[key] = {"M": [s.mean for s in stats], "R": [s.recall for s in stats], "D": [s.decay for s in stats],
                    "M_per_object": {o.name: s.mean for o, s in zip(objects, stats)}}
    out["per_frame"] = {o.name: {"frames": list(o.frames), "J": o.J.tolist(), "last_start": o.last_start}
                        for o in objects}
    return out

