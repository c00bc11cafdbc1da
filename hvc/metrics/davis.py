"""J and F per object and frame of a results folder by the official ``davis2017-evaluation`` protocol (docs/metrics.md)
or of one's own folders (docs/segment.md); the error of every scorer, its label PNG reader and its sequence pool."""

from __future__ import annotations

import concurrent.futures as cf
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence, TypeVar

import numpy as np
from PIL import Image
from tqdm import tqdm

from hvc.data import sequence
from hvc.errors import InputError
from hvc.metrics.measures import Statistics, db_statistics, jf_scores

YEARS = (2016, 2017)
T = TypeVar("T")


class MetricsError(InputError, ValueError):
    """Bad evaluation input; the message names the sequence, frame or file at fault."""


def read_label_png(path: Path) -> np.ndarray:
    """[H, W] uint8 pixel values (palette indices, not colours); MetricsError naming ``path`` on a bad file."""
    return sequence.read_label_png(path, MetricsError)


def map_sequences(fn: Callable[..., T], jobs: Sequence[tuple], workers: int, desc: str, progress: bool) -> list[T]:
    """``[fn(*job) for job in jobs]``, in ``workers`` processes when above 1, in the order of ``jobs``.
    The first error a worker raises is re-raised here, message intact, and the remaining jobs cancelled."""
    with tqdm(total=len(jobs), desc=desc, unit="seq", disable=not progress) as bar:  # closed before an error prints
        if workers <= 1 or len(jobs) <= 1:
            results = []
            for job in jobs:
                results.append(fn(*job))
                bar.update()
            return results
        pool = cf.ProcessPoolExecutor(max_workers=min(workers, len(jobs)))
        try:
            futures = [pool.submit(fn, *job) for job in jobs]
            for done in cf.as_completed(futures):
                done.result()  # re-raises a worker's error here
                bar.update()
            return [fut.result() for fut in futures]
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


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
        raise MetricsError(f"sequence {gt_dir.name!r}, frame {frame}: prediction {pred_path} is {pred.shape[1]}x"
                           f"{pred.shape[0]} but the ground truth is {gt.shape[1]}x{gt.shape[0]} (width x height)")
    return gt, pred, pred_path


def evaluate_sequence(gt_dir: Path, pred_dir: Path, binary: bool) -> list[ObjectScores]:
    """J and F of every object of one sequence: ``gt_dir`` (named after it) holds ``<frame>.png`` ground truth,
    ``pred_dir`` the predictions of the same names."""
    frames = sorted(p.stem for p in gt_dir.glob("*.png"))
    num_objects = count_objects(gt_dir, frames, binary)
    evaluated = tuple(frames[1:-1])
    j, f = np.zeros((2, num_objects, len(evaluated)))
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
    """Fail before any work on an empty or repeated list or a ``<name>/`` missing in ``annotations`` or ``results``."""
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
    """One ObjectScores per object of ``<results>/<seq>/<frame>.png`` against DAVIS ``year``/``split``, in sequence
    then id order; sequences: names instead of ``ImageSets/<year>/<split>.txt``; workers: processes (1 = in-process)."""
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


def is_binary(gt_dir: Path) -> bool:
    """Whether a video's ground truth is 0/255 single-object masks: its first PNG is greyscale with only 0 and 255."""
    first = min(gt_dir.glob("*.png"))
    try:
        with Image.open(first) as im:
            return im.mode in ("L", "1") and set(np.unique(np.array(im.convert("L"))).tolist()) <= {0, 255}
    except (OSError, SyntaxError, ValueError) as exc:
        raise MetricsError(f"{first}: corrupt or unreadable PNG ({exc})") from None


def video_names(gt: Path, videos: Optional[Sequence[str]] = None) -> list[str]:
    """The sub-folders of ``gt`` holding PNGs (name order), or ``videos``, each one of them (looked up, not paths)."""
    if not gt.is_dir():
        raise MetricsError(f"{gt}: ground-truth folder not found")
    found = sorted(p.name for p in gt.iterdir() if p.is_dir() and any(p.glob("*.png")))
    if not videos:
        if not found:
            raise MetricsError(f"{gt}: no <video>/<frame>.png ground truth in it")
        return found
    unknown = [v for v in videos if v not in found]
    if unknown:
        raise MetricsError(f"{gt}: no ground-truth video {unknown[0]!r} (it holds {len(found)}: "
                           f"{', '.join(found[:5])}{' ...' if len(found) > 5 else ''})")
    return list(videos)


def evaluate_folders(pred: str | Path, gt: str | Path, videos: Optional[Sequence[str]] = None, workers: int = 1,
                     progress: bool = True) -> list[ObjectScores]:
    """One ObjectScores per object of ``pred/<video>/<frame>.png`` against ``gt/<video>/<frame>.png``, in video then
    id order; ground truth with only 0 and 255 in greyscale is one object (is_binary). Raises MetricsError."""
    pred, gt = Path(pred), Path(gt)
    names = video_names(gt, videos)
    check_sequence_folders(gt, pred, names)
    jobs = [(gt / n, pred / n, is_binary(gt / n)) for n in names]
    per_video = map_sequences(evaluate_sequence, jobs, workers, "J&F", progress)
    objects = [obj for video in per_video for obj in video]
    if not objects:
        raise MetricsError(f"{gt}: no object to score: the first ground-truth frame of every video is empty")
    return objects
