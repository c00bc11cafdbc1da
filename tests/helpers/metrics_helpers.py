"""Helpers for the metrics tests: a straightforward whole-frame J and F written from
docs/metrics.md (the reference for the cropped fast path in hvc.metrics.measures), and
the module behind eval_metrics.py."""

from __future__ import annotations

import importlib
import math
from types import ModuleType

import cv2
import numpy as np
from skimage.morphology import disk


def seg2bmap(mask: np.ndarray) -> np.ndarray:
    """mask: [H, W] bool -> boundary map [H, W] bool over the whole image."""
    e = np.zeros_like(mask)
    s = np.zeros_like(mask)
    se = np.zeros_like(mask)
    e[:, :-1] = mask[:, 1:]
    s[:-1, :] = mask[1:, :]
    se[:-1, :-1] = mask[1:, 1:]
    b = (mask ^ e) | (mask ^ s) | (mask ^ se)
    b[-1, :] = mask[-1, :] ^ e[-1, :]
    b[:, -1] = mask[:, -1] ^ s[:, -1]
    b[-1, -1] = False
    return b


def reference_jf(gt: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    union = np.sum(gt | pred)
    j = 1.0 if union == 0 else np.sum(gt & pred) / union
    r = math.ceil(0.008 * np.linalg.norm(gt.shape))
    kernel = disk(r).astype(np.uint8)
    bg, bp = seg2bmap(gt), seg2bmap(pred)
    dg = cv2.dilate(bg.astype(np.uint8), kernel) > 0
    dp = cv2.dilate(bp.astype(np.uint8), kernel) > 0
    ng, np_ = bg.sum(), bp.sum()
    if np_ == 0 and ng == 0:
        return float(j), 1.0
    if np_ == 0:
        precision, recall = 1.0, 0.0
    elif ng == 0:
        precision, recall = 0.0, 1.0
    else:
        precision, recall = (bp & dg).sum() / np_, (bg & dp).sum() / ng
    f = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return float(j), float(f)


def load_eval_metrics() -> ModuleType:
    """The module behind eval_metrics.py."""
    return importlib.import_module("hvc.entry.eval_metrics")
