"""What each evaluation prints and writes next to its results: the official tables, their CSV files,
the JSON and figure of each benchmark. Every writer builds all of its files in memory first, so that
bad input or a failing figure leaves no partial output behind."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence, Union

import numpy as np
import pandas as pd

from hvc.data.jhmdb import JOINT_NAMES
from hvc.fileio import atomic_write_bytes
from hvc.metrics import figures
from hvc.metrics.davis import ObjectScores
from hvc.metrics.pck import PCKResult
from hvc.metrics.statistics import Statistics
from hvc.metrics.vip import CLASS_NAMES, VIPScores
from hvc.metrics.vost import VOSTObject, raw_results

FLOAT_FORMAT = "%.3f"  # the official CSV precision (printf rounding of the float64 value)
PCK_NAME = "pck_results"
VIP_NAME = "vip_results"
Objects = Union[Sequence[ObjectScores], Sequence[VOSTObject]]  # the rows of the DAVIS and VOST tables


def global_table(objects: Objects) -> pd.DataFrame:
    """One row: every statistic of every measure (J and F, or VOST's J and J_last) averaged over objects (not
    sequences), np.mean over Python lists in table order as officially: the printed 3rd decimal depends on
    the summation order at exact halves. DAVIS's row starts with J&F-Mean, the mean of J-Mean and F-Mean."""
    stats = [o.stats for o in objects]
    measures = list(stats[0])
    row = [np.mean([getattr(s[m], field) for s in stats]) for m in measures for field in Statistics._fields]
    columns = [f"{m}-{field.capitalize()}" for m in measures for field in Statistics._fields]
    if measures == ["J", "F"]:
        row, columns = [(row[0] + row[3]) / 2.0, *row], ["J&F-Mean", *columns]
    return pd.DataFrame([row], columns=columns)


def sequence_table(objects: Objects) -> pd.DataFrame:
    """One row per object, ``<sequence>_<id>``, with the mean of each measure (J-Mean, F-Mean or J_last-Mean)."""
    columns = ["Sequence", *(f"{m}-Mean" for m in objects[0].stats)]
    return pd.DataFrame([(o.name, *(s.mean for s in o.stats.values())) for o in objects], columns=columns)


def csv_text(table: pd.DataFrame) -> str:
    """A table as the official evaluations write it: no index, 3 decimals."""
    return table.to_csv(index=False, float_format=FLOAT_FORMAT)


def table_text(table: pd.DataFrame) -> str:
    """A table as printed at the end of an evaluation (3 decimals)."""
    return table.to_string(index=False, float_format=lambda v: FLOAT_FORMAT % v)


def csv_files(objects: Objects, output: str | Path, split: str) -> dict[Path, str]:
    """The official files, ``global_results-<split>.csv`` and ``per-sequence_results-<split>.csv``: their texts."""
    return {Path(output) / f"global_results-{split}.csv": csv_text(global_table(objects)),
            Path(output) / f"per-sequence_results-{split}.csv": csv_text(sequence_table(objects))}


def write_files(files: dict[Path, str | bytes]) -> list[Path]:
    """Write each of ``files`` (path -> text or bytes) atomically, in order; returns the paths."""
    for path, content in files.items():
        atomic_write_bytes(path, content.encode("utf-8") if isinstance(content, str) else content)
    return list(files)


def write_csvs(objects: Objects, output: str | Path, split: str) -> tuple[Path, Path]:
    """Write both tables as the official evaluation does; each file appears atomically."""
    global_path, sequence_path = write_files(csv_files(objects, output, split))
    return global_path, sequence_path


def format_tables(objects: Objects, split: str) -> str:
    """The global and per-sequence tables under the official headings, as printed at the end of an evaluation."""
    return "\n".join([f"--------------------------- Global results for {split} ---------------------------",
                      table_text(global_table(objects)), "",
                      f"---------- Per sequence results for {split} ----------", table_text(sequence_table(objects))])


