"""``python -m hvc.segment`` with prompts on several frames and ``--direction``: objects that
start later, correcting masks, backward and both-ways passes, their resumption after an
interruption or SIGKILL, and the results folder they share with test.py. Backward against
forward J on real DAVIS sequences is a measurement, not a test: scripts/direction_check.py
(docs/segment.md)."""

from __future__ import annotations

import io
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

from hvc.completion import ResultsFolder
from hvc.data.palette import save_indexed_png
from hvc.demo.video import render_video
from hvc.errors import EXIT_USAGE
from hvc.exports import Mp4Writer
from hvc.propagation import PropagationConfig
from hvc.scribbles import render, save_png, scribbles_from_mask
from hvc.scribbles.fill import labels_from_scribbles
from hvc.segment import Options, PromptSpec, read_scribble, segment
from hvc.segmenter import VideoSegmenter
from hvc.segment.__main__ import main
from helpers.locations import REPO

FRAMES, H, W = 24, 96, 160
PROGRESS = Path(".hvc") / "staging" / "progress" / "progress.json"  # the state of a run in progress
RUN = dict(context=4)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """clip.mp4 (24 frames, 96x160) and the same frames decoded into a folder; a.png: frame 0's
    object 2 only (object 1 starts at frame 20); b.png: frame 20, both objects (object 2
    corrected there); last.png: frame 23; the ground truth."""
    folder = tmp_path_factory.mktemp("clip")
    frames, labels = render_video(num_frames=FRAMES, height=H, width=W)
    with Mp4Writer(folder / "clip.mp4", 12) as video:
        for f in frames:
            video.write(f)
    decoded = folder / "decoded"
    decoded.mkdir()
    capture = cv2.VideoCapture(str(folder / "clip.mp4"))
    t = 0
    while True:
        ok, bgr = capture.read()
        if not ok:
            break
        cv2.imwrite(str(decoded / f"{t:05d}.png"), bgr)  # lossless: the frames the mp4 decodes to
        t += 1
    capture.release()
    assert t == FRAMES
    (folder / "reversed").mkdir()  # the same frames in reverse order
    for t in range(FRAMES):
        (folder / "reversed" / f"{FRAMES - 1 - t:05d}.png").write_bytes((decoded / f"{t:05d}.png").read_bytes())
    save_indexed_png(folder / "a.png", np.where(labels[0] == 2, 2, 0).astype(np.uint8))
    save_indexed_png(folder / "b.png", labels[20])
    save_indexed_png(folder / "last.png", labels[FRAMES - 1])
    return folder, labels


def _prompts(folder: Path, *specs: tuple[int, str]) -> tuple[PromptSpec, ...]:
    return tuple(PromptSpec(frame, "mask", folder / name) for frame, name in specs)


def _masks(out: Path) -> list[bytes]:
    return [p.read_bytes() for p in sorted((out / "masks").glob("*.png"))]


def _ids(data: bytes) -> np.ndarray:
    """The ids of an indexed PNG's bytes (palette indices, not colours)."""
    with Image.open(io.BytesIO(data)) as im:
        assert im.mode == "P"
        return np.array(im)


def _iou(pred: np.ndarray, truth: np.ndarray, obj: int) -> float:
    a, b = pred == obj, truth == obj
    return float((a & b).sum() / max((a | b).sum(), 1))


def _nearer(t: int, prompts: list[int]) -> str:
    """The rule of --direction both, written out: the pass whose nearest prompt is nearer."""
    fwd = [t - p for p in prompts if p <= t]
    bwd = [p - t for p in prompts if p >= t]
    if fwd and (not bwd or min(fwd) <= min(bwd)):
        return "forward"
    return "backward"


@pytest.fixture(scope="module")
def runs(clip, tmp_path_factory):
    """The frame folder segmented from a.png on frame 0 and b.png on frame 20 in each direction,
    and forward from a.png alone."""
    folder, _ = clip
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for name, prompts, direction in [("forward", ((0, "a.png"), (20, "b.png")), "forward"),
                                     ("backward", ((0, "a.png"), (20, "b.png")), "backward"),
                                     ("both", ((0, "a.png"), (20, "b.png")), "both"),
                                     ("only_a", ((0, "a.png"),), "forward")]:
        summary = segment(Options(video=folder / "decoded", output=root / name, prompts=_prompts(folder, *prompts),
                                  direction=direction, save=("palette",), **RUN))
        assert summary["frames"] == FRAMES and summary["direction"] == direction
        out[name] = _masks(root / name)
    return out


