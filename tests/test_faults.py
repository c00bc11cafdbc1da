"""Failure behaviour of every entry point (docs/failure.md, hvc/errors.py).

An expected failure prints one line ``error: <file or key>: <problem>`` to stderr (no
traceback) and exits with its documented code: 2 usage/config, 3 input, 4 I/O, 5 device,
6 non-finite, 130 Ctrl-C. A run that did nothing fails; results of two settings never mix.
Grouped by entry point; each case is one row of a table. Data: tiny synthetic DAVIS /
YouTube-VOS trees and photo folders made in tmp dirs (no ../shared needed).
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import signal
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from helpers.fault_support import (REPO, blocking_frame, call, davis_tree, error_lines, load_entry, photo_folder, png_bytes,
                           poisoned_checkpoint, restore, scene, script, start, train_args, wait_for, write_meta)
from hvc.data.palette import save_indexed_png
from hvc.models.resnet import ResNet
from helpers.vos_trees import make_ytvos

test_py, train_py, eval_py = load_entry("test.py"), load_entry("train.py"), load_entry("eval_metrics.py")
figure_strip = load_entry("scripts/figure_strip.py")
from hvc.export import main as export_main  # noqa: E402

NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")


def case(name: str, *values, marks=()):
    """One row of a table-driven test."""
    return pytest.param(*values, id=name, marks=marks)
DAVIS_CONFIG = REPO / "configs" / "test_davis17.yaml"


def expect_error(code: int, lines: list[str], expected: int, pattern: str) -> None:
    """The exit code, and one ``error: <where>: <problem>`` line matching ``pattern`` that ends
    stderr (progress bars may come before it), without a traceback."""
    assert code == expected, lines
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and errors[0] == lines[-1], lines
    assert re.match(r"error: \S.*: \S", errors[0]) and not any("Traceback" in line for line in lines), lines
    assert re.search(pattern, errors[0]), errors[0]


@pytest.fixture
def unwritable(tmp_path) -> Path:
    """An existing folder where no file can be created (chmod; as root, sysfs refuses new files)."""
    if os.geteuid() != 0:
        folder = tmp_path / "readonly"
        folder.mkdir()
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    folder = Path("/sys/kernel")
    try:
        (folder / "hvc-probe").open("w").close()
    except OSError:
        yield folder
        return
    pytest.skip("no folder refuses writes to root here")


# ---- test.py -----------------------------------------------------------------------------

def davis_args(root: Path, out: Path, *extra) -> list:
    return ["--config", DAVIS_CONFIG, "--model", "random18", f"data.root={root}", "--output", out,
            "data.workers=0", "model.bn_dummy_forward=false", *extra]


def ytvos_run(tmp_path: Path, capsys) -> tuple[Path, Path, list]:
    """A finished test.py run of random18 on the synthetic YouTube-VOS 2018 tree: its data root,
    output folder and command line (to run again)."""
    root = make_ytvos(tmp_path / "2018")
    out = tmp_path / "res"
    argv = ["--config", REPO / "configs" / "test_ytvos.yaml", "--model", "random18", f"data.root={root}",
            "--output", out, "data.workers=0"]
    assert call(test_py.main, argv, capsys)[0] == 0
    return root, out, argv


def _frame(root, seq="alpha", t=1, ext="jpg") -> Path:
    return root / "JPEGImages" / "480p" / seq / f"{t:05d}.{ext}"


def _mask(root, seq="alpha") -> Path:
    return root / "Annotations" / "480p" / seq / "00000.png"


def _encoder_file(tmp, poison: bool) -> Path:
    state = ResNet("resnet18", with_layer4=False).state_dict()
    if poison:
        state["conv1.weight"][0, 0, 0, 0] = float("nan")
    torch.save(state, tmp / "enc.pth")
    return tmp / "enc.pth"


def _setup(kind):
    """Row helpers: each returns ``setup(root, tmp) -> extra argv`` (it may damage the tree)."""
    def args(*extra):
        return lambda root, tmp: list(extra)
    return args if kind == "args" else None


ARGS = _setup("args")


def _truncate_frame(root, tmp):
    _frame(root).write_bytes(b"\xff\xd8\xff truncated")
    return []


def _duplicate_frame(root, tmp):
    shutil.copy(_frame(root), _frame(root, ext="png"))
    return []


def _big_label(root, tmp):
    _, ids = scene(0, (48, 80))
    save_indexed_png(_mask(root), np.where(ids == 2, 30, ids).astype(np.uint8))
    return []


def _wrong_mask_size(root, tmp):
    save_indexed_png(_mask(root), np.zeros((40, 80), np.uint8))
    return []


def _small_frames(size):
    def setup(root, tmp):
        shutil.rmtree(root)
        davis_tree(root, {"alpha": 2}, size=size)
        return []
    return setup


def _empty_list(root, tmp):
    (root / "ImageSets" / "2017" / "val.txt").write_text("\n")
    return []


def _output_file(root, tmp):
    (tmp / "res").write_text("a file")
    return []


TEST_PY_CASES = [
    # id, setup -> extra argv, exit code, pattern of the error line
    case("context=0", ARGS("prop.context=0"), 2, r"^error: prop\.context: must be >= 1, got 0$"),
    case("topk=0", ARGS("prop.topk=0"), 2, r"^error: prop\.topk: must be >= 1"),
    case("temperature=0", ARGS("prop.temperature=0"), 2, r"^error: prop\.temperature: must be a finite number > 0"),
    case("temperature=nan", ARGS("prop.temperature=nan"), 2, r"^error: prop\.temperature: .* got nan"),
    case("input_size=4", ARGS("--input-size", "4"), 2, r"^error: data\.input_size .*: must be >= 16, got 4"),
    case("input_size=-5", ARGS("data.input_size=-5"), 2, r"^error: data\.input_size .*got -5"),
    case("batch_size=0", ARGS("data.batch_size=0"), 2, r"^error: data\.batch_size: must be >= 1"),
    case("workers=-1", ARGS("data.workers=-1"), 2, r"^error: data\.workers: must be >= 0"),
    case("std=0", ARGS("data.std=[0, 0, 0]"), 2, r"^error: data\.std: must be finite numbers > 0"),
    case("mean=inf", ARGS("data.mean=[.inf, 0, 0]"), 2, r"^error: data\.mean: must be finite"),
    case("unknown key", ARGS("prop.topkk=3"), 2, r"^error: unknown key prop\.topkk"),
    case("unknown flag", ARGS("--frobnicate"), 2, r"^error: command line: unrecognized arguments: --frobnicate"),
    case("bad --shard", ARGS("--shard", "2/2"), 2, r"^error: --shard: expected i/n"),
    case("--device gpu0", ARGS("--device", "gpu0"), 5, r"^error: run\.device: 'gpu0' is not a device"),
    case("--device cuda without GPU", ARGS("--device", "cuda"), 5,
         r"^error: run\.device: cuda asked for, but no CUDA device", marks=NO_GPU),
    case("output path is a file", _output_file, 4, r"/res: run\.output_dir is a file"),
    case("data.root not a DAVIS folder", ARGS("data.root=/nonexistent"), 3,
         r"^error: /nonexistent/ImageSets/2017/val\.txt: not found"),
    case("empty sequence list", _empty_list, 3, r"val\.txt: lists no sequence"),
    case("missing sequence", ARGS("--sequences", "nope"), 3, r"val\.txt: does not list sequence\(s\) nope"),
    case("duplicate frame names", _duplicate_frame, 3, r"alpha: two files for frame 00001: 00001\.jpg and 00001\.png"),
    case("frames too small for top-k", _small_frames((16, 16)), 3, r"alpha: frames of sequence alpha .* 2x2 feature cells"),
    case("1x600 frames", _small_frames((1, 600)), 3, r"alpha: frames of sequence alpha \(1x600 px"),
    case("label id >= num_classes", _big_label, 3, r"alpha/00000\.png: label id 30 is not below prop\.num_classes=20"),
    case("truncated frame", _truncate_frame, 3, r"alpha/00001\.jpg: unreadable frame"),
    case("truncated frame, 2 workers", lambda r, t: _truncate_frame(r, t) + ["data.workers=2"], 3,
     r"^error: \S+alpha/00001\.jpg: unreadable frame"),
    case("mask of the wrong size", _wrong_mask_size, 3, r"alpha/00000\.png: mask size 40x80 differs"),
    case("missing first-frame mask", lambda r, t: _mask(r).unlink() or [], 3, r"alpha/00000\.png: first-frame mask not found"),
    case("NaN weights", lambda r, t: ["--model", "hvc", "--checkpoint", _encoder_file(t, poison=True)], 6,
     r"alpha/00000\.jpg: features of frame 0 of sequence alpha hold NaN or inf"),
    case("garbage checkpoint", lambda r, t: (t / "g.pth").write_bytes(b"garbage") and ["--model", "hvc", "--checkpoint", t / "g.pth"],
     3, r"g\.pth: not a readable checkpoint"),
    case("wrong architecture", lambda r, t: ["--model", "mocov1", "--checkpoint", _encoder_file(t, poison=False)], 3,
     r"enc\.pth does not fit a resnet50 test encoder"),
    case("missing checkpoint", ARGS("--model", "hvc", "--checkpoint", "/nonexistent/x.pth"), 3,
     r"/nonexistent/x\.pth: checkpoint for --model hvc not found"),
]


@pytest.mark.parametrize("setup, code, pattern", TEST_PY_CASES)
def test_test_py_errors(tmp_path, capsys, setup, code, pattern):
    root = davis_tree(tmp_path / "DAVIS", {"alpha": 3, "beta": 2})
    extra = setup(root, tmp_path)
    out = tmp_path / "res"
    got, lines = call(test_py.main, davis_args(root, out, *extra), capsys)
    expect_error(got, lines, code, pattern)
    if code in (2, 5):  # configuration refused before anything is written
        assert not out.exists()
    if out.is_dir():  # nothing counts as finished
        assert not list(out.glob("*/*.png"))


def test_test_py_output_not_writable(tmp_path, capsys, unwritable):
    root = davis_tree(tmp_path / "DAVIS", {"alpha": 2})
    expect_error(*call(test_py.main, davis_args(root, unwritable), capsys), 4,
                 rf"^error: {unwritable}: run\.output_dir is not writable")


def test_test_py_refuses_a_code_executing_pickle(tmp_path, capsys):
    root = davis_tree(tmp_path / "DAVIS", {"alpha": 2})
    marker = tmp_path / "pwned"
    ckpt = poisoned_checkpoint(tmp_path / "evil.pth", marker)
    expect_error(*call(test_py.main, davis_args(root, tmp_path / "res", "--model", "hvc", "--checkpoint", ckpt), capsys),
                 3, r"evil\.pth: not a readable checkpoint \(refused to unpickle posix\.system: the file would import or run code")
    assert not marker.exists(), "the pickle's payload ran"


YTVOS_CASES = [
    case("no videos", {"videos": {}}, r"meta\.json: lists no sequence"),
    case("not JSON", "{ videos", r"meta\.json: not a YouTube-VOS meta\.json \(invalid JSON"),
    case("videos is a list", {"videos": ["vid_a"]}, r"meta\.json: not a YouTube-VOS meta\.json \(no 'videos' mapping"),
    case("object without frames", {"videos": {"vid_a": {"objects": {"1": {"category": "box"}}}}},
     r"meta\.json: video 'vid_a' is not of the form"),
    case("objects is a list", {"videos": {"vid_a": {"objects": [1, 2]}}}, r"meta\.json: video 'vid_a' is not of the form"),
]


@pytest.mark.parametrize("meta, pattern", YTVOS_CASES)
def test_test_py_malformed_meta_json(tmp_path, capsys, meta, pattern):
    root = make_ytvos(tmp_path / "2018")
    write_meta(root, meta)
    out = tmp_path / "res"
    argv = ["--config", REPO / "configs" / "test_ytvos.yaml", "--model", "random18", f"data.root={root}",
            "--output", out, "data.workers=0"]
    expect_error(*call(test_py.main, argv, capsys), 3, pattern)
    assert not (out / "submission.zip").exists()


# ---- test.py: completion records, reruns, --overwrite --------------------------------------

def _listing(folder: Path) -> dict[str, int]:
    return {p.relative_to(folder).as_posix(): p.stat().st_mtime_ns for p in sorted(folder.rglob("*"))}


def test_other_settings_are_refused_before_anything_is_written(tmp_path, capsys):
    root = davis_tree(tmp_path / "DAVIS", {"alpha": 3, "beta": 2})
    out = tmp_path / "res"
    assert call(test_py.main, davis_args(root, out), capsys)[0] == 0
    before = _listing(out)
    expect_error(*call(test_py.main, davis_args(root, out, "prop.topk=5"), capsys), 2,
                 r"res: holds results made with other settings \(2 sequence\(s\), e\.g\. alpha; .*pass --overwrite")
    assert _listing(out) == before


def test_failed_run_does_not_block_the_folder(tmp_path, capsys):
    root = davis_tree(tmp_path / "DAVIS", {"alpha": 3})
    out = tmp_path / "res"
    expect_error(*call(test_py.main, davis_args(root, out, "prop.topk=1000"), capsys), 3, r"prop\.topk=1000 positions")
    assert call(test_py.main, davis_args(root, out), capsys)[0] == 0  # no --overwrite needed
    assert len(list((out / "alpha").glob("*.png"))) == 3


def test_only_a_completion_record_makes_a_sequence_finished(tmp_path, capsys):
    root = davis_tree(tmp_path / "DAVIS", {"alpha": 3, "beta": 2})
    out = tmp_path / "res"
    (out / "alpha").mkdir(parents=True)
    for t in range(3):  # 0-byte PNGs without a record: not ours (docs/failure.md), so refused, not removed
        (out / "alpha" / f"{t:05d}.png").write_bytes(b"")
    expect_error(*call(test_py.main, davis_args(root, out, "--overwrite"), capsys), 2,
                 r"res/alpha: exists, but no completion record of .* says this tool wrote it")
    assert sorted(p.stat().st_size for p in (out / "alpha").glob("*.png")) == [0, 0, 0]
    (out / ".hvc" / "pending").mkdir(parents=True)  # a commit killed before its record: ours, redone
    (out / ".hvc" / "pending" / "alpha.json").write_text("{}")
    assert call(test_py.main, davis_args(root, out), capsys)[0] == 0
    assert all(p.stat().st_size > 0 for p in (out / "alpha").glob("*.png"))
    assert not list((out / ".hvc" / "pending").iterdir())
    record = json.loads((out / ".hvc" / "done" / "alpha.json").read_text())
    assert record["files"] == ["00000.png", "00001.png", "00002.png"] and len(record["settings"]) == 64
    kept = (out / "beta" / "00001.png").stat().st_mtime_ns
    # a record write killed half-way leaves its temporary: not a record, and not other settings
    (out / ".hvc" / "done" / ".tmp-alpha.json-x1y2.json").write_text('{"version": 1, "sett')
    (out / "alpha" / "00001.png").write_bytes(b"")  # damaged after completion: redone, beta kept
    assert call(test_py.main, davis_args(root, out), capsys)[0] == 0
    assert (out / "alpha" / "00001.png").stat().st_size > 0
    assert (out / "beta" / "00001.png").stat().st_mtime_ns == kept


def test_overwrite_removes_other_settings_first(tmp_path, capsys):
    root = davis_tree(tmp_path / "DAVIS", {"alpha": 3, "beta": 2})
    out, ref = tmp_path / "res", tmp_path / "ref"
    assert call(test_py.main, davis_args(root, out), capsys)[0] == 0
    (out / "global_results-val.csv").write_text("stale")  # eval_metrics output of the old results
    (out / "per-sequence_results-val.png").write_bytes(b"stale figure")  # and its figure
    b = ("prop.topk=5", "--sequences", "alpha")
    assert call(test_py.main, davis_args(root, out, *b, "--overwrite"), capsys)[0] == 0
    assert call(test_py.main, davis_args(root, ref, *b), capsys)[0] == 0
    assert png_bytes(out) == png_bytes(ref) and not (out / "beta").exists()  # no result of the old settings
    assert not (out / "global_results-val.csv").exists() and not (out / "per-sequence_results-val.png").exists()
    assert sorted(p.name for p in (out / ".hvc" / "done").iterdir()) == ["alpha.json"]


def test_killed_run_with_other_settings_is_redone_not_mixed(tmp_path, capsys):
    """The issue's case: A completes; B (--overwrite, other settings) is killed with SIGKILL
    after 3 frames of a sequence; B rerun without --overwrite holds exactly B's results."""
    root = davis_tree(tmp_path / "DAVIS", {"alpha": 6, "beta": 3})
    out, ref = tmp_path / "res", tmp_path / "ref"
    assert call(test_py.main, davis_args(root, out), capsys)[0] == 0
    b = ["prop.topk=5", "data.batch_size=1"]
    frame = _frame(root, t=3)
    data = blocking_frame(frame)  # B stops at frame 3 of alpha, its frames 0-2 written
    proc = start(["test.py", *davis_args(root, out, *b, "--overwrite")])
    staged = out / ".hvc" / "staging" / "alpha"
    wait_for(lambda: len(list(staged.glob("*.png"))) == 3, proc, "3 frames of alpha")
    proc.kill()
    proc.communicate()
    restore(frame, data)
    assert not (out / "alpha").exists() and not (out / "beta").exists()  # A's results went first
    assert call(test_py.main, davis_args(root, out, *b), capsys)[0] == 0  # the rerun, no --overwrite
    assert call(test_py.main, davis_args(root, ref, *b), capsys)[0] == 0
    assert png_bytes(out) == png_bytes(ref) and len(png_bytes(out)) == 9
    assert "topk: 5" in (out / "config.yaml").read_text()


