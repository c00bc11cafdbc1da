"""End to end on real DAVIS 2016 frames: scripts/run_test.sh then scripts/run_metrics."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from hvc.data.palette import DAVIS_PALETTE

REPO = Path(__file__).resolve().parents[1]
SEQUENCES = ["scooter-black", "libby"]  # the two shortest sequences (43 and 49 frames)


def test_random18_davis16_end_to_end(tmp_path, davis_root):
    env = dict(os.environ, PYTHON=sys.executable, DATA_ROOT=str(davis_root.parent), DAVIS_ROOT=str(davis_root),
               RESULTS_ROOT=str(tmp_path))
    run = subprocess.run(["bash", "scripts/run_test.sh", "random18", "davis16", "--input-size", "120",
                          "--sequences", *SEQUENCES, "data.workers=1",
                          "prop.context=5"],  # a short context keeps CI fast; the paper's 50 is the default
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    out = tmp_path / "random18" / "davis16"
    for name in SEQUENCES:
        frames = sorted(p.stem for p in (davis_root / "JPEGImages" / "480p" / name).glob("*.jpg"))
        assert sorted(p.stem for p in (out / name).glob("*.png")) == frames
        with Image.open(out / name / f"{frames[-1]}.png") as im:
            assert im.mode == "P" and im.size == (854, 480)
            assert np.array_equal(np.array(im.getpalette(), dtype=np.uint8).reshape(-1, 3), DAVIS_PALETTE)
            assert set(np.unique(np.array(im))) <= {0, 1}

    metrics = subprocess.run(["bash", "scripts/run_metrics", "random18", "davis16", "--sequences", *SEQUENCES],
                             cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert metrics.returncode == 0, metrics.stderr
    assert (out / "global_results-val.csv").is_file()
    header, values = (out / "global_results-val.csv").read_text().splitlines()[:2]
    jf = float(values.split(",")[header.split(",").index("J&F-Mean")])
    assert 0.0 <= jf <= 1.0 and re.search(r"J&F", metrics.stdout)
