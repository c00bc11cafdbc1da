"""One writer per output folder, and no new run over finished work (docs/failure.md; family 3;
hvc/fileio.py).

test.py, hvc.segment and train.py hold an OS lock (flock on ``<out>/.hvc/lock``) while they
write; a second writer gets one line and exit 7 and writes nothing; the kernel releases the
lock when its holder dies. The ``--shard`` processes of one job share it. train.py refuses a
folder holding a run unless --resume or --overwrite. Tiny synthetic data in tmp dirs.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from helpers.fault_support import (REPO, blocking_frame, call, davis_tree, load_entry, photo_folder, restore, start,
                           train_args, wait_for)
from hvc.data.palette import save_indexed_png
from hvc.errors import BusyError, EXIT_BUSY
from hvc.fileio import OutputLock
from hvc.segment.__main__ import main as segment_main
from test_faults import case, davis_args, expect_error

test_py, train_py = load_entry("test.py"), load_entry("train.py")


def _files(folder: Path) -> dict[str, int]:
    return {p.relative_to(folder).as_posix(): p.stat().st_mtime_ns for p in sorted(folder.rglob("*")) if p.is_file()}


# ---- the lock itself ---------------------------------------------------------------------------

LOCKS = [
    # id, first shared?, second shared?, second gets it?
    case("exclusive, then exclusive", False, False, False),
    case("exclusive, then a shard", False, True, False),
    case("a shard, then exclusive", True, False, False),
    case("two shards", True, True, True),
]


HOLD = textwrap.dedent("""
    import sys, time
    from hvc.fileio import OutputLock
    lock = OutputLock(sys.argv[1], "--output", shared=sys.argv[2] == "shared")
    print("held", flush=True)
    time.sleep(600)
""")


@contextlib.contextmanager
def other_writer(folder: Path, shared: bool = False):
    """Another process holding the lock of ``folder`` until the block ends (then SIGKILLed:
    no clean-up of its own; the kernel releases its lock)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder), "shared" if shared else "exclusive"],
                            cwd=REPO, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert proc.stdout.readline().strip() == "held"
        yield proc
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("first, second, granted", LOCKS)
def test_lock_modes(tmp_path, first, second, granted):
    with other_writer(tmp_path / "out", shared=first):
        if granted:
            OutputLock(tmp_path / "out", "--output", shared=second).release()
        else:
            with pytest.raises(BusyError, match=r"out: --output is being written by another run \(it holds .*\.hvc/lock\)"):
                OutputLock(tmp_path / "out", "--output", shared=second)
    OutputLock(tmp_path / "out", "--output").release()  # the holder died: free again
    assert (tmp_path / "out" / ".hvc" / "lock").is_file()  # the file stays; only the kernel's lock went


def test_lock_is_reentrant_within_a_process(tmp_path):
    """Runs called one after another in one process share its lock (an earlier failed run's
    traceback may still hold one); once all are released another process gets it."""
    first = OutputLock(tmp_path / "out", "--output", shared=True)
    second = OutputLock(tmp_path / "out", "--output")  # made exclusive in place
    assert locked_elsewhere(tmp_path / "out", shared=True)
    first.release()
    assert locked_elsewhere(tmp_path / "out", shared=True)  # the second still holds it
    second.release()
    assert not locked_elsewhere(tmp_path / "out")


TRY = textwrap.dedent("""
    import sys
    from hvc.errors import BusyError
    from hvc.fileio import OutputLock
    try:
        OutputLock(sys.argv[1], "--output", shared=sys.argv[2] == "shared")
    except BusyError:
        sys.exit(7)
""")


def locked_elsewhere(folder: Path, shared: bool = False) -> bool:
    """Whether another process is refused the lock of ``folder``."""
    run = subprocess.run([sys.executable, "-c", TRY, str(folder), "shared" if shared else "exclusive"], cwd=REPO,
                         env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True)
    assert run.returncode in (0, 7), run.stderr
    return run.returncode == 7


# ---- test.py -------------------------------------------------------------------------------------

WRITERS = [
    # id, how the other writer holds the folder (shared?), extra argv of ours, expected exit code
    case("a whole run, then a whole run", False, [], EXIT_BUSY),
    case("a whole run, then other settings", False, ["prop.topk=5", "--overwrite"], EXIT_BUSY),
    case("a whole run, then a shard", False, ["--shard", "1/2"], EXIT_BUSY),
    case("a shard, then a whole run", True, [], EXIT_BUSY),
    case("a shard, then --merge-shards", True, ["--merge-shards"], EXIT_BUSY),
    case("a shard, then another shard", True, ["--shard", "1/2"], 0),
]


