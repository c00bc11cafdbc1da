"""Mask exports (hvc/exports.py): every format read back with the tool another program would use
(pycocotools for RLE, PyAV for the mp4, PIL for the PNGs) and compared with the palette PNGs
they were made from, on the demo video's frames and masks (two moving objects, one of them
leaving the frame in some frames)."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as coco_mask

from hvc.data.palette import save_indexed_png
from hvc.demo.video import render_video
from hvc.errors import InputError
from hvc.exports import FORMATS, TARGETS, Mp4Writer, export_masks, overlay

FRAMES, H, W = 6, 95, 161  # odd sizes: the mp4 must pad them to even ones


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """A run folder holding masks/<frame>.png, and the frames and labels they came from. Object
    3 is listed but never present; object 2 is removed from frame 4 (absent there)."""
    frames, labels = render_video(num_frames=FRAMES, height=H, width=W)
    labels[4] = np.where(labels[4] == 2, np.uint8(0), labels[4])
    folder = tmp_path_factory.mktemp("run")
    names = [f"{t:05d}" for t in range(FRAMES)]
    for name, label in zip(names, labels):
        save_indexed_png(folder / "masks" / f"{name}.png", label)
    export_masks(FORMATS, folder, names, size=(H, W), fps=12, objects=[1, 2, 3], frames=enumerate(frames),
                 video="demo.mp4")
    return folder, names, frames, labels


def _png(path: Path) -> tuple[str, np.ndarray]:
    with Image.open(path) as im:
        return im.mode, np.array(im)


def test_rle_decoded_with_pycocotools_equals_the_pngs(results):
    folder, names, _, labels = results
    data = json.loads((folder / TARGETS["rle"]).read_text())
    assert (data["height"], data["width"], data["object_ids"]) == (H, W, [1, 2, 3])
    assert [a["file_name"] for a in data["annotations"]] == [f"{n}.png" for n in names]
    for t, annotation in enumerate(data["annotations"]):
        palette = _png(folder / "masks" / f"{names[t]}.png")[1]
        assert np.array_equal(palette, labels[t])
        decoded = np.zeros((H, W), np.uint8)
        for segment in annotation["segmentations"]:
            mask = coco_mask.decode(segment["segmentation"]).astype(bool)
            assert segment["area"] == int(coco_mask.area(segment["segmentation"])) == mask.sum()
            x, y, w, h = segment["bbox"]
            assert mask[y:y + h, x:x + w].sum() == mask.sum() and mask[y, x:x + w].any() and mask[y:y + h, x].any()
            assert not (decoded & mask).any()  # objects do not overlap
            decoded[mask] = segment["id"]
        assert np.array_equal(decoded, palette)
        ids = [s["id"] for s in annotation["segmentations"]]
        assert 3 not in ids and (2 in ids) == (t != 4)  # absent objects have no segment


def test_binary_masks_recombine_to_the_palette_pngs(results):
    folder, names, _, labels = results
    assert sorted(p.name for p in (folder / "binary").iterdir()) == ["1", "2", "3"]
    for t, name in enumerate(names):
        combined = np.zeros((H, W), np.uint8)
        for i in (1, 2, 3):
            mode, mask = _png(folder / "binary" / str(i) / f"{name}.png")
            assert mode == "L" and set(np.unique(mask)) <= {0, 255}
            assert not (combined.astype(bool) & (mask == 255)).any()
            combined[mask == 255] = i
        assert np.array_equal(combined, _png(folder / "masks" / f"{name}.png")[1])
    assert not _png(folder / "binary" / "3" / f"{names[0]}.png")[1].any()  # a listed, absent object: empty


def test_alpha_cutouts_keep_the_frame_and_are_opaque_on_the_object_only(results):
    folder, names, frames, labels = results
    for t, name in enumerate(names):
        for i in (1, 2):
            mode, rgba = _png(folder / "alpha" / str(i) / f"{name}.png")
            assert mode == "RGBA" and rgba.shape == (H, W, 4)
            assert np.array_equal(rgba[..., :3], frames[t])
            assert np.array_equal(rgba[..., 3] == 255, labels[t] == i) and set(np.unique(rgba[..., 3])) <= {0, 255}


def test_the_overlay_is_h264_yuv420p_with_every_frame(results):
    folder, _, frames, labels = results
    with av.open(str(folder / TARGETS["mp4"])) as video:
        stream = video.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
        assert (stream.codec_context.width, stream.codec_context.height) == (W + 1, H + 1)  # padded to even
        assert stream.average_rate == 12
        decoded = [f.to_ndarray(format="rgb24") for f in video.decode(video=0)]
    assert len(decoded) == FRAMES
    for t, got in enumerate(decoded):
        want = overlay(frames[t], labels[t]).astype(np.int16)
        error = np.abs(got[:H, :W].astype(np.int16) - want).mean()
        assert error < 6, (t, error)  # lossy, but the overlay of this frame (another frame is far)
        if t:
            assert np.abs(got[:H, :W].astype(np.int16) - overlay(frames[0], labels[0])).mean() > error


def test_mp4_writer_is_atomic_and_checks_its_frames(tmp_path):
    path = tmp_path / "v.mp4"
    frame = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="frame 1 is 10x8"):
        with Mp4Writer(path, 24) as video:
            video.write(frame)
            video.write(np.zeros((8, 10, 3), np.uint8))
    assert not path.exists() and not list(tmp_path.iterdir())  # nothing left, not even a temporary
    assert Mp4Writer(path, 30000 / 1001).rate == Fraction(30000, 1001)  # NTSC's, as OpenCV reads it
    assert Mp4Writer(path, 25.0).rate == 25


def test_a_format_is_rewritten_whole_and_a_short_video_is_an_input_error(results, tmp_path):
    folder, names, frames, labels = results
    run = tmp_path / "run"
    for name, label in zip(names, labels):
        save_indexed_png(run / "masks" / f"{name}.png", label)
    (run / "binary" / "7").mkdir(parents=True)  # left by an earlier export of other objects
    export_masks(["palette", "binary"], run, names, size=(H, W), fps=12, objects=[1, 2])
    assert sorted(p.name for p in (run / "binary").iterdir()) == ["1", "2"]
    with pytest.raises(InputError, match="has no frame 3"):
        export_masks(["alpha"], run, names, size=(H, W), fps=12, objects=[1, 2], frames=enumerate(frames[:3]))
    with pytest.raises(ValueError, match="need the video's frames"):
        export_masks(["mp4"], run, names, size=(H, W), fps=12, objects=[1, 2])
