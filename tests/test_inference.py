"""The per-video loop and test.py: outputs, skipping, YouTube-VOS submission, errors."""

from __future__ import annotations

import zipfile
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from hvc.config.core import ConfigError, load_config
from hvc.config.inference import TestConfig
from hvc.data.palette import DAVIS_PALETTE
from hvc.entry import test as test_entry
from hvc.inference import FeatureExtractor, run_inference
from hvc.models.encoders import load_encoder
from hvc.models.resnet import ResNet
from helpers.vos_trees import H, W, davis17_ids, make_davis17, make_ytvos

REPO = Path(__file__).resolve().parents[1]



def _config(root, out, dataset="davis17", *extra):
    return load_config(TestConfig, None, [f"data.dataset={dataset}", f"data.root={root}", f"run.output_dir={out}",
                                          "model.name=random18", "data.workers=0", *extra])


def _png(path) -> np.ndarray:
    with Image.open(path) as im:
        assert im.mode == "P" and im.size == (W, H)
        np.testing.assert_array_equal(np.array(im.getpalette(), dtype=np.uint8).reshape(-1, 3), DAVIS_PALETTE)
        return np.array(im)


def _iou(pred: np.ndarray, truth: np.ndarray) -> float:
    return (pred & truth).sum() / (pred | truth).sum()


def _assert_tracks(pred: np.ndarray, t: int, min_iou: float = 0.5) -> None:
    """Both objects of the synthetic DAVIS scene at frame t: their predicted masks overlap the
    true boxes (IoU > min_iou) better than the boxes' frame-0 place, so the masks moved with them.
    Masks are coarse (stride-8 features of a 48x80 frame): a perfect tracker reaches ~0.7."""
    truth, start = davis17_ids(t), davis17_ids(0)
    for obj in (1, 2):
        iou = _iou(pred == obj, truth == obj)
        assert iou > min_iou, (t, obj, iou)
        if t > 0:
            assert iou > _iou(pred == obj, start == obj) + 0.2, (t, obj, "the mask stayed at its frame-0 place")


def test_davis17_outputs_track_the_objects_skip_and_overwrite(tmp_path):
    root = make_davis17(tmp_path / "DAVIS", frames=6)  # the boxes move 10 px right by the last frame
    out = tmp_path / "res"
    run_inference(_config(root, out))
    for name in ("alpha", "beta"):
        files = sorted(p.name for p in (out / name).iterdir())
        assert files == [f"{t:05d}.png" for t in range(6)]
        first = _png(out / name / "00000.png")
        assert set(np.unique(first)) == {0, 1, 2}  # both objects, void -> background
        _assert_tracks(first, 0)
        _assert_tracks(_png(out / name / "00005.png"), 5)
    stamp = (out / "alpha" / "00005.png").stat().st_mtime_ns
    run_inference(_config(root, out))  # finished: skipped
    assert (out / "alpha" / "00005.png").stat().st_mtime_ns == stamp
    (out / "beta" / "00005.png").unlink()  # unfinished: redone
    run_inference(_config(root, out))
    assert (out / "beta" / "00005.png").is_file()
    assert (out / "alpha" / "00005.png").stat().st_mtime_ns == stamp
    run_inference(_config(root, out, "davis17", "run.overwrite=true"))
    assert (out / "alpha" / "00005.png").stat().st_mtime_ns != stamp


def _outputs(folder: Path) -> dict[str, np.ndarray]:
    return {str(p.relative_to(folder)): _png(p) for p in sorted(folder.rglob("*.png"))}


def test_batch_size_amp_and_channels_last_do_not_change_the_output(tmp_path):
    """data.batch_size 1 and 3 (4 frames: batches of 3 + 1) give identical PNGs, and so does
    run.amp on the CPU (ignored there: float32, as documented); run.channels_last reorders the
    convolutions' sums (features move by ~1e-7), which may flip a label only at an exact tie."""
    root = make_davis17(tmp_path / "DAVIS", frames=4)
    runs = {"bs1": ["data.batch_size=1"], "bs3": ["data.batch_size=3"],
            "cpu_amp": ["data.batch_size=3", "run.amp=fp16"], "channels_last": ["run.channels_last=true"]}
    outputs = {name: _outputs(run_inference(_config(root, tmp_path / name, "davis17", *extra)))
               for name, extra in runs.items()}
    assert len(outputs["bs1"]) == 8
    for name in ("bs3", "cpu_amp", "channels_last"):
        assert list(outputs[name]) == list(outputs["bs1"])
        for key, labels in outputs["bs1"].items():
            if name == "channels_last":
                assert (outputs[name][key] != labels).mean() <= 1e-3, key
            else:
                np.testing.assert_array_equal(outputs[name][key], labels, err_msg=f"{name} {key}")


