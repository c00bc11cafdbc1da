"""Faster forms of an eval-mode test encoder, for inference only (accuracy and timings: docs/speed.md): ``exact``
is the float32 module as loaded (the golden path), ``fused`` has every BatchNorm folded into its convolution and
runs channels_last in float32, ``bf16`` is ``fused`` in bfloat16 (labels can change: opt-in)."""

from __future__ import annotations

import copy
from typing import Literal, get_args

import torch
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from hvc.models.resnet import ResNet

EncoderMode = Literal["exact", "fused", "bf16"]
ENCODER_MODES: tuple[str, ...] = get_args(EncoderMode)
_DTYPES = {"fused": torch.float32, "bf16": torch.bfloat16}  # of the folded modes


@torch.no_grad()
def fold_batchnorm(net: ResNet) -> ResNet:
    """A copy of the eval-mode ``net`` with each BatchNorm folded into its convolution (the BatchNorm becomes an
    identity); a train-mode network (no running statistics in use) is refused."""
    if net.training:
        raise ValueError("fold_batchnorm needs an eval-mode network (BatchNorm running statistics)")
    folded = copy.deepcopy(net)
    # (parent, conv, BatchNorm): convN before bnN, the previous entry of a Sequential (downsample)
    pairs = [(m, f"conv{name[2:]}" if name.startswith("bn") else str(int(name) - 1), name)
             for m in folded.modules() for name, child in m.named_children() if isinstance(child, nn.BatchNorm2d)]
    for parent, conv_name, bn_name in pairs:
        setattr(parent, conv_name, fuse_conv_bn_eval(getattr(parent, conv_name), getattr(parent, bn_name)))
        setattr(parent, bn_name, nn.Identity())
    return folded.eval()


class FastEncoder(nn.Module):
    """Folded, channels_last, in ``dtype``: ``forward(frames [N, 3, H, W] float32) -> [N, C, H/8, W/8] float32``."""

    def __init__(self, net: ResNet, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.net = fold_batchnorm(net).to(dtype=dtype, memory_format=torch.channels_last)
        self.dtype = dtype
        self.out_channels = net.out_channels

    def forward(self, frames: Tensor) -> Tensor:
        x = frames.to(self.dtype).contiguous(memory_format=torch.channels_last)
        # the next steps (normalisation, affinities) read channels contiguously per position
        return self.net(x).float().contiguous()


def wrap_encoder(net: ResNet, mode: EncoderMode) -> nn.Module:
    """``net`` itself (``exact``) or its :class:`FastEncoder` (``fused``, ``bf16``); eval mode."""
    if mode not in ENCODER_MODES:
        raise ValueError(f"encoder mode must be one of {ENCODER_MODES}, got {mode!r}")
    return net.eval() if mode == "exact" else FastEncoder(net.eval(), _DTYPES[mode]).eval()