def write_davis(objects: Sequence[ObjectScores], output: str | Path, split: str) -> list[Path]:
    """The official CSVs and ``per-sequence_results-<split>.png`` (J&F bars per object)."""
    figure = figures.davis_sequences(objects, f"DAVIS {split}: J&F per object")
    png = Path(output) / f"per-sequence_results-{split}.png"
    return write_files({**csv_files(objects, output, split), png: figure})


def write_vost(objects: Sequence[VOSTObject], output: str | Path, split: str) -> list[Path]:
    """The official CSVs, ``raw-<split>.json`` (statistics at full precision and per-frame J)
    and ``per-frame_J-<split>.png`` (J against relative frame position)."""
    figure = figures.vost_j_by_position(objects, f"VOST {split}: J along the sequences")
    return write_files({**csv_files(objects, output, split),
                        Path(output) / f"raw-{split}.json": json.dumps(raw_results(objects), indent=1) + "\n",
                        Path(output) / f"per-frame_J-{split}.png": figure})


def write_jhmdb(result: PCKResult, output: str | Path, n_videos: int) -> list[Path]:
    """``pck_results.csv`` (a row per threshold: its PCK (%) per joint, then their mean) and ``pck_results.png``
    (PCK curves)."""
    output = Path(output)
    figure = figures.pck_curves(result, JOINT_NAMES, f"JHMDB: PCK per joint ({n_videos} video(s))")
    table = pd.DataFrame(result.table(), columns=[*JOINT_NAMES, "Mean"])
    table.insert(0, "Threshold", result.thresholds)
    return write_files({output / f"{PCK_NAME}.csv": csv_text(table), output / f"{PCK_NAME}.png": figure})


def jhmdb_summary(result: PCKResult, n_videos: int) -> str:
    head = "  ".join(f"PCK@{t:g}" for t in result.thresholds)
    values = "  ".join(f"{v:>{len(f'PCK@{t:g}')}.1f}" for t, v in zip(result.thresholds, result.mean))
    lines = [f"--------------- JHMDB PCK (%), mean over joints, {n_videos} video(s) ---------------", head, values]
    never = [JOINT_NAMES[j] for j in np.flatnonzero(result.counts == 0)]
    if never:
        lines.append(f"note: never scored (no visible prediction after frame 0): {', '.join(never)}; "
                     "the mean is over the other joints")
    return "\n".join(lines)


def _json_number(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def vip_json(result: VIPScores) -> dict:
    """Field names of videowalk's printout (``mean_iu``); NaN (undefined) -> null."""
    return {"n_classes": len(CLASS_NAMES), "classes": list(CLASS_NAMES), "frames": result.frames,
            "confusion_matrix_gt_rows_pred_cols": result.confusion.astype(np.int64).tolist(),
            "overall_accuracy": _json_number(result.overall_accuracy),
            "mean_accuracy": _json_number(result.mean_accuracy), "mean_iu": _json_number(result.mean_iou),
            "fwavacc": _json_number(result.fwavacc),
            "per_class_accuracy": [_json_number(v) for v in result.class_accuracy],
            "per_class_iu": [_json_number(v) for v in result.class_iou]}


def write_vip(result: VIPScores, output: str | Path) -> list[Path]:
    """``vip_results.json`` (confusion matrix and every score) and ``vip_results.png`` (IoU per class)."""
    output = Path(output)
    figure = figures.vip_class_iou(result, f"VIP: IoU per class ({result.frames} frames)")
    text = json.dumps(vip_json(result), indent=1) + "\n"
    return write_files({output / f"{VIP_NAME}.json": text, output / f"{VIP_NAME}.png": figure})


def vip_summary(result: VIPScores) -> str:
    per_class = pd.DataFrame({"class": CLASS_NAMES, "accuracy": result.class_accuracy, "IoU": result.class_iou})
    scalars = pd.DataFrame([[result.mean_iou, result.overall_accuracy, result.mean_accuracy, result.fwavacc]],
                           columns=["mIoU", "pixel acc.", "mean acc.", "fwavacc"])
    return "\n".join([f"--------------- VIP, {result.frames} frame(s) ---------------", table_text(scalars), "",
                      table_text(per_class).replace(" NaN", " n/a")])