def test_ytvos_zip_holds_exactly_the_finished_frames(tmp_path, capsys):
    root, out, argv = ytvos_run(tmp_path, capsys)
    records = [json.loads(p.read_text()) for p in sorted((out / ".hvc" / "done").glob("*.json"))]
    with zipfile.ZipFile(out / "submission.zip") as zf:
        assert sorted(zf.namelist()) == sorted(f"Annotations/{r['sequence']}/{f}" for r in records for f in r["files"])
        assert zf.comment.decode() == f"hvc settings {records[0]['settings']}"
    # other settings, and a frame of vid_b breaks: the old zip is gone, no new one
    (root / "valid_all_frames" / "JPEGImages" / "vid_b" / "00004.jpg").write_bytes(b"\xff\xd8 broken")
    expect_error(*call(test_py.main, [*argv, "prop.topk=5", "--overwrite"], capsys), 3, r"vid_b/00004\.jpg: unreadable")
    assert not (out / "submission.zip").exists() and not (out / "Annotations" / "vid_b").exists()


def test_ctrl_c_prints_one_line_and_exits_130(tmp_path):
    root = davis_tree(tmp_path / "DAVIS", {"alpha": 3})
    out = tmp_path / "res"
    blocking_frame(_frame(root, t=1))  # the run waits at frame 1 until interrupted
    proc = start(["test.py", *davis_args(root, out, "data.batch_size=1")])
    wait_for(lambda: (out / ".hvc" / "staging" / "alpha" / "00000.png").exists(), proc, "frame 0")
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in stderr, stderr[-2000:]
    assert error_lines(stderr) == ["error: interrupted (Ctrl-C); finished results are kept, a rerun continues"]
    assert not (out / "alpha").exists()


