"""Comparing predicted label maps with expected ones, robust to exact ties.

A propagated label is the argmax over channels of the bilinearly up-sampled soft mask. Where
the two best channels of the EXPECTED soft mask are equal up to float rounding, the argmax is
decided by summation order, and so by the CPU's kernels (AVX2 vs AVX-512) or a GPU. The
algorithm itself makes such exact ties, over whole regions: where an object starts at a later
frame, the first reference's background channel and the new reference's object channel can
both sum to 1.0 (0.99999994, 1.0 or 1.0000001 depending on the order of the softmax sum).

The rule (docs/fixtures.md, "Ties") follows from what a label is, not from how many ties a
fixture set happens to hold:

- a predicted label is right at a pixel when its channel is one of the expected maxima there,
  i.e. its expected up-sampled value is within ``TIE_MARGIN`` of the expected best;
- the expected labels must themselves satisfy this (a fixture whose labels are not argmaxes of
  its soft masks, e.g. made with another up-sampling, is refused).

No cap on the number of ties: callers compare the soft masks themselves first (to 1e-5), so a
kernel that differs cannot hide behind ties; and a late object in a static region legitimately
ties on every pixel it covers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

TIE_MARGIN = 1e-6  # channels within this of the best are all maxima (float32 rounding of sums of 1)


@dataclass(frozen=True)
class LabelComparison:
    pixels: int  # pixels compared
    ties: int  # pixels where two or more channels are expected maxima (top-two margin <= TIE_MARGIN)
    differ: int  # pixels whose predicted label is not an expected maximum (errors)
    tie_flips: int  # tie pixels labelled with another of the tied maxima than expected (allowed, reported)
    bad_expected: int  # pixels whose EXPECTED label is not an expected maximum (a broken fixture)


def upsampled(soft: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """soft [T, K, h, w] -> [T, K, *size]: the bilinear (align_corners=True) up-sampling that
    produces the labels."""
    return F.interpolate(soft.float(), size=size, mode="bilinear", align_corners=True)


def top_two_margin(soft: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """soft [T, K, h, w] -> [T, *size]: best minus second-best channel after up-sampling."""
    best = upsampled(soft, size).topk(2, dim=1).values
    return best[:, 0] - best[:, 1]


def _is_maximum(up: torch.Tensor, best: torch.Tensor, labels: torch.Tensor, margin: float) -> torch.Tensor:
    """[T, H, W] bool: the channel ``labels`` names is within ``margin`` of the best there."""
    k = up.shape[1]
    inside = (labels >= 0) & (labels < k)
    value = up.gather(1, labels.clamp(0, k - 1)[:, None]).squeeze(1)
    return inside & (value >= best - margin)


def compare_labels(pred, expected, expected_soft, *, margin: float = TIE_MARGIN) -> LabelComparison:
    """pred, expected: [T, H, W] label maps; expected_soft: [T, K, h, w], the soft masks the
    expected labels were taken from (argmax of their up-sampling)."""
    pred, expected = torch.as_tensor(np.asarray(pred)).long(), torch.as_tensor(np.asarray(expected)).long()
    if pred.shape != expected.shape:
        raise AssertionError(f"label maps of shape {tuple(pred.shape)}, expected {tuple(expected.shape)}")
    up = upsampled(torch.as_tensor(np.asarray(expected_soft)), tuple(expected.shape[-2:]))
    top = up.topk(2, dim=1).values
    best, tie = top[:, 0], top[:, 0] - top[:, 1] <= margin
    right = _is_maximum(up, best, pred, margin)
    return LabelComparison(pixels=pred.numel(), ties=int(tie.sum()), differ=int((~right).sum()),
                           tie_flips=int((right & (pred != expected)).sum()),
                           bad_expected=int((~_is_maximum(up, best, expected, margin)).sum()))


def assert_labels_match(pred, expected, expected_soft, name: str = "", *,
                        margin: float = TIE_MARGIN) -> LabelComparison:
    """Every predicted label is an expected maximum (identical labels outside ties); the
    expected labels are argmaxes of their soft masks. Returns the counts."""
    c = compare_labels(pred, expected, expected_soft, margin=margin)
    where = f"{name}: " if name else ""
    assert c.bad_expected == 0, (
        f"{where}{c.bad_expected} of {c.pixels} expected labels are not a maximum of the expected soft "
        f"masks after align_corners=True bilinear up-sampling: the fixture does not follow the convention")
    assert c.differ == 0, (f"{where}{c.differ} of {c.pixels} labels are not an expected maximum "
                           f"({c.ties} tie pixels, {c.tie_flips} of them took another tied channel)")
    return c
