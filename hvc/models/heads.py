"""The 1x1-convolution heads of the HVC training model (docs/training.md).

Module and attribute names are part of the checkpoint format: the projector and predictor
keep their layers under ``block`` (``online_space_projector.block.conv1.weight`` ...), the
flow head directly (``flow.conv1.weight`` ...).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F


def _conv1x1(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=1, bias=True)


class ResidualConvBlock(nn.Module):
    """``conv3(act(bn2(conv2(r) + r)))`` with ``r = act(bn1(conv1(x)))``; act = LeakyReLU(0.01).
    ``forward(x: [N, in_dim, h, w]) -> [N, out_dim, h, w]``."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int):
        super().__init__()
        self.conv1 = _conv1x1(in_dim, hidden_dim)
        self.bn1 = nn.BatchNorm2d(hidden_dim)
        self.conv2 = _conv1x1(hidden_dim, hidden_dim)
        self.bn2 = nn.BatchNorm2d(hidden_dim)
        self.conv3 = _conv1x1(hidden_dim, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        r = F.leaky_relu(self.bn1(self.conv1(x)), 0.01)
        y = F.leaky_relu(self.bn2(self.conv2(r) + r), 0.01)
        return self.conv3(y)


class ProjectionHead(nn.Module):
    """Projector (512 -> 256 -> 256) or predictor (256 -> 256 -> 256) of HVC: a
    :class:`ResidualConvBlock` under the official ``block.`` prefix (not normalised)."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int):
        super().__init__()
        self.block = ResidualConvBlock(in_dim, hidden_dim, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.block(x)


class FlowHead(nn.Module):
    """Predicts a 2-vector per cell from a pair of feature maps (the "dynamic" branch).

    ``bn2(conv2(relu(bn1(conv1(cat[a, b])))))``: note the BatchNorm on the 2-channel output.
    ``forward(a: [N, feat_dim, h, w], b: [N, feat_dim, h, w]) -> [N, 2, h, w]``, not normalised;
    the argument order is the concatenation order, so ``flow(a, b) != flow(b, a)``.
    """

    def __init__(self, feat_dim: int, hidden_dim: int = 256):
        super().__init__()
        self.conv1 = _conv1x1(2 * feat_dim, hidden_dim)
        self.bn1 = nn.BatchNorm2d(hidden_dim)
        self.conv2 = _conv1x1(hidden_dim, 2)
        self.bn2 = nn.BatchNorm2d(2)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        x = torch.cat([a, b], dim=1)
        return self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