def test_disk_full_is_one_line(tmp_path):
    root = davis_tree(tmp_path / "DAVIS", {"alpha": 2}, size=(240, 400))  # PNGs over 1 KiB, config.yaml under
    out = tmp_path / "res"
    run = script(["bash", "-c", f"ulimit -f 1; exec {sys.executable} test.py " + " ".join(
        f"'{a}'" for a in davis_args(root, out))])
    assert run.returncode == 4 and "Traceback" not in run.stderr, run.stderr[-2000:]
    (line,) = error_lines(run.stderr)
    assert re.match(r"error: \S+/res/\.hvc/staging/alpha/00000\.png: cannot write \(File too large\)$", line), line
    assert (out / "config.yaml").is_file() and not (out / "alpha").exists()


# ---- train.py ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One epoch (3 steps) on 4 synthetic photos plus a 1x600 and a 1x1 image:
    (photos folder without the odd ones, checkpoint.pth, run folder, warnings)."""
    tmp = tmp_path_factory.mktemp("trained")
    photos, odd = photo_folder(tmp / "photos"), tmp / "odd"
    odd.mkdir()
    Image.new("RGB", (600, 1), (90, 90, 90)).save(odd / "strip_1x600.png")
    Image.new("RGB", (1, 1), (90, 90, 90)).save(odd / "dot.png")
    run = tmp / "run"
    with pytest.warns(RuntimeWarning) as warned:
        code = train_py.main(train_args(run, photos, f"data.roots=[{photos}, {odd}]", "optim.max_steps=null",
                                        "optim.epochs=1"))
    assert code == 0
    return photos, run / "checkpoint.pth", run, [str(w.message) for w in warned]


def _unreadable_photos(photos, tmp):
    folder = tmp / "broken"
    folder.mkdir()
    for i in range(4):
        (folder / f"b{i}.jpg").write_bytes(b"not a jpeg")
    return [f"data.roots=[{folder}]", "optim.max_steps=null", "optim.epochs=1"]


def _damaged_optimizer(kind):
    def setup(ckpt, tmp):
        state = torch.load(ckpt, weights_only=True)
        if kind == "empty":
            state["optimizer"] = {}
        else:
            next(iter(state["optimizer"]["state"].values()))["exp_avg"].view(-1)[0] = float("nan")
        torch.save(state, tmp / f"{kind}_opt.pth")
        return ["--resume", tmp / f"{kind}_opt.pth", "optim.max_steps=4"]
    return setup


TRAIN_CASES = [
    # id, setup(photos, checkpoint, tmp) -> extra argv, code, pattern
    case("lr=inf", lambda p, c, t: ["optim.lr=inf"], 2, r"^error: optim\.lr: must be a finite number > 0, got inf$"),
    case("lr=0", lambda p, c, t: ["optim.lr=0"], 2, r"^error: optim\.lr: must be a finite number > 0"),
    case("size=4", lambda p, c, t: ["data.size=4"], 2, r"^error: data\.size: must be >= 16"),
    case("batch_size=0", lambda p, c, t: ["data.batch_size=0"], 2, r"^error: data\.batch_size: must be >= 1"),
    case("workers=-1", lambda p, c, t: ["data.workers=-1"], 2, r"^error: data\.workers: must be >= 0"),
    case("std=0", lambda p, c, t: ["data.std=[0, 0, 0]"], 2, r"^error: data\.std"),
    case("momentum=2", lambda p, c, t: ["model.momentum=2"], 2, r"^error: model\.momentum: must lie in \[0\.0, 1\.0\]"),
    case("unknown flag", lambda p, c, t: ["--frobnicate"], 2, r"^error: command line: unrecognized arguments"),
    case("cuda without GPU", lambda p, c, t: ["runtime.device=cuda"], 5,
         r"^error: runtime\.device: cuda asked for, but no CUDA device", marks=NO_GPU),
    case("data folder missing", lambda p, c, t: ["data.roots=[/nonexistent/photos]"], 3,
         r"^error: data\.roots: training image folder /nonexistent/photos does not exist"),
    case("every image unreadable", lambda p, c, t: _unreadable_photos(p, t), 3,
     r"^error: data\.roots: no image of epoch 1 could be used \(4 unreadable"),
    case("output.dir is a file", lambda p, c, t: (t / "f").write_text("x") and [f"output.dir={t / 'f'}"], 4,
     r"/f: output\.dir is a file"),
    case("resume: missing file", lambda p, c, t: ["--resume", t / "nope.pth"], 3, r"nope\.pth: checkpoint not found"),
    case("resume: empty optimizer state", lambda p, c, t: _damaged_optimizer("empty")(c, t), 3,
     r"empty_opt\.pth: its optimizer state does not fit"),
    case("resume: NaN in the optimizer state", lambda p, c, t: _damaged_optimizer("nan")(c, t), 3,
     r"nan_opt\.pth: not resuming from 1 tensor\(s\) with NaN/inf: optimizer\.state\.0\.exp_avg$"),
]


@pytest.mark.parametrize("setup, code, pattern", TRAIN_CASES)
def test_train_py_errors(trained, tmp_path, capsys, setup, code, pattern):
    photos, ckpt = trained[:2]
    out = tmp_path / "run"
    extra = setup(photos, ckpt, tmp_path)
    expect_error(*call(train_py.main, train_args(out, photos, *extra), capsys), code, pattern)
    assert not (out / "checkpoint.pth").exists()
    if code in (2, 5):
        assert not out.exists()


def test_train_py_output_not_writable(trained, capsys, unwritable):
    photos = trained[0]
    expect_error(*call(train_py.main, train_args(unwritable, photos), capsys), 4,
                 rf"^error: {unwritable}: output\.dir is not writable")


def test_train_py_refuses_a_code_executing_pickle(trained, tmp_path, capsys):
    photos = trained[0]
    marker = tmp_path / "pwned"
    evil = poisoned_checkpoint(tmp_path / "evil.pth", marker)
    expect_error(*call(train_py.main, train_args(tmp_path / "run", photos, "--resume", evil), capsys), 3,
                 r"evil\.pth: not a readable checkpoint \(refused to unpickle posix\.system")
    assert not marker.exists()


def test_train_py_disk_full_while_saving(trained, tmp_path, capsys):
    out = tmp_path / "run"
    args = _resumable_copy(trained, out)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, hard))  # config.yaml and the log fit, the checkpoint not
    try:
        got = call(train_py.main, [*args, "--resume", "auto", "optim.max_steps=4"], capsys)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    expect_error(*got, 4, r"/run/checkpoint\.pth: cannot write \(File too large\)$")
    assert torch.load(out / "checkpoint.pth", weights_only=True)["global_step"] == 3  # the old one is intact


def test_degenerate_images_are_skipped_named_and_counted(trained):
    _, ckpt, run, warned = trained
    named = [w for w in warned if "degenerate" in w]
    assert len(named) == 2, warned
    assert any("strip_1x600.png: 600x1 pixels" in w for w in named) and any("dot.png: 1x1 pixels" in w for w in named)
    ends = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["skipped_images"] for r in ends if r["event"] == "epoch_end"] == [2]
    assert torch.load(ckpt, weights_only=True)["global_step"] == 3


def _resumable_copy(trained, out: Path) -> list:
    """train.py arguments continuing the fixture's run (at step 3) in ``out`` with --resume auto."""
    out.mkdir()
    shutil.copy(trained[1], out / "checkpoint.pth")
    args = train_args(out, trained[0])
    args.remove("optim.max_steps=1")
    return args


