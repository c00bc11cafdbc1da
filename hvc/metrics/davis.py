"""DAVIS semi-supervised evaluation: per-object, per-frame J and F for a results folder, by the
protocol of the official ``davis2017-evaluation`` (docs/metrics.md, "Which frames and objects")."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np

from hvc.data import sequence
from hvc.metrics.masks import MetricsError, read_label_png
from hvc.metrics.measures import jf_scores
from hvc.metrics.parallel import map_sequences
from hvc.metrics.statistics import Statistics, db_statistics

YEARS = (2016, 2017)


@dataclass(frozen=True)
class ObjectJ:
    """Per-frame J of one object of one sequence (VOST scores only J)."""

    sequence: str
    object_id: int  # 1..N
    frames: tuple[str, ...]  # evaluated frame names (file stems), [T]
    J: np.ndarray  # [T] float64

    @property
    def name(self) -> str:
        """Row name of the official per-sequence table: ``<sequence>_<id>``."""
        return f"{self.sequence}_{self.object_id}"

    @property
    def j_stats(self) -> Statistics:
        return db_statistics(self.J)


@dataclass(frozen=True)
class ObjectScores(ObjectJ):
    """Per-frame J and F of one object of one sequence."""

    F: np.ndarray  # [T] float64

    @property
    def f_stats(self) -> Statistics:
        return db_statistics(self.F)

    @property
    def stats(self) -> dict[str, Statistics]:
        """The measures of the official tables, in their order."""
        return {"J": self.j_stats, "F": self.f_stats}


def read_sequence_list(davis_root: Path, year: int, split: str) -> list[str]:
    """Sequence names listed in ``ImageSets/<year>/<split>.txt``, in file order."""
    return sequence.read_sequence_list(davis_root, year, split, MetricsError, "is --davis-root a DAVIS root?")


def count_objects(gt_dir: Path, frames: Sequence[str], binary: bool) -> int:
    """The number of objects of a sequence of annotated ``frames``: the largest id of the first."""
    if len(frames) < 3:
        raise MetricsError(f"sequence {gt_dir.name!r}: {len(frames)} annotated frame(s) in {gt_dir}; "
                           "the semi-supervised protocol needs at least 3 (first and last are not scored)")
    return int(sequence.object_ids(read_label_png(gt_dir / f"{frames[0]}.png"), binary).max())


def read_frame(gt_dir: Path, pred_dir: Path, frame: str, binary: bool) -> tuple[np.ndarray, np.ndarray, Path]:
    """(ground-truth ids, prediction pixel values, prediction path) of one frame, [H, W] uint8 each."""
    gt = sequence.object_ids(read_label_png(gt_dir / f"{frame}.png"), binary)
    pred_path = pred_dir / f"{frame}.png"
    if not pred_path.is_file():
        raise MetricsError(f"sequence {gt_dir.name!r}: missing prediction for frame {frame} ({pred_path})")
    pred = read_label_png(pred_path)
    if pred.shape != gt.shape:
        raise MetricsError(f"sequence {gt_dir.name!r}, frame {frame}: prediction {pred_path} is "
                           f"{pred.shape[1]}x{pred.shape[0]} but the ground truth is {gt.shape[1]}x{gt.shape[0]} "
                           "(width x height)")
    return gt, pred, pred_path


def evaluate_sequence(gt_dir: Path, pred_dir: Path, binary: bool) -> list[ObjectScores]:
    """J and F of every object of one sequence: ``gt_dir`` (named after the sequence) holds
    ``<frame>.png`` ground truth, ``pred_dir`` the predictions of the same names."""
    frames = sorted(p.stem for p in gt_dir.glob("*.png"))
    num_objects = count_objects(gt_dir, frames, binary)
    evaluated = tuple(frames[1:-1])
    j = np.zeros((num_objects, len(evaluated)))
    f = np.zeros((num_objects, len(evaluated)))
    for t, frame in enumerate(evaluated):
        gt, raw, pred_path = read_frame(gt_dir, pred_dir, frame, binary)
        pred = (raw != 0).view(np.uint8) if binary else raw  # DAVIS 2016: any non-zero value is object 1
        top = int(pred.max())
        if top > num_objects:
            raise MetricsError(f"sequence {gt_dir.name!r}, frame {frame}: prediction {pred_path} holds object id "
                               f"{top} but the sequence has {num_objects} object(s)")
        for k in range(num_objects):
            j[k, t], f[k, t] = jf_scores(gt == k + 1, pred == k + 1)
    return [ObjectScores(gt_dir.name, k + 1, evaluated, j[k], f[k]) for k in range(num_objects)]


def check_sequence_folders(annotations: Path, results: Path, names: Sequence[str]) -> None:
    """Fail before any work on a missing folder, an empty or repeated sequence list. annotations: the
    folder holding ``<sequence>/`` ground truth; results: ``<sequence>/`` predictions."""
    if not names:
        raise MetricsError("no sequences to evaluate: the sequence list is empty")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise MetricsError(f"sequences listed more than once: {repeated}")
    if not results.is_dir():
        raise MetricsError(f"{results}: results folder not found")
    for name in names:
        if not (annotations / name).is_dir():
            raise MetricsError(f"sequence {name!r}: no ground truth at {annotations / name}")
        if not (results / name).is_dir():
            raise MetricsError(f"sequence {name!r}: no results folder {results / name}")


def evaluate(davis_root: str | Path, results: str | Path, year: int, split: str = "val",
             sequences: Optional[Iterable[str]] = None, workers: int = 1, progress: bool = True) -> list[ObjectScores]:
    """Score a folder of ``<seq>/<frame>.png`` predictions against DAVIS ``year``/``split``. sequences: names to
    evaluate instead of ``ImageSets/<year>/<split>.txt`` (kept in the given order). workers: processes evaluating
    sequences in parallel (1 = in-process). Returns one ObjectScores per object, in sequence then id order (the
    official tables'). Raises MetricsError."""
    if year not in YEARS:
        raise MetricsError(f"year must be one of {YEARS}, got {year!r}")
    davis_root, results = Path(davis_root), Path(results)
    names = list(sequences) if sequences is not None else read_sequence_list(davis_root, year, split)
    annotations = davis_root / sequence.DAVIS_ANNOTATIONS
    check_sequence_folders(annotations, results, names)
    jobs = [(annotations / n, results / n, year == 2016) for n in names]
    per_sequence = map_sequences(evaluate_sequence, jobs, workers, f"J&F DAVIS {year} {split}", progress)
    objects = [obj for seq in per_sequence for obj in seq]
    if not objects:
        raise MetricsError(f"no object to score: the first ground-truth frame of every sequence in {names} is empty")
    return objects