def test_an_object_starts_later_and_a_later_mask_corrects_from_its_frame_on(clip, runs):
    _, labels = clip
    forward, only_a = runs["forward"], runs["only_a"]
    assert forward[:20] == only_a[:20]  # a prompt changes nothing before its frame
    ids = [_ids(m) for m in forward]
    assert all(not (m == 1).any() for m in ids[:20]) and all((m == 1).any() for m in ids[20:])
    assert min(_iou(m, lab, 1) for m, lab in zip(ids[20:], labels[20:])) > 0.6  # object 1 followed from frame 20
    b = labels[20]
    assert np.array_equal(ids[20][b > 0], b[b > 0])  # the correcting mask is the frame's ids where it has objects
    corrected = np.mean([_iou(m, lab, 2) for m, lab in zip(ids[20:], labels[20:])])
    uncorrected = np.mean([_iou(_ids(m), lab, 2) for m, lab in zip(only_a[20:], labels[20:])])
    assert forward[20:] != only_a[20:] and corrected >= uncorrected - 0.02, (corrected, uncorrected)


def test_scribbles_on_a_later_frame_are_filled_on_that_frame(clip, runs, tmp_path):
    """Scribbles for frame 20 start object 1 there, filled in on frame 20's own features: where
    the fill has an object, frame 20's mask is the fill computed from that frame directly."""
    folder, labels = clip
    scribbles = render(scribbles_from_mask(np.where(labels[20] == 1, 1, 0)), (H, W), thickness=2)
    save_png(tmp_path / "s20.png", scribbles)
    prompts = (*_prompts(folder, (0, "a.png")), PromptSpec(20, "scribble", tmp_path / "s20.png"))
    segment(Options(video=folder / "decoded", output=tmp_path / "out", prompts=prompts, save=("palette",), **RUN))
    masks = _masks(tmp_path / "out")
    assert masks[:20] == runs["only_a"][:20]
    seg = VideoSegmenter.from_checkpoint(None, PropagationConfig(num_classes=3))
    emb = seg.encode(np.array(Image.open(folder / "decoded" / "00020.png").convert("RGB")))
    fill = labels_from_scribbles(emb, read_scribble(tmp_path / "s20.png", (H, W)), 3).numpy()
    ids = _ids(masks[20])
    assert (fill == 1).any() and np.array_equal(ids[fill > 0], fill[fill > 0])
    assert _iou(ids, labels[20], 1) > 0.5 and (_ids(masks[-1]) == 1).any()


def test_backward_from_a_last_frame_mask_on_a_video_file_and_a_frame_folder(clip, tmp_path):
    """Backward over an mp4 (its frames decoded once into the staging folder) gives the same bytes
    as over the folder of those frames and as forward over the frames in reverse order, and
    cleans up after itself."""
    folder, labels = clip
    opts = dict(prompts=_prompts(folder, (FRAMES - 1, "last.png")), direction="backward", save=("palette",), **RUN)
    segment(Options(video=folder / "clip.mp4", output=tmp_path / "mp4", **opts))
    segment(Options(video=folder / "decoded", output=tmp_path / "folder", **opts))
    segment(Options(video=folder / "reversed", output=tmp_path / "reversed", prompts=_prompts(folder, (0, "last.png")),
                    save=("palette",), **RUN))
    masks = _masks(tmp_path / "mp4")
    assert len(masks) == FRAMES and masks == _masks(tmp_path / "folder")
    assert masks == _masks(tmp_path / "reversed")[::-1]  # the same engine over the frames in reverse order
    ids = [_ids(m) for m in masks]
    assert np.array_equal(ids[-1], labels[-1])  # the prompt frame shows its mask
    assert _iou(ids[0], labels[0], 1) > 0.5  # object 1 followed back to frame 0
    assert not (tmp_path / "mp4" / ".hvc" / "staging").exists()  # the decoded frames removed with the staging
    record = ResultsFolder(tmp_path / "mp4", "").record("video")  # test.py's completion record
    assert record.frames == FRAMES and record.files == tuple(f"{t:05d}.png" for t in range(FRAMES))


