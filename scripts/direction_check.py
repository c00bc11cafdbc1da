"""Backward against forward propagation on DAVIS: the same engine from the last frame's
ground truth down to frame 0, and from the first frame's up to the last (docs/segment.md).

    python scripts/direction_check.py [--davis DIR] [--sequences a b ...] [--input-size 240]
        [--frames N] [--output DIR]

--davis: a DAVIS 2016 root (default: $HVC_SHARED_DIR/data/DAVIS).

For each sequence (default: every one under JPEGImages/480p), ``python -m hvc.segment``'s
engine (hvc.segment.run.segment, the committed checkpoint, the exact float32 arithmetic)
runs twice: ``--mask 0:<first annotation> --direction forward`` and ``--mask L:<last
annotation> --direction backward``. Each is scored with J (region similarity, hvc.metrics)
over every frame but its prompt frame, as DAVIS 2016's binary masks are (any non-zero id is
the object). Prints a table and the mean over sequences; exits 1 if the mean backward J is
below the mean forward J by more than --margin (default 0.05). ``--frames N`` keeps the
first N frames of each sequence (the last prompt is then frame N - 1's annotation).
"""

from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from hvc.data.sequence import object_ids  # noqa: E402
from hvc.errors import ArgumentParser, InputError, entry_point  # noqa: E402
from hvc.metrics.davis import read_label_png  # noqa: E402
from hvc.metrics.measures import jaccard  # noqa: E402
from hvc.segment.prompt import PromptSpec  # noqa: E402
from hvc.segment.run import Options, segment  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DAVIS = Path(os.environ.get("HVC_SHARED_DIR", REPO.parent / "shared")) / "data" / "DAVIS"


@dataclass(frozen=True)
class Row:
    sequence: str
    frames: int
    forward: float  # mean J over the frames but 0
    backward: float  # mean J over the frames but the last
    seconds: float  # both runs' propagation time, as their summaries count it


def _frames(davis: Path, sequence: str, limit: Optional[int], work: Path) -> tuple[Path, list[Path], list[Path]]:
    """The frame folder to segment, its frame files and their annotations (the first ``limit``)."""
    images = sorted((davis / "JPEGImages" / "480p" / sequence).glob("*.jpg"))
    if len(images) < 2:
        raise InputError(f"{davis / 'JPEGImages' / '480p' / sequence}: fewer than two frames")
    images = images[:limit] if limit else images
    annotations = [davis / "Annotations" / "480p" / sequence / f"{p.stem}.png" for p in images]
    folder = davis / "JPEGImages" / "480p" / sequence
    if limit and limit < len(list(folder.glob("*.jpg"))):  # the first frames only: links to them
        folder = work / "frames" / sequence
        folder.mkdir(parents=True, exist_ok=True)
        for p in images:
            if not (folder / p.name).exists():
                (folder / p.name).symlink_to(p)
    return folder, images, annotations


def _mean_j(masks: Path, images: list[Path], annotations: list[Path], skip: int) -> float:
    scores = []
    for t, (image, gt_path) in enumerate(zip(images, annotations)):
        if t == skip:
            continue
        gt = object_ids(read_label_png(gt_path), binary=True) > 0
        with Image.open(masks / f"{image.stem}.png") as im:
            pred = np.array(im) > 0
        scores.append(jaccard(gt, pred))
    return float(np.mean(scores))


def measure(davis: Path, sequences: Sequence[str], input_size: Optional[int], output: Path,
            frames: Optional[int] = None, context: int = 50) -> list[Row]:
    """Forward and backward J of each sequence; runs write into ``output/<direction>/<sequence>``."""
    rows = []
    for sequence in sequences:
        folder, images, annotations = _frames(davis, sequence, frames, output)
        last = len(images) - 1
        result = {}
        seconds = 0.0
        for direction, prompt in (("forward", 0), ("backward", last)):
            out = output / direction / sequence
            summary = segment(Options(video=folder, output=out, input_size=input_size, context=context,
                                      prompts=(PromptSpec(prompt, "mask", annotations[prompt]),),
                                      direction=direction, save=("palette",)))
            seconds += sum(summary["seconds"].values())
            result[direction] = _mean_j(out / "masks", images, annotations, prompt)
        rows.append(Row(sequence, len(images), result["forward"], result["backward"], seconds))
    return rows


def table(rows: list[Row]) -> str:
    lines = ["| sequence | frames | forward J | backward J | backward - forward |", "| --- | --- | --- | --- | --- |"]
    for r in rows:
        diff = r.backward - r.forward
        lines.append(f"| {r.sequence} | {r.frames} | {r.forward:.3f} | {r.backward:.3f} | {diff:+.3f} |")
    fwd, bwd = np.mean([r.forward for r in rows]), np.mean([r.backward for r in rows])
    lines.append(f"| mean of {len(rows)} | {sum(r.frames for r in rows)} | {fwd:.3f} | {bwd:.3f} | {bwd - fwd:+.3f} |")
    return "\n".join(lines)


@entry_point
def main(argv: Optional[list[str]] = None) -> int:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--davis", type=Path, default=DEFAULT_DAVIS, help="the DAVIS folder (JPEGImages, Annotations)")
    parser.add_argument("--sequences", nargs="+", help="default: every sequence of JPEGImages/480p")
    parser.add_argument("--input-size", type=int, default=240, help="shorter side at the encoder (default 240)")
    parser.add_argument("--frames", type=int, help="the first N frames of each sequence only")
    parser.add_argument("--context", type=int, default=50, help="context frames (default 50, the paper's)")
    parser.add_argument("--margin", type=float, default=0.05, help="backward J may lie this far below forward J")
    parser.add_argument("--output", type=Path, help="where the runs write (default: a temporary folder, removed)")
    a = parser.parse_args(sys.argv[1:] if argv is None else argv)
    root = a.davis / "JPEGImages" / "480p"
    if not root.is_dir():
        raise InputError(f"{root}: no DAVIS frames here (pass --davis, or set HVC_SHARED_DIR)")
    sequences = a.sequences or sorted(p.name for p in root.iterdir() if p.is_dir())
    with tempfile.TemporaryDirectory(prefix="direction_check-") as tmp:
        rows = measure(a.davis, sequences, a.input_size, a.output or Path(tmp), a.frames, a.context)
    print(table(rows))
    fwd, bwd = np.mean([r.forward for r in rows]), np.mean([r.backward for r in rows])
    print(f"input size {a.input_size}, context {a.context}, exact float32; {sum(r.seconds for r in rows):.0f} s of "
          f"segmentation; backward J {bwd:.3f} vs forward J {fwd:.3f}: "
          f"{'within' if bwd >= fwd - a.margin else 'NOT within'} {a.margin}")
    return 0 if bwd >= fwd - a.margin else 1


if __name__ == "__main__":
    sys.exit(main())
