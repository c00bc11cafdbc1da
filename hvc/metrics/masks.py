"""Reading DAVIS label maps (ground truth and predictions) with clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from hvc.errors import InputError

_SINGLE_CHANNEL_MODES = ("P", "L", "1")  # palette ids, grey values, 1-bit masks
VOID_ID = 255  # DAVIS 2017 ground truth marks ambiguous pixels with 255


class MetricsError(InputError, ValueError):
    """Bad evaluation input; the message names the sequence, frame or file at fault."""


def read_label_png(path: Path) -> np.ndarray:
    """Pixel values of a single-channel PNG (palette indices, not colours).

    Returns: [H, W] uint8. Raises MetricsError naming ``path`` if it is missing,
    unreadable, or not a palette/greyscale image.
    """
    if not path.is_file():
        raise MetricsError(f"missing file {path}")
    try:
        with Image.open(path) as image:
            if image.format != "PNG" or image.mode not in _SINGLE_CHANNEL_MODES:
                raise MetricsError(
                    f"{path}: expected a palette or greyscale PNG, got a {image.format} image in mode {image.mode}"
                )
            labels = np.array(image)
    except MetricsError:
        raise
    except (OSError, SyntaxError, ValueError) as exc:  # what PIL raises for broken files
        raise MetricsError(f"{path}: corrupt or unreadable PNG ({exc})") from None
    return labels.astype(np.uint8, copy=False)


def ground_truth_ids(raw: np.ndarray, binary: bool) -> np.ndarray:
    """Object ids of a ground-truth frame: [H, W] uint8, 0 = background.

    binary (DAVIS 2016, 0/255 masks): any non-zero value is object 1.
    Otherwise (DAVIS 2017): void (255) becomes background, as the official
    semi-supervised evaluation does (predictions on void count as false positives).
    """
    if binary:
        return (raw != 0).view(np.uint8)
    return np.where(raw == VOID_ID, np.uint8(0), raw)


def prediction_ids(raw: np.ndarray, binary: bool) -> np.ndarray:
    """Object ids of a predicted frame; for DAVIS 2016 any non-zero value is object 1."""
    return (raw != 0).view(np.uint8) if binary else raw
