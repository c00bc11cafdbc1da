"""Reading DAVIS label maps (ground truth and predictions) with clear errors; the layout and the
label decoding are :mod:`hvc.data.sequence`'s, shared with inference."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hvc.data import sequence
from hvc.errors import InputError


class MetricsError(InputError, ValueError):
    """Bad evaluation input; the message names the sequence, frame or file at fault."""


def read_label_png(path: Path) -> np.ndarray:
    """[H, W] uint8 pixel values of a single-channel PNG (palette indices, not colours); a
    MetricsError naming ``path`` if it is missing, unreadable, or not a palette/greyscale image."""
    return sequence.read_label_png(path, MetricsError)
