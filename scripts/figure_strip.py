"""A PNG strip of overlays: predicted masks of one sequence drawn over its frames.

    python scripts/figure_strip.py --davis-root data/DAVIS \
        --results results/random18/davis16 --sequence blackswan --out docs/figure_blackswan.png

Reads `<results>/<sequence>/<frame>.png` (as test.py writes them) and the matching frames of
`<davis-root>/JPEGImages/480p/<sequence>/`; picks `--count` evenly spaced frames (or `--frames`).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hvc.fileio import atomic_path  # noqa: E402
from hvc.visualize import overlay  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--davis-root", required=True)
    ap.add_argument("--results", required=True, help="folder of <seq>/<frame>.png predictions")
    ap.add_argument("--sequence", required=True)
    ap.add_argument("--out", required=True, help="output PNG")
    ap.add_argument("--count", type=int, default=4, help="evenly spaced frames to show")
    ap.add_argument("--frames", nargs="*", default=None, help="frame names instead of --count")
    ap.add_argument("--height", type=int, default=240, help="height of each tile in pixels")
    args = ap.parse_args(argv)

    pred_dir = Path(args.results) / args.sequence
    names = sorted(p.stem for p in pred_dir.glob("*.png"))
    if not names:
        sys.exit(f"figure_strip: no predictions in {pred_dir}")
    if args.frames:
        missing = [n for n in args.frames if n not in names]
        if missing:
            sys.exit(f"figure_strip: frames {missing} not predicted in {pred_dir}")
        chosen = args.frames
    else:
        chosen = [names[i] for i in np.linspace(0, len(names) - 1, args.count).round().astype(int)]

    tiles = []
    for name in chosen:
        frame_path = Path(args.davis_root) / "JPEGImages" / "480p" / args.sequence / f"{name}.jpg"
        if not frame_path.is_file():
            sys.exit(f"figure_strip: frame {frame_path} not found")
        frame = np.asarray(Image.open(frame_path).convert("RGB"))
        labels = np.asarray(Image.open(pred_dir / f"{name}.png"))
        if labels.shape != frame.shape[:2]:
            sys.exit(f"figure_strip: {pred_dir / (name + '.png')} is {labels.shape}, frame is {frame.shape[:2]}")
        tile = Image.fromarray(overlay(frame, labels))
        width = round(tile.width * args.height / tile.height)
        tiles.append(np.asarray(tile.resize((width, args.height), Image.BILINEAR)))
    gap = np.full((args.height, 4, 3), 255, np.uint8)
    strip = np.concatenate([x for t in tiles for x in (t, gap)][:-1], axis=1)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with atomic_path(args.out) as tmp:
        Image.fromarray(strip).save(tmp, format="PNG")
    print(f"wrote {args.out} ({', '.join(chosen)})")


if __name__ == "__main__":
    main()
