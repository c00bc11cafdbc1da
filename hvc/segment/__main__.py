"""Segment the objects of a video from masks or scribbles on any of its frames (docs/segment.md).

A mask holds object ids (0 background, 255 void) or flat RGB colours (the mapping is printed); a scribble
is a PNG (0 unlabelled, 255 background) or DAVIS interactive JSON. An interrupted run continues where it
stopped. --encoder, --precision, --search-dims and --candidates default to the fast mode's where the
device computes bf16 natively, else to the exact mode's. Exit codes: docs/failure.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Optional

from hvc.cli import run_main
from hvc.config.inference import MAX_INPUT_SIZE, MIN_INPUT_SIZE
from hvc.config.propagation import PropagationConfig
from hvc.errors import ArgumentParser, entry_point
from hvc.exports import FORMATS
from hvc.models.fast_encoder import ENCODER_MODES
from hvc.speed import SpeedSettings, default_speed, mode_of
from hvc.segment.prompt import KINDS, check_prompts, parse_prompt
from hvc.segment.run import DIRECTIONS, Options, segment

# PropagationConfig fields with a flag of their own (--search-dims for search_dims); each is an Options field too.
PROP_FLAGS = ("context", "memory", "precision", "search_dims", "candidates")
ALL_DIMS = -1  # --search-dims all: search on every channel (0 stays 0, and is refused)


def _search_dims(text: str) -> int:
    return ALL_DIMS if text == "all" else int(text)


def add_run_flags(parser: ArgumentParser) -> None:
    """The flags ``python -m hvc.app`` has too: the model, its input size, memory, speed mode and device."""
    parser.add_argument("--model", default="hvc", help="encoder (hvc, random18, imagenet18, ...)")
    parser.add_argument("--checkpoint", help="weights file (default for hvc: checkpoints/hvc_bsds_cpu.pth)")
    parser.add_argument("--input-size", type=int, help="shorter side fed to the encoder (default: the frames', <= 480)")
    parser.add_argument("--context", type=int, default=50, help="context frames (default 50, the paper's)")
    parser.add_argument("--memory", choices=("recent", "quality"), default="recent", help="the context's memory policy")
    parser.add_argument("--exact", action="store_true", help="the paper's float32 arithmetic even where bf16 is native")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ...")


def parse_run_flags(parser: ArgumentParser, argv: list[str]) -> tuple[argparse.Namespace, str, dict]:
    """``argv`` parsed, the speed mode, and the Options fields of :func:`add_run_flags`'s flags and the speed
    flags (hvc/speed.py: the device's default mode, then the single settings given; hvc.app has none), checked
    by the propagation schema before anything is read or written (errors name the flag)."""
    a = parser.parse_args(argv)
    if a.input_size is not None and not MIN_INPUT_SIZE <= a.input_size <= MAX_INPUT_SIZE:
        parser.error(f"--input-size must lie in [{MIN_INPUT_SIZE}, {MAX_INPUT_SIZE}]")
    given = {f.name: v for f in dataclasses.fields(SpeedSettings) if (v := getattr(a, f.name, None)) is not None}
    if a.exact and given:
        options = ", ".join("--" + k.replace("_", "-") for k in given)
        parser.error(f"--exact runs the exact arithmetic; leave out {options}")
    mode, speed, why = default_speed(a.device, a.exact)
    if given:
        if given.get("search_dims") == ALL_DIMS:
            given["search_dims"] = None
        speed = dataclasses.replace(speed, **given)
        mode, why = mode_of(speed), f"{mode} by default ({why}), changed by the options given"
    prop = {"context": a.context, "memory": a.memory, "precision": speed.precision,
            "search_dims": speed.search_dims, "candidates": speed.candidates}
    PropagationConfig(**prop).validate(lambda name: f"--{name.replace('_', '-')}" if name in PROP_FLAGS else name)
    return a, mode, {"model": a.model, "checkpoint": a.checkpoint, "input_size": a.input_size, "device": a.device,
                     "context": a.context, "memory": a.memory, **dataclasses.asdict(speed),
                     "speed_note": f"speed: {mode} ({speed.describe()}; {why})"}


def parse_args(argv: list[str]) -> Options:
    parser = ArgumentParser(prog="python -m hvc.segment", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("video", type=Path, help="video file or folder of frames")
    for kind in KINDS:
        parser.add_argument(f"--{kind}", action="append", default=[], metavar="[FRAME:]PATH",
                            help=f"{kind} of frame FRAME (default 0); repeat for other frames")
    parser.add_argument("--direction", choices=DIRECTIONS, default="forward", help="from the prompts (default forward)")
    parser.add_argument("--output", type=Path, help="output folder (default: ./<video name>_masks)")
    parser.add_argument("--resize-mask", action="store_true", help="scale a prompt of another size to the frames")
    add_run_flags(parser)
    parser.add_argument("--encoder", choices=ENCODER_MODES, help="how the encoder runs")
    parser.add_argument("--precision", choices=("fp32", "bf16"), help="propagation arithmetic (bf16: approximate)")
    parser.add_argument("--search-dims", type=_search_dims, metavar="D|all", help="search on D principal axes")
    parser.add_argument("--candidates", type=float, help="candidates an approximate search rescores, times topk")
    parser.add_argument("--overwrite", action="store_true", help="replace a segmentation of other settings in --output")
    parser.add_argument("--save", nargs="+", choices=FORMATS, default=["palette", "mp4"], metavar="FORMAT",
                        help=f"any of {' '.join(FORMATS)} (default: palette mp4; palette is always written)")
    a, mode, fields = parse_run_flags(parser, argv)
    if mode != "exact":
        fields["speed_note"] += "; --exact for the paper's exact arithmetic"
    prompts = tuple(parse_prompt(text, kind) for kind in KINDS for text in getattr(a, kind))
    check_prompts(prompts)  # none, or two on one frame: usage errors before anything is read
    output = a.output or Path(f"{a.video.name.rsplit('.', 1)[0] if a.video.is_file() else a.video.name}_masks")
    return Options(video=a.video, output=output, prompts=prompts, resize_mask=a.resize_mask, overwrite=a.overwrite,
                   save=tuple(a.save), direction=a.direction, **fields)


@entry_point
def main(argv: Optional[list[str]] = None) -> int:
    opts = parse_args(sys.argv[1:] if argv is None else list(argv))
    print(opts.speed_note, flush=True)
    summary = segment(opts)
    written = ", ".join(f"{fmt} {path}" for fmt, path in summary["exports"].items())
    print(f"{summary['frames']} frames in {summary['seconds_per_frame']:.3f} s/frame; {written}; "
          f"summary {opts.output / 'summary.json'}")
    return 0


def command() -> int:
    """``hvc-segment`` and ``python -m hvc.segment``: ``main`` on sys.argv."""
    return run_main(main)


if __name__ == "__main__":
    sys.exit(command())
