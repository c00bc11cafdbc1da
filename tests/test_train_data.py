"""Training pairs on real photos (BSDS500) and small frame-folder trees.

The expected views are computed here without the library's crop and normalisation code:
the box the coordinates name is cut from the decoded image with numpy slicing, resized with
PIL's bilinear filter (torchvision's RandomResizedCrop on PIL images, as the official code
uses) and normalised with the paper's training statistics written out below.
"""

from __future__ import annotations

import pickle
import random
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hvc.config.training import DataConfig
from hvc.data.pairs import RandomResizedCropCoord, StaticImagePairs, VideoFramePairs, collate_pairs, sample_crop_box

SIZE = 32  # small views keep the tests fast
MEAN = np.array([0.4914, 0.4822, 0.4465], dtype=np.float32)  # the paper's training statistics (docs/training.md)
STD = np.array([0.2023, 0.1994, 0.2010], dtype=np.float32)


def _crop(**changes) -> RandomResizedCropCoord:
    """The dataset's crop at SIZE, otherwise the paper's ranges and normalisation."""
    return RandomResizedCropCoord.from_config(DataConfig(size=SIZE, **changes))


def _box_from_coord(coord: torch.Tensor, width: int, height: int) -> tuple[int, int, int, int]:
    """Invert the documented coordinates [x0, y0, x1, y1] = [j/(W-1), i/(H-1), (j+w-1)/(W-1),
    (i+h-1)/(H-1)] (end pixel inclusive) -> the box (i, j, h, w) in pixels."""
    x0, y0, x1, y1 = coord.double().tolist()
    j, i = round(x0 * (width - 1)), round(y0 * (height - 1))
    return i, j, round(y1 * (height - 1)) - i + 1, round(x1 * (width - 1)) - j + 1


def _rgb(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _independent_view(rgb: np.ndarray, coord: torch.Tensor) -> torch.Tensor:
    """The [3, SIZE, SIZE] view that ``coord`` describes in the uint8 [H, W, 3] image ``rgb``."""
    i, j, h, w = _box_from_coord(coord, rgb.shape[1], rgb.shape[0])
    patch = np.ascontiguousarray(rgb[i:i + h, j:j + w])
    assert patch.shape[:2] == (h, w), "the coordinates name a box outside the image"
    resized = np.asarray(Image.fromarray(patch).resize((SIZE, SIZE), Image.BILINEAR), dtype=np.float32)
    return torch.from_numpy(((resized / np.float32(255) - MEAN) / STD).transpose(2, 0, 1).copy())


def _same(view: torch.Tensor, expected: torch.Tensor) -> bool:
    return view.shape == expected.shape and (view - expected).abs().max().item() <= 1e-5


def _source_frame(view: torch.Tensor, coord: torch.Tensor, frames: list[np.ndarray]) -> int:
    """Index of the one frame whose crop at ``coord`` is ``view`` (fails unless exactly one is)."""
    matches = [t for t, rgb in enumerate(frames) if _same(view, _independent_view(rgb, coord))]
    assert len(matches) == 1, f"the view matches frames {matches}"
    return matches[0]


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
        rgb = _rgb(ds.files[index])
        height, width = rgb.shape[:2]
        for view, coord in ((view1, coord1), (view2, coord2)):
            x0, y0, x1, y1 = coord.tolist()
            assert 0 <= x0 <= x1 <= 1 and 0 <= y0 <= y1 <= 1
            i, j, h, w = _box_from_coord(coord, width, height)
            assert 3 / 4 * (h - 0.5) - 0.5 <= w <= 4 / 3 * (h + 0.5) + 0.5  # ratio (3/4, 4/3), w and h rounded
            assert _same(view, _independent_view(rgb, coord)), (index, coord)


def test_static_items_replay_the_documented_generator(bsds):
    """Item 7 of epoch 4 draws its two boxes, view 1 first, from random.Random seeded by
    SeedSequence([seed, epoch, index]) (hvc/data/pairs.py), with the official box sampler
    (checked against the official code in test_crop_coords.py)."""
    ds = StaticImagePairs(str(bsds), _crop(scale=(0.2, 1.0)), seed=11)
    ds.set_epoch(4)
    _, _, coord1, coord2 = ds[7]
    width, height = Image.open(ds.files[7]).size
    state = np.random.SeedSequence([11, 4, 7]).generate_state(2, dtype=np.uint64)
    rng = random.Random(int(state[0]) << 64 | int(state[1]))
    box1 = sample_crop_box(width, height, (0.2, 1.0), (3 / 4, 4 / 3), rng)
    box2 = sample_crop_box(width, height, (0.2, 1.0), (3 / 4, 4 / 3), rng)
    assert _box_from_coord(coord1, width, height) == box1
    assert _box_from_coord(coord2, width, height) == box2
    assert box1[2] * box1[3] >= 0.2 * width * height * 0.95  # scale (0.2, 1.0) was used


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
    swan = [_rgb(video_root / "swan" / n) for n in ("00000.jpg", "00010.jpg", "00020.jpg")]
    pairs = set()
    for epoch in range(4):
        ds.set_epoch(epoch)
        view1, view2, coord1, coord2 = ds[1]
        t1, t2 = _source_frame(view1, coord1, swan), _source_frame(view2, coord2, swan)
        assert abs(t1 - t2) == 1, (epoch, t1, t2)  # two different frames, neighbours at max_gap 1
        pairs.add((t1, t2))
    assert len(pairs) > 1  # the frames are drawn anew each epoch
    cow = [_rgb(video_root / "cow" / "00000.jpg")]
    view1, view2, coord1, coord2 = ds[0]  # one-frame video: both views from that frame
    assert _source_frame(view1, coord1, cow) == _source_frame(view2, coord2, cow) == 0


def test_frame_gaps_of_the_drawn_views(tmp_path):
    """On a video of 8 distinct frames with max_gap 2, the frames each view was cut from
    (found by their pixels) are never the same and at most 2 apart; both gaps occur."""
    gen = np.random.default_rng(0)
    frames = [gen.integers(0, 256, (40, 56, 3), dtype=np.uint8) for _ in range(8)]
    (tmp_path / "vid").mkdir()
    for t, rgb in enumerate(frames):
        Image.fromarray(rgb).save(tmp_path / "vid" / f"{t:05d}.png")
    ds = VideoFramePairs(tmp_path, _crop(), max_gap=2, seed=0)
    drawn = []
    for epoch in range(40):
        ds.set_epoch(epoch)
        view1, view2, coord1, coord2 = ds[0]
        drawn.append((_source_frame(view1, coord1, frames), _source_frame(view2, coord2, frames)))
    gaps = {abs(t1 - t2) for t1, t2 in drawn}
    assert gaps == {1, 2}, drawn
    assert {t1 for t1, _ in drawn} >= {0, 7}  # the first and last frames are drawn too


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
