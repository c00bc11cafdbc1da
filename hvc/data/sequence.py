"""What the benchmark readers share: where each benchmark lies under a data root, what a reader returns (one
:class:`VideoSequence` per video) or raises (:class:`DatasetError`), the DAVIS layout (data/README.md) and label PNGs
as inference and evaluation both read them (values and void: docs/metrics.md; readers raise the caller's ``error``
naming the file). Torch-free and reading nothing at import, for hvc.metrics and ``python -m hvc.data.check``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal, Optional, Sequence

import numpy as np
from PIL import Image

from hvc.errors import InputError
from hvc.names import read_name_list

VOID_ID = 255
DAVIS_FRAMES = Path("JPEGImages") / "480p"
DAVIS_ANNOTATIONS = Path("Annotations") / "480p"
# How an annotation PNG stores ids: "binary" (DAVIS 2016, 0/255) or "palette" (palette indices).
MaskFormat = Literal["binary", "palette"]
# benchmark name of scripts/run_test.sh -> its folder under the data root (as in that script)
FOLDERS: dict[str, str] = {"davis16": "DAVIS", "davis17": "DAVIS", "davis17dev": "DAVIS", "ytvos": "YTB/2018",
                           "ytvos19": "YTB/2019", "jhmdb": "JHMDB", "vip": "VIP", "vost": "VOST"}
# DAVIS benchmark -> (ImageSets year, split file, annotation format)
DAVIS_SPLITS: dict[str, tuple[str, str, MaskFormat]] = {
    "davis16": ("2016", "val", "binary"), "davis17": ("2017", "val", "palette"),
    "davis17dev": ("2017", "test-dev", "palette")}
# how the folder of each benchmark is recognised without reading it (a DAVIS one: by its list)
MARKERS: dict[str, str] = {**{name: f"ImageSets/{year}/{split}.txt" for name, (year, split, _) in DAVIS_SPLITS.items()},
                           "ytvos": "valid/meta.json", "ytvos19": "valid/meta.json", "jhmdb": "joint_positions",
                           "vip": "Annotations/Category_ids", "vost": "ImageSets/val.txt"}


class DatasetError(InputError, ValueError):
    """A dataset folder, file list or annotation is missing or malformed."""


@dataclass(frozen=True)
class VideoSequence:
    """One video: ``frames[0]`` is annotated; ids first seen in ``annotations[t]`` start at t."""

    name: str
    frames: tuple[Path, ...]         # in temporal order
    annotations: dict[int, Path]     # frame index -> label-map file
    outputs: tuple[int, ...]         # frame indices whose prediction is written
    mask_format: MaskFormat

    def frame_name(self, t: int) -> str:
        return self.frames[t].stem


def check_no_gaps(frames: Sequence[Path], name: str, last: Optional[int] = None) -> None:
    """Refuse numbered frames ``0..last`` (default all) not a constant step apart (``00000, 00005, ...``): across
    a hole, distant frames would be neighbours and predictions left out. Names not all numbers pass."""
    stems = [p.stem for p in frames[: None if last is None else last + 1]]
    if len(stems) < 3 or not all(s.isdigit() for s in stems):
        return
    steps = [int(b) - int(a) for a, b in zip(stems, stems[1:])]
    step = min(steps)
    for i, d in enumerate(steps):
        if d != step:
            raise DatasetError(f"{frames[0].parent}: frames missing in sequence {name}: {stems[i]} is followed by "
                               f"{stems[i + 1]}, the other frames are {step} apart; restore the missing frames")


def list_frames(folder: Path, suffixes: Sequence[str], error: type[Exception], advice: str = "") -> list[Path]:
    """The files of ``folder`` with one of ``suffixes`` (any case), in name order; ``error`` for a missing folder,
    none, or two files for one frame (00005.jpg and 00005.png: both named)."""
    if not folder.is_dir():
        raise error(f"{folder}: frame folder not found")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in suffixes)
    if not files:
        raise error(f"{folder}: no frames ({', '.join(suffixes)}) in this folder")
    first: dict[str, Path] = {}
    for path in files:
        if first.setdefault(path.stem, path) is not path:
            raise error(f"{folder}: two files for frame {path.stem}: {first[path.stem].name} and {path.name}{advice}")
    return files


def list_lines(path: Path) -> Iterator[tuple[str, list[str], str]]:
    """(``<path>, line <n>``, its whitespace-split fields, the stripped line) of each non-blank line."""
    if not path.is_file():
        raise DatasetError(f"{path}: list file not found")
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if fields:
            yield f"{path}, line {number}", fields, line.strip()


def select(names: list[str], wanted: Sequence[str], source: str | Path) -> list[str]:
    """``names`` (those of list ``source``) restricted to ``wanted`` (all when empty), in list order; an empty
    list or a wanted name not in it is a DatasetError naming ``source``."""
    if not names:
        raise DatasetError(f"{source}: lists no sequence")
    missing = [w for w in wanted if w not in names]
    if missing:
        raise DatasetError(f"{source}: does not list sequence(s) {', '.join(missing)}")
    return [n for n in names if n in wanted] if wanted else names


def image_size(path: Path) -> tuple[int, int]:
    """(H, W) of an image file, read from its header."""
    try:
        with Image.open(path) as im:
            return im.height, im.width
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: unreadable image ({exc})") from None


def found_datasets(data_root: Path) -> list[str]:
    """Benchmarks whose folder is present under ``data_root`` (existence checks only, cheap)."""
    return [name for name, sub in FOLDERS.items() if (Path(data_root) / sub / MARKERS[name]).exists()]


def require(path: Path, root: Path, benchmark: str) -> Path:
    """``path``, where the reader of ``benchmark`` folder ``root`` (a ``data.root``) starts; missing: a DatasetError
    naming the benchmarks found beside ``root`` (or one level up, for YouTube-VOS's ``YTB/<year>``)."""
    if path.exists():
        return path
    near = next((d for d in (root.parent, root.parent.parent) if found_datasets(d)), None)
    hint = (f"found under {near}: {', '.join(found_datasets(near))}; python -m hvc.data.check {near}" if near else
            f"no benchmark found under {root.parent}; python -m hvc.download davis17 fetches DAVIS (docs/download.md)")
    raise DatasetError(f"{path}: not found (is data.root={root} a {benchmark} folder? {hint})")


def read_sequence_list(root: Path, year: int | str, split: str, error: type[Exception] = ValueError,
                       hint: str = "") -> list[str]:
    """Names of ``<root>/ImageSets/<year>/<split>.txt`` in file order, each a plain folder name (:mod:`hvc.names`)."""
    path = Path(root) / "ImageSets" / str(year) / f"{split}.txt"
    if not path.is_file():
        raise error(f"{path}: sequence list not found" + (f" ({hint})" if hint else ""))
    return read_name_list(path, error)


def read_label_png(path: Path, error: type[Exception] = ValueError, palette: bool = False) -> np.ndarray:
    """Pixel values (palette indices, not colours) of a single-channel label PNG: [H, W] uint8;
    ``palette`` requires 'P' mode, as multi-object annotations must be."""
    if not path.is_file():
        raise error(f"missing file {path}")
    try:
        with Image.open(path) as image:
            kind, mode = image.format, image.mode
            values = np.array(image) if kind == "PNG" and mode in (("P",) if palette else ("P", "L", "1")) else None
    except (OSError, SyntaxError, ValueError) as exc:  # what PIL raises for broken files
        raise error(f"{path}: corrupt or unreadable PNG ({exc})") from None
    if values is None:
        wanted = "a palette ('P' mode)" if palette else "a palette or greyscale"
        raise error(f"{path}: expected {wanted} PNG, got a {kind} image in mode {mode}")
    return values.astype(np.uint8, copy=False)


def object_ids(values: np.ndarray, binary: bool) -> np.ndarray:
    """Object ids [H, W] uint8 (0 = background) of label values: binary -> {0, 1}, else void (255) -> 0."""
    if binary:
        return (values != 0).view(np.uint8)
    return np.where(values == VOID_ID, np.uint8(0), values)
