"""The per-video loop and test.py: outputs, skipping, YouTube-VOS submission, errors."""

from __future__ import annotations

import importlib.util
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hvc.config.core import ConfigError, load_config
from hvc.config.inference import TestConfig
from hvc.data.palette import DAVIS_PALETTE
from hvc.inference import FeatureExtractor, run_inference
from hvc.models.encoders import load_encoder
from hvc.propagation import embed
from vos_trees import H, W, make_davis17, make_ytvos

# test.py by path: the name "test" is also a standard-library package
_spec = importlib.util.spec_from_file_location("hvc_test_entry", Path(__file__).resolve().parents[1] / "test.py")
test_entry = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(test_entry)


def _config(root, out, dataset="davis17", *extra):
    return load_config(TestConfig, None, [f"data.dataset={dataset}", f"data.root={root}", f"run.output_dir={out}",
                                          "model.name=random18", "data.workers=0", *extra])


def _png(path) -> np.ndarray:
    with Image.open(path) as im:
        assert im.mode == "P" and im.size == (W, H)
        np.testing.assert_array_equal(np.array(im.getpalette(), dtype=np.uint8).reshape(-1, 3), DAVIS_PALETTE)
        return np.array(im)


def test_davis17_outputs_skip_and_overwrite(tmp_path):
    root = make_davis17(tmp_path / "DAVIS")
    out = tmp_path / "res"
    run_inference(_config(root, out))
    for name in ("alpha", "beta"):
        files = sorted(p.name for p in (out / name).iterdir())
        assert files == [f"{t:05d}.png" for t in range(4)]
        first = _png(out / name / "00000.png")
        assert set(np.unique(first)) == {0, 1, 2}  # both objects, void -> background
    stamp = (out / "alpha" / "00003.png").stat().st_mtime_ns
    run_inference(_config(root, out))  # finished: skipped
    assert (out / "alpha" / "00003.png").stat().st_mtime_ns == stamp
    (out / "beta" / "00003.png").unlink()  # unfinished: redone
    run_inference(_config(root, out))
    assert (out / "beta" / "00003.png").is_file()
    assert (out / "alpha" / "00003.png").stat().st_mtime_ns == stamp
    run_inference(_config(root, out, "davis17", "run.overwrite=true"))
    assert (out / "alpha" / "00003.png").stat().st_mtime_ns != stamp


def test_other_settings_in_the_same_folder_are_refused(tmp_path):
    root = make_davis17(tmp_path / "DAVIS", sequences=("alpha",), frames=2)
    out = tmp_path / "res"
    run_inference(_config(root, out))
    with pytest.raises(ConfigError, match="other settings"):
        run_inference(_config(root, out, "davis17", "data.input_size=24"))
    run_inference(_config(root, out, "davis17", "data.input_size=24", "run.overwrite=true"))
    assert load_config(TestConfig, out / "config.yaml").data.input_size == 24


def test_ytvos_submission_layout_and_late_objects(tmp_path):
    root = make_ytvos(tmp_path / "2018")
    out = tmp_path / "res"
    run_inference(_config(root, out, "ytvos", "data.workers=1", "data.batch_size=3"))
    ann = out / "Annotations"
    assert sorted(p.name for p in (ann / "vid_a").iterdir()) == ["00000.png", "00002.png", "00004.png", "00006.png"]
    assert sorted(p.name for p in (ann / "vid_b").iterdir()) == ["00002.png", "00004.png", "00006.png"]
    assert 2 not in _png(ann / "vid_a" / "00002.png")
    late = _png(ann / "vid_a" / "00004.png")  # object 2 starts here from its own annotation
    rows, cols = np.nonzero(late == 2)  # object 2: rows 28-41, cols 18-33 (224 px); masks are coarse at stride 8
    assert 112 < rows.size < 336 and abs(rows.mean() - 34.5) < 3 and abs(cols.mean() - 25.5) < 3
    assert 1 in late
    with zipfile.ZipFile(out / "submission.zip") as zf:
        names = sorted(zf.namelist())
    assert names == sorted(f"Annotations/{p.parent.name}/{p.name}" for p in ann.rglob("*.png")) and len(names) == 7


def test_visualize_writes_overlays_and_mp4(tmp_path):
    root = make_davis17(tmp_path / "DAVIS", sequences=("alpha",), frames=3)
    out = tmp_path / "res"
    run_inference(_config(root, out, "davis17", "run.visualize=true"))
    vis = tmp_path / "res_vis"
    assert sorted(p.name for p in (vis / "alpha").iterdir()) == ["00000.jpg", "00001.jpg", "00002.jpg"]
    assert (vis / "alpha.mp4").stat().st_size > 0
    with Image.open(vis / "alpha" / "00000.jpg") as im:
        assert im.size == (W, H)


def test_merged_features_are_the_official_merge():
    a, b = load_encoder("random18", seed=0), load_encoder("random18", seed=1)
    frames = torch.randn(2, 3, 32, 40)
    merged = FeatureExtractor(a, b, merge_lambda=1.05)(frames)
    with torch.no_grad():
        expected = embed(a(frames), merge_feats=b(frames), merge_lambda=1.05)
    assert merged.shape == (2, 512, 4, 5)
    torch.testing.assert_close(merged, expected)


def test_cli_errors_are_clear(tmp_path, capsys):
    root = make_davis17(tmp_path / "DAVIS", sequences=("alpha",), frames=2)
    config = tmp_path / "c.yaml"
    config.write_text(f"data:\n  dataset: davis17\n  root: {root}\n")
    args = ["--config", str(config), "data.batch_size=2", "--output", str(tmp_path / "res"), "data.workers=0"]
    assert test_entry.main([*args, "--model", "random18", "--sequences", "nope"]) == 3
    assert "nope" in capsys.readouterr().err
    assert test_entry.main([*args, "--checkpoint", str(tmp_path / "missing.pth")]) == 3
    assert "missing.pth" in capsys.readouterr().err
    mask = root / "Annotations" / "480p" / "alpha" / "00000.png"
    Image.fromarray(np.zeros((H + 1, W), dtype=np.uint8)).convert("P").save(mask)
    assert test_entry.main([*args, "--model", "random18", "--input-size", "24"]) == 3
    assert "differs from the frame size" in capsys.readouterr().err