def test_a_checkpoint_is_written_only_if_every_tensor_is_finite(trained, tmp_path, capsys, monkeypatch):
    """Weights that turn non-finite while the loss is still finite (here: poisoned right after
    an optimizer step) are never saved; the error names the last good checkpoint, kept as it was."""
    out = tmp_path / "run"
    args = _resumable_copy(trained, out)
    real_step = torch.optim.Adam.step

    def step_then_poison(self, *a, **k):
        result = real_step(self, *a, **k)
        with torch.no_grad():
            self.param_groups[0]["params"][0].view(-1)[0] = float("inf")
        return result

    monkeypatch.setattr(torch.optim.Adam, "step", step_then_poison)
    got = call(train_py.main, [*args, "--resume", "auto", "optim.max_steps=4"], capsys)
    expect_error(*got, 6, r"checkpoint\.pth: not written at step 4, training produced 1 tensor\(s\) with NaN/inf: "
                          r"model\.online_encoder\.conv1\.weight; the last good checkpoint is \S+/run/checkpoint\.pth$")
    kept = torch.load(out / "checkpoint.pth", weights_only=True)
    assert kept["global_step"] == 3 and all(torch.isfinite(v).all() for v in kept["model"].values())


README_TRAIN_ORDERS = [
    # the orders the README, docs/training_runs.md and the scripts show; the copied run is at step 3 = max_steps: resume only
    ["--resume", "auto", "optim.max_steps=3"],  # train.py --resume auto optim.max_steps=3
    ["optim.max_steps=3", "--resume", "auto"],  # scripts: key=value ... --resume auto
]


