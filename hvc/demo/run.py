"""``make demo``: the whole HVC pipeline end to end on data generated from scikit-image (docs/demo.md).

    python -m hvc.demo.run [--output demo_output] [--steps N] [--frames N] [--quick]

Stages, each an entry point's ``main(argv)`` run in this process: (1) training photos and a two-object video,
(2) train (train.py), (3) export the encoder (hvc.export), (4) propagate with it and ``random18`` (test.py), (5) score
both (eval_metrics.py); then the PCK of both on a synthetic JHMDB clip. Seeds are fixed: reruns print the same."""

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
from pathlib import Path
from typing import Iterator

from hvc.cli import project_folder, run_main
from hvc.errors import ArgumentParser, HvcError, entry_point

CONFIGS = project_folder("configs")  # ./configs, else the checkout's (hvc/cli.py)
SEQUENCE = "cat-astronaut"
MODELS = ("hvc", "random18")
QUICK_STEPS, QUICK_FRAMES = 3, 10  # --quick: the CI smoke run
KEYPOINT_FRAMES, QUICK_KEYPOINT_FRAMES = 10, 4  # frames of the synthetic JHMDB clip
Timings = list[tuple[str, float, float]]  # (stage, wall seconds, CPU seconds)


class DemoError(HvcError):
    """A stage failed; the message names it, the exit code is the stage's (hvc/errors.py)."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


def _banner(title: str) -> None:
    print(f"\n===== {title} =====", flush=True)


def _call(module: str, *argv: str) -> None:
    """Run ``python -m <module> <argv>``'s ``main`` here (train.py, test.py and eval_metrics.py run hvc.entry's);
    a non-zero exit code stops the demo. Each entry point seeds what it draws: the numbers of a separate process."""
    code = importlib.import_module(module).main(list(argv))
    sys.stdout.flush()
    if code:  # the stage printed its own error; keep its exit code
        raise DemoError(f"stage python -m {module} {' '.join(argv)}: exit code {code}", code)


@contextlib.contextmanager
def _stage(stages: Timings, name: str, title: str) -> Iterator[None]:
    """Print the banner ``title``, then append (name, wall s, CPU s: user + system, children too) of the block."""
    _banner(title)
    wall, cpu = time.perf_counter(), sum(os.times()[:4])
    yield
    stages.append((name, time.perf_counter() - wall, sum(os.times()[:4]) - cpu))


def _table(title: str, header: tuple[str, ...], rows: list[tuple], digits: int) -> None:
    """Print the banner ``title`` and the rows: a name, then numbers with ``digits`` decimals."""
    _banner(title)
    width = max(len(row[0]) for row in [header, *rows])
    print(f"{header[0]:<{width}}", *(f"{h:>8}" for h in header[1:]))
    for name, *values in rows:
        print(f"{name:<{width}}", *(f"{v:>8.{digits}f}" for v in values))


def run_keypoints(output: Path, frames: int) -> dict[str, tuple[float, float]]:
    """Extra stage: {model: (PCK@0.1, PCK@0.2)} of both encoders on a synthetic JHMDB clip under ``output``."""
    from hvc.demo.video import write_jhmdb_clip

    root = output / "JHMDB"
    shutil.rmtree(root, ignore_errors=True)
    write_jhmdb_clip(root, num_frames=frames)
    pck = {}
    for model in MODELS:
        results = output / "results" / f"{model}_jhmdb"
        _banner(f"extra: joints of a {frames}-frame walking figure with {model} (test.py, eval_metrics.py)")
        _test(model, "test_jhmdb", results, output / "checkpoints" / "hvc_demo.pth", f"data.root={root}",
              "data.workers=0")
        _call("hvc.entry.eval_metrics", "--task", "jhmdb", "--root", str(root), "--results", str(results),
              "--output", str(results))
        with open(results / "pck_results.csv", newline="") as f:
            rows = {float(row["Threshold"]): float(row["Mean"]) for row in csv.DictReader(f)}
        pck[model] = rows[0.1], rows[0.2]
    return pck


def run_demo(output: Path, steps: int | None, frames: int) -> tuple[dict[str, dict[str, float]], Timings]:
    """Stages 1-5 into ``output`` (absolute): {model: {J&F-Mean, J-Mean, F-Mean}} and the stage timings.
    steps: training steps (None: configs/demo_train.yaml's); frames: video length."""
    from hvc.demo.video import render_video, write_davis_sequence, write_training_photos

    photos, davis, train_dir = output / "photos", output / "DAVIS", output / "train"
    export = output / "checkpoints" / "hvc_demo.pth"
    # a rerun starts from scratch: stale photos, frames or checkpoints would change the numbers
    for folder in (photos, davis, train_dir):
        shutil.rmtree(folder, ignore_errors=True)
    scores, stages = {}, []
    with _stage(stages, "1 data", "1/5 data: scikit-image photos and the demo video"):
        n_photos = len(write_training_photos(str(photos)))
        write_davis_sequence(str(davis), SEQUENCE, *render_video(num_frames=frames))
    print(f"{n_photos} training images in {photos}; {frames} frames of '{SEQUENCE}' in {davis}")
    overrides = [f"output.dir={train_dir}", f"data.roots={json.dumps([str(photos)])}"]
    overrides += [f"optim.max_steps={steps}"] if steps is not None else []
    with _stage(stages, "2 train", "2/5 train HVC on the photos (train.py, CPU)"):
        _call("hvc.entry.train", "--config", str(CONFIGS / "demo_train.yaml"), *overrides)
    with _stage(stages, "3 export", "3/5 export the encoder (hvc.export)"):
        _call("hvc.export", str(train_dir / "checkpoint.pth"), str(export), "--drop-layer4")
    for model in MODELS:
        results = output / "results" / model
        with _stage(stages, f"4 propagate {model}", f"4/5 label propagation with {model} (test.py)"):
            propagate(model, davis, results, export)
        with _stage(stages, f"5 score {model}", f"5/5 J&F of {model} (eval_metrics.py)"):
            scores[model] = score(davis, results)
    return scores, stages


def _test(model: str, config: str, results: Path, export: Path, *more: str) -> None:
    """test.py with ``configs/<config>.yaml`` and ``model`` (``hvc``: the encoder at ``export``) into ``results``."""
    checkpoint = ["--checkpoint", str(export)] if model == "hvc" else []
    _call("hvc.entry.test", "--config", str(CONFIGS / f"{config}.yaml"), "--model", model, *checkpoint, "--output",
          str(results), "--device", "cpu", "--overwrite", *more)


def propagate(model: str, davis: Path, results: Path, export: Path) -> None:
    """Stage 4: masks, overlays and an mp4 of ``model`` on the demo video into ``results``."""
    _test(model, "demo_test", results, export, "--visualize", f"data.root={davis}")


def score(davis: Path, results: Path) -> dict[str, float]:
    """Stage 5: J&F-Mean, J-Mean and F-Mean of the masks in ``results`` (eval_metrics.py, CSVs beside them)."""
    _call("hvc.entry.eval_metrics", "--davis-root", str(davis), "--results", str(results), "--year", "2017",
          "--output", str(results))
    with open(results / "global_results-val.csv", newline="") as f:
        (row,) = csv.DictReader(f)  # one sequence
    return {k: float(row[k]) for k in ("J&F-Mean", "J-Mean", "F-Mean")}


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
    out = Path(args.output).resolve()
    start = time.perf_counter()
    scores, stages = run_demo(out, steps, frames)
    middle = time.perf_counter()
    pck = run_keypoints(out, QUICK_KEYPOINT_FRAMES if args.quick else KEYPOINT_FRAMES)
    from hvc.inference import usable_cpus  # by now loaded by the stages above

    total = ("total", sum(s[1] for s in stages), sum(s[2] for s in stages))
    _table(f"stage timings ({usable_cpus()} CPU cores)", ("stage", "seconds", "CPU s"), [*stages, total], 1)
    _table(f"J&F on the demo video ({middle - start:.0f} s)", ("model", "J&F-Mean", "J-Mean", "F-Mean"),
           [(model, *s.values()) for model, s in scores.items()], 3)
    _table(f"PCK (%) on the synthetic keypoint clip ({time.perf_counter() - middle:.0f} s more)",
           ("model", "PCK@0.1", "PCK@0.2"), [(model, *at) for model, at in pck.items()], 1)
    print(f"\ntraining run:  {out / 'train'} (log.jsonl, checkpoint.pth)")
    for model in MODELS:
        print(f"{model + ':':<14} masks {out / 'results' / model}, overlays + mp4 {out / 'results' / model}_vis, "
              f"keypoints {out / 'results' / model}_jhmdb")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