def test_other_settings_in_the_same_folder_are_refused(tmp_path):
    root = make_davis17(tmp_path / "DAVIS", sequences=("alpha",), frames=2)
    out = tmp_path / "res"
    run_inference(_config(root, out))
    with pytest.raises(ConfigError, match="other settings"):
        run_inference(_config(root, out, "davis17", "data.input_size=24"))
    run_inference(_config(root, out, "davis17", "data.input_size=24", "run.overwrite=true"))
    assert load_config(TestConfig, out / "config.yaml").data.input_size == 24
    # the approximate modes change labels: results of the bf16 encoder, bf16 propagation or the
    # reduced search never join exact ones
    for mode in ("run.encoder=bf16", "prop.precision=bf16", "prop.search_dims=96", "prop.candidates=1"):
        with pytest.raises(ConfigError, match="other settings"):
            run_inference(_config(root, out, "davis17", "data.input_size=24", mode))


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


def _rgb(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.float32)


def test_visualize_writes_overlays_and_mp4(tmp_path):
    root = make_davis17(tmp_path / "DAVIS", sequences=("alpha",), frames=3)
    out = tmp_path / "res"
    run_inference(_config(root, out, "davis17", "run.visualize=true"))
    vis = tmp_path / "res_vis"
    assert sorted(p.name for p in (vis / "alpha").iterdir()) == ["00000.jpg", "00001.jpg", "00002.jpg"]
    outside, blend_error, change = [], {1: [], 2: []}, {1: [], 2: []}
    for t in range(3):
        shown = _rgb(vis / "alpha" / f"{t:05d}.jpg")
        raw = _rgb(root / "JPEGImages" / "480p" / "alpha" / f"{t:05d}.jpg")
        labels = _png(out / "alpha" / f"{t:05d}.png")
        assert shown.shape == raw.shape == (H, W, 3)
        # leave out the white borders and the JPEG ringing around them
        near_edge = cv2.dilate((cv2.Canny(labels * 60, 1, 1) > 0).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        outside.append(np.abs(shown - raw)[(labels == 0) & ~near_edge])
        for obj in (1, 2):
            inside = (labels == obj) & ~near_edge
            blend_error[obj].append(np.abs(shown[inside] - (0.5 * raw[inside] + 0.5 * DAVIS_PALETTE[obj])))
            change[obj].append(np.abs(shown[inside] - raw[inside]))
    # outside the masks the overlay is the frame (up to JPEG noise, ~5 levels on this texture) ...
    assert np.concatenate(outside).mean() < 8
    # ... inside each object it is half frame, half the object's palette colour, far from the frame
    for obj in (1, 2):
        assert sum(e.shape[0] for e in blend_error[obj]) > 40, obj
        assert np.concatenate(blend_error[obj]).mean() < 8, obj
        assert np.concatenate(change[obj]).mean() > 20, obj
    with av.open(str(vis / "alpha.mp4")) as container:  # H.264, which browsers play (hvc/exports.py)
        assert container.streams.video[0].codec_context.name == "h264"
    video = cv2.VideoCapture(str(vis / "alpha.mp4"))
    decoded = []
    ok, image = video.read()
    while ok:
        decoded.append(image)
        ok, image = video.read()
    video.release()
    assert len(decoded) == 3 and decoded[0].shape == (H, W, 3)
    # the video shows the overlays (BGR), not the raw frames
    last = decoded[2][..., ::-1].astype(np.float32)
    masked = _png(out / "alpha" / "00002.png") > 0
    to_overlay = np.abs(last - _rgb(vis / "alpha" / "00002.jpg"))[masked].mean()
    to_raw = np.abs(last - _rgb(root / "JPEGImages" / "480p" / "alpha" / "00002.jpg"))[masked].mean()
    assert to_overlay < 10 < 20 < to_raw, (to_overlay, to_raw)


def _unit(x: torch.Tensor) -> torch.Tensor:
    """x / max(||x||, 1e-12) over the channels of every position: [N, C, h, w]."""
    return x / x.pow(2).sum(dim=1, keepdim=True).sqrt().clamp_min(1e-12)


def test_merged_features_are_the_official_merge():
    """SPEC section 3 / the official infer_vos.py: cat(1.05 * unit(hvc), unit(merge)), re-normalised."""
    a, b = load_encoder("random18", seed=0), load_encoder("random18", seed=1)
    frames = torch.randn(2, 3, 32, 40)
    with torch.no_grad():
        fa, fb = a(frames), b(frames)
    merged = FeatureExtractor(a, b, merge_lambda=1.05)(frames)
    assert merged.shape == (2, 512, 4, 5)
    expected = _unit(torch.cat([1.05 * _unit(fa), _unit(fb)], dim=1))
    torch.testing.assert_close(merged, expected, rtol=1e-5, atol=1e-6)
    # written out: the first 256 channels are 1.05 / sqrt(1.05^2 + 1) of the unit hvc features
    torch.testing.assert_close(merged[:, :256], _unit(fa) * (1.05 / (1.05**2 + 1) ** 0.5), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(FeatureExtractor(a)(frames), _unit(fa), rtol=1e-5, atol=1e-6)


def _zero_hvc_export(path: Path) -> Path:
    """An HVC export (bare ResNet-18 state dict) of zeros: its features are 0 everywhere."""
    torch.save({k: torch.zeros_like(v) for k, v in ResNet("resnet18", with_layer4=True).state_dict().items()}, path)
    return path


def _random_moco_checkpoint(path: Path) -> Path:
    """A MoCo v1 file as the official repository writes it, with the paper's random init."""
    torch.manual_seed(0)
    q = ResNet("resnet50", with_layer4=False).state_dict()
    torch.save({"epoch": 200, "arch": "resnet50", "state_dict": {f"module.encoder_q.{k}": v for k, v in q.items()}},
               path)
    return path


def test_moco_merge_through_test_py(tmp_path):
    """--merge-model mocov1 writes <model>+mocov1/<dataset>/ and tracks with the merged
    features: the main encoder here sees nothing (all-zero weights), so every bit of tracking
    comes from the MoCo channels concatenated to it."""
    root = make_davis17(tmp_path / "DAVIS", sequences=("alpha",), frames=6)
    zero = _zero_hvc_export(tmp_path / "zero_hvc.pth")
    moco = _random_moco_checkpoint(tmp_path / "moco_v1_200ep_pretrain.pth.tar")
    args = ["--config", str(REPO / "configs" / "test_davis17.yaml"), "--model", "hvc", "--checkpoint", str(zero),
            f"data.root={root}", f"run.results_root={tmp_path / 'results'}", "data.workers=0",
            "model.bn_dummy_forward=false"]  # saves a 256x256 ResNet-50 pass; tested in test_recipes.py
    assert test_entry.main([*args, "--merge-model", "mocov1", f"model.merge_checkpoint={moco}"]) == 0
    merged = tmp_path / "results" / "hvc+mocov1" / "davis17"
    recorded = load_config(TestConfig, merged / "config.yaml").model
    assert (recorded.merge_model, recorded.merge_lambda) == ("mocov1", 1.05)
    _assert_tracks(_png(merged / "alpha" / "00005.png"), 5)
    # the blind encoder alone (control): no tracking without the merged channels
    assert test_entry.main(args) == 0
    alone = _png(tmp_path / "results" / "hvc" / "davis17" / "alpha" / "00005.png")
    assert all(_iou(alone == obj, davis17_ids(5) == obj) < 0.2 for obj in (1, 2))


@pytest.mark.parametrize("dataset", ["davis17dev", "ytvos19"])
def test_davis17dev_and_ytvos19_configs_end_to_end(tmp_path, dataset):
    if dataset == "davis17dev":
        root = make_davis17(tmp_path / "DAVIS", sequences=("gamma",), frames=6)
        (root / "ImageSets" / "2017" / "val.txt").unlink()  # test-dev only: the split file must be the one read
        (root / "ImageSets" / "2017" / "test-dev.txt").write_text("gamma\n")
    else:
        root = make_ytvos(tmp_path / "2019")
    argv = ["--config", str(REPO / "configs" / f"test_{dataset}.yaml"), "--model", "random18", f"data.root={root}",
            f"run.results_root={tmp_path / 'results'}", "data.workers=0"]
    assert test_entry.main(argv) == 0
    out = tmp_path / "results" / "random18" / dataset
    assert load_config(TestConfig, out / "config.yaml").data.dataset == dataset
    if dataset == "davis17dev":
        assert sorted(p.name for p in (out / "gamma").iterdir()) == [f"{t:05d}.png" for t in range(6)]
        _assert_tracks(_png(out / "gamma" / "00005.png"), 5)
        return
    ann = out / "Annotations"
    assert sorted(p.name for p in (ann / "vid_a").iterdir()) == ["00000.png", "00002.png", "00004.png", "00006.png"]
    last = _png(ann / "vid_a" / "00006.png")
    assert set(np.unique(last)) == {0, 1, 2}  # object 2 started at 00004 and is still there
    with zipfile.ZipFile(out / "submission.zip") as zf:
        assert len(zf.namelist()) == 7


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


def test_loader_workers_default_to_none_on_two_cores(monkeypatch):
    """data.workers=None (the default) reads frames in the main process where the process may
    use at most 2 CPUs (workers there compete with the compute), else in 2 workers; a number
    given is kept; a negative one is refused by name."""
    import hvc.inference as inference_module

    assert TestConfig().data.workers is None
    for cpus, workers in ((1, 0), (2, 0), (3, 2), (64, 2)):
        monkeypatch.setattr(inference_module, "usable_cpus", lambda cpus=cpus: cpus)
        assert inference_module.loader_workers(None) == workers
        assert inference_module.loader_workers(3) == 3 and inference_module.loader_workers(0) == 0
    assert load_config(TestConfig, None, ["data.workers=null"]).data.workers is None
    assert load_config(TestConfig, None, ["data.workers=4"]).data.workers == 4
    with pytest.raises(ConfigError, match="data.workers"):
        load_config(TestConfig, None, ["data.workers=-1"])