def test_train_py_readme_argument_orders(trained, tmp_path, capsys):
    out = tmp_path / "run"
    args = _resumable_copy(trained, out)
    for tail in README_TRAIN_ORDERS:
        assert call(train_py.main, [*args[2:], *args[:2], *tail], capsys)[0] == 0  # key=value even before --config
    starts = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [(r["global_step"], r["last_step"]) for r in starts if r["event"] == "start"] == [(3, 3), (3, 3)]


# ---- python -m hvc.export ----------------------------------------------------------------

def _nan_checkpoint(ckpt, tmp):
    state = torch.load(ckpt, weights_only=True)
    state["model"]["online_encoder.conv1.weight"][0, 0, 0, 0] = float("nan")
    torch.save(state, tmp / "nan.pth")
    return [tmp / "nan.pth", tmp / "out.pth"]


EXPORT_CASES = [
    # id, setup(checkpoint, tmp) -> argv, code, pattern ("" = success)
    case("NaN weights", _nan_checkpoint, 6,
     r"nan\.pth: not exported, its encoder has 1 tensor\(s\) with NaN/inf: conv1\.weight$"),
    case("garbage file", lambda c, t: (t / "g.pth").write_bytes(b"junk") and [t / "g.pth", t / "out.pth"], 3,
     r"g\.pth: not a readable checkpoint"),
    case("missing file", lambda c, t: [t / "nope.pth", t / "out.pth"], 3, r"nope\.pth: checkpoint not found"),
    case("not a training checkpoint", lambda c, t: torch.save({"a": torch.zeros(1)}, t / "x.pth") or [t / "x.pth", t / "out.pth"],
     3, r"x\.pth: not a training checkpoint"),
    case("output folder is a file", lambda c, t: (t / "f").write_text("x") and [c, t / "f" / "out.pth"], 4,
     r"/f: the output folder is a file"),
    case("README order: paths, then flags", lambda c, t: [c, t / "out.pth", "--drop-layer4", "--half"], 0, ""),
    case("flags before the paths", lambda c, t: ["--half", "--drop-layer4", c, t / "out.pth"], 0, ""),
]


