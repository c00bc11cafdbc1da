"""Crop sampling, crop coordinates and view pixels against the official code's fixtures."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hvc.config.training import DataConfig
from hvc.data.pairs import RandomResizedCropCoord, crop_coords, resized_crop, sample_crop_box, to_normalized_tensor

TRAIN = DataConfig()  # the paper's crop ranges and training normalisation


@pytest.fixture(scope="module")
def examples(golden_dir: Path) -> list[dict]:
    data = json.loads((golden_dir / "crop_coords" / "crop_coords.json").read_text())
    assert data["examples"], "crop_coords.json has no examples"
    return data["examples"]


def test_coordinates_are_bit_exact(examples):
    for e in examples:
        coord = crop_coords(tuple(e["box_i_j_h_w"]), e["image_width"], e["image_height"])
        assert coord.dtype == torch.float32
        assert [float.hex(v) for v in coord.tolist()] == [float.hex(v) for v in e["coord_float32"]], e


def test_seeded_draws_match_official_get_params(examples):
    seeded = [e for e in examples if e["python_random_seed"] is not None]
    assert seeded
    for e in seeded:
        box = sample_crop_box(e["image_width"], e["image_height"], tuple(e["scale"]), tuple(e["ratio"]),
                              random.Random(e["python_random_seed"]))
        assert list(box) == e["box_i_j_h_w"], e["kind"]


def test_transform_output_size_and_coords(examples):
    checked = 0
    for e in examples:
        seed = e["python_random_seed"]
        if seed is None:
            continue
        checked += 1
        w_out, h_out = e["output_image_size_wh"]
        assert w_out == h_out
        img = Image.new("RGB", (e["image_width"], e["image_height"]), (10, 200, 30))
        crop = RandomResizedCropCoord(w_out, tuple(e["scale"]), tuple(e["ratio"]), TRAIN.mean, TRAIN.std)
        view, coord = crop(img, random.Random(seed))
        assert view.shape == (3, h_out, w_out) and view.dtype == torch.float32
        assert coord.tolist() == e["coord_float32"]
        expected_red = (10 / 255 - TRAIN.mean[0]) / TRAIN.std[0]
        assert view[0].sub(expected_red).abs().max().item() < 1e-5
    assert checked > 0, "crop_coords.json has no seeded example"


def test_training_views_match_official_pixels(golden_dir, davis_root):
    """The golden training inputs are official crops of real DAVIS frames: same pixels."""
    inp = np.load(golden_dir / "hybrid_loss" / "inputs.npz")
    sources = json.loads((golden_dir / "hybrid_loss" / "expected.json").read_text())["input_sources"]
    views = [inp[k].reshape(-1, *inp[k].shape[2:]) for k in ("vid1", "vid2")]  # [B*T, 3, S, S]
    coords = [inp[k].reshape(-1, 4) for k in ("coord1", "coord2")]
    size = views[0].shape[-1]
    assert sources and len(sources) == len(views[0]), "hybrid_loss input_sources do not describe the views"
    for n, src in enumerate(sources):
        img = Image.open(davis_root / "JPEGImages" / "480p" / src).convert("RGB")
        assert list(img.size[::-1]) == inp["image_hw"][n].tolist()
        for v in range(2):
            box = tuple(int(x) for x in inp["crop_boxes_ijhw"][n, v])
            ours = to_normalized_tensor(resized_crop(img, box, size), TRAIN.mean, TRAIN.std)
            assert (ours - torch.from_numpy(views[v][n])).abs().max().item() <= 1e-6, (src, v)
            assert torch.equal(crop_coords(box, *img.size), torch.from_numpy(coords[v][n])), (src, v)


def test_random_boxes_stay_inside_the_image():
    rng = random.Random(7)
    for _ in range(200):
        i, j, h, w = sample_crop_box(854, 480, (0.0, 1.0), (3 / 4, 4 / 3), rng)
        assert 0 < h and 0 < w and 0 <= i <= 480 - h and 0 <= j <= 854 - w
        x0, y0, x1, y1 = crop_coords((i, j, h, w), 854, 480).tolist()
        assert 0.0 <= x0 <= x1 <= 1.0 and 0.0 <= y0 <= y1 <= 1.0


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="scale"):
        RandomResizedCropCoord(64, (0.5, 0.1), TRAIN.ratio, TRAIN.mean, TRAIN.std)
    with pytest.raises(ValueError, match="std"):
        RandomResizedCropCoord(64, TRAIN.scale, TRAIN.ratio, TRAIN.mean, (0.2, 0.2))
