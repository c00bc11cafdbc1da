"""run.encoder: the exact path is the loaded network bit for bit; the fused path is within float32
rounding of it and writes (all but a few near-tie pixels of) the same labels on real DAVIS
frames; bf16 stays within its tolerance."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hvc.config.core import load_config
from hvc.config.inference import TestConfig
from hvc.data.vos import FrameDataset, load_sequences
from hvc.inference import FeatureExtractor, build_extractor, segment_clip
from hvc.models.encoders import load_encoder
from hvc.models.fast_encoder import fold_batchnorm, wrap_encoder
from hvc.models.resnet import ResNet
from hvc.propagation import PropagationConfig, embed
from hvc.segmenter import VideoSegmenter
from hvc.tasks.clips import VOSClip, vos_outputs

REPO = Path(__file__).resolve().parents[1]
CHECKPOINT = REPO / "checkpoints" / "hvc_bsds_cpu.pth"


def _random_statistics(net: ResNet, seed: int) -> ResNet:
    """BatchNorm with non-trivial affine parameters and running statistics (eval mode)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
    return net.eval()


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


@pytest.fixture(scope="module")
def frames(davis_root) -> torch.Tensor:
    """Four real DAVIS frames as the test pipeline feeds them (shorter side 120)."""
    seq = load_sequences("davis16", davis_root, ["blackswan"])[0]
    data = TestConfig().data
    dataset = FrameDataset(seq, 120, data.mean, data.std)
    return torch.stack([dataset[t] for t in range(4)])


def test_exact_is_the_loaded_network_bit_for_bit(frames):
    net = load_encoder("hvc", str(CHECKPOINT), bn_dummy_forward_pass=True)
    assert wrap_encoder(net, "exact") is net
    with torch.no_grad():
        plain = net(frames)
    assert torch.equal(FeatureExtractor(net)(frames), embed(plain))  # the default mode is exact
    cfg = load_config(TestConfig, None, ["model.name=hvc", f"model.checkpoint={CHECKPOINT}",
                                         "model.bn_dummy_forward=true", "run.encoder=exact"])
    assert torch.equal(build_extractor(cfg)(frames), embed(plain))


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_folding_keeps_the_function_and_removes_every_batchnorm(arch):
    torch.manual_seed(0)
    net = _random_statistics(ResNet(arch, with_layer4=False), seed=1)
    x = torch.randn(2, 3, 40, 56)
    folded = fold_batchnorm(net)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())  # the original is untouched
    with torch.no_grad():
        ref = net(x)
        assert _rel(folded(x), ref) < 1e-5
        assert _rel(wrap_encoder(net, "fused")(x), ref) < 1e-5
    with pytest.raises(ValueError, match="eval-mode"):
        fold_batchnorm(net.train())


def test_fused_and_bf16_features_on_real_frames(frames):
    net = load_encoder("hvc", str(CHECKPOINT), bn_dummy_forward_pass=True)
    with torch.no_grad():
        ref = net(frames)
        fused = wrap_encoder(net, "fused")(frames)
        bf16 = wrap_encoder(net, "bf16")(frames)
    for out in (fused, bf16):
        assert out.dtype == torch.float32 and out.shape == ref.shape and out.is_contiguous()
    assert _rel(fused, ref) < 1e-5 and (fused - ref).abs().max().item() < 1e-4
    assert 1e-4 < _rel(bf16, ref) < 3e-2  # bfloat16: 8 mantissa bits, so visibly not exact, yet close
    with pytest.raises(ValueError, match="encoder mode"):
        wrap_encoder(net, "int8")


def _labels(folder: Path) -> dict[str, np.ndarray]:
    out = {}
    for png in sorted(folder.glob("*.png")):
        with Image.open(png) as im:
            out[png.name] = np.array(im)
    return out


def test_fused_writes_the_same_labels_on_a_real_clip(tmp_path, davis_root):
    """test.py's loop on the first 12 frames of a real sequence, exact against fused.

    Not bit-identical in general: the folded weights round differently (~1e-6), which can flip
    a near-tie among the top-k neighbours (97 of 24.6 M pixels over 60 frames of dog at 480p,
    docs/speed.md), so the test allows 1 pixel in 10,000.
    """
    seq = load_sequences("davis16", davis_root, ["horsejump-high"])[0]
    seq = dataclasses.replace(seq, frames=seq.frames[:12], outputs=tuple(range(12)))
    written = {}
    for mode in ("exact", "fused"):
        cfg = load_config(TestConfig, REPO / "configs" / "test_davis16.yaml",
                          [f"data.root={davis_root}", "data.input_size=160", "data.workers=0",
                           f"model.checkpoint={CHECKPOINT}", f"run.encoder={mode}", "prop.context=6"])
        segmenter = VideoSegmenter(PropagationConfig(context=cfg.prop.context), build_extractor(cfg))
        segment_clip(VOSClip(seq, vos_outputs(tmp_path, "davis16", seq), cfg.prop.num_classes), segmenter,
                     tmp_path / mode, cfg)
        written[mode] = _labels(tmp_path / mode)
    assert len(written["exact"]) == 12 and written["exact"].keys() == written["fused"].keys()
    assert any(len(np.unique(a)) == 2 for a in written["exact"].values())  # the object is tracked at all
    differ = sum(int((written["fused"][name] != labels).sum()) for name, labels in written["exact"].items())
    assert differ <= 1e-4 * sum(labels.size for labels in written["exact"].values()), differ
