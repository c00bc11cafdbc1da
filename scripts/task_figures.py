"""The README's example figure of each scorer, made from the synthetic clips of hvc/demo.

    python scripts/task_figures.py --model hvc --checkpoint checkpoints/hvc_bsds_cpu.pth \\
        [--work /tmp/hvc_task_figures] [--docs docs]
    python scripts/task_figures.py --model random18 --no-figures

Writes two demo videos in the DAVIS 2017 layout and the JHMDB, VIP and VOST clips that the tests
use (hvc/demo/video.py, tests/helpers/task_fixtures.py) under --work, then for
each task runs ``bash scripts/run_test.sh <model> <task>`` (configs/test_<task>.yaml: the
tasks' protocols) and ``bash scripts/run_metrics <model> <task>``, prints the scores, and copies
the scorers' figures to <docs>/figure_<task>.png.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from a checkout

from hvc.cli import run_main  # noqa: E402
FIGURES = {  # task -> the figure its scorer writes
    "davis17": "per-sequence_results-val.png",
    "jhmdb": "pck_results.png",
    "vip": "vip_results.png",
    "vost": "per-frame_J-val.png",
}
VIDEOS = (("cat-astronaut", 0, "rocket"), ("cat-astronaut-coffee", 1, "coffee"))  # name, seed, background


def write_data(data: Path) -> None:
    from hvc.demo.video import render_video, write_davis_sequence, write_jhmdb_clip, write_vip_clip, write_vost_clip
    from hvc.fileio import atomic_write_text

    shutil.rmtree(data, ignore_errors=True)
    for name, seed, background in VIDEOS:
        frames, labels = render_video(num_frames=20, seed=seed, background=background)
        write_davis_sequence(str(data / "DAVIS"), name, frames, labels)
    atomic_write_text(data / "DAVIS" / "ImageSets" / "2017" / "val.txt", "".join(f"{v[0]}\n" for v in VIDEOS))
    write_jhmdb_clip(data / "JHMDB", num_frames=10)  # as tests/helpers/task_fixtures.py
    write_jhmdb_clip(data / "JHMDB", video="synthetic_walk_1", num_frames=8, phase=3)
    write_vip_clip(data / "VIP", video="videos7", annotated=4, every=5)
    write_vost_clip(data / "VOST", name="cut_dough", num_frames=26, every=5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="hvc")
    parser.add_argument("--checkpoint", help="weights of --model (default: its file under checkpoints/)")
    parser.add_argument("--work", default="/tmp/hvc_task_figures", help="folder for the data and the results")
    parser.add_argument("--docs", default=str(REPO / "docs"), help="where the figures are copied")
    parser.add_argument("--no-figures", action="store_true", help="only print the scores")
    args = parser.parse_args(argv)
    work = Path(args.work).resolve()
    write_data(work / "data")
    env = dict(os.environ, PYTHON=sys.executable, DATA_ROOT=str(work / "data"), DAVIS_ROOT=str(work / "data" / "DAVIS"),
               RESULTS_ROOT=str(work / "results"))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    extra = ["--checkpoint", str(Path(args.checkpoint).resolve())] if args.checkpoint else []
    for task, figure in FIGURES.items():
        subprocess.run(["bash", "scripts/run_test.sh", args.model, task, *extra, "--overwrite"],
                       cwd=REPO, env=env, check=True)
        subprocess.run(["bash", "scripts/run_metrics", args.model, task], cwd=REPO, env=env, check=True)
        if not args.no_figures:
            shutil.copyfile(work / "results" / args.model / task / figure, Path(args.docs) / f"figure_{task}.png")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
