"""Names read from dataset files are data, never paths (docs/failure.md; family 1; hvc/names.py).

Every reader of a list or meta file refuses a name that could leave its folder (absolute,
``..``, more ``/`` than the layout has), naming the file and the line or key, with exit 3
from the entry points; nothing is written or removed outside the output folder. A completion
record that names files outside its folder is not trusted, so neither the results folder's
bookkeeping nor the YouTube-VOS zip ever leaves the folder. Tiny synthetic trees in tmp dirs.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from helpers.fault_support import REPO, call, davis_tree, load_entry, write_meta
from hvc.completion import Outputs, Record, ResultsFolder
from hvc.data.jhmdb import read_video_list
from hvc.data.vip import read_frame_list
from hvc.data.vos import DatasetError, vost_sequences, ytvos_sequences
from hvc.errors import InputError
from hvc.names import check_name, inside, name_problem
from test_faults import case, davis_args, expect_error, ytvos_run
from helpers.vos_trees import make_ytvos

test_py, eval_py = load_entry("test.py"), load_entry("eval_metrics.py")

# ---- the one check --------------------------------------------------------------------------

NAMES = [
    # id, name, parts, accepted
    case("plain", "bike-packing", 1, True),
    case("spaces and non-ASCII", "vélo de course", 1, True),
    case("dots inside", "a..b", 1, True),
    case("JHMDB class/video", "brush_hair/clip_1", 2, True),
    case("parent", "..", 1, False),
    case("parent prefix", "../../../escape1", 1, False),
    case("parent inside", "a/../b", 2, False),
    case("dot", ".", 1, False),
    case("absolute", "/tmp/victim", 1, False),
    case("absolute, 2 parts allowed", "/etc", 2, False),
    case("drive letter", "C:/Windows", 2, False),
    case("separator beyond the layout", "a/b", 1, False),
    case("3 parts for JHMDB", "a/b/c", 2, False),
    case("trailing slash", "a/", 2, False),
    case("backslash", "..\\x", 1, False),
    case("empty", "", 1, False),
    case("newline", "a\nb", 1, False),
    case("NUL", "a\0b", 1, False),
    case("too long", "x" * 300, 1, False),
    case("not text", 7, 1, False),
]


@pytest.mark.parametrize("name, parts, accepted", NAMES)
def test_name_check(name, parts, accepted):
    assert (name_problem(name, parts) is None) == accepted
    if not accepted:
        with pytest.raises(InputError, match=r"^list\.txt, line 3: name .{1,90} (is|holds|has)"):
            check_name(name, "list.txt, line 3", parts)


def test_inside_follows_links(tmp_path):
    root, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    root.mkdir(), elsewhere.mkdir()
    (root / "link").symlink_to(elsewhere)
    assert inside(root, root / "a" / "b") and not inside(root, root / ".." / "x")
    assert not inside(root, root / "link" / "x")  # through a link: where it points counts
    assert inside(root, root / "link", follow=False)  # the link itself lies inside


# ---- test.py on DAVIS: the probe's cases -------------------------------------------------------

def _victim(tmp: Path) -> Path:
    """An unrelated folder with a file: nothing may remove or write into it."""
    folder = tmp / "victim"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    return folder


DAVIS_LINES = [
    # id, the bad line (tmp -> text), pattern of the error
    case("../ escape", lambda t: "../../../escape1", r"val\.txt, line 2: name '\.\./\.\./\.\./escape1' holds '\.\.'"),
    case("absolute folder", lambda t: str(t / "victim"), r"val\.txt, line 2: name '/[^']*' is an absolute path"),
    case("sub-folder", lambda t: "alpha/sub", r"val\.txt, line 2: name 'alpha/sub' has 2 parts"),
    case("lone ..", lambda t: "..", r"val\.txt, line 2: name '\.\.' holds"),
    case("backslash", lambda t: "..\\..\\x", r"val\.txt, line 2: name .* holds a backslash"),
    case("tab inside", lambda t: "al\tpha", r"val\.txt, line 2: name .* control characters"),
]


@pytest.mark.parametrize("line, pattern", DAVIS_LINES)
def test_test_py_refuses_unsafe_sequence_names(tmp_path, capsys, line, pattern):
    root = davis_tree(tmp_path / "data" / "DAVIS", {"alpha": 2})
    victim = _victim(tmp_path)
    (root / "ImageSets" / "2017" / "val.txt").write_text(f"alpha\n{line(tmp_path)}\n")
    before = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    out = tmp_path / "runs" / "deep" / "res"
    expect_error(*call(test_py.main, davis_args(root, out, "--overwrite"), capsys), 3, pattern)
    assert (victim / "keep.txt").read_text() == "mine" and sorted(p.name for p in victim.iterdir()) == ["keep.txt"]
    after = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    assert [p for p in after if p not in before and not p.startswith("runs")] == []  # nothing outside --output
    assert not list(out.rglob("*.png")) if out.exists() else True


def test_eval_metrics_refuses_unsafe_sequence_names(tmp_path, capsys):
    root = davis_tree(tmp_path / "DAVIS", {"alpha": 2})
    (root / "ImageSets" / "2017" / "val.txt").write_text("alpha\n../../etc\n")
    argv = ["--davis-root", root, "--results", tmp_path / "res", "--year", "2017", "--output", tmp_path / "o"]
    expect_error(*call(eval_py.main, argv, capsys), 3, r"val\.txt, line 2: name '\.\./\.\./etc'")


# ---- YouTube-VOS meta.json ----------------------------------------------------------------------

def _meta_with(root: Path, change) -> None:
    meta = json.loads((root / "valid" / "meta.json").read_text())
    change(meta["videos"])
    write_meta(root, meta)


def _rename(old, new):
    return lambda videos: videos.__setitem__(new, videos.pop(old))


def _frame_name(value):
    return lambda videos: videos["vid_a"]["objects"]["1"]["frames"].append(value)


META_CASES = [
    # id, change of meta["videos"], pattern
    case("video key ../", _rename("vid_a", "../../escape"), r"meta\.json, key videos: name '\.\./\.\./escape'"),
    case("video key absolute", _rename("vid_a", "/tmp/x"), r"meta\.json, key videos: name '/tmp/x' is an absolute"),
    case("video key with /", _rename("vid_a", "vid/a"), r"meta\.json, key videos: name 'vid/a' has 2 parts"),
    case("object id ../", lambda v: v["vid_a"]["objects"].__setitem__("../1", {"frames": []}),
         r"meta\.json, videos\.vid_a\.objects: name '\.\./1'"),
    case("frame ../", _frame_name("../../00002"), r"videos\.vid_a\.objects\.1\.frames: name '\.\./\.\./00002'"),
    case("frame absolute with extension", _frame_name("/etc/passwd.png"), r"frames: name '/etc/passwd' is an absolute"),
]


@pytest.mark.parametrize("change, pattern", META_CASES)
def test_ytvos_meta_names_are_checked(tmp_path, change, pattern):
    root = make_ytvos(tmp_path / "2018")
    _meta_with(root, change)
    with pytest.raises(DatasetError, match=pattern):
        ytvos_sequences(root)


def test_ytvos_frame_names_with_an_extension(tmp_path, capsys):
    """meta.json frames written as ``00002.jpg``: the same outputs as ``00002`` (was a KeyError)."""
    plain, dotted = make_ytvos(tmp_path / "plain"), make_ytvos(tmp_path / "dotted")
    _meta_with(dotted, lambda videos: [o.__setitem__("frames", [f"{f}.jpg" for f in o["frames"]])
                                       for v in videos.values() for o in v["objects"].values()])
    assert [s.outputs for s in ytvos_sequences(dotted)] == [s.outputs for s in ytvos_sequences(plain)]
    out = tmp_path / "res"
    argv = ["--config", REPO / "configs" / "test_ytvos.yaml", "--model", "random18", f"data.root={dotted}",
            "--output", out, "data.workers=0"]
    assert call(test_py.main, argv, capsys)[0] == 0
    assert sorted(p.name for p in (out / "Annotations" / "vid_a").iterdir()) == [f"{n:05d}.png" for n in (0, 2, 4, 6)]


# ---- VOST, JHMDB, VIP lists ---------------------------------------------------------------------

def test_vost_list_names_are_checked(tmp_path):
    (tmp_path / "ImageSets").mkdir()
    (tmp_path / "ImageSets" / "val.txt").write_text("ok\n\n/abs/seq\n")
    with pytest.raises(DatasetError, match=r"val\.txt, line 3: name '/abs/seq' is an absolute path"):
        vost_sequences(tmp_path)


JHMDB_LINES = [
    # id, line, accepted name or None (refused)
    case("videowalk line, absolute paths", "/data/JHMDB/Rename_Images/run/clip1 /data/JHMDB/joint_positions/run/clip1/"
         "joint_positions.mat", "run/clip1"),
    case("class/video", "run/clip1", "run/clip1"),
    case("parents", "Rename_Images/../..", None),
    case("parent as class", "../clip1", None),
    case("dot as video", "run/.", None),
]


@pytest.mark.parametrize("line, accepted", JHMDB_LINES)
def test_jhmdb_list_names_are_checked(tmp_path, line, accepted):
    listing = tmp_path / "list.txt"
    listing.write_text(f"\n{line}\n")
    if accepted:
        assert read_video_list(listing) == [accepted]
    else:
        with pytest.raises(DatasetError, match=r"list\.txt, line 2: "):
            read_video_list(listing)


VIP_LINES = [
    case("the paper's line", "1 VIP/Images/videos1/000000000001.jpg VIP/Annotations/Category_ids/videos1/000000000001.png",
         ("videos1", "000000000001")),
    case("parent as video", "1 VIP/Images/../000000000001.jpg VIP/Annotations/Category_ids/../000000000001.png", None),
    case("parent as frame", "1 a/videos1/...jpg a/videos1/...png", None),
]


@pytest.mark.parametrize("line, accepted", VIP_LINES)
def test_vip_list_names_are_checked(tmp_path, line, accepted):
    listing = tmp_path / "val_vip.txt"
    listing.write_text(line + "\n")
    if accepted:
        assert read_frame_list(listing) == [accepted]
    else:
        with pytest.raises(DatasetError, match=r"val_vip\.txt, line 1: name '\.\.'"):
            read_frame_list(listing)


# ---- the results folder's own bookkeeping ----------------------------------------------------------

def _record(folder: ResultsFolder, name: str, files: list[str]) -> Path:
    path = folder.records_dir / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"version": 1, "sequence": name, "settings": folder.settings, "files": files,
                                "frames": 1, "seconds": 0.0, "worker": "single"}))
    return path


RECORDS = [
    # id, record name, files
    case("file with ..", "alpha", ["../../../escape.png"]),
    case("absolute file", "alpha", ["/etc/passwd"]),
    case("file in a sub-folder", "alpha", ["sub/00000.png"]),
    case("sequence other than its path", "alpha", ["00000.png"]),
]


@pytest.mark.parametrize("name, files", RECORDS)
def test_records_naming_other_places_are_not_trusted(tmp_path, name, files):
    folder = ResultsFolder(tmp_path / "res", "s" * 64)
    path = _record(folder, name, files)
    if files == ["00000.png"]:  # a record copied from another sequence's
        path.rename(path.with_name("beta.json"))
        name = "beta"
    assert folder.record(name) is None and folder.owns(name)  # not trusted, still ours to redo
    assert folder.foreign() == [] and not folder.is_finished(name, Outputs(tmp_path / "res" / name, ("00000.png",)))


UNSAFE_OUTPUTS = [
    case("name with ..", lambda out: ("../x", Outputs(out / "x", ("a.png",)))),
    case("absolute name", lambda out: ("/tmp/x", Outputs(Path("/tmp/x"), ("a.png",)))),
    case("folder outside", lambda out: ("x", Outputs(out.parent / "x", ("a.png",)))),
    case("file with ..", lambda out: ("x", Outputs(out / "x", ("../../a.png",)))),
]


@pytest.mark.parametrize("make", UNSAFE_OUTPUTS)
def test_commit_and_start_stay_inside_the_folder(tmp_path, make):
    out = tmp_path / "res"
    victim = _victim(tmp_path)
    folder = ResultsFolder(out, "s" * 64)
    name, outputs = make(out)
    with pytest.raises(InputError):
        staged = folder.start(name)
        (staged / "a.png").write_bytes(b"png")
        folder.commit(Record(name, folder.settings, outputs.files, 1, 0.0, "single"), outputs)
    assert sorted(p.name for p in victim.iterdir()) == ["keep.txt"] and not (tmp_path / "x").exists()


def test_zip_entries_stay_inside_the_archive(tmp_path, capsys):
    _, out, argv = ytvos_run(tmp_path, capsys)
    record = out / ".hvc" / "done" / "vid_a.json"
    data = json.loads(record.read_text())
    data["files"].append("../../../../outside.png")  # a tampered record: not trusted, the video redone
    record.write_text(json.dumps(data))
    assert call(test_py.main, argv, capsys)[0] == 0
    assert json.loads(record.read_text())["files"] == [f"{n:05d}.png" for n in (0, 2, 4, 6)]
    with zipfile.ZipFile(out / "submission.zip") as zf:
        names = zf.namelist()
    assert names and all(n.startswith("Annotations/vid_") and ".." not in n.split("/") for n in names)
