"""``make demo``: the whole HVC pipeline end to end on data generated from scikit-image.

    python -m hvc.demo.run [--output demo_output] [--steps N] [--frames N] [--quick]

Stages, each through the real entry point (its ``main(argv)``, called in this process: one
interpreter start instead of ten saves ~30 s on 2 cores): (1) write the training photos
and a two-object demo video in the DAVIS layout, (2) train HVC on the photos (train.py),
(3) export its encoder (hvc.export), (4) propagate the first-frame masks with the trained
encoder and with ``random18`` (test.py, overlays + mp4), (5) score both (eval_metrics.py)
and print a two-row J&F table. Everything is written under ``--output``; seeds are fixed,
so a rerun gives the same numbers. An extra stage propagates the joints of a synthetic JHMDB
clip (hvc.demo.tasks) with both encoders (test.py --config configs/test_jhmdb.yaml) and prints
their PCK (eval_metrics.py --task jhmdb).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import importlib
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from hvc.cli import run_main
from hvc.errors import ArgumentParser, HvcError, entry_point
from hvc.paths import project_folder

CONFIGS = project_folder("configs")  # ./configs, else the checkout's (hvc/paths.py)
TRAIN_CONFIG = CONFIGS / "demo_train.yaml"
TEST_CONFIG = CONFIGS / "demo_test.yaml"
SEQUENCE = "cat-astronaut"
MODELS = ("hvc", "random18")
QUICK_STEPS, QUICK_FRAMES = 3, 10  # --quick: the CI smoke run
KEYPOINT_CONFIG = CONFIGS / "test_jhmdb.yaml"
KEYPOINT_FRAMES, QUICK_KEYPOINT_FRAMES = 10, 4  # frames of the synthetic JHMDB clip


class DemoError(HvcError):
    """A stage failed; the message names it, the exit code is the stage's (hvc/errors.py)."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


def _stage(title: str) -> None:
    print(f"\n===== {title} =====", flush=True)


# The root scripts are thin files over these modules (hvc/entry/); nothing is loaded by path.
_ENTRY_MODULES = {"train.py": "hvc.entry.train", "test.py": "hvc.entry.test",
                  "eval_metrics.py": "hvc.entry.eval_metrics"}


def _call(name: str, args: list[str]) -> None:
    """Run the ``main(argv)`` that ``python <args>`` would run (``train.py ...`` or ``-m hvc.export ...``),
    here; a non-zero exit code stops the demo. Each entry point seeds what it draws, so the
    numbers equal those of separate processes."""
    target, argv = (args[1], args[2:]) if args[0] == "-m" else (args[0], args[1:])
    code = importlib.import_module(_ENTRY_MODULES.get(target, target)).main(argv)
    sys.stdout.flush()
    if code:  # the stage printed its own error; keep its exit code
        raise DemoError(f"stage {name}: failed with exit code {code}: python {' '.join(args)}", code)


def _read_scores(csv_path: Path) -> dict[str, float]:
    """J&F-Mean, J-Mean and F-Mean from an eval_metrics.py global_results CSV."""
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    if len(rows) != 1:
        raise DemoError(f"{csv_path}: expected one row of global results, found {len(rows)}")
    return {k: float(rows[0][k]) for k in ("J&F-Mean", "J-Mean", "F-Mean")}


@dataclass(frozen=True)
class StageTime:
    name: str
    wall: float  # seconds
    cpu: float  # CPU seconds (user + system) of the demo and the entry points it ran


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


@contextlib.contextmanager
def _timed(stages: list[StageTime], name: str) -> Iterator[None]:
    wall, cpu = time.perf_counter(), _cpu_seconds()
    yield
    stages.append(StageTime(name, time.perf_counter() - wall, _cpu_seconds() - cpu))


def format_timings(stages: list[StageTime]) -> str:
    """Stage | seconds | CPU seconds, with the total."""
    width = max(len(s.name) for s in [*stages, StageTime("total", 0, 0)])
    lines = [f"{'stage':<{width}} {'seconds':>8} {'CPU s':>7}"]
    lines += [f"{s.name:<{width}} {s.wall:>8.1f} {s.cpu:>7.1f}" for s in stages]
    lines.append(f"{'total':<{width}} {sum(s.wall for s in stages):>8.1f} {sum(s.cpu for s in stages):>7.1f}")
    return "\n".join(lines)


def format_table(scores: dict[str, dict[str, float]]) -> str:
    """The two-row (one per model) J&F table."""
    lines = [f"{'model':<10} {'J&F-Mean':>9} {'J-Mean':>7} {'F-Mean':>7}"]
    for model, s in scores.items():
        lines.append(f"{model:<10} {s['J&F-Mean']:>9.3f} {s['J-Mean']:>7.3f} {s['F-Mean']:>7.3f}")
    return "\n".join(lines)


def run_keypoints(output: Path, frames: int) -> dict[str, dict[str, float]]:
    """Extra stage: PCK@0.1 / @0.2 of both encoders on a synthetic JHMDB clip (walking figure)."""
    from hvc.demo.tasks import write_jhmdb_clip

    root = output.resolve() / "JHMDB"
    shutil.rmtree(root, ignore_errors=True)
    write_jhmdb_clip(root, num_frames=frames)
    pck = {}
    for model in MODELS:
        results = output.resolve() / "results" / f"{model}_jhmdb"
        _stage(f"extra: joints of a {frames}-frame walking figure with {model} (test.py, eval_metrics.py)")
        extra = ["--checkpoint", str(output.resolve() / "checkpoints" / "hvc_demo.pth")] if model == "hvc" else []
        _call(f"test {model} jhmdb", ["test.py", "--config", str(KEYPOINT_CONFIG), "--model", model, *extra,
                                      "--output", str(results), "--device", "cpu", "--overwrite",
                                      f"data.root={root}", "data.workers=0"])
        _call(f"metrics {model} jhmdb", ["eval_metrics.py", "--task", "jhmdb", "--root", str(root),
                                         "--results", str(results), "--output", str(results)])
        with open(results / "pck_results.csv", newline="") as f:
            rows = {float(row["Threshold"]): float(row["Mean"]) for row in csv.DictReader(f)}
        pck[model] = {"PCK@0.1": rows[0.1], "PCK@0.2": rows[0.2]}
    return pck


