"""One figure per scorer, written next to its tables (matplotlib, Agg backend, no display), as PNG
bytes, so that an evaluation can check everything before it writes any file."""

from __future__ import annotations

import io
from typing import Sequence

import numpy as np

from hvc.metrics.davis import ObjectScores
from hvc.metrics.pck import PCKResult
from hvc.metrics.vip import CLASS_NAMES, VIPScores
from hvc.metrics.vost import LAST_FRACTION, VOSTObject


def _axes(width: float, height: float):
    # Figure + FigureCanvasAgg directly: no pyplot state, no GUI backend, safe in workers.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig.add_subplot()


def _png(ax, title: str, ylabel: str, ymax: float = 1.05, **legend) -> bytes:
    """The figure of ``ax`` with its title, y axis from 0 to ``ymax`` and legend, as PNG bytes."""
    ax.set_ylim(0, ymax)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(**legend)
    buf = io.BytesIO()
    ax.figure.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def davis_sequences(objects: Sequence[ObjectScores], title: str) -> bytes:
    """Per object (``<seq>_<id>``): J&F-Mean as a bar, J and F as markers; the global mean as a line."""
    names = [o.name for o in objects]
    j = np.array([o.j_stats.mean for o in objects])
    f = np.array([o.f_stats.mean for o in objects])
    jf = (j + f) / 2
    ax = _axes(max(5.0, 0.45 * len(names) + 2), 4.0)
    x = np.arange(len(names))
    ax.bar(x, jf, color="#4c72b0", label="J&F")
    ax.plot(x, j, "o", color="#dd8452", label="J (IoU)")
    ax.plot(x, f, "s", color="#55a868", label="F (boundary)")
    overall = (np.mean(j) + np.mean(f)) / 2  # the global J&F-Mean: J and F averaged over objects
    ax.axhline(overall, color="k", lw=1, ls="--", label=f"J&F-Mean {overall:.3f}")
    ax.set_xticks(x, names, rotation=60, ha="right", fontsize=8)
    return _png(ax, title, "score", fontsize=8, loc="lower right")


def pck_curves(result: PCKResult, joint_names: Sequence[str], title: str) -> bytes:
    """PCK against the threshold: one line per joint, their mean in bold."""
    ax = _axes(7.0, 4.5)
    from matplotlib import colormaps

    colors = [colormaps["tab20"](i % 20) for i in range(len(joint_names))]
    for j, name in enumerate(joint_names):
        ax.plot(result.thresholds, result.per_joint[:, j], marker=".", lw=1, color=colors[j], label=name)
    ax.plot(result.thresholds, result.mean, marker="o", lw=3, color="k", label="mean")
    ax.set_xlabel("threshold (fraction of 0.6 x the joints' box diagonal)")
    ax.set_xticks(result.thresholds)
    return _png(ax, title, "PCK (%)", 102, fontsize=7, ncol=2, loc="lower right")


def vip_class_iou(result: VIPScores, title: str) -> bytes:
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


def vost_j_by_position(objects: Sequence[VOSTObject], title: str, bins: int = 10) -> bytes:
    """J against the relative position of the frame in its sequence (0 = first evaluated,
    1 = last): one thin line per object, the mean over objects per position bin in bold,
    and the start of the last quarter (J_last)."""
    ax = _axes(7.0, 4.0)
    positions = [np.linspace(0, 1, len(obj.J)) if len(obj.J) > 1 else np.zeros(1) for obj in objects]
    for pos, obj in zip(positions, objects):
        ax.plot(pos, obj.J, lw=0.8, alpha=0.5)
    x, y = np.concatenate(positions), np.concatenate([obj.J for obj in objects])
    which = np.minimum((x * bins).astype(int), bins - 1)
    centres = (np.arange(bins) + 0.5) / bins
    means = np.array([y[which == b].mean() if np.any(which == b) else np.nan for b in range(bins)])
    ax.plot(centres, means, "o-", color="k", lw=2.5, label="mean over objects")
    ax.axvline(LAST_FRACTION, color="r", ls="--", lw=1, label="J_last: last quarter")
    ax.set_xlabel("relative frame position (evaluated frames)")
    ax.set_xlim(0, 1)
    return _png(ax, title, "J (IoU)", fontsize=8)