@pytest.mark.parametrize("setup, code, pattern", EXPORT_CASES)
def test_export_errors(trained, tmp_path, capsys, setup, code, pattern):
    argv = setup(trained[1], tmp_path)
    got, lines = call(export_main, argv, capsys)
    if code == 0:
        assert got == 0 and not lines and (tmp_path / "out.pth").stat().st_size < 8 * 2**20
        return
    expect_error(got, lines, code, pattern)
    assert not (tmp_path / "out.pth").exists()


def test_export_refuses_a_code_executing_pickle(tmp_path, capsys):
    marker = tmp_path / "pwned"
    evil = poisoned_checkpoint(tmp_path / "evil.pth", marker)
    expect_error(*call(export_main, [evil, tmp_path / "out.pth"], capsys), 3,
                 r"evil\.pth: not a readable checkpoint \(refused to unpickle posix\.system")
    assert not marker.exists()


# ---- eval_metrics.py ---------------------------------------------------------------------

def _gt_and_results(tmp) -> tuple[Path, Path]:
    """DAVIS 2017 ground truth of one 5-frame sequence, and results equal to it."""
    root, results = tmp / "DAVIS", tmp / "results"
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("alpha\n")
    for t in range(5):
        _, ids = scene(t, (48, 80))
        for folder in (root / "Annotations" / "480p" / "alpha", results / "alpha"):
            save_indexed_png(folder / f"{t:05d}.png", ids)
    return root, results