def test_both_takes_each_frame_from_the_pass_with_the_nearer_prompt(runs):
    forward, backward, both = runs["forward"], runs["backward"], runs["both"]
    chosen = {t: _nearer(t, [0, 20]) for t in range(FRAMES)}
    for t in range(FRAMES):
        assert both[t] == (forward if chosen[t] == "forward" else backward)[t], t
    assert chosen[10] == "forward" and chosen[11] == "backward"  # a tie goes forward
    # not vacuous: the passes disagree on frames the backward pass gives
    assert any(forward[t] != backward[t] for t in range(FRAMES) if chosen[t] == "backward")
    assert all(not _ids(backward[t]).any() for t in range(21, FRAMES))  # backward only: nothing after frame 20


class _Interrupt(Exception):
    pass


@pytest.mark.parametrize("direction, stop_after, pass_index", [("backward", 6, 0), ("both", 17, 1)])
def test_backward_and_both_resume_byte_identical_after_an_interruption(clip, runs, tmp_path, direction, stop_after,
                                                                        pass_index):
    folder, _ = clip
    opts = dict(video=folder / "decoded", prompts=_prompts(folder, (0, "a.png"), (20, "b.png")),
                direction=direction, save=("palette",), **RUN)
    seen = []

    def stop(t):
        seen.append(t)
        if len(seen) == stop_after:
            raise _Interrupt

    out = tmp_path / "out"
    with pytest.raises(_Interrupt):
        segment(Options(output=out, **opts), on_frame=stop)
    progress = json.loads((out / PROGRESS).read_text())
    assert progress["pass"] == pass_index and progress["done"] > 0 and progress["propagator"]  # inside a backward pass
    summary = segment(Options(output=out, **opts))
    assert summary["runs"] == 2 and _masks(out) == runs[direction]  # byte for byte


def test_the_command_with_prompts_on_two_frames_both_ways_resumes_after_sigkill(clip, tmp_path, monkeypatch):
    """The command of docs/segment.md on an mp4, killed inside its backward pass and started again:
    the same masks as an uninterrupted run, the exports made once, one results folder."""
    folder, _ = clip
    for name in ("clip.mp4", "a.png", "b.png"):
        (tmp_path / name).write_bytes((folder / name).read_bytes())
    args = ["clip.mp4", "--mask", "0:a.png", "--mask", "20:b.png",
            "--direction", "both", "--save", "palette", "binary", "rle", "mp4"]  # exactly as docs/segment.md has it
    # the killed run is a process of its own, with this process's thread count: the resumed and the
    # uninterrupted runs go on in this process (same arithmetic)
    threads = str(torch.get_num_threads())
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    progress = tmp_path / "clip_masks" / PROGRESS
    proc = subprocess.Popen([sys.executable, "-m", "hvc.segment", *args], env=env, cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        try:
            if json.loads(progress.read_text())["pass"] == 1:
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert json.loads(progress.read_text())["pass"] == 1, "the run was not stopped in its backward pass"
    monkeypatch.chdir(tmp_path)
    assert main(args) == 0
    assert main([*args, "--output", "whole"]) == 0
    out = tmp_path / "clip_masks"
    assert len(_masks(out)) == FRAMES and _masks(out) == _masks(tmp_path / "whole")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["runs"] == 2 and list(summary["exports"]) == ["palette", "binary", "rle", "mp4"]
    assert sorted(p.name for p in (out / "binary").iterdir()) == ["1", "2"] and (out / "overlay.mp4").is_file()
    assert len(json.loads((out / "rle.json").read_text())["annotations"]) == FRAMES
    assert not list(out.rglob(".tmp-*")) and not (out / ".hvc" / "staging").exists()
    assert (out / ".hvc" / "done" / "video.json").is_file()


def test_a_folder_of_the_earlier_layout_is_refused_even_with_overwrite(clip, tmp_path, capsys):
    folder, _ = clip
    out = tmp_path / "out"
    (out / ".hvc").mkdir(parents=True)
    (out / ".hvc" / "progress.json").write_text('{"settings_sha256": "x", "finished": true}')
    (out / "masks").mkdir()
    save_indexed_png(out / "masks" / "00000.png", np.zeros((H, W), np.uint8))
    argv = [str(folder / "decoded"), "--mask", str(folder / "a.png"), "--output", str(out), "--context", "2",
            "--save", "palette"]
    for overwrite in ([], ["--overwrite"]):
        assert main([*argv, *overwrite]) == EXIT_USAGE
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0] == (f"error: {out / '.hvc' / 'progress.json'}: written by an earlier version "
                                            f"of hvc.segment; choose another --output")
    assert (out / "masks" / "00000.png").is_file() and (out / ".hvc" / "progress.json").is_file()  # untouched
    assert sorted(p.name for p in (out / "masks").iterdir()) == ["00000.png"]
