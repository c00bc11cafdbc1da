"""python -m hvc.data.check on the real DAVIS folder, on damaged copies and on the synthetic
YouTube-VOS, JHMDB, VIP and VOST trees."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hvc.data import check
from hvc.data.palette import save_indexed_png
from helpers.task_fixtures import synthetic_tasks  # noqa: F401 - pytest fixture
from helpers.vos_trees import make_davis17, make_ytvos

SEQUENCES = ("blackswan", "dog")  # the damaged copy links two real sequences


def _linked_copy(davis_root: Path, dest: Path) -> Path:
    """A DAVIS 2016 tree at ``dest/DAVIS`` of links to SEQUENCES' frames and masks (files we may delete)."""
    for sub in ("JPEGImages/480p", "Annotations/480p"):
        for seq in SEQUENCES:
            folder = dest / "DAVIS" / sub / seq
            folder.mkdir(parents=True)
            for path in sorted((davis_root / sub / seq).iterdir()):
                os.symlink(path, folder / path.name)
    (dest / "DAVIS/ImageSets/2016").mkdir(parents=True)
    (dest / "DAVIS/ImageSets/2016/val.txt").write_text("".join(f"{s}\n" for s in SEQUENCES))
    return dest


def test_real_davis_folder_runs_davis16_only(davis_root):
    report = check.check_root(davis_root.parent)
    davis16 = report.datasets[0]
    listed = (davis_root / "ImageSets/2016/val.txt").read_text().split()
    assert (davis16.name, davis16.sequences, davis16.problems, davis16.runs) == ("davis16", listed, [], True)
    assert report.runnable() == ["davis16"]
    assert not next(d for d in report.datasets if d.name == "davis17").present


def test_davis_folder_itself_is_accepted(davis_root):
    report = check.check_root(davis_root, "davis16")
    assert report.datasets[0].runs and "is a DAVIS folder" in report.note


def test_damaged_copy_reports_each_problem(tmp_path, davis_root):
    root = _linked_copy(davis_root, tmp_path)
    masks = root / "DAVIS/Annotations/480p/blackswan"
    mid = sorted(masks.iterdir())[10]
    mid.unlink()  # a frame without its mask
    frames = root / "DAVIS/JPEGImages/480p/dog"
    last = sorted(frames.iterdir())[-1]
    last.unlink()  # a mask without its frame
    report = check.check_dataset(root, "davis16")
    assert report.sequences == list(SEQUENCES)
    assert f"blackswan: 1 frames without a mask ({mid.stem})" in report.problems
    assert f"dog: 1 masks without a frame ({last.stem}.png)" in report.problems
    assert report.runs  # test.py needs only the first-frame masks: the scan says more than the loader

    (masks / "00000.png").unlink()  # now the loader refuses it too
    report = check.check_dataset(root, "davis16")
    assert not report.runs and "first-frame mask not found" in report.reason


def test_greyscale_masks_under_a_2017_list_are_a_palette_problem(tmp_path, davis_root):
    root = _linked_copy(davis_root, tmp_path)
    (root / "DAVIS/ImageSets/2017").mkdir()
    (root / "DAVIS/ImageSets/2017/val.txt").write_text("dog\n")
    report = check.check_dataset(root, "davis17")
    assert report.present and report.problems
    assert all("expected a palette ('P' mode) PNG, got a PNG image in mode L" in p for p in report.problems)


def test_id_gap_in_a_first_frame(tmp_path):
    root = tmp_path / "data"
    make_davis17(root / "DAVIS")
    first = root / "DAVIS/Annotations/480p/alpha/00000.png"
    ids = np.array(Image.open(first))
    ids[ids == 2] = 3  # objects 1 and 3, no 2
    save_indexed_png(first, ids)
    report = check.check_dataset(root, "davis17")
    assert f"{first}: id gap: ids [1, 3] without [2]" in report.problems
    assert not any("id gap" in p for p in report.problems if "/beta/" in p)  # the intact sequence
    assert check.check_dataset(root, "davis16").present is False


