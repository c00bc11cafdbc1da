"""Scribble prompts: the PNG and DAVIS-interactive JSON formats, the stroke generator and the
frame-0 fill."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hvc.demo.video import render_video
from hvc.propagation import embed
from hvc.scribbles import (ScribbleError, Stroke, read_davis_json, read_png, read_scribbles, render, save_davis_json,
                           save_png, scribbles_from_mask)
from hvc.scribbles.fill import FillConfig, fill_from_scribbles, labels_from_scribbles, scribble_cells


def test_png_round_trip_uses_0_unlabelled_and_255_background(tmp_path):
    scribbles = np.full((6, 9), -1, dtype=np.int64)
    scribbles[1, 1:4] = 1
    scribbles[4, 2:8] = 0
    scribbles[2, 6] = 7
    save_png(tmp_path / "s.png", scribbles)
    from PIL import Image
    with Image.open(tmp_path / "s.png") as im:
        assert im.mode == "P"
        raw = np.array(im)
    assert raw[1, 1] == 1 and raw[4, 2] == 255 and raw[0, 0] == 0 and raw[2, 6] == 7
    assert np.array_equal(read_png(tmp_path / "s.png"), scribbles)


def test_davis_interactive_json_as_the_package_renders_it(tmp_path):
    # The davis-interactive layout: per-frame stroke lists, normalised (x, y), object_id 0 = background.
    data = {"scribbles": [[{"path": [[0.0, 0.0], [1.0, 1.0]], "object_id": 2, "start_time": 0, "end_time": 10},
                           {"path": [[0.5, 0.0], [0.5, 0.99]], "object_id": 0, "start_time": 20, "end_time": 30}],
                          []],
            "sequence": "toy"}
    (tmp_path / "s.json").write_text(json.dumps(data))
    frame, scribbles = read_davis_json(tmp_path / "s.json", (5, 9))
    assert frame == 0
    # (x, y) * (W - 1, H - 1), truncated: the diagonal from (0, 0) to (8, 4), then the column x = 4
    # down to y = int(0.99 * 4) = 3, drawn over the diagonal's (4, 2)
    expected = render([Stroke(2, np.array([[0, 0], [8, 4]])), Stroke(0, np.array([[4, 0], [4, 3]]))], (5, 9))
    assert np.array_equal(scribbles, expected)
    assert scribbles[0, 0] == 2 and scribbles[4, 8] == 2 and scribbles[2, 4] == 0 and scribbles[4, 4] == -1


def test_json_writer_reads_back_to_the_same_pixels(tmp_path):
    labels = render_video(num_frames=1, height=96, width=160)[1][0]
    strokes = scribbles_from_mask(labels)
    save_davis_json(tmp_path / "s.json", strokes, labels.shape, num_frames=3, sequence="demo")
    frame, scribbles = read_davis_json(tmp_path / "s.json", labels.shape)
    assert frame == 0
    assert np.array_equal(scribbles, render(strokes, labels.shape))
    assert json.loads((tmp_path / "s.json").read_text())["scribbles"][1] == []


def test_unusable_scribbles_are_refused_with_the_file_named(tmp_path):
    only_bg = np.full((8, 8), -1)
    only_bg[2] = 0
    save_png(tmp_path / "bg.png", only_bg)
    with pytest.raises(ScribbleError, match=r"bg\.png: no object scribbled"):
        read_scribbles(tmp_path / "bg.png")
    only_obj = np.full((8, 8), -1)
    only_obj[2] = 1
    save_png(tmp_path / "obj.png", only_obj)
    with pytest.raises(ScribbleError, match=r"obj\.png: no background scribbled"):
        read_scribbles(tmp_path / "obj.png")
    later = {"scribbles": [[], [{"path": [[0.1, 0.1]], "object_id": 1}]], "sequence": "s"}
    (tmp_path / "later.json").write_text(json.dumps(later))
    with pytest.raises(ScribbleError, match="strokes are on frame 1"):
        read_scribbles(tmp_path / "later.json", (8, 8))
    (tmp_path / "bad.json").write_text("{\"scribbles\": 3}")
    with pytest.raises(ScribbleError, match=r"bad\.json: not a DAVIS interactive scribble file"):
        read_scribbles(tmp_path / "bad.json", (8, 8))
    (tmp_path / "rgb.png").write_bytes(b"not a png")
    with pytest.raises(ScribbleError, match=r"rgb\.png: unreadable"):
        read_scribbles(tmp_path / "rgb.png")


def test_generator_is_deterministic_and_draws_inside_each_region():
    labels = render_video(num_frames=1, height=120, width=216)[1][0].copy()
    labels[:4, :4] = 255  # void pixels are nobody's
    strokes = scribbles_from_mask(labels)
    again = scribbles_from_mask(labels)
    assert [(s.object_id, s.points.tolist()) for s in strokes] == [(s.object_id, s.points.tolist()) for s in again]
    assert {s.object_id for s in strokes} == {0, 1, 2}
    margin = round(0.04 * 120)
    from scipy import ndimage
    near_object = ndimage.distance_transform_edt(labels == 0) <= margin
    firsts = {}
    for s in strokes:
        x, y = s.points[:, 0], s.points[:, 1]
        firsts.setdefault(s.object_id, len(s.points))
        if s.object_id:
            assert (labels[y, x] == s.object_id).all()
        else:
            assert (labels[y, x] == 0).all() and not near_object[y, x].any()
        steps = np.abs(np.diff(s.points, axis=0)).max(axis=1)
        assert (steps == 1).all()  # one 8-connected line, point after point
    assert min(firsts.values()) >= 20  # each region's main stroke is a line, not a dot


def test_generator_handles_a_tiny_object():
    labels = np.zeros((40, 60), np.uint8)
    labels[20, 30] = 1
    strokes = scribbles_from_mask(labels)
    assert strokes[0].object_id == 1 and strokes[0].points.tolist() == [[30, 20]]
    assert all(s.object_id == 0 for s in strokes[1:]) and len(strokes) >= 2


def test_scribbled_pixels_land_in_the_align_corners_cell():
    scribbles = np.full((33, 65), -1)
    scribbles[0, 0] = 1  # corner -> corner cell
    scribbles[32, 64] = 2  # opposite corner -> opposite cell
    scribbles[16, 32] = 0  # the centre -> cell (2, 4) of a 5 x 9 grid
    counts = scribble_cells(scribbles, (5, 9), num_classes=3).view(3, 5, 9)
    assert counts[1, 0, 0] == 1 and counts[2, 4, 8] == 1 and counts[0, 2, 4] == 1
    assert counts.sum() == 3


def test_fill_recovers_objects_whose_features_differ():
    """Features that separate the objects (their one-hot plus smooth noise): the fill from the
    generated scribbles labels the frame like its mask."""
    labels = render_video(num_frames=1, height=120, width=216)[1][0]
    h, w = 15, 27
    small = torch.from_numpy(labels[::8, ::8].astype(np.int64))
    torch.manual_seed(0)
    noise = torch.nn.functional.avg_pool2d(torch.randn(1, 13, h + 4, w + 4), 5, stride=1)[0]
    emb = embed(torch.cat([3 * torch.nn.functional.one_hot(small, 3).permute(2, 0, 1).float(), noise]))
    scribbles = render(scribbles_from_mask(labels), labels.shape, thickness=3)
    fill = fill_from_scribbles(emb, scribbles, num_classes=3)
    assert torch.allclose(fill.soft.sum(dim=0), torch.ones(h, w), atol=1e-5)
    assert fill.scribbled.sum() >= 10 and fill.reliable is None
    agree = (fill.soft.argmax(dim=0) == small).float().mean()
    assert agree > 0.95
    full = labels_from_scribbles(emb, scribbles, 3)
    assert full.shape == labels.shape and (full.numpy() == labels).mean() > 0.9
    two = fill_from_scribbles(emb, scribbles, 3, FillConfig(reliable=0.9))
    assert two.reliable.sum() > 0 and not (two.reliable & two.scribbled).any()
    assert (two.soft.argmax(dim=0) == small).float().mean() > 0.95
    # scribbled cells keep their scribbled label whatever their features say
    cells = scribble_cells(scribbles, (h, w), 3)
    scribbled = cells.sum(0) > 0
    assert torch.equal(fill.soft.flatten(1)[:, scribbled], (cells / cells.sum(0).clamp(min=1))[:, scribbled])


def _brute_force_fill(emb: np.ndarray, keys: list[int], key_labels: np.ndarray, topk: int, temperature: float,
                      clamped: dict[int, np.ndarray]) -> np.ndarray:
    """The fill's definition, cell by cell in float64: each cell takes the softmax (at
    ``temperature``) of its similarities to exactly its ``min(topk, len(keys))`` most similar key
    cells, and the weighted sum of their label distributions; cells in ``clamped`` keep theirs.
    emb [C, N] (unit columns), keys: cell indices, key_labels [K, len(keys)] -> [K, N]."""
    n = emb.shape[1]
    out = np.zeros((key_labels.shape[0], n))
    k = min(topk, len(keys))
    for q in range(n):
        sims = [(float(emb[:, q] @ emb[:, cell]), j) for j, cell in enumerate(keys)]
        nearest = sorted(sims, reverse=True)[:k]
        logits = np.array([s for s, _ in nearest]) / temperature
        weights = np.exp(logits - logits.max())
        weights /= weights.sum()
        for weight, (_, j) in zip(weights, nearest):
            out[:, q] += weight * key_labels[:, j]
    for cell, dist in clamped.items():
        out[:, cell] = dist
    return out


@pytest.mark.parametrize("topk, reliable", [(15, None), (5, None), (15, 0.6), (40, None)])
def test_fill_values_equal_a_brute_force_top_k_softmax(topk, reliable):
    """Soft values, not only the argmax: every cell's distribution is the softmax-weighted labels
    of exactly ``topk`` nearest scribbled cells (fewer when fewer are scribbled: topk=40 with 30
    scribbled cells). Random features keep every similarity distinct, so "the k nearest" is one
    set; the neighbours' labels are mixed, so dropping or adding one neighbour moves the values."""
    rng = np.random.default_rng(7)
    c, h, w, classes = 16, 9, 11, 3
    emb = torch.nn.functional.normalize(torch.from_numpy(rng.normal(size=(c, h, w))).float(), dim=0)
    # pixel (4i, 4j) of a (4h-3) x (4w-3) map falls in cell (i, j), and so does (4i, 4j+1)
    big = np.full((4 * h - 3, 4 * w - 3), -1, dtype=np.int64)
    cells = rng.choice(h * w, size=30, replace=False)
    ids = rng.integers(0, classes, size=30)
    big[4 * (cells // w), 4 * (cells % w)] = ids
    two = cells[0]  # a cell scribbled with two ids: its distribution is mixed, not one-hot
    big[4 * (two // w), 4 * (two % w) + 1] = (ids[0] + 1) % classes
    cfg = FillConfig(topk=topk, reliable=reliable)
    fill = fill_from_scribbles(emb, big, classes, cfg)

    flat = emb.reshape(c, -1).double().numpy()
    counts = scribble_cells(big, (h, w), classes).double().numpy()
    keys = sorted(np.nonzero(counts.sum(0))[0].tolist())
    assert len(keys) == 30 and counts[:, two].max() == 1 and counts[:, two].sum() == 2
    dist = counts[:, keys] / counts[:, keys].sum(0)
    clamped = dict(zip(keys, dist.T))
    expected = _brute_force_fill(flat, keys, dist, topk, cfg.temperature, clamped)
    if reliable is not None:  # second stage: confident cells join the keys as one-hot labels
        confident = [q for q in range(h * w) if q not in clamped and expected[:, q].max() >= reliable]
        assert 0 < len(confident) < h * w - len(keys), "the case must add some cells, not all"
        assert fill.reliable.flatten().nonzero().flatten().tolist() == confident
        labels = np.concatenate([dist, np.eye(classes)[expected[:, confident].argmax(0)].T], axis=1)
        expected = _brute_force_fill(flat, keys + confident, labels, topk, cfg.temperature, clamped)
    got = fill.soft.reshape(classes, -1).double().numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
    if reliable is None and topk <= len(keys):  # the case can tell k from k - 1 neighbours
        fewer = _brute_force_fill(flat, keys, dist, topk - 1, cfg.temperature, clamped)
        assert np.abs(fewer - expected).max() > 1e-2
