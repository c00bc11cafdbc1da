"""Score a folder of predictions: DAVIS J&F (default), JHMDB PCK, VIP mIoU or VOST J / J_last.

python eval_metrics.py --davis-root data/DAVIS --year 2017 --results R --output R [--sequences s ...] [--workers 2]
python eval_metrics.py --task jhmdb --root data/JHMDB --results R --output R [--list FILE|DIR] [--videos c/v ...]
python eval_metrics.py --task vip --root data/VIP --results R --output R [--list val_vip.txt] [--videos v ...]
python eval_metrics.py --task vost --root data/VOST --results R --output R [--set val] [--sequences s ...] [--workers 2]
python eval_metrics.py --pred PRED_DIR --gt GT_DIR [--videos v ...] [--output DIR]   # own <video>/<frame>.png folders

Protocols, output files: docs/metrics.md, docs/tasks.md, docs/segment.md (--pred --gt). Bad input stops the run,
before anything is written, with a message naming the file; exit codes: docs/failure.md.
"""

from __future__ import annotations

import argparse
import sys
import warnings

from hvc.cli import run_main
from hvc.errors import ArgumentParser, UsageError, entry_point
from hvc.fileio import writable_dir
from hvc.metrics import evaluate, format_tables, pck, report, vip, vost
from hvc.metrics.davis import evaluate_folders
from hvc.names import refuse_overlap

TASKS = ("davis", "jhmdb", "vip", "vost")  # and "own" where --pred or --gt is given


def parse_args(argv: list[str]) -> argparse.Namespace:
    first = ArgumentParser(add_help=False)
    first.add_argument("--task", choices=TASKS, default="davis")
    own = any(a in ("--pred", "--gt") or a.startswith(("--pred=", "--gt=")) for a in argv)
    task = "own" if own else first.parse_known_args(argv)[0].task
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    if own:
        parser.add_argument("--pred", required=True, help="predictions: <video>/<frame>.png")
        parser.add_argument("--gt", required=True, help="ground truth: <video>/<frame>.png")
    else:
        parser.add_argument("--task", choices=TASKS, default="davis", help="benchmark protocol (default: davis)")
        parser.add_argument("--results", required=True, help="folder of predictions (layout per task: docs/tasks.md)")
    parser.add_argument("--output", required=not own, help="folder for the tables and figure (optional for --pred)")
    if task == "davis":
        parser.add_argument("--davis-root", required=True, help="DAVIS root with Annotations/480p and ImageSets/<year>")
        parser.add_argument("--year", type=int, choices=(2016, 2017), required=True, help="2016: 0/255 masks")
    elif not own:
        parser.add_argument("--root", required=True, help=f"{task.upper()} dataset root")
    if task in ("davis", "vost"):
        parser.add_argument("--set", dest="split", choices=("val", "train") if task == "davis" else None, default="val",
                            help="the ImageSets list (default val)")
        parser.add_argument("--sequences", nargs="+", help="evaluate these sequences instead of the ImageSets list")
    if task in ("davis", "vost", "own"):
        parser.add_argument("--workers", type=int, default=1, help="parallel processes over sequences (1 = in-process)")
    if task == "jhmdb":
        parser.add_argument("--list", help="list file or split folder (default: <root>/splits, split 1 test, else all)")
    if task == "vip":
        parser.add_argument("--list", help="the paper's frame list (val_vip.txt); default every annotated frame")
    if task in ("jhmdb", "vip", "own"):
        parser.add_argument("--videos", nargs="+", default=(), help="score only these videos")
    args = parser.parse_intermixed_args(argv)
    if getattr(args, "workers", 1) < 1:
        raise UsageError(f"--workers: must be >= 1, got {args.workers}")
    args.task = task
    return args


def _run(args: argparse.Namespace) -> tuple[str, list]:
    """Evaluate and write the files: (the summary to print, the written paths)."""
    if args.task == "own":
        objects = evaluate_folders(args.pred, args.gt, args.videos, args.workers)
        return report.own_summary(objects), [] if args.output is None else report.write_own(objects, args.output)
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
    args = parse_args(sys.argv[1:] if argv is None else list(argv))
    if args.output is not None:
        ground_truth = {"--davis-root": getattr(args, "davis_root", None), "--root": getattr(args, "root", None),
                        "--gt": getattr(args, "gt", None)}
        refuse_overlap(args.output, "--output", ground_truth)  # the ground truth is read-only (docs/failure.md)
        writable_dir(args.output, "--output")  # before the evaluation, not after it
    summary, paths = _run(args)
    print(summary)
    if paths:
        print("\nwrote " + ", ".join(str(p) for p in paths))
    return 0


def command() -> int:
    """``hvc-eval-metrics``, ``python eval_metrics.py``, ``python -m hvc.entry.eval_metrics``: ``main`` on sys.argv."""
    return run_main(main)


if __name__ == "__main__":
    sys.exit(command())
