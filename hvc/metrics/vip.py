"""VIP part propagation: mean IoU over 20 classes, as videowalk's ``code/eval/eval_vip.py``, from one
confusion matrix summed over every scored frame (docs/tasks.md, "Metric (`eval_vip.py`), reproduced")."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from PIL import Image

from hvc.data.sequence import DatasetError, select
from hvc.data.vip import LABELS_DIR, NUM_CLASSES, read_frame_list
from hvc.metrics.davis import MetricsError, read_label_png

CLASS_NAMES = ("background", "hat", "hair", "sun-glasses", "upper-clothes", "dress", "coat", "socks", "pants", "gloves",
               "scarf", "skirt", "torso-skin", "face", "right-arm", "left-arm", "right-leg", "left-leg", "right-shoe",
               "left-shoe")


@dataclass(frozen=True)
class VIPScores:
    """Scores of one confusion matrix; per-class values are NaN where undefined (0 / 0)."""

    confusion: np.ndarray  # [C, C] float64, ground-truth rows, predicted columns
    frames: int  # number of scored frames
    overall_accuracy: float
    mean_accuracy: float
    mean_iou: float
    fwavacc: float
    class_accuracy: np.ndarray  # [C] float64
    class_iou: np.ndarray  # [C] float64


def confusion_matrix(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Pixel counts [C, C] int64 by (ground-truth, predicted) class of [H, W] id maps; gt outside [0, C) is skipped."""
    keep = (gt >= 0) & (gt < NUM_CLASSES)
    codes = NUM_CLASSES * gt[keep].astype(np.int64) + pred[keep].astype(np.int64)
    return np.bincount(codes, minlength=NUM_CLASSES**2).reshape(NUM_CLASSES, NUM_CLASSES)


def scores(confusion: np.ndarray, frames: int) -> VIPScores:
    """Accuracy, mean accuracy, mean IoU and fwavacc of a summed confusion matrix (float64, official order)."""
    hist = np.asarray(confusion, dtype=np.float64)
    correct = np.diag(hist)
    gt_pixels = hist.sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):  # classes without pixels: NaN, skipped below
        class_accuracy = correct / gt_pixels
        class_iou = correct / (gt_pixels + hist.sum(0) - correct)
        frequency = gt_pixels / hist.sum()
        overall = correct.sum() / hist.sum()
    present = frequency > 0
    return VIPScores(hist, frames, overall_accuracy=float(overall), mean_accuracy=_nanmean(class_accuracy),
                     mean_iou=_nanmean(class_iou), fwavacc=float((frequency[present] * class_iou[present]).sum()),
                     class_accuracy=class_accuracy, class_iou=class_iou)


def _nanmean(values: np.ndarray) -> float:
    return float(np.nanmean(values)) if np.any(~np.isnan(values)) else float("nan")


def read_prediction(path: Path, size_hw: tuple[int, int]) -> np.ndarray:
    """Class ids [H, W] uint8 of a predicted frame (grey values or palette indices), resized (nearest) to
    ``size_hw``; MetricsError naming the file on an id >= NUM_CLASSES."""
    ids = read_label_png(path)
    if ids.shape != tuple(size_hw):
        ids = np.asarray(Image.fromarray(ids).resize((size_hw[1], size_hw[0]), Image.NEAREST))
    top = int(ids.max())
    if top >= NUM_CLASSES:
        raise MetricsError(f"{path}: class id {top} outside 0..{NUM_CLASSES - 1}")
    return ids


def frames_of(annotations: Path) -> dict[str, list[str]]:
    """Every ``<video>/<frame>.png`` under an annotation folder: video -> sorted frame names."""
    if not annotations.is_dir():
        raise MetricsError(f"annotation folder {annotations} not found")
    found = {v.name: sorted(p.stem for p in v.glob("*.png")) for v in sorted(annotations.iterdir()) if v.is_dir()}
    return {v: f for v, f in found.items() if f}


def evaluate(annotations: str | Path, results: str | Path,
             frames: Optional[dict[str, Sequence[str]]] = None) -> VIPScores:
    """Score ``<results>/<video>/<frame>.png`` against ``<annotations>/<video>/<frame>.png``; frames: video -> frame
    names, each needing its prediction (default: every annotated one, the first included, as officially)."""
    annotations, results = Path(annotations), Path(results)
    frames = frames_of(annotations) if frames is None else {v: list(f) for v, f in frames.items()}
    if not any(frames.values()):
        raise MetricsError(f"no annotated frame to score under {annotations}")
    if not results.is_dir():
        raise MetricsError(f"results folder {results} not found")
    total = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
    for video, names in frames.items():
        for frame in names:
            gt = read_label_png(annotations / video / f"{frame}.png")
            pred_path = results / video / f"{frame}.png"
            if not pred_path.is_file():
                raise MetricsError(f"video {video!r}: missing prediction for frame {frame} ({pred_path})")
            total += confusion_matrix(gt, read_prediction(pred_path, gt.shape))
    return scores(total, sum(len(names) for names in frames.values()))


def evaluate_dataset(root: str | Path, results: str | Path, list_file: Optional[str | Path] = None,
                     videos: Sequence[str] = ()) -> VIPScores:
    """Score a VIP root's annotated frames (``Annotations/Category_ids/<video>/<frame>.png``), those of the
    paper's list file if given, restricted to ``videos`` if given; the images are not needed."""
    annotations = Path(root) / LABELS_DIR
    try:
        if list_file is None:
            frames = frames_of(annotations)
        else:
            frames = {}
            for video, frame in read_frame_list(list_file):
                frames.setdefault(video, []).append(frame)
        wanted = select(list(frames), videos, list_file or annotations)
    except DatasetError as exc:
        raise MetricsError(str(exc)) from None
    return evaluate(annotations, results, {v: frames[v] for v in wanted})