def test_listed_names_are_data_never_paths(tmp_path):
    """A list naming frames outside the folder ('../..'): a problem naming the list file; the check
    looks at nothing there (scanned, the frames outside would add problems: they have no masks)."""
    root = tmp_path / "data"
    make_davis17(root / "DAVIS")
    make_davis17(root / "outside", sequences=("gamma",))
    listing = root / "DAVIS/ImageSets/2017/val.txt"
    listing.write_text("alpha\n../../../outside/JPEGImages/480p/gamma\n")
    report = check.check_dataset(root, "davis17")
    assert [p for p in report.problems if "gamma" in p] == [
        f"{listing}: name '../../../outside/JPEGImages/480p/gamma' holds '..', '.' or an empty part (names are not paths)"]
    assert not report.runs and "names are not paths" in report.reason  # test.py refuses the list too

    make_ytvos(tmp_path / "YTB" / "2018")
    meta = tmp_path / "YTB/2018/valid/meta.json"
    meta.write_text(meta.read_text().replace('"vid_b"', '"../vid_b"'))
    report = check.check_dataset(tmp_path, "ytvos")
    assert report.problems == [f"{meta}: name '../vid_b' holds '..', '.' or an empty part (names are not paths)"]


def test_synthetic_ytvos_tree(tmp_path):
    make_ytvos(tmp_path / "YTB" / "2018")
    report = check.check_dataset(tmp_path, "ytvos")
    assert (report.sequences, report.problems, report.runs) == (["vid_a", "vid_b"], [], True)
    shutil.rmtree(tmp_path / "YTB/2018/valid_all_frames/JPEGImages/vid_b")
    report = check.check_dataset(tmp_path, "ytvos")
    assert not report.runs and any(p.startswith("vid_b: no frames") for p in report.problems)


def test_synthetic_task_trees(synthetic_tasks):  # noqa: F811
    root = synthetic_tasks.jhmdb.parent  # JHMDB/, VIP/ and VOST/ side by side, as under a data root
    report = check.check_root(root)
    by_name = {d.name: d for d in report.datasets}
    assert by_name["jhmdb"].sequences == sorted(synthetic_tasks.jhmdb_videos)
    assert by_name["vip"].sequences == [synthetic_tasks.vip_video]
    assert by_name["vost"].sequences == [synthetic_tasks.vost_sequence]
    assert report.runnable() == ["jhmdb", "vip", "vost"]
    assert all(not by_name[n].problems for n in ("jhmdb", "vip", "vost"))


def test_vip_class_id_out_of_range(tmp_path, synthetic_tasks):  # noqa: F811
    vip = shutil.copytree(synthetic_tasks.vip, tmp_path / "VIP")
    mask = sorted((vip / "Annotations/Category_ids" / synthetic_tasks.vip_video).iterdir())[0]
    ids = np.array(Image.open(mask))
    ids[0, 0] = 25
    Image.fromarray(ids).save(mask)
    report = check.check_dataset(tmp_path, "vip")
    assert report.problems == [f"{mask}: class ids [25] outside 0..19"]


def test_cli_names_what_was_found_when_the_benchmark_is_missing(tmp_path, capsys, davis_root):
    assert check.main([str(davis_root.parent), "--dataset", "davis17"]) == 3
    captured = capsys.readouterr()
    assert "davis17: not found" in captured.out
    assert captured.err.startswith("error: ") and "found under" in captured.err and "davis16" in captured.err
    assert check.main([str(tmp_path)]) == 3  # an empty folder: nothing runs


def test_missing_dataset_error_names_what_was_found(davis_root):
    """test.py asked for davis17 on a root holding only DAVIS 2016: the error says davis16 would run."""
    from hvc.data.vos import DatasetError, load_sequences
    with pytest.raises(DatasetError) as err:
        load_sequences("davis17", davis_root)
    assert f"found under {davis_root.parent}: davis16" in str(err.value)
    assert f"python -m hvc.data.check {davis_root.parent}" in str(err.value)


def test_missing_task_root_suggests_the_download(tmp_path):
    from hvc.data.jhmdb import jhmdb_videos
    from hvc.data.vos import DatasetError
    with pytest.raises(DatasetError, match="no benchmark found under .*python -m hvc.download davis17"):
        jhmdb_videos(tmp_path / "JHMDB")
