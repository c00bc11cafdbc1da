"""Speed of the DAVIS J&F evaluation on real data: frames per second.

Writes shifted copies of the ground truth (so that J and F are not trivially 1) to a
temporary folder, then times hvc.metrics.evaluate over every sequence of the set.

python bench/metrics_speed.py [--davis-root $HVC_SHARED_DIR/data/DAVIS] [--year 2016] [--workers 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from hvc.cli import run_main
from hvc.metrics import evaluate, global_table, read_sequence_list

REPO = Path(__file__).resolve().parents[1]


def write_shifted_predictions(davis_root: Path, names: list[str], out: Path) -> int:
    """Ground truth shifted by (3, -5) pixels as palette PNGs; returns the number of frames."""
    count = 0
    for name in names:
        (out / name).mkdir(parents=True)
        for path in sorted((davis_root / "Annotations" / "480p" / name).glob("*.png")):
            labels = (np.array(Image.open(path)) > 0).astype(np.uint8)
            image = Image.fromarray(np.roll(labels, (3, -5), axis=(0, 1)), mode="P")
            image.putpalette([0, 0, 0, 128, 0, 0])
            image.save(out / name / path.name)
            count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--davis-root", type=Path, default=REPO / "data" / "DAVIS")
    parser.add_argument("--year", type=int, choices=(2016, 2017), default=2016)
    parser.add_argument("--set", dest="split", default="val")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    names = read_sequence_list(args.davis_root, args.year, args.split)
    with tempfile.TemporaryDirectory() as tmp:
        frames = write_shifted_predictions(args.davis_root, names, Path(tmp))
        start = time.perf_counter()
        objects = evaluate(args.davis_root, tmp, args.year, args.split, workers=args.workers)
        seconds = time.perf_counter() - start
    scored = sum(len(o.frames) for o in objects)
    jf = global_table(objects)["J&F-Mean"].iloc[0]
    print(
        f"{len(names)} sequences, {frames} frames ({scored} scored), {args.workers} worker(s): "
        f"{seconds:.2f} s, {frames / seconds:.1f} frames/s (J&F-Mean of the shifted masks {jf:.3f})"
    )


if __name__ == "__main__":
    sys.exit(run_main(main))
