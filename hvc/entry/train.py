"""Train HVC.

    python train.py --config configs/train_img.yaml [--resume auto|PATH | --overwrite] [--steps N] [key=value ...]
    torchrun --nproc_per_node N train.py --config configs/train_img.yaml [...]

Keys: hvc/config/training.py; outputs in ``output.dir``; flags and key=value in any order. Exit codes: docs/failure.md.
"""

from __future__ import annotations

import argparse
import logging
import sys

from hvc.cli import run_main
from hvc.config import load_config
from hvc.config.training import TrainConfig
from hvc.distributed import join_job, leave_job
from hvc.engine import train
from hvc.errors import ArgumentParser, entry_point


@entry_point
def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="YAML file, e.g. configs/train_img.yaml")
    parser.add_argument("--resume", help="'auto' (<output.dir>/checkpoint.pth if present) or a checkpoint path")
    parser.add_argument("--overwrite", action="store_true", help="start afresh in an output.dir holding a run "
                        "(sets output.overwrite=true; without it or --resume such a folder is refused)")
    parser.add_argument("--steps", type=int, metavar="N", help="stop after N optimiser steps (optim.max_steps)")
    parser.add_argument("overrides", nargs="*", help="key=value config overrides, e.g. optim.lr=5e-4")
    args = parser.parse_intermixed_args(argv)  # `--resume auto optim.max_steps=3` and the reverse
    overrides = args.overrides + ([f"optim.max_steps={args.steps}"] if args.steps is not None else [])
    overrides += [f"resume={args.resume}"] if args.resume else []
    overrides += ["output.overwrite=true"] if args.overwrite else []
    cfg = load_config(TrainConfig, args.config, overrides)
    try:
        env = join_job(cfg.runtime.device, "runtime.device", cfg.dist.backend)
        logging.basicConfig(level=logging.INFO if env.is_main else logging.WARNING,
                            format=f"%(asctime)s [rank {env.rank}] %(message)s", datefmt="%H:%M:%S")
        result = train(cfg, env)
        if env.is_main:
            logging.getLogger("hvc.train").info(f"done at step {result.global_step}; checkpoint {result.checkpoint}")
    finally:
        leave_job()
    return 0


def command() -> int:
    """``hvc-train``, ``python train.py``, ``python -m hvc.entry.train``: ``main`` on sys.argv."""
    return run_main(main)


if __name__ == "__main__":
    sys.exit(command())
