"""The DAVIS folder layout (data/README.md), read one way by inference (:mod:`hvc.data.vos`) and evaluation
(:mod:`hvc.metrics.davis`); label values and void as docs/metrics.md says. numpy and PIL only (:mod:`hvc.metrics`
needs no torch); each reader raises the caller's error type (``error``) naming the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from hvc.names import read_name_list

VOID_ID = 255
LABEL_MODES = ("P", "L", "1")  # palette indices, grey values, 1-bit masks
FRAMES = Path("JPEGImages") / "480p"
ANNOTATIONS = Path("Annotations") / "480p"


def read_sequence_list(root: Path, year: int | str, split: str, error: type[Exception] = ValueError,
                       hint: str = "") -> list[str]:
    """Names listed in ``<root>/ImageSets/<year>/<split>.txt``, in file order; each a plain
    folder name (:mod:`hvc.names`: no ``/``, no ``..``), else ``error`` naming the line."""
    path = Path(root) / "ImageSets" / str(year) / f"{split}.txt"
    if not path.is_file():
        raise error(f"{path}: sequence list not found" + (f" ({hint})" if hint else ""))
    return read_name_list(path, error)


def read_label_png(path: Path, error: type[Exception] = ValueError, palette: bool = False) -> np.ndarray:
    """Pixel values (palette indices, not colours) of a single-channel label PNG: [H, W] uint8;
    ``palette`` requires 'P' mode, as multi-object annotations must be."""
    if not path.is_file():
        raise error(f"missing file {path}")
    allowed = ("P",) if palette else LABEL_MODES
    try:
        with Image.open(path) as image:
            kind, mode = image.format, image.mode
            values = np.array(image) if kind == "PNG" and mode in allowed else None
    except (OSError, SyntaxError, ValueError) as exc:  # what PIL raises for broken files
        raise error(f"{path}: corrupt or unreadable PNG ({exc})") from None
    if values is None:
        wanted = "a palette ('P' mode)" if palette else "a palette or greyscale"
        raise error(f"{path}: expected {wanted} PNG, got a {kind} image in mode {mode}")
    return values.astype(np.uint8, copy=False)


def object_ids(values: np.ndarray, binary: bool) -> np.ndarray:
    """Object ids [H, W] uint8 (0 = background) of label values: binary masks -> {0, 1};
    otherwise the values, with void (255) as background."""
    if binary:
        return (values != 0).view(np.uint8)
    return np.where(values == VOID_ID, np.uint8(0), values)
