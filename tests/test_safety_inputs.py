"""Wrong inputs are refused, not guessed (docs/failure.md; family 4).

Checkpoint tensors of the wrong dtype or shape (named), frames in modes PIL would convert
wrongly (16-bit greyscale is scaled, the rest refused naming the file), two files for one
frame, frames missing between annotated ones, sizes that cannot fit in memory; and warnings,
naming the sequence, for what the official tools accept but a user probably did not mean.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from helpers.fault_support import call, davis_tree, load_entry, scene
from hvc.checkpoint import CheckpointError, tensor_mismatches
from hvc.data.frames import VideoError, read_rgb
from hvc.data.jhmdb import _frames as jhmdb_frames
from hvc.data.palette import save_indexed_png
from hvc.data.vos import DatasetError, check_no_gaps
from hvc.errors import MAX_MESSAGE, InputError, classify
from hvc.models.encoders import load_encoder
from hvc.models.resnet import ResNet
from hvc.segment.__main__ import main as segment_main
from test_faults import case, davis_args, expect_error

test_py = load_entry("test.py")


# ---- checkpoints ----------------------------------------------------------------------------------

def _encoder_state() -> dict[str, torch.Tensor]:
    return ResNet("resnet18", with_layer4=False).state_dict()


CASTS = [
    # id, change of the state dict, pattern (None: accepted)
    case("int64 weights", lambda s: {k: v.long() for k, v in s.items()}, r"conv1\.weight dtype int64 vs float32"),
    case("bool weights", lambda s: {k: v.bool() for k, v in s.items()}, r"conv1\.weight dtype bool vs float32"),
    case("one int tensor", lambda s: {**s, "layer2.0.bn1.weight": s["layer2.0.bn1.weight"].int()},
         r"layer2\.0\.bn1\.weight dtype int32 vs float32"),
    case("transposed kernel", lambda s: {**s, "layer1.0.conv1.weight": s["layer1.0.conv1.weight"].transpose(0, 1)[:, :, :2]},
         r"layer1\.0\.conv1\.weight shape \(64, 64, 2, 3\) vs \(64, 64, 3, 3\)"),
    case("float counter", lambda s: {**s, "bn1.num_batches_tracked": s["bn1.num_batches_tracked"].float()},
         r"bn1\.num_batches_tracked dtype float32 vs int64"),
    case("float16 weights (converted)", lambda s: {k: v.half() if v.is_floating_point() else v for k, v in s.items()}, None),
    case("float64 weights (converted)", lambda s: {k: v.double() if v.is_floating_point() else v for k, v in s.items()}, None),
]


@pytest.mark.parametrize("change, pattern", CASTS)
def test_encoder_tensors_of_the_wrong_kind_are_named(tmp_path, change, pattern):
    path = tmp_path / "enc.pth"
    torch.save(change(_encoder_state()), path)
    if pattern is None:
        load_encoder("hvc", str(path))
    else:
        with pytest.raises(CheckpointError, match=rf"enc\.pth does not fit .*{pattern}"):
            load_encoder("hvc", str(path))


def test_tensor_mismatches_lists_each_named_tensor():
    want = {"a": torch.zeros(2), "b": torch.zeros(3, dtype=torch.int64), "c": torch.zeros(1)}
    given = {"a": torch.zeros(2, dtype=torch.bool), "b": torch.zeros(4, dtype=torch.int64), "c": torch.zeros(1),
             "extra": torch.zeros(1)}
    assert tensor_mismatches(want, given) == ["a dtype bool vs float32", "b shape (4,) vs (3,)"]


def test_test_py_refuses_an_int64_encoder(tmp_path, capsys):
    root = davis_tree(tmp_path / "DAVIS", {"alpha": 2})
    path = tmp_path / "int.pth"
    torch.save({k: v.long() for k, v in _encoder_state().items()}, path)
    expect_error(*call(test_py.main, davis_args(root, tmp_path / "res", "--model", "hvc", "--checkpoint", path), capsys),
                 3, r"int\.pth does not fit a resnet18 test encoder .*conv1\.weight dtype int64 vs float32")
    assert not list((tmp_path / "res").rglob("*.png"))


# ---- frame modes ---------------------------------------------------------------------------------

def test_16_bit_grey_frames_are_scaled_not_clipped(tmp_path):
    wide = (np.arange(40 * 60, dtype=np.uint32).reshape(40, 60) * 27).astype(np.uint16)  # 0 .. 64773
    Image.fromarray(wide).save(tmp_path / "wide.png")
    with Image.open(tmp_path / "wide.png") as im:
        assert im.mode.startswith("I")  # what a 16-bit PNG opens as
    rgb = read_rgb(tmp_path / "wide.png")
    assert rgb.dtype == np.uint8 and rgb.shape == (40, 60, 3)
    np.testing.assert_array_equal(rgb[..., 0], np.rint(wide / 257.0).astype(np.uint8))
    assert 0 < rgb.mean() < 255 and rgb.min() == 0 and rgb.max() == 252  # PIL's convert("RGB") gives all 255


def test_16_bit_frames_segment_like_their_8_bit_copies(tmp_path, capsys):
    """A DAVIS tree whose frames are 16-bit greyscale PNGs gives the masks of the same frames
    saved as 8-bit greyscale PNGs (was: all-white frames, J 0.19)."""
    outs = {}
    for bits in (8, 16):
        root = davis_tree(tmp_path / f"D{bits}", {"alpha": 3})
        for jpg in sorted((root / "JPEGImages" / "480p" / "alpha").glob("*.jpg")):
            grey = np.asarray(Image.open(jpg).convert("L")).astype(np.uint16)
            Image.fromarray(grey * 257 if bits == 16 else grey.astype(np.uint8)).save(jpg.with_suffix(".png"))
            jpg.unlink()
        assert call(test_py.main, davis_args(root, tmp_path / f"r{bits}"), capsys)[0] == 0
        outs[bits] = {p.name: p.read_bytes() for p in (tmp_path / f"r{bits}" / "alpha").glob("*.png")}
    assert len(outs[16]) == 3 and outs[16] == outs[8]


REFUSED_MODES = [
    # id, image (PIL mode), suffix
    case("32-bit float", lambda: Image.fromarray(np.linspace(0, 1, 48 * 64, dtype=np.float32).reshape(48, 64)), ".tiff"),
    case("negative 32-bit integers", lambda: Image.fromarray(np.full((48, 64), -5, np.int32)), ".tiff"),
]


@pytest.mark.parametrize("make, suffix", REFUSED_MODES)
def test_unfaithful_modes_are_refused_naming_the_file(tmp_path, make, suffix):
    make().save(tmp_path / f"f{suffix}")
    with pytest.raises(VideoError, match=rf"f{suffix}: image mode \w+ cannot be read as RGB faithfully"):
        read_rgb(tmp_path / f"f{suffix}")


# ---- duplicate frames, frames missing ----------------------------------------------------------

def test_segment_refuses_two_files_for_one_frame(tmp_path, capsys):
    folder = tmp_path / "frames"
    folder.mkdir()
    for t in range(3):
        Image.fromarray(scene(t, (32, 48))[0]).save(folder / f"{t:05d}.jpg")
    Image.fromarray(scene(1, (32, 48))[0]).save(folder / "00001.png")
    save_indexed_png(tmp_path / "first.png", scene(0, (32, 48))[1])
    argv = [folder, "--mask", tmp_path / "first.png", "--model", "random18", "--output", tmp_path / "out"]
    expect_error(*call(segment_main, argv, capsys), 3, r"frames: two files for frame 00001: 00001\.jpg and 00001\.png")
    assert not (tmp_path / "out").exists()


def test_jhmdb_refuses_two_files_for_one_frame_number(tmp_path):
    for name in ("00001.png", "00002.png", "1.png"):
        Image.new("RGB", (8, 8)).save(tmp_path / name)
    with pytest.raises(DatasetError, match=r"two files for frame 1: (00001|1)\.png and (1|00001)\.png"):
        jhmdb_frames(tmp_path)


GAPS = [
    # id, frame stems, last checked index, refused?
    case("consecutive", ["00000", "00001", "00002", "00003"], None, False),
    case("every 5th", ["00000", "00005", "00010", "00015"], None, False),
    case("one missing", ["00000", "00001", "00003", "00004"], None, True),
    case("one missing of every 5th", ["00000", "00005", "00015", "00020"], None, True),
    case("missing after the last annotation", ["00000", "00001", "00002", "00009"], 2, False),
    case("names, not numbers", ["a", "b", "d"], None, False),
]


@pytest.mark.parametrize("stems, last, refused", GAPS)
def test_frames_missing_in_the_middle(stems, last, refused):
    frames = [Path("/data/seq") / f"{s}.jpg" for s in stems]
    if refused:
        with pytest.raises(DatasetError, match=r"frames missing in sequence seq: \d+ is followed by \d+"):
            check_no_gaps(frames, "seq", last)
    else:
        check_no_gaps(frames, "seq", last)


def test_test_py_refuses_a_davis_sequence_with_a_hole(tmp_path, capsys):
    root = davis_tree(tmp_path / "DAVIS", {"alpha": 5})
    (root / "JPEGImages" / "480p" / "alpha" / "00002.jpg").unlink()
    expect_error(*call(test_py.main, davis_args(root, tmp_path / "res"), capsys), 3,
                 r"alpha: frames missing in sequence alpha: 00001 is followed by 00003")


# ---- warnings ----------------------------------------------------------------------------------------

WARNINGS = [
    # id, first-frame ids from the scene's, warning pattern
    case("all-zero first mask", lambda ids: np.zeros_like(ids), r"sequence alpha: the first-frame mask .*00000\.png holds no object"),
    case("ids 1 and 3", lambda ids: np.where(ids == 2, 3, ids), r"sequence alpha: the first-frame mask .* has object ids \[1, 3\] without \[2\]"),
    case("ids 1 and 2 (no warning)", lambda ids: ids, None),
]


@pytest.mark.parametrize("change, pattern", WARNINGS)
def test_test_py_warns_naming_the_sequence(tmp_path, capsys, caplog, change, pattern):
    root = davis_tree(tmp_path / "DAVIS", {"alpha": 2})
    mask = root / "Annotations" / "480p" / "alpha" / "00000.png"
    save_indexed_png(mask, change(scene(0, (48, 80))[1]).astype(np.uint8))
    with caplog.at_level("WARNING"):
        assert call(test_py.main, davis_args(root, tmp_path / "res"), capsys)[0] == 0
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    if pattern is None:
        assert not warned
    else:
        assert len(warned) == 1 and re.search(pattern, warned[0]), warned


# ---- sizes that cannot fit ----------------------------------------------------------------------------

def test_input_size_beyond_memory_is_refused_before_any_allocation(tmp_path, capsys):
    root = davis_tree(tmp_path / "DAVIS", {"alpha": 2})
    expect_error(*call(test_py.main, davis_args(root, tmp_path / "res", "data.input_size=100000"), capsys), 2,
                 r"^error: data\.input_size \(-1 = full size\): must lie in \[16, 4096\], got 100000$")
    assert not (tmp_path / "res").exists()
    expect_error(*call(segment_main, [tmp_path, "--mask", tmp_path / "m.png", "--input-size", "100000"], capsys), 2,
                 r"--input-size must lie in \[16, 4096\]")


# ---- every torch.load is weights-only ---------------------------------------------------------------

def _torch_loads(path: Path) -> list[tuple[int, bool]]:
    """(line, weights_only=True given) of every ``torch.load(...)`` call in a Python file."""
    import ast
    calls = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load" \
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch":
            safe = any(k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
                       for k in node.keywords)
            calls.append((node.lineno, safe))
    return calls


def test_every_torch_load_in_the_repository_is_weights_only():
    repo = Path(__file__).resolve().parents[1]
    files = [p for p in repo.rglob("*.py") if not any(part.startswith(".") for part in p.relative_to(repo).parts)]
    found = {f"{p.relative_to(repo)}:{line}": safe for p in files for line, safe in _torch_loads(p)}
    assert len(found) >= 5  # the loader, hvc.segment's state, scripts, tests: the scan sees them
    assert [where for where, safe in found.items() if not safe] == []


def test_the_torch_floor_has_what_the_loader_uses():
    """requirements.txt admits no torch older than 2.5, the first with serialization.safe_globals."""
    line = next(l for l in (Path(__file__).resolve().parents[1] / "requirements.txt").read_text().splitlines()
                if l.startswith("torch>="))
    floor = tuple(int(x) for x in line.split(">=")[1].split(",")[0].split(".")[:2])
    assert floor >= (2, 5) and hasattr(torch.serialization, "safe_globals")


# ---- bounded configs and messages ---------------------------------------------------------------

ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n" for i in range(20))


@pytest.mark.parametrize("text, message", [
    (ALIAS_BOMB, "YAML aliases"),  # 9 * 4**20 leaves if expanded: refused at the first alias
    ("data: {size: [1, 2\n", "invalid YAML"),  # the parser's multi-line message, on one line
    ("x: !!python/object/apply:os.system ['true']\n", "invalid YAML"),
])
def test_config_files_that_could_run_away_are_refused_in_one_line(tmp_path, text, message):
    from hvc.config import load_config
    from hvc.config.core import ConfigError
    from hvc.config.training import TrainConfig

    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as err:
        load_config(TrainConfig, path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_a_config_file_too_large_is_refused_before_parsing(tmp_path):
    from hvc.config import load_config
    from hvc.config.core import MAX_CONFIG_BYTES, ConfigError
    from hvc.config.training import TrainConfig

    path = tmp_path / "huge.yaml"
    path.write_text("# " + "x" * MAX_CONFIG_BYTES + "\n")
    with pytest.raises(ConfigError, match="more than a config file holds"):
        load_config(TrainConfig, path)


def test_every_error_line_is_short():
    code, line = classify(InputError("data/" + "x" * 5000 + ": unreadable\nsecond line"))
    assert code == InputError.exit_code and len(line) == MAX_MESSAGE and "\n" not in line
    assert classify(InputError("short: fine")) == (InputError.exit_code, "short: fine")


class _BadSample(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int):
        raise InputError("frames/00000.jpg: not an image")


def test_an_error_from_a_loader_worker_is_reported_as_its_own_line():
    with pytest.raises(InputError) as caught:
        next(iter(torch.utils.data.DataLoader(_BadSample(), num_workers=1)))
    assert "DataLoader worker process 0" in str(caught.value)  # torch wraps it with the worker's traceback
    assert classify(caught.value) == (InputError.exit_code, "frames/00000.jpg: not an image")
