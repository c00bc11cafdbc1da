"""The writer's up-sampling (upsample_argmax) gives the labels of the all-channel upsample_labels, bit for bit."""

from __future__ import annotations

import pytest
import torch

from hvc.data.vos import load_sequences, read_label_map
from hvc.propagation import LabelPropagator, upsample_labels
from hvc.propagation.masks import one_hot, present_channels, resize_masks, upsample_argmax

SIZES = [((60, 107), (480, 854)), ((30, 53), (480, 854)), ((7, 9), (50, 67)), ((5, 5), (5, 5))]


def _same(soft: torch.Tensor, size: tuple[int, int]) -> None:
    expected = upsample_labels(soft, size)[0]
    got = upsample_argmax(soft, size)
    assert got.dtype == torch.uint8 and got.shape == size
    assert torch.equal(got, expected), f"{int((got != expected).sum())} labels differ"


@pytest.mark.parametrize("low, size", SIZES)
def test_soft_masks_of_a_few_objects_among_20_channels(low, size):
    gen = torch.Generator().manual_seed(sum(low))
    for ids in ([0, 1], [0, 2, 3, 7, 19], [1, 4], [5], [0]):  # [1, 4]: background absent; [5]: one object
        soft = torch.zeros(20, *low)
        soft[ids] = torch.softmax(3 * torch.randn(len(ids), *low, generator=gen), dim=0)
        _same(soft, size)


def test_ties_and_zero_regions_keep_the_first_channel():
    soft = torch.zeros(20, 12, 16)
    soft[3, :, :8] = 0.5
    soft[7, :, :8] = 0.5  # exact ties: channel 3 must win, as torch.max's first index
    soft[7, :6, 8:] = 1.0  # a region where only channel 7 is non-zero
    soft[9, :6, 8:] = 1.0  # ... tied with channel 9
    # rows 6.. of columns 8..: every channel zero -> label 0 although channel 0 is absent
    _same(soft, (96, 128))
    assert present_channels(soft) == [0, 3, 7, 9]


@pytest.mark.parametrize("ids", [(0, 1), (0, 3), (2, 5)])  # (2, 5): channel 0 is kept as well
def test_two_channel_ties_go_to_the_first(ids):
    soft = torch.zeros(20, 8, 10)
    soft[ids[0], :, :5] = 0.5
    soft[ids[1], :, :5] = 0.5  # a tie everywhere on the left half
    soft[ids[1], :4, 5:] = 1.0  # the second channel alone on the top right; zeros below
    _same(soft, (64, 80))
    assert set(upsample_argmax(soft, (64, 80)).unique().tolist()) == {0, *ids}


def test_negative_or_non_finite_masks_take_the_all_channel_path():
    gen = torch.Generator().manual_seed(0)
    soft = torch.zeros(20, 9, 13)
    soft[[2, 5]] = torch.randn(2, 9, 13, generator=gen)  # negative values: a zero channel can win
    assert present_channels(soft) is None
    _same(soft, (40, 60))
    soft[2, 0, 0] = float("inf")
    _same(soft, (40, 60))


def test_first_frame_and_propagated_masks_of_real_davis(davis_root):
    """The masks test.py writes: the first-frame one-hot (many exact ties) and propagated ones."""
    seq = load_sequences("davis16", davis_root, ["blackswan"])[0]
    labels = torch.from_numpy(read_label_map(seq.annotations[0], seq.mask_format, (480, 854)))
    _same(resize_masks(one_hot(labels, [0, 1], 20), (60, 107)), (480, 854))
    prop = LabelPropagator(context=3)
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(64, 60, 107, generator=gen)
    for t in range(4):  # nearby random embeddings: soft masks with real boundaries
        emb = torch.nn.functional.normalize(base + 0.3 * torch.randn(64, 60, 107, generator=gen), dim=0)
        soft = prop.step(emb, labels if t == 0 else None)
        _same(soft, (480, 854))
