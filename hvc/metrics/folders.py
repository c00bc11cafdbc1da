"""``eval_metrics.py --pred DIR --gt DIR``: one's own ``<video>/<frame>.png`` folders, no benchmark layout, scored by
the DAVIS measures frame for frame (docs/segment.md, "Scoring one's own annotations"). Ground truth in greyscale
with only 0 and 255 is one object (any non-zero prediction pixel being it); other PNGs hold ids, 255 being void."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd
from PIL import Image

from hvc.metrics.davis import MetricsError, ObjectScores, check_sequence_folders, evaluate_sequence, map_sequences
from hvc.metrics.report import csv_files, csv_text, format_tables, table_text, write_files

LABEL = "own"  # the "split" of the tables and CSV names: global_results-own.csv, ...


def is_binary(gt_dir: Path) -> bool:
    """Whether a video's ground truth is 0/255 single-object masks: its first PNG is greyscale with only 0 and 255."""
    first = min(gt_dir.glob("*.png"))
    try:
        with Image.open(first) as im:
            return im.mode in ("L", "1") and set(np.unique(np.array(im.convert("L"))).tolist()) <= {0, 255}
    except (OSError, SyntaxError, ValueError) as exc:
        raise MetricsError(f"{first}: corrupt or unreadable PNG ({exc})") from None


def video_names(gt: Path, videos: Optional[Sequence[str]] = None) -> list[str]:
    """Every sub-folder of ``gt`` holding PNGs (name order), or ``videos``, each one of them (names are looked up,
    never used as paths)."""
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
    id order. Raises MetricsError, before any scoring for missing folders."""
    pred, gt = Path(pred), Path(gt)
    names = video_names(gt, videos)
    check_sequence_folders(gt, pred, names)
    jobs = [(gt / n, pred / n, is_binary(gt / n)) for n in names]
    per_video = map_sequences(evaluate_sequence, jobs, workers, "J&F", progress)
    objects = [obj for video in per_video for obj in video]
    if not objects:
        raise MetricsError(f"{gt}: no object to score: the first ground-truth frame of every video is empty")
    return objects


def video_table(objects: Sequence[ObjectScores]) -> pd.DataFrame:
    """One row per video: J&F, J and F averaged over its objects, and their number."""
    rows = []
    for video in dict.fromkeys(o.sequence for o in objects):
        mine = [o for o in objects if o.sequence == video]
        j, f = np.mean([o.j_stats.mean for o in mine]), np.mean([o.f_stats.mean for o in mine])
        rows.append((video, (j + f) / 2, j, f, len(mine)))
    return pd.DataFrame(rows, columns=["Video", "J&F-Mean", "J-Mean", "F-Mean", "Objects"])


def summary(objects: Sequence[ObjectScores]) -> str:
    """The DAVIS tables, then J&F, J and F per video."""
    per_video = table_text(video_table(objects))
    return "\n".join([format_tables(objects, LABEL), "", "---------- Per video ----------", per_video])


def write(objects: Sequence[ObjectScores], output: str | Path) -> list[Path]:
    """The DAVIS CSVs and ``per-video_results-own.csv``."""
    per_video = {Path(output) / f"per-video_results-{LABEL}.csv": csv_text(video_table(objects))}
    return write_files({**csv_files(objects, output, LABEL), **per_video})
