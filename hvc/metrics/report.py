"""What each evaluation prints and writes: the official tables and CSVs, each benchmark's JSON and figure (matplotlib
Agg). Each writer builds all its files in memory first, so bad input or a failing figure leaves no partial output."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Sequence, Union

import numpy as np
import pandas as pd

from hvc.data.jhmdb import JOINT_NAMES
from hvc.fileio import atomic_write_bytes
from hvc.metrics.davis import ObjectScores
from hvc.metrics.measures import Statistics
from hvc.metrics.pck import PCKResult
from hvc.metrics.vip import CLASS_NAMES, VIPScores
from hvc.metrics.vost import LAST_FRACTION, VOSTObject, raw_results

FLOAT_FORMAT = "%.3f"  # the official CSV precision (printf rounding of the float64 value)
PCK_NAME = "pck_results"
VIP_NAME = "vip_results"
OWN = "own"  # the "split" of the tables and CSV names of own folders (--pred --gt): global_results-own.csv, ...
Objects = Union[Sequence[ObjectScores], Sequence[VOSTObject]]  # the rows of the DAVIS and VOST tables


def global_table(objects: Objects) -> pd.DataFrame:
    """One row: each statistic of each measure (J and F, or J and J_last) averaged over objects, by np.mean over lists
    in table order as officially (the 3rd decimal depends on it at exact halves); DAVIS's starts with J&F-Mean."""
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
    return tuple(write_files(csv_files(objects, output, split)))


def format_tables(objects: Objects, split: str) -> str:
    """The global and per-sequence tables under the official headings, as printed at the end of an evaluation."""
    return "\n".join([f"--------------------------- Global results for {split} ---------------------------",
                      table_text(global_table(objects)), "",
                      f"---------- Per sequence results for {split} ----------", table_text(sequence_table(objects))])


def write_davis(objects: Sequence[ObjectScores], output: str | Path, split: str) -> list[Path]:
    """The official CSVs and ``per-sequence_results-<split>.png`` (J&F bars per object)."""
    png = davis_figure(objects, f"DAVIS {split}: J&F per object")
    return write_files({**csv_files(objects, output, split), Path(output) / f"per-sequence_results-{split}.png": png})


def write_vost(objects: Sequence[VOSTObject], output: str | Path, split: str) -> list[Path]:
    """The official CSVs, ``raw-<split>.json`` (full-precision statistics, J per frame), ``per-frame_J-<split>.png``."""
    figure = vost_figure(objects, f"VOST {split}: J along the sequences")
    return write_files({**csv_files(objects, output, split),
                        Path(output) / f"raw-{split}.json": json.dumps(raw_results(objects), indent=1) + "\n",
                        Path(output) / f"per-frame_J-{split}.png": figure})


def write_jhmdb(result: PCKResult, output: str | Path, n_videos: int) -> list[Path]:
    """``pck_results.csv`` (a row per threshold: PCK (%) per joint, then their mean) and ``pck_results.png``."""
    output = Path(output)
    figure = pck_figure(result, f"JHMDB: PCK per joint ({n_videos} video(s))")
    table = pd.DataFrame(result.table(), columns=[*JOINT_NAMES, "Mean"])
    table.insert(0, "Threshold", result.thresholds)
    return write_files({output / f"{PCK_NAME}.csv": csv_text(table), output / f"{PCK_NAME}.png": figure})


def jhmdb_summary(result: PCKResult, n_videos: int) -> str:
    head = "  ".join(f"PCK@{t:g}" for t in result.thresholds)
    values = "  ".join(f"{v:>{len(f'PCK@{t:g}')}.1f}" for t, v in zip(result.thresholds, result.mean))
    lines = [f"--------------- JHMDB PCK (%), mean over joints, {n_videos} video(s) ---------------", head, values]
    never = [JOINT_NAMES[j] for j in np.flatnonzero(result.counts == 0)]
    if never:
        lines.append(f"note: never scored (no visible prediction after frame 0), not in the mean: {', '.join(never)}")
    return "\n".join(lines)


