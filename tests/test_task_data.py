"""Readers of the JHMDB, VIP and VOST layouts on the synthetic clips, and their errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat

from hvc.data.jhmdb import NUM_JOINTS, check_frame_count, jhmdb_videos, read_joints, read_video_list
from hvc.data.vip import read_class_ids, vip_videos
from hvc.data.vos import DatasetError, vost_sequences
from hvc.demo.video import FACE, HAIR, UPPER_CLOTHES, figure_joints
from hvc.metrics.vip import NUM_CLASSES
from hvc.tasks.clips import feature_coords, joint_label_maps
from helpers.task_fixtures import synthetic_tasks  # noqa: F401 (fixture)


def test_jhmdb_layout_lists_and_joints(synthetic_tasks):
    root = synthetic_tasks.jhmdb
    names = list(synthetic_tasks.jhmdb_videos)
    # the three ways of naming the videos agree: official split files, videowalk's list, all videos
    assert read_video_list(root / "splits") == names
    assert read_video_list(root / "test_list.txt") == names
    videos = jhmdb_videos(root)
    assert [v.name for v in videos] == names
    for video, frames, phase in zip(videos, (10, 8), (0, 3)):
        assert [p.name for p in video.frames] == [f"{t:05d}.png" for t in range(1, frames + 1)]
        assert video.image_size() == (320, 240)
        pos = video.joints()
        assert pos.shape == (2, NUM_JOINTS, frames)
        check_frame_count(video, pos)
        # the .mat holds the renderer's joints, 1-based
        expected = np.stack([figure_joints(t, frames, 240, 320, phase) for t in range(frames)])
        np.testing.assert_allclose(pos, expected.transpose(2, 1, 0) + 1, rtol=0, atol=1e-12)
        # at the paper's 320x320 input and stride 8, every joint lands inside the 40x40 map
        feat = feature_coords(pos, video.image_size(), (320, 320), 8)
        assert feat.min() >= 0 and feat[0].max() < 40 and feat[1].max() < 40
        maps = joint_label_maps(feat[:, :, 0], (40, 40))
        assert maps.shape == (NUM_JOINTS + 1, 40, 40) and np.all(maps[1:].max(axis=(1, 2)) == 1)  # whole kernels


def test_jhmdb_bad_input(synthetic_tasks, tmp_path: Path):
    root = tmp_path / "JHMDB"
    shutil.copytree(synthetic_tasks.jhmdb, root)
    name = synthetic_tasks.jhmdb_videos[0]
    mat = root / "joint_positions" / name / "joint_positions.mat"
    savemat(mat, {"pos_world": np.zeros((2, 15, 10))})
    with pytest.raises(DatasetError, match=r"joint_positions\.mat: no 'pos_img'"):
        read_joints(mat)
    savemat(mat, {"pos_img": np.zeros((2, 13, 10))})
    with pytest.raises(DatasetError, match=r"\(2, 13, 10\), expected \(2, 15, T\)"):
        read_joints(mat)
    mat.write_bytes(b"not a mat file")
    with pytest.raises(DatasetError, match="unreadable .mat"):
        read_joints(mat)
    savemat(mat, {"pos_img": np.ones((2, 15, 9))})
    video = jhmdb_videos(root, wanted=[name])[0]
    with pytest.raises(DatasetError, match=r"covers 9 frames but .* holds 10"):
        check_frame_count(video, video.joints())
    (root / "bad_list.txt").write_text("a b c\n")
    with pytest.raises(DatasetError, match=r"bad_list.txt, line 1"):
        read_video_list(root / "bad_list.txt")
    with pytest.raises(DatasetError, match="walk/nothing"):
        jhmdb_videos(root, wanted=["walk/nothing"])
    shutil.rmtree(root / "Rename_Images" / name)
    with pytest.raises(DatasetError, match=f"{name}: frame folder not found"):
        jhmdb_videos(root)


def test_vip_layout_and_class_ids(synthetic_tasks):
    root = synthetic_tasks.vip
    (video,) = vip_videos(root, root / "val_vip.txt")
    assert video.name == synthetic_tasks.vip_video
    assert video.frame_names() == synthetic_tasks.vip_frames == ("000000000001", "000000000006",
                                                                  "000000000011", "000000000016")
    assert vip_videos(root) == [video]  # the list and the folder agree
    first = Image.open(video.annotations[0])
    assert first.mode == "L" and first.size == Image.open(video.frames[0]).size == (320, 240)
    ids = read_class_ids(video.annotations[0])
    present = set(np.unique(ids).tolist())
    assert {0, HAIR, FACE, UPPER_CLOTHES} <= present and max(present) < NUM_CLASSES
    # the figure walks: its parts move between annotated frames
    later = read_class_ids(video.annotations[-1])
    assert (later != ids).mean() > 0.01


def test_vip_bad_input(synthetic_tasks, tmp_path: Path):
    root = tmp_path / "VIP"
    shutil.copytree(synthetic_tasks.vip, root)
    video, frame = synthetic_tasks.vip_video, synthetic_tasks.vip_frames[1]
    png = root / "Annotations" / "Category_ids" / video / f"{frame}.png"
    Image.fromarray(np.full((240, 320), 23, np.uint8)).save(png)
    with pytest.raises(DatasetError, match=rf"{frame}\.png: class ids \[23\] outside 0\.\.19"):
        read_class_ids(png)
    Image.fromarray(np.zeros((240, 320, 3), np.uint8)).save(png)
    with pytest.raises(DatasetError, match="mode RGB"):
        read_class_ids(png)
    (root / "Images" / video / f"{frame}.jpg").unlink()
    with pytest.raises(DatasetError, match=rf"{video}.*{frame}\.jpg not found"):
        vip_videos(root, root / "val_vip.txt")


def test_vost_layout(synthetic_tasks, tmp_path: Path):
    (seq,) = vost_sequences(synthetic_tasks.vost)
    assert seq.name == synthetic_tasks.vost_sequence and len(seq.frames) == 26
    assert [seq.frame_name(t) for t in seq.outputs] == list(synthetic_tasks.vost_frames)
    assert seq.outputs == (0, 5, 10, 15, 20, 25) and list(seq.annotations) == [0]
    labels = [np.array(Image.open(synthetic_tasks.vost / "Annotations" / seq.name / f"{f}.png"))
              for f in synthetic_tasks.vost_frames]
    assert all(set(np.unique(m)) == {0, 1, 2} for m in labels)
    # the dough changes shape: it is cut into two pieces
    pieces = [cv2.connectedComponents((m == 1).astype(np.uint8))[0] - 1 for m in labels]
    assert pieces[0] == 1 and pieces[-1] == 2
    root = tmp_path / "VOST"
    shutil.copytree(synthetic_tasks.vost, root)
    (root / "JPEGImages" / seq.name / "00010.jpg").unlink()
    with pytest.raises(DatasetError, match=r"00010\.png: no frame 00010\.jpg"):
        vost_sequences(root)