@pytest.mark.parametrize("shared, extra, code", WRITERS)
def test_test_py_one_writer(tmp_path, capsys, shared, extra, code):
    root = davis_tree(tmp_path / "DAVIS", {"alpha": 2, "beta": 2})
    out = tmp_path / "res"
    assert call(test_py.main, davis_args(root, out, "--sequences", "alpha"), capsys)[0] == 0
    before = _files(out)
    with other_writer(out, shared=shared):
        got, lines = call(test_py.main, davis_args(root, out, *extra), capsys)
    if code:
        expect_error(got, lines, code, r"res: run\.output_dir is being written by another run")
        assert _files(out) == before  # not even config.yaml was rewritten
    else:
        assert got == 0, lines


def test_test_py_second_process_refused_until_the_first_dies(tmp_path, capsys):
    """Two real processes: the first stops at a frame (a pipe), the second is refused; after the
    first is SIGKILLed the folder is free, and the rerun finishes it."""
    root = davis_tree(tmp_path / "DAVIS", {"alpha": 4})
    out = tmp_path / "res"
    frame = root / "JPEGImages" / "480p" / "alpha" / "00002.jpg"
    data = blocking_frame(frame)
    proc = start(["test.py", *davis_args(root, out, "data.batch_size=1")])
    try:
        wait_for(lambda: (out / ".hvc" / "staging" / "alpha").is_dir(), proc, "the first run's staging folder")
        expect_error(*call(test_py.main, davis_args(root, out, "prop.topk=5", "--overwrite"), capsys), EXIT_BUSY,
                     r"res: run\.output_dir is being written by another run")
        assert "topk: 5" not in (out / "config.yaml").read_text()
    finally:
        proc.kill()
        proc.communicate()
        restore(frame, data)
    assert call(test_py.main, davis_args(root, out), capsys)[0] == 0
    assert len(list((out / "alpha").glob("*.png"))) == 4


# ---- hvc.segment ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> tuple[Path, Path]:
    """A folder of 4 frames (a box moving right) and its first-frame mask (read-only to the tests)."""
    tmp_path = tmp_path_factory.mktemp("clip")
    folder = tmp_path / "frames"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for t in range(4):
        rgb = (rng.random((48, 64, 3)) * 60 + 40).astype(np.uint8)
        rgb[10:26, 8 + 3 * t:28 + 3 * t] = (200, 60, 60)
        Image.fromarray(rgb).save(folder / f"{t:05d}.png")
    ids = np.zeros((48, 64), np.uint8)
    ids[10:26, 8:28] = 1
    save_indexed_png(tmp_path / "first.png", ids)
    return folder, tmp_path / "first.png"


def _segment(clip, out, *extra) -> list:
    return [clip[0], "--mask", clip[1], "--model", "random18", "--output", out, *extra]


def test_segment_one_writer(clip, tmp_path, capsys):
    out = tmp_path / "out"
    with other_writer(out):
        expect_error(*call(segment_main, _segment(clip, out), capsys), EXIT_BUSY,
                     r"out: --output is being written by another run")
    assert not (out / "masks").exists()
    assert call(segment_main, _segment(clip, out), capsys)[0] == 0
    masks = sorted(p.name for p in (out / "masks").iterdir())
    with other_writer(out):  # a finished folder is still refused to a second writer
        expect_error(*call(segment_main, _segment(clip, out, "--context", "3", "--overwrite"), capsys), EXIT_BUSY,
                     r"being written by another run")
    assert sorted(p.name for p in (out / "masks").iterdir()) == masks and (out / ".hvc" / "lock").is_file()


PROGRESS = Path(".hvc") / "staging" / "progress" / "progress.json"  # hvc.segment's run in progress
DAMAGE = [
    # id, damage(out), error pattern without --overwrite
    case("empty record", lambda o: (o / PROGRESS).write_text(""), r"holds a damaged record"),
    case("truncated record", lambda o: (o / PROGRESS).write_text('{"settings_sha256": "ab'),
         r"holds a damaged record"),
    case("record of another shape", lambda o: (o / PROGRESS).write_text("[1, 2]"),
         r"holds a damaged record"),
    case("record missing keys", lambda o: (o / PROGRESS).write_text('{"settings_sha256": "x"}'),
         r"holds a damaged record"),
]


def _half_done(clip, out, capsys, monkeypatch):
    """A run stopped after frame 1 (as a kill would), its record and state on disk."""
    import hvc.segment.run as segment_run

    def stop(t):
        if t == 1:
            raise KeyboardInterrupt
    original = segment_run.segment
    monkeypatch.setattr(segment_run, "segment", lambda opts, on_frame=None: original(opts, stop))
    import hvc.segment.__main__ as cli
    monkeypatch.setattr(cli, "segment", segment_run.segment)
    assert call(segment_main, _segment(clip, out), capsys)[0] == 130
    monkeypatch.undo()


