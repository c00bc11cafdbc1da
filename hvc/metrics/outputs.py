"""What each evaluation writes next to its results, and the summary it prints. Every writer builds all of
its files in memory first, so that bad input or a failing figure leaves no partial output behind."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from hvc.metrics import figures, vost
from hvc.metrics.davis import ObjectScores
from hvc.metrics.pck import PCKResult
from hvc.metrics.report import csv_paths, csv_text, table_text, write_csvs, write_files
from hvc.metrics.vip import CLASS_NAMES, VIPScores
from hvc.data.keypoints import JOINT_NAMES


def _json_number(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


# ---- DAVIS ----------------------------------------------------------------------------------

def write_davis(objects: Sequence[ObjectScores], output: str | Path, split: str) -> list[Path]:
    """The official CSVs and ``per-sequence_results-<split>.png`` (J&F bars per object)."""
    figure = figures.davis_sequences(objects, f"DAVIS {split}: J&F per object")
    global_path, sequence_path = write_csvs(objects, output, split)
    return [global_path, sequence_path, *write_files({sequence_path.with_suffix(".png"): figure})]


# ---- JHMDB ----------------------------------------------------------------------------------

PCK_NAME = "pck_results"


def pck_table(result: PCKResult) -> pd.DataFrame:
    """One row per threshold: PCK (%) of each joint, then their mean."""
    table = pd.DataFrame(result.table(), columns=[*JOINT_NAMES, "Mean"])
    table.insert(0, "Threshold", result.thresholds)
    return table


def write_jhmdb(result: PCKResult, output: str | Path, n_videos: int) -> list[Path]:
    """``pck_results.csv`` (thresholds x joints + mean) and ``pck_results.png`` (PCK curves)."""
    output = Path(output)
    figure = figures.pck_curves(result, JOINT_NAMES, f"JHMDB: PCK per joint ({n_videos} video(s))")
    return write_files({output / f"{PCK_NAME}.csv": csv_text(pck_table(result)), output / f"{PCK_NAME}.png": figure})


def jhmdb_summary(result: PCKResult, n_videos: int) -> str:
    head = "  ".join(f"PCK@{t:g}" for t in result.thresholds)
    values = "  ".join(f"{v:>{len(f'PCK@{t:g}')}.1f}" for t, v in zip(result.thresholds, result.mean))
    lines = [f"--------------- JHMDB PCK (%), mean over joints, {n_videos} video(s) ---------------", head, values]
    never = [JOINT_NAMES[j] for j in np.flatnonzero(result.counts == 0)]
    if never:
        lines.append(f"note: never scored (no visible prediction after frame 0): {', '.join(never)}; "
                     "the mean is over the other joints")
    return "\n".join(lines)


# ---- VIP ------------------------------------------------------------------------------------

VIP_NAME = "vip_results"


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


# ---- VOST -----------------------------------------------------------------------------------

def write_vost(objects: Sequence[vost.VOSTObject], output: str | Path, split: str) -> list[Path]:
    """The official CSVs, ``raw-<split>.json`` (statistics at full precision and per-frame J)
    and ``per-frame_J-<split>.png`` (J against relative frame position)."""
    global_path, sequence_path = csv_paths(Path(output), split)
    global_csv, sequence_csv = vost.csv_texts(objects)
    figure = figures.vost_j_by_position(objects, f"VOST {split}: J along the sequences")
    return write_files({global_path: global_csv, sequence_path: sequence_csv,
                        Path(output) / f"raw-{split}.json": json.dumps(vost.raw_results(objects), indent=1) + "\n",
                        Path(output) / f"per-frame_J-{split}.png": figure})

