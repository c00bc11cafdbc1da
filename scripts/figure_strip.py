"""A PNG strip of overlays: predicted masks of one sequence drawn over its frames.

    python scripts/figure_strip.py --davis-root data/DAVIS \
        --results results/random18/davis16 --sequence blackswan --out docs/figure_blackswan.png

Reads `<results>/<sequence>/<frame>.png` (as test.py writes them) and the matching frames of
`<davis-root>/JPEGImages/480p/<sequence>/`; picks `--count` evenly spaced frames (or `--frames`).
Exit codes: hvc/errors.py and docs/failure.md.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hvc.errors import ArgumentParser, InputError, UsageError, entry_point  # noqa: E402
from hvc.fileio import atomic_path, writable_dir  # noqa: E402
from hvc.exports import overlay  # noqa: E402


@entry_point
def main(argv: list[str] | None = None) -> int:
    ap = ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--davis-root", required=True)
    ap.add_argument("--results", required=True, help="folder of <seq>/<frame>.png predictions")
    ap.add_argument("--sequence", required=True)
    ap.add_argument("--out", required=True, help="output PNG")
    ap.add_argument("--count", type=int, default=4, help="evenly spaced frames to show")
    ap.add_argument("--frames", nargs="*", default=None, help="frame names instead of --count")
    ap.add_argument("--height", type=int, default=240, help="height of each tile in pixels")
    args = ap.parse_intermixed_args(argv)
    if args.count < 1 or args.height < 1:
        raise UsageError(f"--count / --height: must be >= 1, got {args.count} / {args.height}")
    writable_dir(os.path.dirname(os.path.abspath(args.out)), "--out's folder")

    pred_dir = Path(args.results) / args.sequence
    names = sorted(p.stem for p in pred_dir.glob("*.png"))
    if not names:
        raise InputError(f"{pred_dir}: no predictions (<frame>.png)")
    if args.frames:
        missing = [n for n in args.frames if n not in names]
        if missing:
            raise InputError(f"{pred_dir}: frames {missing} not predicted")
        chosen = args.frames
    else:
        chosen = [names[i] for i in np.linspace(0, len(names) - 1, args.count).round().astype(int)]

    tiles = []
    for name in chosen:
        frame_path = Path(args.davis_root) / "JPEGImages" / "480p" / args.sequence / f"{name}.jpg"
        if not frame_path.is_file():
            raise InputError(f"{frame_path}: frame not found")
        try:
            frame = np.asarray(Image.open(frame_path).convert("RGB"))
            labels = np.asarray(Image.open(pred_dir / f"{name}.png"))
        except (OSError, ValueError) as exc:
            raise InputError(f"{pred_dir / name}: unreadable frame or prediction ({exc})") from None
        if labels.shape != frame.shape[:2]:
            raise InputError(f"{pred_dir / (name + '.png')}: size {labels.shape} differs from the frame's {frame.shape[:2]}")
        tile = Image.fromarray(overlay(frame, labels))
        width = round(tile.width * args.height / tile.height)
        tiles.append(np.asarray(tile.resize((width, args.height), Image.BILINEAR)))
    gap = np.full((args.height, 4, 3), 255, np.uint8)
    strip = np.concatenate([x for t in tiles for x in (t, gap)][:-1], axis=1)
    with atomic_path(args.out) as tmp:
        Image.fromarray(strip).save(tmp, format="PNG")
    print(f"wrote {args.out} ({', '.join(chosen)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
