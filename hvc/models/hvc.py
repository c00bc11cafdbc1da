"""The HVC training model: online/target encoders and projectors, predictor, flow head (structure, state-dict keys
and the order inside one step: docs/training.md; the keys are those of the official checkpoints)."""

from __future__ import annotations

import copy
import math
from collections import OrderedDict

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from hvc.models.loss import hybrid_loss
from hvc.models.resnet import Arch, ResNet


class ResidualConvBlock(nn.Module):
    """The projector/predictor block (docs/training.md): ``forward(x: [N, in_dim, h, w]) -> [N, out_dim, h, w]``."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_dim, hidden_dim, 1)
        self.bn1 = nn.BatchNorm2d(hidden_dim)
        self.conv2 = nn.Conv2d(hidden_dim, hidden_dim, 1)
        self.bn2 = nn.BatchNorm2d(hidden_dim)
        self.conv3 = nn.Conv2d(hidden_dim, out_dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        r = F.leaky_relu(self.bn1(self.conv1(x)), 0.01)
        return self.conv3(F.leaky_relu(self.bn2(self.conv2(r) + r), 0.01))


def projection_head(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    """Projector or predictor: a :class:`ResidualConvBlock` under the official ``block.`` prefix."""
    return nn.Sequential(OrderedDict(block=ResidualConvBlock(in_dim, hidden_dim, out_dim)))


class FlowHead(nn.Module):
    """The "dynamic" branch (docs/training.md): ``forward(a, b: [N, feat_dim, h, w]) -> [N, 2, h, w]``, asymmetric."""

    def __init__(self, feat_dim: int, hidden_dim: int = 256):
        super().__init__()
        self.conv1 = nn.Conv2d(2 * feat_dim, hidden_dim, 1)
        self.bn1 = nn.BatchNorm2d(hidden_dim)
        self.conv2 = nn.Conv2d(hidden_dim, 2, 1)
        self.bn2 = nn.BatchNorm2d(2)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return self.bn2(self.conv2(F.relu(self.bn1(self.conv1(torch.cat([a, b], dim=1))))))


def momentum_at(step: int, total_steps: int, base: float = 0.99) -> float:
    """m = 1 - (1 - base) * (cos(pi * step / total_steps) + 1) / 2 before the update of global ``step`` (0 first);
    not clamped: past ``total_steps`` the cosine continues, as in the official code."""
    return 1.0 - (1.0 - base) * (math.cos(math.pi * step / total_steps) + 1.0) / 2.0


class HVC(nn.Module):
    """Self-supervised HVC model; ``forward`` returns the training loss. with_layer4 False trains the trunk the
    test-time encoder keeps (up to layer3); pos_radius: see :func:`hybrid_loss`; init_forward_size: side of the zero
    image the online encoder sees once in train mode, after the target copy is taken (official); ``None`` skips it."""

    def __init__(self, arch: Arch = "resnet18", proj_hidden_dim: int = 256, proj_dim: int = 256,
                 pred_hidden_dim: int = 256, pos_radius: float = 0.1, init_forward_size: int | None = 256,
                 with_layer4: bool = True):
        super().__init__()
        self.pos_radius = pos_radius
        self.online_encoder = ResNet(arch, with_layer4=with_layer4)
        self.target_encoder = copy.deepcopy(self.online_encoder)
        enc_dim = self.online_encoder.out_channels
        self.online_space_projector = projection_head(enc_dim, proj_hidden_dim, proj_dim)
        self.target_space_projector = copy.deepcopy(self.online_space_projector)
        self.space_predictor = projection_head(proj_dim, pred_hidden_dim, proj_dim)
        self.flow = FlowHead(proj_dim, proj_hidden_dim)
        for p in self._target_parameters():
            p.requires_grad_(False)
        if init_forward_size is not None:
            with torch.no_grad():
                self.online_encoder.train()(torch.zeros(1, 3, init_forward_size, init_forward_size))

    def _target_parameters(self) -> list[nn.Parameter]:
        return [*self.target_encoder.parameters(), *self.target_space_projector.parameters()]

    @torch.no_grad()
    def update_target(self, momentum: float) -> None:
        """target = target * m + online * (1 - m), parameters only (BN buffers untouched)."""
        target = self._target_parameters()
        online = [*self.online_encoder.parameters(), *self.online_space_projector.parameters()]  # in the same order
        torch._foreach_mul_(target, momentum)  # one fused kernel per list, not per tensor
        torch._foreach_add_(target, online, alpha=1.0 - momentum)

    def _online(self, view: Tensor) -> Tensor:
        """view: [N, 3, H, W] -> q: [N, proj_dim, H/8, W/8], unit norm over channels."""
        return F.normalize(self.space_predictor(self.online_space_projector(self.online_encoder(view))), dim=1)

    @torch.no_grad()
    def _target(self, view: Tensor) -> Tensor:
        """view: [N, 3, H, W] -> k: [N, proj_dim, H/8, W/8], unit norm over channels."""
        return F.normalize(self.target_space_projector(self.target_encoder(view)), dim=1)

    def forward(self, view1: Tensor, view2: Tensor, coord1: Tensor, coord2: Tensor, momentum: float) -> Tensor:
        """Training loss of one step (scalar); updates the target network as a side effect, in the order that
        defines the step. view*: [N, 3, H, W] normalised crops; coord*: [N, 4] = [x0, y0, x1, y1] of each crop in
        its source image (hvc.data.pairs.crop_coords); momentum: this step's (:func:`momentum_at`)."""
        q1, q2 = self._online(view1), self._online(view2)
        self.update_target(momentum)
        k1, k2 = self._target(view1), self._target(view2)
        return (hybrid_loss(q1, k2, coord1, coord2, self.flow, self.pos_radius)
                + hybrid_loss(q2, k1, coord2, coord1, self.flow, self.pos_radius))
