"""Prompts of ``python -m hvc.segment``: ``--mask`` / ``--scribble [FRAME:]PATH`` parsing and
validation, and RGB masks of flat colours mapped to object ids (hvc/segment/prompt.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hvc.data.palette import DAVIS_PALETTE, save_indexed_png
from hvc.demo.video import render_video
from hvc.errors import EXIT_INPUT, EXIT_USAGE, UsageError
from hvc.exports import Mp4Writer
from hvc.segment.__main__ import main
from hvc.segment.prompt import (PromptError, PromptSpec, check_prompts, colour_ids, describe_colours, parse_prompt,
                                read_masks)
from hvc.segment.run import Options, Segmenter

H, W = 64, 96


@pytest.mark.parametrize("text, kind, frame, path", [
    ("first.png", "mask", 0, "first.png"),
    ("0:first.png", "mask", 0, "first.png"),
    ("20:b.png", "mask", 20, "b.png"),
    ("007:b.png", "scribble", 7, "b.png"),
    ("20:dir/b.png", "mask", 20, "dir/b.png"),
    ("0:a:b.png", "mask", 0, "a:b.png"),          # a colon in the file name: give the frame
    ("a:b.png", "mask", 0, "a:b.png"),            # no number before the colon: all of it is the path
    ("C:/masks/a.png", "mask", 0, "C:/masks/a.png"),  # a Windows drive letter is not a frame
    ("12", "mask", 0, "12"),                      # a bare number is a file name
    (" 3:x.png", "mask", 0, " 3:x.png"),          # only digits make a frame number
    ("3:", None, None, "no file after the frame number"),
    ("-1:a.png", None, None, "must be 0 or more"),
])
def test_parse_prompt(text, kind, frame, path):
    if kind is None:
        with pytest.raises(UsageError, match=path):
            parse_prompt(text, "mask")
        return
    assert parse_prompt(text, kind) == PromptSpec(frame, kind, Path(path))


def test_check_prompts_orders_and_refuses_two_on_a_frame_or_none_or_beyond_the_video():
    a, b, c = PromptSpec(20, "mask", Path("b.png")), PromptSpec(0, "mask", Path("a.png")), PromptSpec(5, "scribble",
                                                                                                     Path("s.png"))
    assert check_prompts([a, b, c], count=21) == [b, c, a]
    with pytest.raises(UsageError, match=r"two prompts for frame 0 \(--mask 0:a.png and --scribble 0:s.png\)"):
        check_prompts([b, PromptSpec(0, "scribble", Path("s.png"))])
    with pytest.raises(UsageError, match="give a prompt"):
        check_prompts([])
    with pytest.raises(PromptError, match=r"b.png: for frame 20, but the video has frames 0..19$"):
        check_prompts([a, b], count=20)


def _rgb(tmp_path: Path, name: str, rgb: np.ndarray, mode: str = "RGB") -> Path:
    Image.fromarray(rgb, mode=mode).save(tmp_path / name)
    return tmp_path / name


def test_rgb_masks_map_each_colour_to_one_id_across_files(tmp_path):
    _, labels = render_video(num_frames=2, height=H, width=W)
    ids = labels[0]
    colours = np.array([[0, 0, 0], [250, 200, 10], [20, 90, 255]], np.uint8)  # not DAVIS colours
    first = _rgb(tmp_path, "first.png", colours[ids])
    # the second file has only object 2's colour, and a third colour that is new
    second_ids = np.where(ids == 1, 0, ids).astype(np.uint8)
    second = colours[second_ids]
    second[:4, :4] = (7, 7, 7)
    later = _rgb(tmp_path, "later.png", second)
    (got_first, got_later), mapping = read_masks([first, later], (H, W))
    # ids in the order the colours first appear (row by row, first file first)
    first_pixel = {k: np.flatnonzero(ids.reshape(-1) == k)[0] for k in (1, 2)}
    order = [tuple(int(v) for v in colours[k]) for k in sorted(first_pixel, key=first_pixel.get)]
    assert list(mapping) == [*order, (7, 7, 7)] and list(mapping.values()) == [1, 2, 3]
    remap = {0: 0, **{k: mapping[tuple(int(v) for v in colours[k])] for k in (1, 2)}}
    assert np.array_equal(got_first, np.vectorize(remap.get)(ids))
    assert (got_later[:4, :4] == 3).all() and np.array_equal(got_later[4:], np.vectorize(remap.get)(second_ids)[4:])
    lines = describe_colours(mapping)
    assert lines[0] == "colour #{:02x}{:02x}{:02x} ({}, {}, {}) -> object 1".format(*order[0], *order[0])


def test_rgb_copies_of_palette_masks_keep_their_ids_and_alpha_is_background(tmp_path):
    ids = np.zeros((H, W), np.uint8)
    ids[5:20, 5:30], ids[30:50, 40:90], ids[0, :] = 3, 7, 255  # ids 3 and 7, a void row
    path = tmp_path / "palette.png"
    save_indexed_png(path, ids)
    want = np.where(ids == 255, 0, ids)
    assert np.array_equal(read_masks([path], (H, W))[0][0], want)
    rgb = _rgb(tmp_path, "saved_as_rgb.png", DAVIS_PALETTE[ids])
    got, mapping = read_masks([rgb], (H, W))
    assert np.array_equal(got[0], want) and sorted(mapping.values()) == [3, 7, 255]
    assert describe_colours(mapping)[-1].endswith("-> void (background)")
    rgba = np.concatenate([DAVIS_PALETTE[ids], np.full((H, W, 1), 255, np.uint8)], axis=2)
    rgba[:, :10, 3] = 0  # transparent pixels are background, whatever their colour
    got = read_masks([_rgb(tmp_path, "rgba.png", rgba, "RGBA")], (H, W))[0][0]
    assert np.array_equal(got, np.where(np.arange(W) < 10, 0, want))


def test_bad_rgb_masks_are_refused_with_the_reason(tmp_path):
    smooth = np.zeros((H, W, 3), np.uint8)
    smooth[..., 0] = np.arange(W, dtype=np.uint8)[None, :] * 2  # a gradient: anti-aliased or a photo
    smooth[..., 1] = np.arange(H, dtype=np.uint8)[:, None] * 3
    with pytest.raises(PromptError, match="colours, but a mask holds at most 254 objects; is it smoothed"):
        read_masks([_rgb(tmp_path, "smooth.png", smooth)], (H, W))
    with pytest.raises(PromptError, match="black.png: no object in the mask"):
        read_masks([_rgb(tmp_path, "black.png", np.zeros((H, W, 3), np.uint8))], (H, W))
    assert colour_ids([(1, 2, 3)]) == {(1, 2, 3): 1}


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clip")
    frames, labels = render_video(num_frames=4, height=H, width=W)
    with Mp4Writer(folder / "demo.mp4", 12) as video:
        for f in frames:
            video.write(f)
    save_indexed_png(folder / "first.png", labels[0])
    return folder, labels


def test_an_rgb_mask_prints_its_mapping_and_segments_as_the_ids(clip, tmp_path, capsys):
    folder, labels = clip
    colours = np.array([[0, 0, 0], [255, 255, 255], [0, 200, 0]], np.uint8)
    rgb = _rgb(tmp_path, "rgb.png", colours[labels[0]])
    run = Segmenter(Options(video=folder / "demo.mp4", output=tmp_path / "out", mask=rgb))
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and all(line.startswith(f"{rgb}: colour #") for line in out)
    mask = run.masks_given[0]
    assert np.array_equal(mask > 0, labels[0] > 0) and sorted(np.unique(mask)) == [0, 1, 2]
    assert sorted(run.settings["colours"]) == ["#00c800", "#ffffff"]  # part of the settings


def test_prompt_usage_errors_come_before_anything_is_written(clip, tmp_path, capsys):
    folder, _ = clip
    first = str(folder / "first.png")
    out = tmp_path / "out"
    for argv, message in [
        (["--mask", first, "--scribble", f"0:{first}"], "two prompts for frame 0"),
        ([], "give a prompt"),
        (["--mask=-2:x.png"], "must be 0 or more"),  # argparse takes "-2:x.png" for an option
        (["--mask", first, "--direction", "sideways"], "--direction: invalid choice"),
    ]:
        assert main([str(folder / "demo.mp4"), *argv, "--output", str(out)]) == EXIT_USAGE
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], (argv, err)
    assert not out.exists()


def test_prompts_on_later_frames_are_taken_and_one_beyond_a_video_file_is_refused(clip, tmp_path, capsys):
    """A video file's frame count is known once decoded: a prompt beyond its last frame is an
    input error (exit 3) before any mask is written; one on its last frame is taken."""
    folder, _ = clip
    first = str(folder / "first.png")
    run = Segmenter(Options(video=folder / "demo.mp4", output=tmp_path / "ok", mask=folder / "first.png",
                            prompts=(PromptSpec(3, "mask", folder / "first.png"),), direction="both"))
    assert run.prompt_frames == [0, 3] and sorted(run.masks_given) == [0, 3]
    out = tmp_path / "out"
    assert main([str(folder / "demo.mp4"), "--mask", f"9:{first}", "--direction", "backward", "--context", "2",
                 "--output", str(out)]) == EXIT_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "for frame 9, but the video has frames 0..3" in err[-1], err
    assert not (out / "masks").exists() and not list((out / ".hvc" / "staging" / "video").glob("*.png"))
