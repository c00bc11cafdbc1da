"""Training pairs on real photos (BSDS500) and a small frame-folder tree made from DAVIS."""

from __future__ import annotations

import pickle
import random
import shutil
import warnings
from pathlib import Path

import pytest
import torch
from PIL import Image

from hvc.config.training import DataConfig
from hvc.data.pairs import item_rng
from hvc.data.static import StaticImagePairs, collate_pairs
from hvc.data.transforms import RandomResizedCropCoord, resized_crop, sample_crop_box, to_normalized_tensor
from hvc.data.video import VideoFramePairs, pick_frame_pair

SIZE = 32  # small views keep the tests fast
TRAIN = DataConfig(size=SIZE)  # otherwise the paper's crop ranges and normalisation


def _crop(**changes) -> RandomResizedCropCoord:
    return RandomResizedCropCoord.from_config(DataConfig(size=SIZE, **changes))


def _box_from_coord(coord: torch.Tensor, width: int, height: int) -> tuple[int, int, int, int]:
    """Invert crop_coords: [x0, y0, x1, y1] -> (i, j, h, w) in pixels."""
    x0, y0, x1, y1 = coord.double().tolist()
    j, i = round(x0 * (width - 1)), round(y0 * (height - 1))
    return i, j, round(y1 * (height - 1)) - i + 1, round(x1 * (width - 1)) - j + 1


def _expected_view(path: str, coord: torch.Tensor) -> torch.Tensor:
    img = Image.open(path).convert("RGB")
    return to_normalized_tensor(resized_crop(img, _box_from_coord(coord, *img.size), SIZE), TRAIN.mean, TRAIN.std)


@pytest.fixture(scope="module")
def bsds(static_root: Path) -> Path:
    return static_root / "BSDS500"


@pytest.fixture()
def video_root(tmp_path: Path, davis_root: Path) -> Path:
    """<root>/<video>/<frame>.jpg: 3 distinct blackswan frames, 1 cows frame, 1 empty folder."""
    src = davis_root / "JPEGImages" / "480p"
    (tmp_path / "swan").mkdir()
    for name in ("00000.jpg", "00010.jpg", "00020.jpg"):
        shutil.copy(src / "blackswan" / name, tmp_path / "swan" / name)
    (tmp_path / "cow").mkdir()
    shutil.copy(src / "cows" / "00000.jpg", tmp_path / "cow" / "00000.jpg")
    (tmp_path / "empty").mkdir()
    return tmp_path


def test_static_items_are_crops_described_by_their_coords(bsds):
    ds = StaticImagePairs([str(bsds)], _crop(), seed=3)
    assert len(ds) == 500
    for index in (0, 123, 499):
        view1, view2, coord1, coord2 = ds[index]
        assert view1.shape == view2.shape == (3, SIZE, SIZE) and view1.dtype == torch.float32
        assert coord1.dtype == coord2.dtype == torch.float32 and coord1.shape == (4,)
        assert not torch.equal(coord1, coord2)  # two independent crops
        for view, coord in ((view1, coord1), (view2, coord2)):
            x0, y0, x1, y1 = coord.tolist()
            assert 0 <= x0 <= x1 <= 1 and 0 <= y0 <= y1 <= 1
            assert torch.equal(view, _expected_view(ds.files[index], coord))


def test_static_items_replay_the_documented_generator(bsds):
    ds = StaticImagePairs(str(bsds), _crop(scale=(0.2, 1.0)), seed=11)
    ds.set_epoch(4)
    _, _, coord1, coord2 = ds[7]
    width, height = Image.open(ds.files[7]).size
    rng = item_rng(11, 4, 7)
    box1 = sample_crop_box(width, height, (0.2, 1.0), (3 / 4, 4 / 3), rng)
    box2 = sample_crop_box(width, height, (0.2, 1.0), (3 / 4, 4 / 3), rng)
    assert _box_from_coord(coord1, width, height) == box1
    assert _box_from_coord(coord2, width, height) == box2


def test_determinism_under_seed_and_epoch(bsds):
    a = StaticImagePairs([bsds], _crop(), seed=5)
    b = pickle.loads(pickle.dumps(StaticImagePairs([bsds], _crop(), seed=5)))  # as sent to workers
    first = [a[i] for i in (9, 2)]
    second = [b[i] for i in (2, 9)][::-1]  # another instance, other access order (as in workers)
    for x, y in zip(first, second):
        assert all(torch.equal(u, v) for u, v in zip(x, y))
    a.set_epoch(1)
    assert not torch.equal(a[9][2], first[0][2])  # a new epoch draws new crops
    assert not torch.equal(StaticImagePairs([bsds], _crop(), seed=6)[9][2], first[0][2])
    a.set_epoch(0)
    assert torch.equal(a[9][0], first[0][0])


