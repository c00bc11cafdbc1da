"""Label propagation: DAVIS / YouTube-VOS / VOST (indexed PNGs per sequence), JHMDB (keypoint
files) and VIP (class-id PNGs); the task is data.dataset (configs/test_<dataset>.yaml).

    python test.py --config configs/test_davis17.yaml [--model M] [--checkpoint P]
        [--merge-model mocov1] [--merge-lambda 1.05] [--input-size N] [--device cpu|cuda]
        [--sequences a b ...] [--output DIR] [--overwrite] [--visualize] [key=value ...]

The flags are shortcuts for config keys (hvc/config/inference.py); key=value sets any key.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from hvc.checkpoint import CheckpointError
from hvc.cli import run_main
from hvc.config.core import ConfigError, load_config
from hvc.config.inference import TestConfig
from hvc.data.vos import DatasetError
from hvc.tasks.runners import run_test

# flag -> config key
_SHORTCUTS = {
    "model": "model.name", "checkpoint": "model.checkpoint", "merge_model": "model.merge_model",
    "merge_lambda": "model.merge_lambda", "input_size": "data.input_size", "device": "run.device",
    "output": "run.output_dir",
}


def parse_args(argv: list[str]) -> tuple[str, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="YAML file in configs/")
    for flag, key in _SHORTCUTS.items():
        parser.add_argument("--" + flag.replace("_", "-"), dest=flag, help=f"sets {key}")
    parser.add_argument("--sequences", nargs="+", help="sets data.sequences")
    parser.add_argument("--overwrite", action="store_true", help="sets run.overwrite=true")
    parser.add_argument("--visualize", action="store_true", help="sets run.visualize=true")
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_intermixed_args(argv)  # key=value items may come before and after flags
    # --sequences is greedy: key=value items after it are overrides (no sequence name has a '=')
    args.overrides += [s for s in args.sequences or [] if "=" in s]
    args.sequences = [s for s in args.sequences or [] if "=" not in s]
    overrides = [f"{key}={getattr(args, flag)}" for flag, key in _SHORTCUTS.items() if getattr(args, flag) is not None]
    if args.sequences:
        overrides.append(f"data.sequences={json.dumps(args.sequences)}")  # quoted: names stay strings
    overrides += [f"run.{flag}=true" for flag in ("overwrite", "visualize") if getattr(args, flag)]
    return args.config, overrides + args.overrides


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    config_path, overrides = parse_args(argv)
    try:
        cfg = load_config(TestConfig, config_path, overrides)
        out = run_test(cfg)
    except (ConfigError, DatasetError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"results in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, sys.argv[1:]))
