"""``python -m hvc.segment`` on a synthetic mp4 (the demo video, H.264): end to end, each
input error, the exports of --save, resuming after an interruption and after SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

import hvc.segment.run as segment_run
from hvc.data.palette import save_indexed_png
from hvc.demo.video import render_video
from hvc.errors import EXIT_INPUT, EXIT_NON_FINITE, EXIT_USAGE
from hvc.exports import Mp4Writer
from hvc.scribbles import render, save_png, scribbles_from_mask
from hvc.segment import Options, segment
from hvc.segment.__main__ import main

REPO = Path(__file__).resolve().parents[1]
PROGRESS = Path(".hvc") / "staging" / "progress" / "progress.json"  # the state of a run in progress
FRAMES, H, W = 10, 96, 160


def _write_mp4(path: Path, frames: list[np.ndarray], fps: int = 12) -> None:
    with Mp4Writer(path, fps) as video:
        for f in frames:
            video.write(f)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """demo.mp4 (10 frames, 96x160), first.png (its first-frame ids), the ground truth."""
    folder = tmp_path_factory.mktemp("clip")
    frames, labels = render_video(num_frames=FRAMES, height=H, width=W)
    _write_mp4(folder / "demo.mp4", frames)
    save_indexed_png(folder / "first.png", labels[0])
    return folder, labels


def _masks(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((folder / "masks").glob("*.png"))}


def test_segments_an_mp4_end_to_end(clip, tmp_path, capsys):
    folder, labels = clip
    out = tmp_path / "out"
    assert main([str(folder / "demo.mp4"), "--mask", str(folder / "first.png"), "--output", str(out)]) == 0
    assert "10 frames" in capsys.readouterr().out
    pngs = sorted((out / "masks").glob("*.png"))
    assert [p.name for p in pngs] == [f"{t:05d}.png" for t in range(FRAMES)]
    with Image.open(pngs[0]) as im:
        assert im.mode == "P" and np.array_equal(np.array(im), labels[0])  # frame 0 is the given mask
    last = np.array(Image.open(pngs[-1]))
    ious = [((last == o) & (labels[-1] == o)).sum() / ((last == o) | (labels[-1] == o)).sum() for o in (1, 2)]
    assert min(ious) > 0.5, ious  # both objects followed to the last frame
    video = cv2.VideoCapture(str(out / "overlay.mp4"))
    count = 0
    while video.read()[0]:
        count += 1
    assert count == FRAMES
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == FRAMES and summary["runs"] == 1 and summary["input_size"] == [H, W]
    assert set(summary["objects"]) == {"1", "2"} and summary["objects"]["1"]["frames_present"] == FRAMES
    assert summary["checkpoint"].endswith("checkpoints/hvc_bsds_cpu.pth")


def test_save_writes_each_format_once_and_later_only_the_missing_ones(clip, tmp_path, capsys):
    folder, _ = clip
    out = tmp_path / "out"
    argv = [str(folder / "demo.mp4"), "--mask", str(folder / "first.png"), "--output", str(out), "--context", "2"]
    assert main([*argv, "--save", "rle", "binary"]) == 0
    printed = capsys.readouterr().out
    assert f"rle {out / 'rle.json'}" in printed and f"binary {out / 'binary'}" in printed
    assert not (out / "overlay.mp4").exists() and not (out / "alpha").exists()  # only what was asked for
    assert sorted(p.name for p in (out / "binary").iterdir()) == ["1", "2"]
    assert len(json.loads((out / "rle.json").read_text())["annotations"]) == FRAMES
    rle_written = (out / "rle.json").stat().st_mtime_ns
    assert main([*argv, "--save", "rle", "alpha", "mp4"]) == 0  # finished: adds alpha and mp4 only
    assert (out / "rle.json").stat().st_mtime_ns == rle_written
    assert len(list((out / "alpha" / "2").glob("*.png"))) == FRAMES and (out / "overlay.mp4").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["exports"]) == ["palette", "rle", "binary", "alpha", "mp4"] and summary["runs"] == 2
    assert main([*argv, "--save", "gif"]) == EXIT_USAGE  # an unknown format is a usage error
    capsys.readouterr()

    foreign = tmp_path / "foreign"
    (foreign / "binary").mkdir(parents=True)  # not written by hvc.segment: never deleted
    err = _error([str(folder / "demo.mp4"), "--mask", str(folder / "first.png"), "--output", str(foreign)], capsys,
                 EXIT_USAGE)
    assert "binary: exists and was not written by hvc.segment" in err and (foreign / "binary").is_dir()


def test_a_folder_of_frames_and_scribbles(clip, tmp_path):
    folder, labels = clip
    frames = render_video(num_frames=4, height=H, width=W)[0]
    src = tmp_path / "frames"
    src.mkdir()
    for t, f in enumerate(frames):
        Image.fromarray(f).save(src / f"img_{t * 5:03d}.png")
    scribbles = render(scribbles_from_mask(labels[0]), labels[0].shape, thickness=3)
    save_png(tmp_path / "s.png", scribbles)
    out = tmp_path / "out"
    summary = segment(Options(video=src, output=out, scribble=tmp_path / "s.png", context=3, memory="quality"))
    assert sorted(_masks(out)) == ["img_000.png", "img_005.png", "img_010.png", "img_015.png"]
    first = np.array(Image.open(out / "masks" / "img_000.png"))
    assert set(np.unique(first)) <= {0, 1, 2}
    assert (first == labels[0]).mean() > 0.8  # the frame-0 fill from scribbles
    assert summary["prompt"]["kind"] == "scribble" and summary["propagation"]["memory"] == "quality"


def _error(argv: list[str], capsys, code: int = EXIT_INPUT) -> str:
    assert main(argv) == code
    err = capsys.readouterr().err
    # one line, the last one (a progress bar may come before it), and no traceback
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and err.rstrip().endswith(errors[0]) and "Traceback" not in err, err
    return errors[0]


def test_clear_one_line_errors(clip, tmp_path, capsys):
    folder, labels = clip
    first = str(folder / "first.png")
    out = ["--output", str(tmp_path / "out")]

    (tmp_path / "broken.mp4").write_bytes(b"this is not a video")
    err = _error([str(tmp_path / "broken.mp4"), "--mask", first, *out], capsys)
    assert "broken.mp4: cannot decode" in err
    assert "no such video" in _error([str(tmp_path / "missing.mp4"), "--mask", first, *out], capsys)

    _write_mp4(tmp_path / "single.mp4", render_video(num_frames=1, height=H, width=W)[0])
    assert "one frame" in _error([str(tmp_path / "single.mp4"), "--mask", first, *out], capsys)

    save_indexed_png(tmp_path / "small.png", cv2.resize(labels[0], (W // 2, H // 2), interpolation=cv2.INTER_NEAREST))
    err = _error([str(folder / "demo.mp4"), "--mask", str(tmp_path / "small.png"), *out], capsys)
    assert "small.png: mask size 80x48 differs from the video's frames 160x96" in err and "--resize-mask" in err

    save_indexed_png(tmp_path / "empty.png", np.zeros((H, W), np.uint8))
    assert "empty.png: no object in the mask" in _error([str(folder / "demo.mp4"), "--mask",
                                                          str(tmp_path / "empty.png"), *out], capsys)
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(tmp_path / "rgb.png")
    assert "rgb.png: no object in the mask" in _error([str(folder / "demo.mp4"), "--mask",
                                                        str(tmp_path / "rgb.png"), *out], capsys)
    assert not (tmp_path / "out" / "masks").exists()  # nothing written by a refused run

    # usage errors exit 2, as in every entry point (hvc/errors.py)
    assert "--input-size must lie in [16, 4096]" in _error([str(folder / "demo.mp4"), "--mask", first, "--input-size", "4",
                                                         *out], capsys, EXIT_USAGE)

    # --resize-mask scales the small mask and runs
    assert main([str(folder / "demo.mp4"), "--mask", str(tmp_path / "small.png"), "--resize-mask",
                 "--output", str(tmp_path / "resized")]) == 0
    assert len(_masks(tmp_path / "resized")) == FRAMES


def test_other_settings_refused_and_non_finite_features_stop(clip, tmp_path, capsys, monkeypatch):
    folder, _ = clip
    argv = [str(folder / "demo.mp4"), "--mask", str(folder / "first.png"), "--output", str(tmp_path / "out")]
    assert main([*argv, "--context", "2"]) == 0
    capsys.readouterr()
    before = {p.name: p.read_bytes() for p in (tmp_path / "out" / "masks").iterdir()}
    err = _error([*argv, "--context", "3"], capsys, EXIT_USAGE)
    assert "made with other settings" in err and "--overwrite" in err
    assert {p.name: p.read_bytes() for p in (tmp_path / "out" / "masks").iterdir()} == before  # untouched

    real_encode = segment_run.VideoSegmenter.encode
    calls = []

    def poisoned(self, rgb):  # frame 3's features hold a NaN, as from broken weights
        emb = real_encode(self, rgb)
        calls.append(1)
        if len(calls) == 4:
            emb = emb.clone()
            emb[0, 0, 0] = float("nan")
        return emb

    monkeypatch.setattr(segment_run.VideoSegmenter, "encode", poisoned)
    err = _error([str(folder / "demo.mp4"), "--mask", str(folder / "first.png"), "--output", str(tmp_path / "nan")],
                 capsys, EXIT_NON_FINITE)
    assert "features of frame 3" in err and "NaN or inf" in err
    staged = tmp_path / "nan" / ".hvc" / "staging" / "video"  # a run in progress stages its masks
    assert sorted(p.name for p in staged.glob("*.png")) == [f"{t:05d}.png" for t in range(3)]  # nothing of frame 3


class _Interrupt(Exception):
    pass


def test_resumes_after_an_interruption_and_never_redoes_a_finished_run(clip, tmp_path, monkeypatch):
    folder, _ = clip
    opts = dict(video=folder / "demo.mp4", mask=folder / "first.png", context=2)
    segment(Options(output=tmp_path / "whole", **opts))

    encoded = []
    real_encode = segment_run.VideoSegmenter.encode
    monkeypatch.setattr(segment_run.VideoSegmenter, "encode",
                        lambda self, rgb: encoded.append(1) or real_encode(self, rgb))

    def stop_at_4(t):
        if t == 4:
            raise _Interrupt

    out = tmp_path / "killed"
    with pytest.raises(_Interrupt):
        segment(Options(output=out, **opts), on_frame=stop_at_4)
    record = json.loads((out / PROGRESS).read_text())
    assert record["done"] == 5 and record["pass"] == 0  # frames 0..4 of the forward pass
    assert not (out / "masks").exists()  # the masks of a run in progress are staged
    staged = out / ".hvc" / "staging" / "video"
    assert sorted(p.name for p in staged.glob("*.png")) == [f"{t:05d}.png" for t in range(5)]
    assert not (out / "overlay.mp4").exists() and not (out / "summary.json").exists()
    written = {p.name: p.stat().st_mtime_ns for p in staged.glob("*.png")}

    encoded.clear()
    summary = segment(Options(output=out, **opts))
    # re-encoded: the frames the propagator held after frame 4 (the reference 0, frames 3 and 4),
    # then frames 5..9 once each
    assert len(encoded) == 3 + 5
    assert summary["runs"] == 2 and summary["frames"] == FRAMES
    assert _masks(out) == _masks(tmp_path / "whole")  # byte for byte
    assert all((out / "masks" / n).stat().st_mtime_ns == m for n, m in written.items())  # not rewritten

    encoded.clear()
    again = segment(Options(output=out, **opts))
    assert encoded == [] and again["frames"] == FRAMES  # finished: nothing redone
    with pytest.raises(Exception, match="other settings"):
        segment(Options(output=out, **{**opts, "context": 3}))
    segment(Options(output=out, overwrite=True, **{**opts, "context": 3}))
    assert json.loads((out / "summary.json").read_text())["propagation"]["context"] == 3


@pytest.mark.parametrize("search_dims, candidates", [(None, 2.0), (16, 2.0), (16, 1.0)],
                         ids=["bf16", "bf16-reduced-search", "bf16-reduced-search-1x"])
def test_bf16_propagation_resumes_exactly_and_is_a_setting_of_its_own(clip, tmp_path, search_dims, candidates):
    """--precision bf16 (approximate propagation), alone or with --search-dims and --candidates:
    an interrupted run resumed gives the same bytes as a whole one (the restored memory centres
    its keys, and takes its principal axes, from frame 0 as the original did), and an fp32
    output folder refuses it as other settings, as one of another candidate count does."""
    folder, _ = clip
    opts = dict(video=folder / "demo.mp4", mask=folder / "first.png", context=2, precision="bf16",
                search_dims=search_dims, candidates=candidates)
    whole = segment(Options(output=tmp_path / "whole", **opts))
    assert whole["propagation"]["precision"] == "bf16"
    assert whole["propagation"].get("search_dims") == search_dims
    assert whole["propagation"]["candidates"] == candidates
    if candidates != 2.0:
        with pytest.raises(Exception, match="other settings"):
            segment(Options(output=tmp_path / "whole", **{**opts, "candidates": 2.0}))

    def stop_at_4(t):
        if t == 4:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        segment(Options(output=tmp_path / "killed", **opts), on_frame=stop_at_4)
    assert segment(Options(output=tmp_path / "killed", **opts))["runs"] == 2
    assert _masks(tmp_path / "killed") == _masks(tmp_path / "whole")  # byte for byte
    segment(Options(output=tmp_path / "fp32", **{**opts, "precision": "fp32", "search_dims": None}))
    with pytest.raises(Exception, match="other settings"):
        segment(Options(output=tmp_path / "fp32", **opts))


def test_resumes_after_sigkill(clip, tmp_path):
    folder, _ = clip
    frames = render_video(num_frames=30, height=H, width=W)[0]
    _write_mp4(tmp_path / "long.mp4", frames)
    args = [str(tmp_path / "long.mp4"), "--mask", str(folder / "first.png"), "--context", "4"]
    # the killed run is a process of its own, with this process's thread count: the resumed and the
    # uninterrupted runs go on in this process (same arithmetic)
    threads = str(torch.get_num_threads())
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    record = tmp_path / "killed" / PROGRESS
    proc = subprocess.Popen([sys.executable, "-m", "hvc.segment", *args, "--output", str(tmp_path / "killed")],
                            env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        if record.is_file() and json.loads(record.read_text())["done"] >= 3:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = json.loads(record.read_text())
    assert 3 <= done["done"] < 30 and done["pass"] == 0, "the run was not stopped midway"
    assert main([*args, "--output", str(tmp_path / "killed")]) == 0
    assert main([*args, "--output", str(tmp_path / "whole")]) == 0
    assert len(_masks(tmp_path / "killed")) == 30
    assert not list((tmp_path / "killed").rglob(".tmp-*"))  # a killed write's temporary is cleaned up
    assert _masks(tmp_path / "killed") == _masks(tmp_path / "whole")
    assert json.loads((tmp_path / "killed" / "summary.json").read_text())["runs"] == 2