def _or_null(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def vip_json(result: VIPScores) -> dict:
    """Field names of videowalk's printout (``mean_iu``); NaN (undefined) -> null."""
    return {"n_classes": len(CLASS_NAMES), "classes": list(CLASS_NAMES), "frames": result.frames,
            "confusion_matrix_gt_rows_pred_cols": result.confusion.astype(np.int64).tolist(),
            "overall_accuracy": _or_null(result.overall_accuracy), "mean_accuracy": _or_null(result.mean_accuracy),
            "mean_iu": _or_null(result.mean_iou), "fwavacc": _or_null(result.fwavacc),
            "per_class_accuracy": [_or_null(v) for v in result.class_accuracy],
            "per_class_iu": [_or_null(v) for v in result.class_iou]}


def write_vip(result: VIPScores, output: str | Path) -> list[Path]:
    """``vip_results.json`` (confusion matrix and every score) and ``vip_results.png`` (IoU per class)."""
    figure = vip_figure(result, f"VIP: IoU per class ({result.frames} frames)")
    return write_files({Path(output) / f"{VIP_NAME}.json": json.dumps(vip_json(result), indent=1) + "\n",
                        Path(output) / f"{VIP_NAME}.png": figure})


def vip_summary(result: VIPScores) -> str:
    per_class = pd.DataFrame({"class": CLASS_NAMES, "accuracy": result.class_accuracy, "IoU": result.class_iou})
    scalars = pd.DataFrame([[result.mean_iou, result.overall_accuracy, result.mean_accuracy, result.fwavacc]],
                           columns=["mIoU", "pixel acc.", "mean acc.", "fwavacc"])
    return "\n".join([f"--------------- VIP, {result.frames} frame(s) ---------------", table_text(scalars), "",
                      table_text(per_class).replace(" NaN", " n/a")])


def video_table(objects: Sequence[ObjectScores]) -> pd.DataFrame:
    """One row per video: J&F, J and F averaged over its objects, and their number."""
    rows = []
    for video in dict.fromkeys(o.sequence for o in objects):
        mine = [o for o in objects if o.sequence == video]
        j, f = np.mean([o.j_stats.mean for o in mine]), np.mean([o.f_stats.mean for o in mine])
        rows.append((video, (j + f) / 2, j, f, len(mine)))
    return pd.DataFrame(rows, columns=["Video", "J&F-Mean", "J-Mean", "F-Mean", "Objects"])


def own_summary(objects: Sequence[ObjectScores]) -> str:
    """The DAVIS tables, then J&F, J and F per video."""
    per_video = table_text(video_table(objects))
    return "\n".join([format_tables(objects, OWN), "", "---------- Per video ----------", per_video])


def write_own(objects: Sequence[ObjectScores], output: str | Path) -> list[Path]:
    """The DAVIS CSVs and ``per-video_results-own.csv`` (``--pred --gt``)."""
    per_video = {Path(output) / f"per-video_results-{OWN}.csv": csv_text(video_table(objects))}
    return write_files({**csv_files(objects, output, OWN), **per_video})


def _axes(width: float, height: float):
    # Figure + FigureCanvasAgg directly: no pyplot state, no GUI backend, safe in workers.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig.add_subplot()


def _png(ax, title: str, ylabel: str, ymax: float = 1.05, **legend) -> bytes:
    """The figure of ``ax`` with its title, y axis from 0 to ``ymax`` and legend, as PNG bytes."""
    ax.set(ylim=(0, ymax), ylabel=ylabel, title=title)
    ax.legend(**legend)
    buf = io.BytesIO()
    ax.figure.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def davis_figure(objects: Sequence[ObjectScores], title: str) -> bytes:
    """Per object (``<seq>_<id>``): J&F-Mean as a bar, J and F as markers; the global mean as a line."""
    names = [o.name for o in objects]
    j = np.array([o.j_stats.mean for o in objects])
    f = np.array([o.f_stats.mean for o in objects])
    ax = _axes(max(5.0, 0.45 * len(names) + 2), 4.0)
    x = np.arange(len(names))
    ax.bar(x, (j + f) / 2, color="#4c72b0", label="J&F")
    ax.plot(x, j, "o", color="#dd8452", label="J (IoU)")
    ax.plot(x, f, "s", color="#55a868", label="F (boundary)")
    overall = (np.mean(j) + np.mean(f)) / 2  # the global J&F-Mean: J and F averaged over objects
    ax.axhline(overall, color="k", lw=1, ls="--", label=f"J&F-Mean {overall:.3f}")
    ax.set_xticks(x, names, rotation=60, ha="right", fontsize=8)
    return _png(ax, title, "score", fontsize=8, loc="lower right")


def pck_figure(result: PCKResult, title: str) -> bytes:
    """PCK against the threshold: one line per joint, their mean in bold."""
    from matplotlib import colormaps
    ax = _axes(7.0, 4.5)
    for j, name in enumerate(JOINT_NAMES):
        color = colormaps["tab20"](j % 20)
        ax.plot(result.thresholds, result.per_joint[:, j], marker=".", lw=1, color=color, label=name)
    ax.plot(result.thresholds, result.mean, marker="o", lw=3, color="k", label="mean")
    ax.set(xlabel="threshold (fraction of 0.6 x the joints' box diagonal)", xticks=result.thresholds)
    return _png(ax, title, "PCK (%)", 102, fontsize=7, ncol=2, loc="lower right")


def vip_figure(result: VIPScores, title: str) -> bytes:
    """IoU per class; classes absent from ground truth and prediction are marked n/a."""
    ax = _axes(8.0, 4.0)
    x = np.arange(len(CLASS_NAMES))
    iou = np.nan_to_num(result.class_iou, nan=0.0)
    ax.bar(x, iou, color="#4c72b0")
    for i in np.flatnonzero(np.isnan(result.class_iou)):
        ax.text(i, 0.02, "n/a", ha="center", fontsize=7, rotation=90)
    ax.axhline(result.mean_iou, color="k", lw=1, ls="--", label=f"mIoU {result.mean_iou:.3f}")
    ax.set_xticks(x, CLASS_NAMES, rotation=60, ha="right", fontsize=8)
    return _png(ax, title, "IoU", fontsize=8)


def vost_figure(objects: Sequence[VOSTObject], title: str, bins: int = 10) -> bytes:
    """J against the frame's relative position (0 = first evaluated, 1 = last): a thin line per object, the mean
    over objects per position bin in bold, and the start of the last quarter (J_last)."""
    ax = _axes(7.0, 4.0)
    positions = [np.linspace(0, 1, len(obj.J)) if len(obj.J) > 1 else np.zeros(1) for obj in objects]
    for pos, obj in zip(positions, objects):
        ax.plot(pos, obj.J, lw=0.8, alpha=0.5)
    x, y = np.concatenate(positions), np.concatenate([obj.J for obj in objects])
    which = np.minimum((x * bins).astype(int), bins - 1)
    means = np.array([y[which == b].mean() if np.any(which == b) else np.nan for b in range(bins)])
    ax.plot((np.arange(bins) + 0.5) / bins, means, "o-", color="k", lw=2.5, label="mean over objects")  # bin centres
    ax.axvline(LAST_FRACTION, color="r", ls="--", lw=1, label="J_last: last quarter")
    ax.set(xlabel="relative frame position (evaluated frames)", xlim=(0, 1))
    return _png(ax, title, "J (IoU)", fontsize=8)
