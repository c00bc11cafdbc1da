"""The stride-8 ResNet encoders: shapes, key layout and the paper's initialisation."""

from __future__ import annotations

import math

import pytest
import torch

from hvc.models.resnet import ResNet


@pytest.mark.parametrize(
    "arch, layer4, channels", [("resnet18", True, 512), ("resnet18", False, 256), ("resnet50", False, 1024)]
)
def test_output_is_stride_8(arch, layer4, channels):
    net = ResNet(arch, with_layer4=layer4).eval()
    with torch.no_grad():
        out = net(torch.randn(1, 3, 64, 112))
    assert out.shape == (1, channels, 8, 14) and net.out_channels == channels


def test_golden_export_loads_strictly(golden_dir):
    from helpers.golden_state import load_hvc_state  # the repository's own decoder (tests/helpers/golden_state.py)

    state = load_hvc_state(str(golden_dir / "hybrid_loss" / "state_codes.npz"), case="A", export=True)
    assert len(state) == 120
    ResNet("resnet18").load_state_dict(state, strict=True)


def test_initialisation_matches_the_paper():
    torch.manual_seed(0)
    net = ResNet("resnet18")
    w = net.layer2[0].conv1.weight  # 3x3, 128 outputs: std sqrt(2 / (9 * 128))
    assert w.std().item() == pytest.approx(math.sqrt(2 / (9 * 128)), rel=0.05)
    assert torch.all(net.layer1[0].bn2.weight == 0) and torch.all(net.layer1[0].bn1.weight == 1)
    assert torch.all(net.bn1.bias == 0)
