"""The demo video as input for ``python -m hvc.segment`` (docs/own_video.md).

    python -m hvc.demo.mp4 OUT_DIR [--frames 40]
    python -m hvc.demo.mp4 OUT_DIR --score MASKS_DIR     # J&F of masks against truth/

Writes ``OUT_DIR/demo.mp4`` (240x432, 24 fps, H.264), ``first.png`` (the first frame's object ids), ``scribble.png``
(scribbles generated from them, docs/scribbles.md) and ``truth/<frame>.png`` (every frame's ids)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

from hvc.cli import run_main
from hvc.data.palette import save_indexed_png
from hvc.demo.video import render_video
from hvc.errors import ArgumentParser, entry_point
from hvc.exports import Mp4Writer
from hvc.scribbles import render, save_png, scribbles_from_mask


def export(folder: Path, frames: int = 40, fps: int = 24) -> Path:
    video, labels = render_video(num_frames=frames)
    with Mp4Writer(folder / "demo.mp4", fps) as writer:
        for frame in video:
            writer.write(frame)
    save_indexed_png(folder / "first.png", labels[0])
    save_png(folder / "scribble.png", render(scribbles_from_mask(labels[0]), labels[0].shape, thickness=3))
    for t, label in enumerate(labels):
        save_indexed_png(folder / "truth" / f"{t:05d}.png", label)
    return folder / "demo.mp4"


def score(folder: Path, masks: Path) -> dict[str, float]:
    """DAVIS J&F, J and F of ``masks/<frame>.png`` against ``folder/truth``, objects averaged."""
    from hvc.metrics import evaluate_sequence
    from hvc.metrics.report import video_table

    row = video_table(evaluate_sequence(folder / "truth", masks, binary=False)).iloc[0]
    return {"J&F": row["J&F-Mean"], "J": row["J-Mean"], "F": row["F-Mean"]}


@entry_point
def main(argv: Optional[list[str]] = None) -> int:
    ap = ArgumentParser(prog="python -m hvc.demo.mp4", description=__doc__,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--score", type=Path, metavar="MASKS_DIR", help="score these masks instead of writing")
    args = ap.parse_args(argv)
    if args.frames < 3:
        ap.error("--frames must be >= 3 (the first and last frames are not scored)")
    if args.score:
        print(" ".join(f"{k} {v:.3f}" for k, v in score(args.out, args.score).items()))
    else:
        print(f"wrote {export(args.out, args.frames)}, first.png, scribble.png, truth/ in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
