"""Score a folder of predictions: DAVIS J&F (default), JHMDB PCK, VIP mIoU or VOST J / J_last.

python eval_metrics.py --davis-root data/DAVIS --results results/hvc/davis17 \\
    --year 2017 --set val --output results/hvc/davis17 [--sequences a b] [--workers 2]
python eval_metrics.py --task jhmdb --root data/JHMDB --results R --output R [--list FILE|DIR] [--videos c/v ...]
python eval_metrics.py --task vip --root data/VIP --results R --output R [--list val_vip.txt] [--videos v ...]
python eval_metrics.py --task vost --root data/VOST --results R --output R [--set val] [--sequences s ...] [--workers 2]
python eval_metrics.py --pred PRED_DIR --gt GT_DIR [--videos v ...] [--output DIR]   # own <video>/<frame>.png folders

Protocols and output files: docs/metrics.md, docs/tasks.md and, for --pred --gt,
hvc/metrics/folders.py. Bad input stops
the run with a message naming the file, before anything is written. The output folder is
created and checked to be writable before the evaluation starts. Exit codes: hvc/errors.py
(docs/failure.md).
"""

from __future__ import annotations

import argparse
import sys
import warnings

from hvc.cli import run_main
from hvc.errors import ArgumentParser, UsageError, entry_point
from hvc.fileio import writable_dir
from hvc.metrics import evaluate, folders, format_tables, pck, report, vip, vost
from hvc.names import refuse_overlap

TASKS = ("davis", "jhmdb", "vip", "vost")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    first = ArgumentParser(add_help=False)
    first.add_argument("--task", choices=TASKS, default="davis")
    task = first.parse_known_args(argv)[0].task

    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=TASKS, default="davis", help="benchmark protocol (default: davis)")
    parser.add_argument("--results", required=True, help="folder of predictions (layout per task: docs/tasks.md)")
    parser.add_argument("--output", required=True, help="folder for the tables and the figure")
    if task == "davis":
        parser.add_argument("--davis-root", required=True, help="DAVIS root with Annotations/480p and ImageSets/<year>")
        parser.add_argument("--year", type=int, choices=(2016, 2017), required=True,
                            help="2016: 0/255 single-object masks")
        parser.add_argument("--set", dest="split", choices=("val", "train"), default="val",
                            help="ImageSets list to use")
    else:
        parser.add_argument("--root", required=True, help=f"{task.upper()} dataset root")
    if task in ("davis", "vost"):
        parser.add_argument("--sequences", nargs="+", help="evaluate these sequences instead of the ImageSets list")
        parser.add_argument("--workers", type=int, default=1, help="parallel processes over sequences (1 = in-process)")
    if task == "vost":
        parser.add_argument("--set", dest="split", default="val", help="ImageSets/<set>.txt to use (default val)")
    if task == "jhmdb":
        parser.add_argument("--list", help="video list: videowalk's '<frames> <joints.mat>' lines, '<class>/<video>' "
                                           "lines, or a folder of official split files (default: <root>/splits, "
                                           "split 1 test, else every video)")
    if task == "vip":
        parser.add_argument("--list", help="the paper's frame list (val_vip.txt); default every annotated frame")
    if task in ("jhmdb", "vip"):
        parser.add_argument("--videos", nargs="+", default=(), help="score only these videos")
    args = parser.parse_intermixed_args(argv)
    if getattr(args, "workers", 1) < 1:
        raise UsageError(f"--workers: must be >= 1, got {args.workers}")
    return args


def _run(args: argparse.Namespace) -> tuple[str, list]:
    """Evaluate, write the files, and return the summary to print and the written paths."""
    if args.task == "davis":
        objects = evaluate(args.davis_root, args.results, args.year, args.split, args.sequences, args.workers)
        return format_tables(objects, args.split), report.write_davis(objects, args.output, args.split)
    if args.task == "jhmdb":
        videos = pck.evaluate(args.root, args.results, pck.default_list(args.root, args.list), args.videos)
        result = pck.pck(videos)
        return report.jhmdb_summary(result, len(videos)), report.write_jhmdb(result, args.output, len(videos))
    if args.task == "vip":
        result = vip.evaluate_dataset(args.root, args.results, args.list, args.videos)
        return report.vip_summary(result), report.write_vip(result, args.output)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", vost.TruncatedIdsWarning)
        objects = vost.evaluate(args.root, args.results, args.split, args.sequences, args.workers)
    for warning in caught:
        print(f"warning: {warning.message}", file=sys.stderr)
    return format_tables(objects, args.split), report.write_vost(objects, args.output, args.split)


@entry_point
def main(argv: list[str] | None = None) -> int:
    if folders.requested(sys.argv[1:] if argv is None else argv):  # --pred DIR --gt DIR: no benchmark layout
        return folders.main(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    ground_truth = {"--davis-root": getattr(args, "davis_root", None), "--root": getattr(args, "root", None)}
    refuse_overlap(args.output, "--output", ground_truth)  # the ground truth is read-only (docs/failure.md)
    writable_dir(args.output, "--output")  # before the evaluation, not after it
    summary, paths = _run(args)
    print(summary)
    print("\nwrote " + ", ".join(str(p) for p in paths))
    return 0


def command() -> int:
    """``hvc-eval-metrics``, ``python eval_metrics.py``, ``python -m hvc.entry.eval_metrics``: ``main`` on sys.argv."""
    return run_main(main)


if __name__ == "__main__":
    sys.exit(command())
