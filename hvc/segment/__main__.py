"""Segment the objects of a video from a first-frame mask or scribbles.

    python -m hvc.segment VIDEO (--mask FIRST.png | --scribble S.png|S.json)
        [--model hvc --checkpoint P] [--output DIR] [--resize-mask] [--input-size N]
        [--context N] [--memory recent|quality] [--precision fp32|bf16] [--search-dims D] [--candidates X] [--device cpu|cuda] [--overwrite]

VIDEO: a video file (mp4, avi, ... decoded by OpenCV) or a folder of frames (name order).
FIRST.png: object ids of the first frame (indexed/greyscale PNG, 0 background, 255 void; a
0/255 greyscale mask is one object). S.png: scribbles, 0 unlabelled, 1..254 objects, 255
background; S.json: DAVIS interactive scribbles (docs/scribbles.md).
Writes DIR/masks/<frame>.png, DIR/overlay.mp4 and DIR/summary.json; an interrupted run
started again continues where it stopped. Exit codes (docs/failure.md): 2 usage, other
settings or a damaged record in --output, or --output overlapping an input; 3 unreadable video
/ prompt / checkpoint / state; 4 output not writable; 6 NaN or inf in features or soft masks;
7 another run writes into --output.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

from hvc.cli import run_main
from hvc.config.inference import MAX_INPUT_SIZE, MIN_INPUT_SIZE
from hvc.errors import ArgumentParser, entry_point
from hvc.segment.run import Options, segment


def parse_args(argv: list[str]) -> Options:
    parser = ArgumentParser(prog="python -m hvc.segment", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("video", type=Path, help="video file or folder of frames")
    prompt = parser.add_mutually_exclusive_group(required=True)
    prompt.add_argument("--mask", type=Path, help="first-frame mask of object ids (PNG)")
    prompt.add_argument("--scribble", type=Path, help="first-frame scribbles (PNG or DAVIS interactive JSON)")
    parser.add_argument("--model", default="hvc", help="encoder (hvc, random18, imagenet18, ...)")
    parser.add_argument("--checkpoint", help="weights file (default for hvc: checkpoints/hvc_bsds_cpu.pth)")
    parser.add_argument("--output", type=Path, help="output folder (default: ./<video name>_masks)")
    parser.add_argument("--resize-mask", action="store_true",
                        help="scale a mask of another size to the frames (nearest neighbour)")
    parser.add_argument("--input-size", type=int, help="shorter side fed to the encoder (default: the frames', at most 480)")
    parser.add_argument("--context", type=int, default=50, help="context frames (default 50, the paper's)")
    parser.add_argument("--memory", choices=("recent", "quality"), default="recent",
                        help="memory policy: which frames form the context (docs/memory.md)")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                        help="propagation arithmetic: fp32 exact (default), bf16 faster and approximate "
                             "(docs/local_kernel.md)")
    parser.add_argument("--search-dims", type=int,
                        help="search candidates on D principal axes of the first frame (opt-in, faster, "
                             "approximate; e.g. 96 with --precision bf16; docs/local_kernel.md)")
    parser.add_argument("--candidates", type=float, default=2.0,
                        help="candidates an approximate search rescores, in units of topk (default 2; "
                             "at least 1; fewer is faster, with more label changes; docs/local_kernel.md)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ...")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a segmentation of other settings (or a damaged one) in --output")
    a = parser.parse_args(argv)
    if a.input_size is not None and not MIN_INPUT_SIZE <= a.input_size <= MAX_INPUT_SIZE:
        parser.error(f"--input-size must lie in [{MIN_INPUT_SIZE}, {MAX_INPUT_SIZE}]")
    if a.search_dims is not None and a.search_dims < 1:
        parser.error("--search-dims must be at least 1")
    if not a.candidates >= 1:
        parser.error("--candidates must be at least 1")
    output = a.output or Path(f"{a.video.name.rsplit('.', 1)[0] if a.video.is_file() else a.video.name}_masks")
    return Options(video=a.video, output=output, mask=a.mask, scribble=a.scribble, model=a.model,
                   checkpoint=a.checkpoint, input_size=a.input_size, resize_mask=a.resize_mask, device=a.device,
                   context=a.context, memory=a.memory, precision=a.precision, search_dims=a.search_dims,
                   candidates=a.candidates, overwrite=a.overwrite)


@entry_point
def main(argv: Optional[list[str]] = None) -> int:
    """Expected failures print one line and exit with their kind's code (hvc/errors.py)."""
    opts = parse_args(sys.argv[1:] if argv is None else list(argv))
    summary = segment(opts)
    print(f"{summary['frames']} frames in {summary['seconds_per_frame']:.3f} s/frame; masks in {summary['masks']}, "
          f"overlay {summary['overlay']}, summary {opts.output / 'summary.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