def _bad_prediction(kind):
    def setup(root, results, tmp):
        path = results / "alpha" / "00002.png"
        if kind == "missing":
            path.unlink()
        elif kind == "size":
            save_indexed_png(path, np.zeros((40, 80), np.uint8))
        elif kind == "id":
            save_indexed_png(path, np.full((48, 80), 7, np.uint8))
        else:
            path.write_bytes(b"\x89PNG broken")
        return []
    return setup


def _output_file_and_no_results(root, results, tmp):
    shutil.rmtree(results)  # evaluating would fail too: the output is checked first
    (tmp / "o").write_text("x")
    return ["--output", tmp / "o"]


EVAL_CASES = [
    # id, setup(root, results, tmp) -> extra argv, code, pattern
    case("output is a file (checked before evaluating)", _output_file_and_no_results, 4, r"/o: --output is a file"),
    case("results folder missing", lambda r, res, t: shutil.rmtree(res) or [], 3, r"results: results folder not found"),
    case("prediction missing", _bad_prediction("missing"), 3, r"missing prediction for frame 00002"),
    case("prediction of another size", _bad_prediction("size"), 3, r"00002\.png is 80x40 but the ground truth is 80x48"),
    case("unknown object id", _bad_prediction("id"), 3, r"00002\.png holds object id 7"),
    case("corrupt prediction, 2 workers", lambda r, res, t: _bad_prediction("corrupt")(r, res, t) + ["--workers", "2"], 3,
     r"00002\.png: corrupt or unreadable PNG"),
    case("--year 2018", lambda r, res, t: ["--year", "2018"], 2, r"^error: command line: argument --year: invalid choice"),
    case("--workers 0", lambda r, res, t: ["--workers", "0"], 2, r"^error: --workers: must be >= 1"),
]


