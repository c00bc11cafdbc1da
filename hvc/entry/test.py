"""Label propagation on DAVIS, YouTube-VOS, VOST, JHMDB or VIP: the task is data.dataset (configs/test_<dataset>.yaml).

    python test.py --config configs/test_davis17.yaml [--model M] [--checkpoint P] [--sequences a b ...] [key=value ...]
    torchrun --nproc_per_node N test.py --config ... (the sequences or clips split over N processes)
    python test.py --config ... --shard i/n (one of n independent shards, e.g. a SLURM array)
    python test.py --config ... --merge-shards (after all shards: summary and zip)

Flags set config keys (hvc/config/inference.py), key=value any key, in any order. Exit codes: docs/failure.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from hvc.cli import run_main
from hvc.config.core import load_config
from hvc.config.inference import TestConfig
from hvc.distributed import join_job, leave_job, parse_shard
from hvc.errors import ArgumentParser, entry_point
from hvc.inference import run_inference

# flag -> config key
_SHORTCUTS = {"model": "model.name", "checkpoint": "model.checkpoint", "merge_model": "model.merge_model",
              "merge_lambda": "model.merge_lambda", "input_size": "data.input_size", "device": "run.device",
              "output": "run.output_dir"}


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="YAML file in configs/")
    for flag, key in _SHORTCUTS.items():
        parser.add_argument("--" + flag.replace("_", "-"), dest=flag, help=f"sets {key}")
    parser.add_argument("--sequences", nargs="+", help="sets data.sequences")
    parser.add_argument("--overwrite", action="store_true", help="sets run.overwrite=true")
    parser.add_argument("--visualize", action="store_true", help="sets run.visualize=true")
    parser.add_argument("--shard", type=parse_shard, metavar="i/n", help="segment only shard i (0-based) of n")
    parser.add_argument("--merge-shards", action="store_true", help="after all shards: check them, write the summary")
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_intermixed_args(argv)  # key=value items may come before and after flags
    # --sequences is greedy: key=value items after it are overrides (no sequence name has a '=')
    args.overrides += [s for s in args.sequences or [] if "=" in s]
    args.sequences = [s for s in args.sequences or [] if "=" not in s]
    overrides = [f"{key}={getattr(args, flag)}" for flag, key in _SHORTCUTS.items() if getattr(args, flag) is not None]
    if args.sequences:
        overrides.append(f"data.sequences={json.dumps(args.sequences)}")  # quoted: names stay strings
    overrides += [f"run.{flag}=true" for flag in ("overwrite", "visualize") if getattr(args, flag)]
    return args, overrides + args.overrides


@entry_point
def main(argv: list[str] | None = None) -> int:
    args, overrides = parse_args(sys.argv[1:] if argv is None else argv)
    cfg = load_config(TestConfig, args.config, overrides)
    try:
        job = join_job(cfg.run.device)
        logging.basicConfig(level=logging.INFO if job.is_main else logging.WARNING, format="%(message)s")
        out = run_inference(cfg, shard=args.shard, merge_shards=args.merge_shards, job=job)
    finally:
        leave_job()
    if job.is_main:
        print(f"results in {out}")
    return 0


def command() -> int:
    """``hvc-test``, ``python test.py``, ``python -m hvc.entry.test``: ``main`` on sys.argv."""
    return run_main(main)


if __name__ == "__main__":
    sys.exit(command())
