"""Export the inference encoder from a training checkpoint: ``online_encoder.*`` of its model, prefix
stripped, as a bare state dict (the official exported format; docs/checkpoints.md). Weights holding
a NaN or an infinity are refused. Exit codes: docs/failure.md."""

from __future__ import annotations

import argparse
import os
import sys
from collections import OrderedDict

from torch import Tensor

from hvc.checkpoint import CheckpointError, describe, load_checkpoint, non_finite_tensors
from hvc.cli import run_main
from hvc.errors import ArgumentParser, NonFiniteError, UsageError, entry_point
from hvc.fileio import atomic_torch_save, writable_dir

PREFIX = "online_encoder."


def encoder_from_checkpoint(ckpt: dict, *, drop_layer4: bool = False, half: bool = False,
                            source: str = "checkpoint") -> "OrderedDict[str, Tensor]":
    """The ``online_encoder.*`` entries of ``ckpt['model']`` without the prefix."""
    skip = PREFIX + "layer4." if drop_layer4 else None  # layer4 is unused at test time
    out = OrderedDict((key[len(PREFIX):], value.half() if half and value.is_floating_point() else value)
                      for key, value in ckpt["model"].items()
                      if key.startswith(PREFIX) and not (skip and key.startswith(skip)))
    if not out:
        raise CheckpointError(f"{source}: no '{PREFIX}*' weights in its model")
    return out


def export(ckpt_path: str | os.PathLike, out_path: str | os.PathLike, *, drop_layer4: bool = False,
           half: bool = False) -> int:
    """Write the encoder of ``ckpt_path`` to ``out_path`` atomically, or NonFiniteError; returns the key count."""
    if os.path.realpath(out_path) == os.path.realpath(ckpt_path):
        raise UsageError(f"{out_path}: is the checkpoint being read; choose another OUT")
    writable_dir(os.path.dirname(os.path.abspath(out_path)), "the output folder")
    ckpt = load_checkpoint(ckpt_path)
    if os.path.isfile(out_path):
        try:
            load_checkpoint(out_path)
        except CheckpointError:
            pass  # not a training checkpoint (an earlier export, say): replaced
        else:
            raise UsageError(f"{out_path}: holds a training checkpoint, not an export; choose another OUT")
    state = encoder_from_checkpoint(ckpt, drop_layer4=drop_layer4, half=half, source=os.fspath(ckpt_path))
    bad = non_finite_tensors(state)
    if bad:
        raise NonFiniteError(f"{ckpt_path}: not exported, its encoder has {describe(bad)}")
    atomic_torch_save(state, out_path)
    return len(state)


@entry_point
def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m hvc.export", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="training checkpoint (ours or the paper's)")
    parser.add_argument("out", help="output .pth: bare encoder state dict")
    parser.add_argument("--drop-layer4", action="store_true", help="leave out layer4 (unused at test time)")
    parser.add_argument("--half", action="store_true", help="store floating tensors as float16")
    args = parser.parse_intermixed_args(argv)
    n = export(args.checkpoint, args.out, drop_layer4=args.drop_layer4, half=args.half)
    print(f"wrote {args.out}: {n} tensors")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
