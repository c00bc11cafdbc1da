"""The HVC training model: online/target encoders and projectors, predictor, flow head.

One step, in order (docs/training.md, "Order inside one step"): online predictions of both views, the EMA update
of the target parameters, target projections (train mode, no_grad), then the symmetric :func:`hybrid_loss`.
State-dict keys and their order are those of the official checkpoints (docs/checkpoints.md).
"""

from __future__ import annotations

import copy
import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from hvc.models.heads import FlowHead, ProjectionHead
from hvc.models.loss import hybrid_loss
from hvc.models.resnet import Arch, ResNet


def momentum_at(step: int, total_steps: int, base: float = 0.99) -> float:
    """m = 1 - (1 - base) * (cos(pi * step / total_steps) + 1) / 2.

    ``step`` is the global step before the update (0 on the first step); it is not clamped,
    so past ``total_steps`` the cosine continues, as in the official code.
    """
    return 1.0 - (1.0 - base) * (math.cos(math.pi * step / total_steps) + 1.0) / 2.0


class HVC(nn.Module):
    """Self-supervised HVC model; ``forward`` returns the training loss.

    with_layer4: keep the encoder's layer4 (the paper); ``False`` trains the trunk that the
    test-time encoder keeps (up to layer3): about a third of the encoder work at stride 8.
    Projector: encoder channels -> proj_hidden_dim -> proj_dim; predictor: proj_dim ->
    pred_hidden_dim -> proj_dim. pos_radius: see :func:`hybrid_loss`. init_forward_size: side
    of the all-zero image the online encoder sees once in train mode at construction, as the
    official ``__init__`` does (its BatchNorm statistics move once; the target copy is taken
    before). ``None`` skips it.
    """

    def __init__(self, arch: Arch = "resnet18", proj_hidden_dim: int = 256, proj_dim: int = 256,
                 pred_hidden_dim: int = 256, pos_radius: float = 0.1, init_forward_size: int | None = 256,
                 with_layer4: bool = True):
        super().__init__()
        self.pos_radius = pos_radius
        self.online_encoder = ResNet(arch, with_layer4=with_layer4)
        self.target_encoder = copy.deepcopy(self.online_encoder)
        enc_dim = self.online_encoder.out_channels
        self.online_space_projector = ProjectionHead(enc_dim, proj_hidden_dim, proj_dim)
        self.target_space_projector = copy.deepcopy(self.online_space_projector)
        self.space_predictor = ProjectionHead(proj_dim, pred_hidden_dim, proj_dim)
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
        z = self.online_space_projector(self.online_encoder(view))
        return F.normalize(self.space_predictor(z), dim=1)

    @torch.no_grad()
    def _target(self, view: Tensor) -> Tensor:
        """view: [N, 3, H, W] -> k: [N, proj_dim, H/8, W/8], unit norm over channels."""
        return F.normalize(self.target_space_projector(self.target_encoder(view)), dim=1)

    def forward(self, view1: Tensor, view2: Tensor, coord1: Tensor, coord2: Tensor, momentum: float) -> Tensor:
        """Training loss of one step (scalar); updates the target network as a side effect.

        view*: [N, 3, H, W] normalised crops; coord*: [N, 4] = [x0, y0, x1, y1] of each crop
        in its source image (hvc.data.transforms.crop_coords); momentum: EMA momentum of this
        step (:func:`momentum_at`). The order of the steps is part of the definition.
        """
        q1 = self._online(view1)
        q2 = self._online(view2)
        self.update_target(momentum)
        k1 = self._target(view1)
        k2 = self._target(view2)
        return (hybrid_loss(q1, k2, coord1, coord2, self.flow, self.pos_radius)
                + hybrid_loss(q2, k1, coord2, coord1, self.flow, self.pos_radius))