def test_corrupt_files_warn_and_are_skipped_by_collate(tmp_path, bsds):
    good = sorted(bsds.glob("*.jpg"))[:2]
    for p in good:
        shutil.copy(p, tmp_path / p.name)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "broken.png").write_bytes(b"not an image at all")
    (tmp_path / "truncated.JPG").write_bytes(good[0].read_bytes()[:2000])
    ds = StaticImagePairs([tmp_path], _crop(), seed=42)
    assert len(ds) == 4  # recursive, extensions in any case
    items = []
    for i in range(len(ds)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            items.append(ds[i])
        bad = Path(ds.files[i]).name in ("broken.png", "truncated.JPG")
        assert (items[-1] is None) == bad
        assert any(ds.files[i] in str(w.message) for w in caught) == bad
    view1, view2, coord1, coord2, skipped = collate_pairs(items)
    assert skipped == 2
    assert view1.shape == view2.shape == (2, 3, SIZE, SIZE) and coord1.shape == coord2.shape == (2, 4)
    good_items = [it for it in items if it is not None]
    assert torch.equal(view2[1], good_items[1][1]) and torch.equal(coord1[0], good_items[0][2])
    empty = collate_pairs([None, None])
    assert empty[0].shape[0] == 0 and empty[2].shape == (0, 4) and empty[4] == 2


def test_static_bad_roots_fail_early_naming_the_folder(tmp_path, bsds):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    with pytest.raises(ValueError, match=str(empty)):
        StaticImagePairs([str(bsds), str(empty)], _crop(), seed=42)
    with pytest.raises(ValueError, match=str(tmp_path / "missing")):
        StaticImagePairs([tmp_path / "missing"], _crop(), seed=42)
    with pytest.raises(ValueError, match="empty"):
        StaticImagePairs([], _crop(), seed=42)


def test_video_pairs_come_from_nearby_frames_of_one_video(video_root):
    with pytest.warns(RuntimeWarning, match="empty"):
        ds = VideoFramePairs(str(video_root), _crop(), max_gap=1, seed=2)
    assert len(ds) == 2 and [name for name, _ in ds.videos] == ["cow", "swan"]
    for epoch in range(3):
        ds.set_epoch(epoch)
        frames = ds.videos[1][1]
        t1, t2 = pick_frame_pair(len(frames), 1, item_rng(2, epoch, 1))
        assert abs(t1 - t2) == 1
        view1, view2, coord1, coord2 = ds[1]
        assert torch.equal(view1, _expected_view(frames[t1], coord1))
        assert torch.equal(view2, _expected_view(frames[t2], coord2))
    view1, view2, coord1, coord2 = ds[0]  # one-frame video: both views from that frame
    assert torch.equal(view2, _expected_view(ds.videos[0][1][0], coord2))


def test_pick_frame_pair_respects_max_gap():
    rng = random.Random(0)
    pairs = [pick_frame_pair(30, 4, rng) for _ in range(500)]
    assert all(t1 != t2 and abs(t1 - t2) <= 4 for t1, t2 in pairs)
    assert {abs(t1 - t2) for t1, t2 in pairs} == {1, 2, 3, 4}
    assert {t1 for t1, _ in pairs} == set(range(30))
    assert pick_frame_pair(1, 4, rng) == (0, 0)


def test_video_errors(video_root, tmp_path_factory):
    frame = video_root / "swan" / "00010.jpg"
    frame.write_bytes(frame.read_bytes()[:1500])
    with pytest.warns(RuntimeWarning):
        ds = VideoFramePairs(video_root, _crop(), max_gap=2, seed=42)
    results = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for epoch in range(6):
            ds.set_epoch(epoch)
            results.append(ds[1])
    assert any(r is None for r in results) and any(r is not None for r in results)
    assert any(str(frame) in str(w.message) for w in caught)
    no_videos = tmp_path_factory.mktemp("no_videos")
    with pytest.raises(ValueError, match=str(no_videos)):
        VideoFramePairs(no_videos, _crop(), max_gap=10, seed=42)
    with pytest.raises(ValueError, match="max_gap"):
        VideoFramePairs(video_root, _crop(), max_gap=0, seed=42)
