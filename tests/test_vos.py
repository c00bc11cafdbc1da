"""Benchmark readers, frame loading, label maps and the indexed-PNG writer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from hvc.data.palette import DAVIS_PALETTE, save_indexed_png
from hvc.data.vos import DatasetError, FrameDataset, load_sequences, read_label_map, scaled_size
from helpers.vos_trees import H, W, make_davis17, make_ytvos


def test_palette_is_the_davis_palette(golden_dir):
    with Image.open(golden_dir / "metrics" / "DAVIS" / "Annotations" / "480p" / "composite3" / "00000.png") as im:
        official = np.array(im.getpalette(), dtype=np.uint8).reshape(-1, 3)
    np.testing.assert_array_equal(DAVIS_PALETTE, official)


def test_indexed_png_round_trip(tmp_path):
    labels = np.random.default_rng(0).integers(0, 5, (7, 9)).astype(np.uint8)
    path = tmp_path / "a" / "00000.png"
    save_indexed_png(path, labels)
    with Image.open(path) as im:
        assert im.mode == "P" and im.size == (9, 7)
        np.testing.assert_array_equal(np.array(im), labels)
        assert im.getpalette()[3:6] == [128, 0, 0]
    assert [p.name for p in path.parent.iterdir()] == ["00000.png"]  # no temporary file left
    with pytest.raises(ValueError, match="uint8"):
        save_indexed_png(path, labels.astype(np.int64))


def test_davis2016_real_sequences(davis_root):
    (seq,) = load_sequences("davis16", davis_root, ["blackswan"])
    assert len(seq.frames) == 50 and seq.outputs == tuple(range(50)) and list(seq.annotations) == [0]
    ids = read_label_map(seq.annotations[0], seq.mask_format, (480, 854))
    assert ids.dtype == np.int64 and set(np.unique(ids)) == {0, 1}
    assert 0.01 < ids.mean() < 0.5  # the swan, not the whole frame
    assert [s.name for s in load_sequences("davis16", davis_root)][:2] == ["blackswan", "breakdance"]


def test_davis2017_palette_ids_and_void(tmp_path):
    root = make_davis17(tmp_path / "DAVIS")
    seqs = load_sequences("davis17", root)
    assert [s.name for s in seqs] == ["alpha", "beta"]
    ids = read_label_map(seqs[0].annotations[0], "palette", (H, W))
    assert set(np.unique(ids)) == {0, 1, 2} and ids[4, 4:20].max() == 0  # void -> background


def test_frames_are_resized_and_normalised(davis_root):
    (seq,) = load_sequences("davis16", davis_root, ["dog"])
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    full = FrameDataset(seq, -1, mean, std)[0]
    small = FrameDataset(seq, 120, mean, std)[0]
    assert full.shape == (3, 480, 854) and small.shape == (3, 120, 213)
    with Image.open(seq.frames[0]) as im:
        rgb = np.asarray(im.convert("RGB"), dtype=np.float32) / 255
    np.testing.assert_allclose(full[:, 10, 20].numpy(), (rgb[10, 20] - mean) / std, rtol=1e-5)
    # align_corners=True keeps the corner pixels
    torch.testing.assert_close(small[:, 0, 0], full[:, 0, 0])
    torch.testing.assert_close(small[:, -1, -1], full[:, -1, -1])
    assert scaled_size((480, 854), 192) == (192, 341) and scaled_size((854, 480), 192) == (341, 192)


def test_ytvos_meta_driven_sequences(tmp_path):
    root = make_ytvos(tmp_path / "2018")
    a, b = load_sequences("ytvos", root)
    assert a.name == "vid_a" and len(a.frames) == 8
    assert sorted(a.annotations) == [0, 4] and a.outputs == (0, 2, 4, 6)
    late = read_label_map(a.annotations[4], "palette", (H, W))
    assert set(np.unique(late)) == {0, 2}  # only the object that starts there
    # vid_b starts at its first annotated frame (00002); outputs are the meta.json frames
    assert b.frame_name(0) == "00002" and len(b.frames) == 5
    assert list(b.annotations) == [0] and [b.frame_name(t) for t in b.outputs] == ["00002", "00004", "00006"]
    assert [s.name for s in load_sequences("ytvos", root, ["vid_b"])] == ["vid_b"]


def test_missing_sequence_in_list_is_an_error(tmp_path, davis_root):
    with pytest.raises(DatasetError, match=r"val.txt: does not list sequence.*nope"):
        load_sequences("davis16", davis_root, ["blackswan", "nope"])
    with pytest.raises(DatasetError, match="ImageSets/2017/val.txt"):
        load_sequences("davis17", tmp_path)
    with pytest.raises(DatasetError, match="meta.json"):
        load_sequences("ytvos", tmp_path)


def test_missing_frames_or_first_mask(tmp_path):
    root = make_davis17(tmp_path / "DAVIS")
    (root / "Annotations" / "480p" / "alpha" / "00000.png").unlink()
    with pytest.raises(DatasetError, match=r"alpha/00000.png: first-frame mask not found"):
        load_sequences("davis17", root)
    for f in (root / "JPEGImages" / "480p" / "beta").iterdir():
        f.unlink()
    with pytest.raises(DatasetError, match=r"beta: no frames"):
        load_sequences("davis17", root, ["beta"])


def test_mask_size_and_format_errors(tmp_path):
    path = tmp_path / "mask.png"
    save_indexed_png(path, np.zeros((H, W + 2), dtype=np.uint8))
    with pytest.raises(DatasetError, match=rf"mask.png: mask size {H}x{W + 2} differs from the frame size {H}x{W}"):
        read_label_map(path, "palette", (H, W))
    Image.fromarray(np.zeros((H, W), dtype=np.uint8)).save(path)  # greyscale, not a palette PNG
    with pytest.raises(DatasetError, match="palette"):
        read_label_map(path, "palette", (H, W))


def test_unreadable_frame_is_named(tmp_path):
    root = make_davis17(tmp_path / "DAVIS")
    broken = root / "JPEGImages" / "480p" / "alpha" / "00002.jpg"
    broken.write_bytes(b"\xff\xd8 truncated")
    (seq,) = load_sequences("davis17", root, ["alpha"])
    data = FrameDataset(seq, -1, (0.5,) * 3, (0.5,) * 3)
    assert data[1].shape == (3, H, W)
    with pytest.raises(DatasetError, match=r"00002.jpg: unreadable frame"):
        data[2]
