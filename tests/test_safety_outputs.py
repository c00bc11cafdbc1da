"""Inputs are read-only to us (docs/failure.md; family 2; hvc/names.py, hvc/completion.py).

An output folder that equals, contains or lies inside an input (data root and its
sub-folders, list file, checkpoint, frame folder, prompt) is refused with exit 2 before
anything is written; a results folder removes or replaces only what its own records say it
wrote, with or without --overwrite. Grouped by entry point; tiny synthetic trees in tmp dirs.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers.fault_support import REPO, call, davis_tree, load_entry, photo_folder, train_args
from hvc.names import overlap
from hvc.completion import Outputs, Record, ResultsFolder
from hvc.data.palette import save_indexed_png
from hvc.errors import UsageError
from hvc.models.resnet import ResNet
from hvc.segment.__main__ import main as segment_main
from test_faults import case, davis_args, expect_error
from helpers.vos_trees import make_ytvos

test_py, train_py = load_entry("test.py"), load_entry("train.py")


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


OVERLAPS = [
    # id, (output, input) relative to tmp, relation or None
    case("same", ("a", "a"), "is"),
    case("inside", ("a/b/c", "a"), "lies inside"),
    case("contains", ("a", "a/b/file.pth"), "contains"),
    case("apart", ("a", "ab"), None),
    case("siblings", ("a/b", "a/c"), None),
    case("dots", ("a/x/../b", "a/b"), "is"),
]


@pytest.mark.parametrize("paths, relation", OVERLAPS)
def test_overlap(tmp_path, paths, relation):
    out, given = (tmp_path / p for p in paths)
    assert overlap(out, given) == relation


def test_overlap_follows_links(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "data")
    assert overlap(tmp_path / "alias" / "out", tmp_path / "data") == "lies inside"


# ---- test.py ------------------------------------------------------------------------------------

def _ckpt_in(folder: Path) -> Path:
    from hvc.models.resnet import ResNet
    import torch
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(ResNet("resnet18", with_layer4=False).state_dict(), folder / "enc.pth")
    return folder / "enc.pth"


TEST_PY_OVERLAPS = [
    # id, setup(root, tmp) -> (output, extra argv), pattern
    case("the probe: --output <DAVIS>/Annotations/480p", lambda r, t: (r / "Annotations" / "480p", []),
         r"480p: run\.output_dir lies inside the input data\.root"),
    case("output is the data root", lambda r, t: (r, []), r"DAVIS: run\.output_dir is the input data\.root"),
    case("output is a frame folder", lambda r, t: (r / "JPEGImages" / "480p" / "alpha", []),
         r"alpha: run\.output_dir lies inside the input data\.root"),
    case("output contains the data root", lambda r, t: (t, []), r"run\.output_dir contains the input data\.root"),
    case("output through a link to the root", lambda r, t: (t.joinpath("link").symlink_to(r) or t / "link" / "res", []),
         r"link/res: run\.output_dir lies inside the input data\.root"),
    case("output holds the checkpoint", lambda r, t: (t / "res", ["--model", "hvc", "--checkpoint", _ckpt_in(t / "res")]),
         r"res: run\.output_dir contains the input model\.checkpoint"),
    case("output is the checkpoint", lambda r, t: (_ckpt_in(t / "c"), ["--model", "hvc", "--checkpoint", t / "c" / "enc.pth"]),
         r"enc\.pth: run\.output_dir is the input model\.checkpoint"),
]


@pytest.mark.parametrize("setup, pattern", TEST_PY_OVERLAPS)
def test_test_py_output_apart_from_inputs(tmp_path, capsys, setup, pattern):
    root = davis_tree(tmp_path / "DAVIS", {"alpha": 2})
    out, extra = setup(root, tmp_path)
    before = _snapshot(root)
    expect_error(*call(test_py.main, davis_args(root, out, "--overwrite", *extra), capsys), 2, pattern)
    assert _snapshot(root) == before  # nothing written, nothing removed
    assert not (root / ".hvc").exists()


def test_test_py_visualisations_apart_from_inputs(tmp_path, capsys):
    root = davis_tree(tmp_path / "res_vis", {"alpha": 2})  # --visualize writes <output>_vis
    before = _snapshot(root)
    expect_error(*call(test_py.main, davis_args(root, tmp_path / "res", "--visualize"), capsys), 2,
                 r"res_vis: run\.output_dir \(visualisations: <output_dir>_vis\) is the input data\.root")
    assert _snapshot(root) == before and not (tmp_path / "res").exists()


def test_test_py_leaves_unknown_folders_alone(tmp_path, capsys):
    """A folder at a sequence's place that no record describes is someone else's: refused with
    and without --overwrite, never removed; once moved away, the run goes ahead."""
    root = davis_tree(tmp_path / "DAVIS", {"alpha": 2, "beta": 2})
    out = tmp_path / "res"
    (out / "beta").mkdir(parents=True)
    (out / "beta" / "notes.txt").write_text("mine")
    for extra in ([], ["--overwrite"], ["prop.topk=5", "--overwrite"]):
        expect_error(*call(test_py.main, davis_args(root, out, *extra), capsys), 2,
                     r"res/beta: exists, but no completion record of .*res says this tool wrote it")
        assert (out / "beta" / "notes.txt").read_text() == "mine" and not (out / "alpha").exists()
    (out / "beta").rename(tmp_path / "moved")
    assert call(test_py.main, davis_args(root, out), capsys)[0] == 0
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["alpha", "beta", "config.yaml",
                                                                                  "sequences.csv"]


def test_ytvos_unknown_annotation_folder_is_left_alone(tmp_path, capsys):
    root = make_ytvos(tmp_path / "2018")
    out = tmp_path / "res"
    (out / "Annotations" / "vid_b").mkdir(parents=True)
    (out / "Annotations" / "vid_b" / "00002.png").write_bytes(b"someone's")
    argv = ["--config", REPO / "configs" / "test_ytvos.yaml", "--model", "random18", f"data.root={root}",
            "--output", out, "data.workers=0", "--overwrite"]
    expect_error(*call(test_py.main, argv, capsys), 2, r"Annotations/vid_b: exists, but no completion record")
    assert (out / "Annotations" / "vid_b" / "00002.png").read_bytes() == b"someone's"


# ---- the results folder's rules -------------------------------------------------------------------

def _staged(folder: ResultsFolder, name: str) -> Record:
    staged = folder.start(name)
    (staged / "00000.png").write_bytes(b"png")
    return Record(name, folder.settings, ("00000.png",), 1, 0.0, "single")


def test_commit_refuses_a_folder_it_did_not_write(tmp_path):
    folder = ResultsFolder(tmp_path / "res", "s" * 64)
    (tmp_path / "res" / "alpha").mkdir(parents=True)
    (tmp_path / "res" / "alpha" / "keep.txt").write_text("mine")
    with pytest.raises(UsageError, match=r"alpha: exists, but no completion record"):
        folder.commit(_staged(folder, "alpha"), Outputs(tmp_path / "res" / "alpha", ("00000.png",)))
    assert (tmp_path / "res" / "alpha" / "keep.txt").read_text() == "mine"
    folder.forget("alpha", Outputs(tmp_path / "res" / "alpha", ("00000.png",)))  # not ours: a no-op
    assert (tmp_path / "res" / "alpha" / "keep.txt").read_text() == "mine"


def test_commit_replaces_its_own_folder_and_leaves_no_claim(tmp_path):
    folder = ResultsFolder(tmp_path / "res", "s" * 64)
    where = Outputs(tmp_path / "res" / "alpha", ("00000.png",))
    folder.commit(_staged(folder, "alpha"), where)
    folder.commit(_staged(folder, "alpha"), where)  # a redo of our own sequence
    assert folder.is_finished("alpha", where) and not list(folder.pending_dir.iterdir())


def test_a_removal_killed_half_way_stays_ours(tmp_path, monkeypatch):
    folder = ResultsFolder(tmp_path / "res", "s" * 64)
    where = Outputs(tmp_path / "res" / "alpha", ("00000.png",))
    folder.commit(_staged(folder, "alpha"), where)
    import shutil
    monkeypatch.setattr(shutil, "rmtree", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        folder.forget("alpha", where)
    monkeypatch.undo()
    assert folder.record("alpha") is None and folder.owns("alpha")  # the claim survives the kill
    folder.forget("alpha", where)
    assert not where.folder.exists() and not folder.owns("alpha")


# ---- hvc.segment -------------------------------------------------------------------------------------

@pytest.fixture
def frames(tmp_path) -> tuple[Path, Path]:
    """A folder of 3 frames and a first-frame mask beside it."""
    folder = tmp_path / "frames"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for t in range(3):
        Image.fromarray((rng.random((32, 48, 3)) * 255).astype(np.uint8)).save(folder / f"{t:05d}.png")
    ids = np.zeros((32, 48), np.uint8)
    ids[8:20, 10:30] = 1
    save_indexed_png(tmp_path / "first.png", ids)
    return folder, tmp_path / "first.png"


SEGMENT_OVERLAPS = [
    # id, output(frames, mask, tmp), pattern
    case("output is the frame folder", lambda f, m, t: f, r"frames: --output is the input VIDEO"),
    case("output inside the frame folder", lambda f, m, t: f / "masks", r"frames/masks: --output lies inside the input VIDEO"),
    case("output holds the frames", lambda f, m, t: t, r"--output contains the input VIDEO"),
    case("output is the mask", lambda f, m, t: m, r"first\.png: --output is the input --mask"),
]


@pytest.mark.parametrize("output, pattern", SEGMENT_OVERLAPS)
def test_segment_output_apart_from_inputs(frames, tmp_path, capsys, output, pattern):
    folder, mask = frames
    before = _snapshot(tmp_path)
    out = output(folder, mask, tmp_path)
    argv = [folder, "--mask", mask, "--model", "random18", "--output", out, "--overwrite"]
    expect_error(*call(segment_main, argv, capsys), 2, pattern)
    assert _snapshot(tmp_path) == before


# ---- train.py -----------------------------------------------------------------------------------------

TRAIN_OVERLAPS = [
    case("output.dir is the photo folder", lambda p, t: p, r"photos: output\.dir is the input data\.roots"),
    case("output.dir inside it", lambda p, t: p / "run", r"run: output\.dir lies inside the input data\.roots"),
    case("output.dir holds it", lambda p, t: t, r"output\.dir contains the input data\.roots"),
]


@pytest.mark.parametrize("output, pattern", TRAIN_OVERLAPS)
def test_train_py_output_apart_from_inputs(tmp_path, capsys, output, pattern):
    photos = photo_folder(tmp_path / "photos")
    before = _snapshot(tmp_path)
    expect_error(*call(train_py.main, train_args(output(photos, tmp_path), photos), capsys), 2, pattern)
    assert _snapshot(tmp_path) == before


TRAIN_HOLDING_A_RUN = [
    # id, extra argv (tmp -> list), code, pattern
    case("fresh run", lambda t: [], 2, r"run: output\.dir holds a training run .*--resume auto .*--overwrite"),
    case("resumed from another checkpoint", lambda t: ["--resume", t / "other.pth"], 2, r"output\.dir holds a training run"),
    case("--resume auto reads it (here: not a checkpoint)", lambda t: ["--resume", "auto"], 3,
         r"checkpoint\.pth: not a readable checkpoint"),
]


@pytest.mark.parametrize("extra, code, pattern", TRAIN_HOLDING_A_RUN)
def test_train_py_never_replaces_a_run_it_does_not_continue(tmp_path, capsys, extra, code, pattern):
    photos = photo_folder(tmp_path / "photos")
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.pth").write_bytes(b"another run's checkpoint")
    (tmp_path / "other.pth").write_bytes(b"x")
    expect_error(*call(train_py.main, train_args(out, photos, *extra(tmp_path)), capsys), code, pattern)
    assert (out / "checkpoint.pth").read_bytes() == b"another run's checkpoint"


# ---- python -m hvc.export ------------------------------------------------------------------------------

def _training_checkpoint(path: Path) -> Path:
    import torch
    state = {f"online_encoder.{k}": v for k, v in ResNet("resnet18", with_layer4=False).state_dict().items()}
    torch.save({"model": state, "optimizer": {}, "epoch": 1}, path)
    return path


EXPORTS = [
    # id, OUT (tmp, ckpt) -> path, code, pattern
    case("OUT is the checkpoint read", lambda t, c: c, 2, r"ckpt\.pth: is the checkpoint being read"),
    case("OUT is the same file through a link", lambda t, c: t.joinpath("alias.pth").symlink_to(c) or t / "alias.pth", 2,
         r"alias\.pth: is the checkpoint being read"),
    case("OUT is another training checkpoint", lambda t, c: _training_checkpoint(t / "run2.pth"), 2,
         r"run2\.pth: holds a training checkpoint, not an export; choose another OUT"),
    case("OUT is an earlier export (same kind)", lambda t, c: t.joinpath("enc.pth").write_bytes(b"old") and t / "enc.pth",
         0, None),
]


@pytest.mark.parametrize("target, code, pattern", EXPORTS)
def test_export_never_replaces_its_input_or_a_checkpoint_of_another_kind(tmp_path, capsys, target, code, pattern):
    from hvc.export import main as export_main
    ckpt = _training_checkpoint(tmp_path / "ckpt.pth")
    out = target(tmp_path, ckpt)
    before, read = out.read_bytes(), ckpt.read_bytes()
    got, lines = call(export_main, [ckpt, out], capsys)
    assert ckpt.read_bytes() == read  # the input is never touched
    if code:
        expect_error(got, lines, code, pattern)
        assert out.read_bytes() == before
    else:
        assert got == 0, lines
        assert out.read_bytes() != before


@pytest.mark.parametrize("extra", [case("plain", ()), case("--overwrite", ("--overwrite",))])
def test_folders_of_older_versions_are_refused_not_converted(tmp_path, capsys, extra):
    """Results of a version before completion records (its config.yaml, no .hvc): one line naming
    the folder, exit 2, with or without --overwrite, and every file left as it was."""
    import shutil
    root = davis_tree(tmp_path / "DAVIS", {"alpha": 2})
    out = tmp_path / "res"
    assert call(test_py.main, davis_args(root, out), capsys)[0] == 0
    shutil.rmtree(out / ".hvc")
    before = _snapshot(out)
    got, lines = call(test_py.main, [*davis_args(root, out), *extra], capsys)
    expect_error(got, lines, 2, re.escape(f"{out / 'alpha'}: exists, but no completion record of {out}") +
                 ".*an older version's, not converted.*choose another run.output_dir")
    assert {k: v for k, v in _snapshot(out).items() if not k.startswith(".hvc/")} == before  # the lock aside


# ---- eval_metrics.py -----------------------------------------------------------------------------------

@pytest.mark.parametrize("where", [case("inside the ground truth", "Annotations/480p/scores"), case("the root", "")])
def test_eval_metrics_output_apart_from_the_ground_truth(tmp_path, capsys, where):
    eval_py = load_entry("eval_metrics.py")
    root = davis_tree(tmp_path / "DAVIS", {"alpha": 2})
    before = _snapshot(root)
    argv = ["--davis-root", root, "--results", tmp_path / "res", "--year", "2017", "--output", root / where]
    expect_error(*call(eval_py.main, argv, capsys), 2, r"--output (lies inside|is) the input --davis-root")
    assert _snapshot(root) == before
