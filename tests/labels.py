"""Comparing predicted label maps with expected ones, robust to exact ties.

A propagated label is the argmax over channels of the bilinearly up-sampled soft mask. Where
the two best channels of the EXPECTED soft mask are equal up to float rounding, the argmax is
decided by summation order, and so by the CPU's kernels (AVX2 vs AVX-512) or a GPU. The
algorithm itself makes such exact ties: where an object starts at a later frame, the first
reference's background channel and the new reference's object channel can both sum to 1.0
(0.99999994, 1.0 or 1.0000001 depending on the order of the softmax sum). docs/fixtures.md
("Label propagation") explains the rule applied here: skip the pixels whose expected top-two
margin is at most ``TIE_MARGIN``, require there to be few of them, and require identical labels
everywhere else.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

TIE_MARGIN = 1e-6  # a tie: top-two margin of the expected up-sampled soft mask at most this
MAX_TIE_FRACTION = 1e-3  # at most this share of the compared pixels may be ties


@dataclass(frozen=True)
class LabelComparison:
    pixels: int  # pixels compared
    ties: int  # pixels skipped: expected top-two margin <= TIE_MARGIN
    differ: int  # pixels outside the ties whose labels differ
    tie_flips: int  # tie pixels whose labels differ (allowed, reported)


def top_two_margin(soft: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """soft [T, K, h, w] -> [T, *size]: best minus second-best channel after the bilinear
    (align_corners=True) up-sampling that produces the labels."""
    up = F.interpolate(soft.float(), size=size, mode="bilinear", align_corners=True)
    best = up.topk(2, dim=1).values
    return best[:, 0] - best[:, 1]


def compare_labels(pred, expected, expected_soft, *, margin: float = TIE_MARGIN) -> LabelComparison:
    """pred, expected: [T, H, W] label maps; expected_soft: [T, K, h, w], the soft masks the
    expected labels were taken from (argmax of their up-sampling)."""
    pred, expected = torch.as_tensor(np.asarray(pred)), torch.as_tensor(np.asarray(expected))
    if pred.shape != expected.shape:
        raise AssertionError(f"label maps of shape {tuple(pred.shape)}, expected {tuple(expected.shape)}")
    soft = torch.as_tensor(np.asarray(expected_soft))
    tie = top_two_margin(soft, tuple(expected.shape[-2:])) <= margin
    wrong = pred.long() != expected.long()
    return LabelComparison(pixels=wrong.numel(), ties=int(tie.sum()), differ=int((wrong & ~tie).sum()),
                           tie_flips=int((wrong & tie).sum()))


def assert_labels_match(pred, expected, expected_soft, name: str = "", *, margin: float = TIE_MARGIN,
                        max_tie_fraction: float = MAX_TIE_FRACTION) -> LabelComparison:
    """Identical labels outside the exact ties, and few ties; returns the counts."""
    c = compare_labels(pred, expected, expected_soft, margin=margin)
    where = f"{name}: " if name else ""
    assert c.ties <= max_tie_fraction * c.pixels, (
        f"{where}{c.ties} of {c.pixels} pixels are ties (margin <= {margin}), more than the "
        f"{max_tie_fraction:g} share allowed: the expected soft masks look degenerate")
    assert c.differ == 0, f"{where}{c.differ} labels differ outside the {c.ties} tie pixels"
    return c