@pytest.mark.parametrize("setup, code, pattern", EVAL_CASES)
def test_eval_metrics_errors(tmp_path, capsys, setup, code, pattern):
    root, results = _gt_and_results(tmp_path)
    out = tmp_path / "out"
    extra = setup(root, results, tmp_path)
    argv = ["--davis-root", root, "--results", results, "--year", "2017", "--output", out, *extra]
    expect_error(*call(eval_py.main, argv, capsys), code, pattern)
    assert not list(out.glob("*.csv")) if out.is_dir() else True


def test_eval_metrics_output_not_writable_is_found_before_evaluating(tmp_path, capsys, unwritable):
    root, _ = _gt_and_results(tmp_path)
    argv = ["--output", unwritable, "--davis-root", root, "--results", tmp_path / "absent", "--year", "2017"]
    expect_error(*call(eval_py.main, argv, capsys), 4, rf"^error: {unwritable}: --output is not writable")


def test_eval_metrics_flags_in_any_order(tmp_path, capsys):
    root, results = _gt_and_results(tmp_path)
    argv = ["--output", tmp_path / "out", "--year", "2017", "--results", results, "--davis-root", root]
    assert call(eval_py.main, argv, capsys)[0] == 0
    assert (tmp_path / "out" / "global_results-val.csv").read_text().splitlines()[1].startswith("1.000,1.000")


# ---- scripts -----------------------------------------------------------------------------

def test_run_test_sh_usage_error_is_one_line():
    run = script(["bash", "scripts/run_test.sh", "random18", "davis18"])
    assert run.returncode == 2 and run.stderr.splitlines() == [
        "error: davis18: unknown dataset (davis16, davis17, davis17dev, ytvos, ytvos19, jhmdb, vip, vost)"]


def test_run_test_sh_passes_on_test_py_exit_codes(tmp_path):
    run = script(["bash", "scripts/run_test.sh", "random18", "davis17", "prop.topk=0"],
                 PYTHON=sys.executable, RESULTS_ROOT=str(tmp_path))
    assert run.returncode == 2 and error_lines(run.stderr) == ["error: prop.topk: must be >= 1, got 0"], run.stderr
    assert not (tmp_path / "random18").exists()


FIGURE_CASES = [
    case("no predictions", lambda res, root, t: [], 3, r"alpha: no predictions"),
    case("frame missing", lambda res, root, t: save_indexed_png(res / "alpha" / "00000.png", np.zeros((4, 4), np.uint8)) or [],
     3, r"00000\.jpg: frame not found"),
    case("--count 0", lambda res, root, t: ["--count", "0"], 2, r"--count / --height: must be >= 1"),
]


@pytest.mark.parametrize("setup, code, pattern", FIGURE_CASES)
def test_figure_strip_errors(tmp_path, capsys, setup, code, pattern):
    results, root = tmp_path / "res", tmp_path / "DAVIS"
    (results / "alpha").mkdir(parents=True)
    extra = setup(results, root, tmp_path)
    argv = ["--davis-root", root, "--results", results, "--sequence", "alpha", "--out", tmp_path / "f.png", *extra]
    expect_error(*call(figure_strip.main, argv, capsys), code, pattern)
