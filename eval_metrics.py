"""DAVIS J&F evaluation of a results folder (semi-supervised protocol).

python eval_metrics.py --davis-root data/DAVIS --results results/hvc/davis17 \
    --year 2017 --set val --output results/hvc/davis17 [--sequences a b] [--workers 2]

The output folder is created and checked to be writable before the evaluation starts.
Exit codes: hvc/errors.py (README, "Failure behaviour").
"""

from __future__ import annotations

import argparse
import sys

from hvc.errors import ArgumentParser, UsageError, entry_point
from hvc.fileio import writable_dir
from hvc.metrics import evaluate, format_tables, write_csvs


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--davis-root", required=True, help="DAVIS root with Annotations/480p and ImageSets/<year>")
    parser.add_argument("--results", required=True, help="folder of <sequence>/<frame>.png predictions")
    parser.add_argument("--year", type=int, choices=(2016, 2017), required=True, help="2016: 0/255 single-object masks")
    parser.add_argument("--set", dest="split", choices=("val", "train"), default="val", help="ImageSets list to use")
    parser.add_argument("--output", required=True, help="folder for global_results-<set>.csv, per-sequence_results-<set>.csv")
    parser.add_argument("--sequences", nargs="+", help="evaluate these sequences instead of the ImageSets list")
    parser.add_argument("--workers", type=int, default=1, help="parallel processes over sequences (1 = in-process)")
    args = parser.parse_intermixed_args(argv)
    if args.workers < 1:
        raise UsageError(f"--workers: must be >= 1, got {args.workers}")
    return args


@entry_point
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    writable_dir(args.output, "--output")  # before the evaluation, not after it
    objects = evaluate(args.davis_root, args.results, args.year, args.split, args.sequences, args.workers)
    paths = write_csvs(objects, args.output, args.split)
    print(format_tables(objects, args.split))
    print("\nwrote " + ", ".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
