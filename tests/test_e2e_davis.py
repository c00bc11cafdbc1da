"""End to end on real DAVIS 2016 frames: scripts/run_test.sh then scripts/run_metrics, on the
first frames of one real sequence (a DAVIS tree of links, so the run stays short)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from hvc.data.palette import DAVIS_PALETTE
from hvc.metrics import evaluate, write_csvs

REPO = Path(__file__).resolve().parents[1]
SEQUENCE = "dog"  # random18 follows the dog at input size 120 (IoU 0.59-0.8 over the first 10 frames)
FRAMES = 10


def _short_davis(davis_root: Path, dest: Path) -> Path:
    """dest/DAVIS: the first FRAMES frames and masks of SEQUENCE (links), listed as 2016 val."""
    for sub, ext in (("JPEGImages", "jpg"), ("Annotations", "png")):
        folder = dest / "DAVIS" / sub / "480p" / SEQUENCE
        folder.mkdir(parents=True)
        files = sorted((davis_root / sub / "480p" / SEQUENCE).glob(f"*.{ext}"))[:FRAMES]
        assert len(files) == FRAMES, f"{davis_root / sub / '480p' / SEQUENCE} has fewer than {FRAMES} files"
        for path in files:
            os.symlink(path, folder / path.name)
    (dest / "DAVIS" / "ImageSets" / "2016").mkdir(parents=True)
    (dest / "DAVIS" / "ImageSets" / "2016" / "val.txt").write_text(SEQUENCE + "\n")
    return dest / "DAVIS"


def test_random18_davis16_end_to_end(tmp_path, davis_root):
    davis = _short_davis(davis_root, tmp_path / "data")
    results = tmp_path / "results"
    env = dict(os.environ, PYTHON=sys.executable, DATA_ROOT=str(davis.parent), RESULTS_ROOT=str(results))
    run = subprocess.run(["bash", "scripts/run_test.sh", "random18", "davis16", "--input-size", "120",
                          "--sequences", SEQUENCE, "data.workers=1",
                          "prop.context=5"],  # a short context keeps CI fast; the paper's 50 is the default
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    out = results / "random18" / "davis16"
    names = sorted(p.stem for p in (davis / "JPEGImages" / "480p" / SEQUENCE).glob("*.jpg"))
    assert sorted(p.stem for p in (out / SEQUENCE).glob("*.png")) == names
    ious = {}
    for name in names:  # every frame: an indexed DAVIS PNG at full size, holding the object where it is
        with Image.open(out / SEQUENCE / f"{name}.png") as im:
            assert im.mode == "P" and im.size == (854, 480), name
            assert np.array_equal(np.array(im.getpalette(), dtype=np.uint8).reshape(-1, 3), DAVIS_PALETTE)
            pred = np.array(im)
        assert set(np.unique(pred)) == {0, 1}, name  # background and a non-empty object
        with Image.open(davis / "Annotations" / "480p" / SEQUENCE / f"{name}.png") as im:
            truth = np.array(im) > 0
        ious[name] = ((pred == 1) & truth).sum() / ((pred == 1) | truth).sum()
        assert ious[name] > 0.4, (name, ious[name])

    metrics = subprocess.run(["bash", "scripts/run_metrics", "random18", "davis16", "--sequences", SEQUENCE],
                             cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert metrics.returncode == 0, metrics.stderr
    assert "J&F-Mean" in metrics.stdout
    # the script's CSVs are those of an in-process evaluation of the same folder ...
    objects = evaluate(davis, out, 2016, "val", sequences=[SEQUENCE], progress=False)
    write_csvs(objects, tmp_path / "in_process", "val")
    for csv in ("global_results-val.csv", "per-sequence_results-val.csv"):
        assert (out / csv).read_text() == (tmp_path / "in_process" / csv).read_text(), csv
    # ... whose J per frame is the IoU measured above (first and last frame not scored)
    (obj,) = objects
    assert list(obj.frames) == names[1:-1]
    np.testing.assert_allclose(obj.J, [ious[n] for n in names[1:-1]], rtol=0, atol=1e-12)
    header, values = (out / "global_results-val.csv").read_text().splitlines()
    assert float(values.split(",")[header.split(",").index("J-Mean")]) == round(float(np.mean(obj.J)), 3)