def run_demo(output: Path, steps: int | None, frames: int) -> tuple[dict[str, dict[str, float]], list[StageTime]]:
    """Run every stage into ``output``; returns the J&F scores {model: {J&F-Mean, J-Mean, F-Mean}}
    and the stage timings.

    steps: training steps (None = configs/demo_train.yaml's optim.max_steps); frames: video length.
    """
    from hvc.demo.video import render_video, write_davis_sequence, write_training_photos

    output = output.resolve()
    photos, davis, train_dir = output / "photos", output / "DAVIS", output / "train"
    export = output / "checkpoints" / "hvc_demo.pth"
    # a rerun starts from scratch: stale photos, frames or checkpoints would change the numbers
    for folder in (photos, davis, train_dir):
        shutil.rmtree(folder, ignore_errors=True)
    scores, stages = {}, []

    _stage("1/5 data: scikit-image photos and the demo video")
    with _timed(stages, "1 data"):
        n_photos = len(write_training_photos(str(photos)))
        video, labels = render_video(num_frames=frames)
        write_davis_sequence(str(davis), SEQUENCE, video, labels)
    print(f"{n_photos} training images in {photos}; {frames} frames of '{SEQUENCE}' in {davis}")

    _stage("2/5 train HVC on the photos (train.py, CPU)")
    overrides = [f"output.dir={train_dir}", f"data.roots={json.dumps([str(photos)])}"]
    if steps is not None:
        overrides.append(f"optim.max_steps={steps}")
    with _timed(stages, "2 train"):
        _call("train", ["train.py", "--config", str(TRAIN_CONFIG), *overrides])

    _stage("3/5 export the encoder (hvc.export)")
    with _timed(stages, "3 export"):
        _call("export", ["-m", "hvc.export", str(train_dir / "checkpoint.pth"), str(export), "--drop-layer4"])

    for model in MODELS:
        results = output / "results" / model
        _stage(f"4/5 label propagation with {model} (test.py)")
        with _timed(stages, f"4 propagate {model}"):
            propagate(model, davis, results, export)
        _stage(f"5/5 J&F of {model} (eval_metrics.py)")
        with _timed(stages, f"5 score {model}"):
            scores[model] = score(davis, results)
    return scores, stages


def propagate(model: str, davis: Path, results: Path, export: Path) -> None:
    """Stage 4: masks, overlays and an mp4 of ``model`` on the demo video (test.py) into ``results``;
    ``hvc`` is the encoder exported to ``export``."""
    extra = ["--checkpoint", str(export)] if model == "hvc" else []
    _call(f"test {model}", ["test.py", "--config", str(TEST_CONFIG), "--model", model, *extra, "--output",
                            str(results), "--device", "cpu", "--visualize", "--overwrite", f"data.root={davis}"])


def score(davis: Path, results: Path) -> dict[str, float]:
    """Stage 5: J&F of the masks in ``results`` (eval_metrics.py, its CSVs written beside them)."""
    _call(f"metrics {results.name}", ["eval_metrics.py", "--davis-root", str(davis), "--results", str(results),
                                      "--year", "2017", "--output", str(results)])
    return _read_scores(results / "global_results-val.csv")


@entry_point
def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default="demo_output", help="folder for everything the demo writes")
    parser.add_argument("--steps", type=int, help="training steps (default: configs/demo_train.yaml)")
    parser.add_argument("--frames", type=int, help="frames of the demo video (default 40)")
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke run: {QUICK_STEPS} steps, {QUICK_FRAMES} frames (unless given)")
    args = parser.parse_args(argv)
    steps = args.steps if args.steps is not None else (QUICK_STEPS if args.quick else None)
    frames = args.frames if args.frames is not None else (QUICK_FRAMES if args.quick else 40)
    if (steps is not None and steps < 1) or frames < 3:
        parser.error("--steps must be >= 1 and --frames >= 3 (the first and last frames are not scored)")
    start = time.perf_counter()
    output = Path(args.output)
    scores, stages = run_demo(output, steps, frames)
    middle = time.perf_counter()
    pck = run_keypoints(output, QUICK_KEYPOINT_FRAMES if args.quick else KEYPOINT_FRAMES)
    out = output.resolve()
    end = time.perf_counter()
    from hvc.inference import usable_cpus  # by now loaded by the stages above

    print(f"\n===== stage timings ({usable_cpus()} CPU cores) =====")
    print(format_timings(stages))
    print(f"\n===== J&F on the demo video ({middle - start:.0f} s) =====")
    print(format_table(scores))
    print(f"\n===== PCK (%) on the synthetic keypoint clip ({end - middle:.0f} s more) =====")
    print(f"{'model':<10} {'PCK@0.1':>8} {'PCK@0.2':>8}")
    for model, p in pck.items():
        print(f"{model:<10} {p['PCK@0.1']:>8.1f} {p['PCK@0.2']:>8.1f}")
    print(f"\ntraining run:  {out / 'train'} (log.jsonl, checkpoint.pth)")
    for model in MODELS:
        print(f"{model + ':':<14} masks {out / 'results' / model}, overlays + mp4 {out / 'results' / model}_vis, "
              f"keypoints {out / 'results' / model}_jhmdb")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