@pytest.fixture(scope="module")
def reference_masks(clip, tmp_path_factory) -> dict[str, bytes]:
    """The masks of one uninterrupted run on ``clip``."""
    out = tmp_path_factory.mktemp("reference") / "out"
    assert segment_main([str(a) for a in _segment(clip, out)]) == 0
    return {p.name: p.read_bytes() for p in (out / "masks").iterdir()}


@pytest.mark.parametrize("damage, pattern", DAMAGE)
def test_segment_damaged_record_is_refused_and_overwrite_recovers(clip, reference_masks, tmp_path, capsys, monkeypatch,
                                                                  damage, pattern):
    out = tmp_path / "out"
    _half_done(clip, out, capsys, monkeypatch)
    damage(out)
    expect_error(*call(segment_main, _segment(clip, out), capsys), 2, pattern)
    assert call(segment_main, _segment(clip, out, "--overwrite"), capsys)[0] == 0
    assert {p.name: p.read_bytes() for p in (out / "masks").iterdir()} == reference_masks


STATE_DAMAGE = [
    case("stray file in the state folder", lambda s: (s / "notes.pt").write_text("x"), 0),
    case("stray text file", lambda s: (s / "README").write_text("x"), 0),
    case("truncated state file", lambda s: [p.write_bytes(p.read_bytes()[:20]) for p in s.glob("*.pt")], 3),
    case("empty state file", lambda s: [p.write_bytes(b"") for p in s.glob("*.pt")], 3),
]


@pytest.mark.parametrize("damage, code", STATE_DAMAGE)
def test_segment_damaged_state_is_one_line_and_overwrite_recovers(clip, reference_masks, tmp_path, capsys, monkeypatch,
                                                                 damage, code):
    out = tmp_path / "out"
    _half_done(clip, out, capsys, monkeypatch)
    damage(out / PROGRESS.parent / "state")
    got, lines = call(segment_main, _segment(clip, out), capsys)
    if code:
        expect_error(got, lines, code, r"\.pt: the saved state of frame \d+ is damaged .*pass --overwrite")
        assert call(segment_main, _segment(clip, out, "--overwrite"), capsys)[0] == 0
    else:
        assert got == 0, lines
    assert {p.name: p.read_bytes() for p in (out / "masks").iterdir()} == reference_masks


# ---- train.py ------------------------------------------------------------------------------------

def _step(out: Path) -> int:
    return torch.load(out / "checkpoint.pth", weights_only=True)["global_step"]


def test_train_py_one_writer_and_no_silent_restart(tmp_path, capsys):
    photos = photo_folder(tmp_path / "photos")
    out = tmp_path / "run"
    with other_writer(out):
        expect_error(*call(train_py.main, train_args(out, photos), capsys), EXIT_BUSY,
                     r"run: output\.dir is being written by another run")
    assert not (out / "checkpoint.pth").exists()
    assert call(train_py.main, train_args(out, photos, "optim.max_steps=2"), capsys)[0] == 0
    trained = (out / "checkpoint.pth").read_bytes()
    # a fresh run (no --resume) into the finished run's folder: refused, the checkpoint kept
    expect_error(*call(train_py.main, train_args(out, photos), capsys), 2,
                 r"run: output\.dir holds a training run .*--resume auto .*--overwrite")
    assert (out / "checkpoint.pth").read_bytes() == trained
    assert call(train_py.main, train_args(out, photos, "--overwrite"), capsys)[0] == 0
    starts = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert _step(out) == 1 and [r["event"] for r in starts].count("start") == 1  # the old log went too
    assert not locked_elsewhere(out)  # released when train() returned


def test_shards_of_other_settings_are_kept_out(tmp_path, capsys):
    """A shard of one setting runs (stopped at a frame); a shard of other settings into the
    same folder is refused (exit 7), one of the same settings goes ahead."""
    root = davis_tree(tmp_path / "DAVIS", {"alpha": 3, "beta": 3})
    out = tmp_path / "res"
    frame = root / "JPEGImages" / "480p" / "alpha" / "00001.jpg"
    data = blocking_frame(frame)
    proc = start(["test.py", *davis_args(root, out, "--shard", "0/2", "data.batch_size=1")])
    try:
        wait_for(lambda: (out / ".hvc" / "staging").is_dir(), proc, "the first shard's staging folder")
        expect_error(*call(test_py.main, davis_args(root, out, "--shard", "1/2", "prop.topk=5"), capsys), EXIT_BUSY,
                     r"res: other shards are writing results of other settings here")
        assert call(test_py.main, davis_args(root, out, "--shard", "1/2"), capsys)[0] == 0
    finally:
        proc.kill()
        proc.communicate()
        restore(frame, data)
