"""Fully-convolutional ResNet encoders with output stride 8 (layer3 and layer4 at stride 1), with torchvision's
parameter names so that the paper's, MoCo v1 and torchvision files load by name (no ``avgpool``/``fc``); the paper's
initialisation (docs/training.md)."""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

Arch = Literal["resnet18", "resnet50"]


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """torchvision's ResNet v1.5 bottleneck (stride on the 3x3 conv), as in MoCo v1."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))))
        return self.relu(self.bn3(self.conv3(out)) + identity)


# architecture -> (residual block, blocks per layer)
_ARCHS = {"resnet18": (BasicBlock, [2, 2, 2, 2]), "resnet50": (Bottleneck, [3, 4, 6, 3])}


class ResNet(nn.Module):
    """ResNet trunk at output stride 8; ``with_layer4`` False stops after layer3 (test encoder).
    ``forward(x: [N, 3, H, W]) -> [N, C, ceil(H/8), ceil(W/8)]``, C = ``out_channels``: with layer4 (training)
    512 (ResNet-18), without it 256 (ResNet-18) or 1024 (ResNet-50)."""

    def __init__(self, arch: Arch = "resnet18", with_layer4: bool = True):
        super().__init__()
        block, layers = _ARCHS[arch]
        self.arch = arch
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self._cin = 64
        self.layer1 = self._make_layer(block, 64, layers[0], stride=1)
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        # The paper removes the stride of layer3 and layer4 to keep stride-8 features.
        self.layer3 = self._make_layer(block, 256, layers[2], stride=1)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=1) if with_layer4 else None
        self.out_channels = (512 if with_layer4 else 256) * block.expansion
        self.reset_parameters()

    def _make_layer(self, block: type[nn.Module], planes: int, blocks: int, stride: int) -> nn.Sequential:
        cin, self._cin = self._cin, planes * block.expansion
        downsample = None
        if stride != 1 or cin != self._cin:
            downsample = nn.Sequential(nn.Conv2d(cin, self._cin, 1, stride, bias=False), nn.BatchNorm2d(self._cin))
        first = block(cin, planes, stride, downsample)
        return nn.Sequential(first, *[block(self._cin, planes) for _ in range(1, blocks)])

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Conv weights ~ N(0, sqrt(2 / (k*k*out))), BatchNorm weight 1 / bias 0, the last BatchNorm of each block 0."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.normal_(0.0, math.sqrt(2.0 / (m.kernel_size[0] * m.kernel_size[1] * m.out_channels)))
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.fill_(1.0)
                m.bias.zero_()
        for m in self.modules():  # the last BatchNorm of each residual block
            if isinstance(m, (BasicBlock, Bottleneck)):
                (m.bn3 if isinstance(m, Bottleneck) else m.bn2).weight.zero_()

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer3(self.layer2(self.layer1(x)))
        if self.layer4 is not None:
            x = self.layer4(x)
        return x
