"""hvc.VideoSegmenter, the per-frame API (docs/api.md), on the demo video (two textured objects
moving over a panning photo) encoded by the committed checkpoint; and the rule that it is the
one module of hvc/ that constructs a LabelPropagator and steps it."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import hvc
from hvc.demo.video import render_video
from hvc.errors import NonFiniteError, UsageError
from hvc.propagation import PropagationConfig
from hvc.config.propagation import QualityConfig
from hvc.segmenter import FeatureExtractor, SegmenterState, VideoSegmenter

REPO = Path(__file__).resolve().parents[1]
CHECKPOINT = REPO / "checkpoints" / "hvc_bsds_cpu.pth"
FRAMES = 12
INPUT_SIZE = 120  # 240x432 frames encoded at 120x216: 15x27 feature cells
PROP = PropagationConfig(num_classes=3, context=5)


@pytest.fixture(scope="module")
def video():
    frames, labels = render_video(num_frames=FRAMES)
    return frames, [lab.astype(np.int64) for lab in labels]


@pytest.fixture(scope="module")
def extractor() -> FeatureExtractor:
    return VideoSegmenter.from_checkpoint(str(CHECKPOINT), PROP, input_size=INPUT_SIZE).extractor


@pytest.fixture(scope="module")
def embeddings(video, extractor):
    seg = VideoSegmenter(PROP, extractor, input_size=INPUT_SIZE)
    return [seg.encode(f) for f in video[0]]


def _jaccard(pred: np.ndarray, truth: np.ndarray, obj: int) -> float:
    a, b = pred == obj, truth == obj
    return float((a & b).sum() / max((a | b).sum(), 1))


def test_images_in_ids_out_with_soft_masks_on_request(video, extractor):
    frames, labels = video
    seg = VideoSegmenter(PROP, extractor, input_size=INPUT_SIZE)
    seg.add_mask(0, labels[0])
    first = seg.step(Image.fromarray(frames[0]), soft=True)  # PIL in, numpy out
    np.testing.assert_array_equal(first.ids, labels[0])  # the given mask, as given
    assert first.soft.shape == (3, 240, 432) and first.soft.dtype == np.float32
    for t in range(1, FRAMES):
        out = seg.step(frames[t], soft=t == FRAMES - 1)
        assert out.ids.shape == (240, 432) and out.ids.dtype == np.uint8
    assert out.soft.shape == (3, 240, 432) and out.soft.min() >= 0
    # the soft masks agree with the ids where one object clearly wins
    clear = out.soft.max(axis=0) > 0.9
    np.testing.assert_array_equal(out.soft.argmax(axis=0)[clear], out.ids[clear])
    assert min(_jaccard(out.ids, labels[-1], obj) for obj in (1, 2)) > 0.5


def test_an_object_can_start_later_and_frames_before_any_mask_are_background(video, embeddings):
    frames, labels = video
    seg = VideoSegmenter(PROP)
    seg.add_mask(2, np.where(labels[2] == 1, 1, 0))
    seg.add_mask(5, np.where(labels[5] == 2, 2, 0))  # object 2 starts at frame 5
    out = []
    for t, emb in enumerate(embeddings):
        soft = seg.step_features(emb)
        assert soft.shape == (3, *emb.shape[1:])
        out.append(seg.ids(soft, (240, 432)))
    assert not out[0].any() and not out[1].any()  # nothing to follow yet
    assert all(2 not in o for o in out[:5])
    np.testing.assert_array_equal(out[5][labels[5] == 2], 2)  # the new object as given
    # object 2 is followed: better than its frame-5 mask left in place (the objects move)
    tracked = np.mean([_jaccard(out[t], labels[t], 2) for t in range(8, FRAMES)])
    frozen = np.mean([_jaccard(labels[5], labels[t], 2) for t in range(8, FRAMES)])
    assert tracked > frozen + 0.2, (tracked, frozen)
    assert np.mean([_jaccard(out[t], labels[t], 1) for t in range(3, FRAMES)]) > 0.6
    # a video whose first mask comes at frame 2 is the video from frame 2 on
    late = VideoSegmenter(PROP)
    late.add_mask(0, np.where(labels[2] == 1, 1, 0))
    late.add_mask(3, np.where(labels[5] == 2, 2, 0))
    for t, emb in enumerate(embeddings[2:]):
        np.testing.assert_array_equal(late.ids(late.step_features(emb), (240, 432)), out[t + 2])


def test_a_later_mask_corrects_an_object(video, embeddings):
    frames, labels = video
    wrong = np.roll(labels[0], 40, axis=1)  # both objects shifted 40 px: a careless first mask
    runs = {}
    for correct_at in (None, 4):
        seg = VideoSegmenter(PROP)
        seg.add_mask(0, wrong)
        if correct_at is not None:
            seg.add_mask(correct_at, np.where(labels[correct_at] == 1, 1, 0))  # object 1 only
        runs[correct_at] = [seg.ids(seg.step_features(emb), (240, 432)) for emb in embeddings]
        if correct_at is not None:
            # frame 4 is now object 1's only reference; object 2 keeps frame 0's
            valid = seg.propagator.valid
            assert valid[4].nonzero().flatten().tolist() == [1] and not bool(valid[0][1]) and bool(valid[0][2])
    fixed, plain = runs[4], runs[None]
    # on its frame the corrected object is exactly the mask: none of its shifted pixels remain
    np.testing.assert_array_equal(fixed[4] == 1, labels[4] == 1)
    assert (plain[4] == 1).sum() > 0 and not np.array_equal(plain[4] == 1, labels[4] == 1)
    later = range(5, FRAMES)
    j_fixed = np.mean([_jaccard(fixed[t], labels[t], 1) for t in later])
    j_plain = np.mean([_jaccard(plain[t], labels[t], 1) for t in later])
    assert j_fixed > j_plain + 0.2 and j_fixed > 0.6, (j_fixed, j_plain)


def test_a_benchmark_annotation_repeating_an_object_does_not_correct_it(video, embeddings):
    labels = video[1]
    a, b = VideoSegmenter(PROP), VideoSegmenter(PROP)
    for t, emb in enumerate(embeddings[:6]):
        given = torch.from_numpy(labels[t]) if t in (0, 3) else None
        sa = a.step_features(emb, given, correct=False)
        sb = b.step_features(emb, torch.from_numpy(labels[0]) if t == 0 else None)
        assert torch.equal(sa, sb)


@pytest.mark.parametrize("memory", ["recent", "quality"])
def test_state_and_restore_continue_identically(video, embeddings, memory):
    labels = video[1]
    prop = PropagationConfig(num_classes=3, context=4, memory=memory,
                             quality=QualityConfig(recent=1, threshold=0.5, gap=2))
    whole = VideoSegmenter(prop)
    whole.add_mask(1, np.where(labels[1] == 1, 1, 0))
    whole.add_mask(8, np.where(labels[8] == 2, 2, 0))  # pending at the cut: travels in the state
    soft = [whole.step_features(e) for e in embeddings]

    first = VideoSegmenter(prop)
    first.add_mask(1, np.where(labels[1] == 1, 1, 0))
    first.add_mask(8, np.where(labels[8] == 2, 2, 0))
    for e in embeddings[:6]:
        first.step_features(e)
    state = first.state()
    assert sorted(state.masks) == state.stored and sorted(state.embeddings) == state.stored
    record = json.loads(json.dumps(state.record))  # the bookkeeping is plain JSON
    second = VideoSegmenter(prop)
    second.restore(SegmenterState(record, {f: m.clone() for f, m in state.masks.items()}, None, state.pending),
                   {f: embeddings[f] for f in state.stored})  # embeddings encoded again
    for t in range(6, FRAMES):
        assert torch.equal(second.step_features(embeddings[t]), soft[t])
    with pytest.raises(UsageError, match="embeddings"):
        VideoSegmenter(prop).restore(SegmenterState(record, state.masks))


def test_non_finite_values_and_bad_input_are_refused(video, embeddings, extractor):
    labels = video[1]
    seg = VideoSegmenter(PROP)
    seg.add_mask(0, labels[0])
    seg.step_features(embeddings[0])
    bad = embeddings[1].clone()
    bad[0, 3, 4] = float("nan")
    with pytest.raises(NonFiniteError, match="features of frame 1 hold NaN or inf"):
        seg.step_features(bad)
    seg = VideoSegmenter(PROP)
    soft = torch.zeros(3, 240, 432)
    soft[0], soft[1, :10, :10] = 1.0, float("inf")
    with pytest.raises(NonFiniteError, match="soft masks of frame 0"):
        seg.step_features(embeddings[0], soft_labels=soft)
    seg = VideoSegmenter(PROP, extractor, input_size=INPUT_SIZE)
    with pytest.raises(UsageError, match="0..2"):
        seg.add_mask(0, np.full((240, 432), 3))
    with pytest.raises(UsageError, match="integer"):
        seg.add_mask(0, labels[0].astype(np.float32))
    seg.add_mask(0, labels[0])
    with pytest.raises(UsageError, match="uint8"):
        seg.step(video[0][0].astype(np.float32))
    seg.step(video[0][0])
    with pytest.raises(UsageError, match="already segmented"):
        seg.add_mask(0, labels[0])
    with pytest.raises(UsageError, match="no encoder"):
        VideoSegmenter(PROP).encode(video[0][0])


def test_import_hvc_is_light_and_exports_the_api():
    code = "import sys, hvc; assert 'torch' not in sys.modules; hvc.VideoSegmenter; assert 'torch' in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
    assert hvc.VideoSegmenter is VideoSegmenter


def _propagator_uses(path: Path) -> tuple[bool, bool]:
    """(constructs LabelPropagator, calls .step on a propagator) in one source file."""
    tree = ast.parse(path.read_text())
    builds = steps = False
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
            builds |= name == "LabelPropagator"
            if isinstance(f, ast.Attribute) and f.attr == "step":
                steps |= "prop" in ast.unparse(f.value).lower()
    return builds, steps


def test_exactly_one_module_constructs_and_steps_the_propagator():
    files = [p for d in ("hvc", "bench", "scripts") for p in sorted((REPO / d).rglob("*.py"))]
    uses = {p.relative_to(REPO).as_posix(): _propagator_uses(p) for p in files}
    assert [p for p, (b, _) in uses.items() if b] == ["hvc/segmenter.py"]
    assert [p for p, (_, s) in uses.items() if s] == ["hvc/segmenter.py"]
