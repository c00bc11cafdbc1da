"""Test-time encoders: every checkpoint format on disk, strict loading, the BN dummy pass."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import torch

from hvc.checkpoint import CheckpointError
from hvc import cli
from hvc.models.encoders import checkpoint_path, load_encoder, read_encoder_state
from hvc.models.resnet import ResNet
from hvc.cli import source_checkout
from helpers.locations import REPO


def _randomised(net: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """State dict of ``net`` with every float entry random (BN statistics included)."""
    gen = torch.Generator().manual_seed(seed)
    state = net.state_dict()
    for k, v in state.items():
        if v.is_floating_point():
            v.copy_(torch.rand(v.shape, generator=gen) + 0.5 if k.endswith("running_var")
                    else torch.randn(v.shape, generator=gen) * 0.05)
    return state


def _assert_loaded(net: ResNet, state: dict[str, torch.Tensor]) -> None:
    """Every test-encoder entry equals the (float32) entry of ``state``."""
    own = net.state_dict()
    assert set(own) == {k for k in state if not k.startswith(("layer4.", "fc."))}
    for k, v in own.items():
        torch.testing.assert_close(v, state[k].to(v.dtype), rtol=0, atol=0, msg=k)


def test_hvc_export_loads_and_drops_layer4(tmp_path):
    state = _randomised(ResNet("resnet18", with_layer4=True), seed=1)
    path = tmp_path / "hvc_coco.pth"
    torch.save(state, path)
    net = load_encoder("hvc", str(path))
    assert net.layer4 is None and not net.training
    _assert_loaded(net, state)
    with torch.no_grad():
        assert net(torch.randn(1, 3, 40, 72)).shape == (1, 256, 5, 9)


def test_half_precision_export_is_cast_to_float32(tmp_path):
    state = _randomised(ResNet("resnet18", with_layer4=True), seed=2)
    half = {k: (v.half() if v.is_floating_point() else v) for k, v in state.items()}
    path = tmp_path / "hvc_half.pth"
    torch.save(half, path)
    net = load_encoder("hvc", str(path))
    assert net.conv1.weight.dtype == torch.float32
    _assert_loaded(net, {k: (v.float() if v.is_floating_point() else v) for k, v in half.items()})


def test_hvc_training_checkpoint_uses_the_online_encoder(tmp_path):
    online = _randomised(ResNet("resnet18", with_layer4=True), seed=3)
    target = _randomised(ResNet("resnet18", with_layer4=True), seed=4)
    model = {f"online_encoder.{k}": v for k, v in online.items()}
    model.update({f"target_encoder.{k}": v for k, v in target.items()})
    model["flow.conv1.weight"] = torch.randn(256, 512, 1, 1)
    model["space_predictor.block.conv1.weight"] = torch.randn(256, 256, 1, 1)
    ckpt = {"model": model, "optimizer": {"state": {}, "param_groups": []}, "epoch": 19,
            "args": argparse.Namespace(lr=1e-3, batch_size=128)}
    path = tmp_path / "checkpoint_0019.pth"
    torch.save(ckpt, path)
    _assert_loaded(load_encoder("hvc", str(path)), online)


def test_mocov1_file_uses_encoder_q_and_drops_fc(tmp_path):
    q = _randomised(ResNet("resnet50", with_layer4=True), seed=5)
    q["fc.weight"], q["fc.bias"] = torch.randn(128, 2048), torch.randn(128)
    state = {f"module.encoder_q.{k}": v for k, v in q.items()}
    state["module.encoder_k.conv1.weight"] = torch.randn(64, 3, 7, 7)  # the key encoder is ignored
    state["module.queue"] = torch.randn(128, 16)
    ckpt = {"epoch": 200, "arch": "resnet50", "state_dict": state, "optimizer": {"state": {}, "param_groups": []}}
    path = tmp_path / "moco_v1_200ep_pretrain.pth.tar"
    torch.save(ckpt, path)
    net = load_encoder("mocov1", str(path))
    _assert_loaded(net, q)
    with torch.no_grad():
        assert net(torch.randn(1, 3, 32, 48)).shape == (1, 1024, 4, 6)


def _torchvision_resnet(arch: str) -> torch.nn.Module:
    import torchvision  # here: importing it costs every pytest worker seconds at collection

    return getattr(torchvision.models, arch)()


@pytest.mark.parametrize("name, arch", [("imagenet18", "resnet18"), ("imagenet50", "resnet50")])
def test_torchvision_imagenet_files_load_by_name(tmp_path, name, arch):
    torch.manual_seed(0)
    state = _torchvision_resnet(arch).state_dict()  # torchvision's own key names, fc included
    path = tmp_path / f"{name}.pth"
    torch.save(state, path)
    _assert_loaded(load_encoder(name, str(path)), state)


def test_wrong_architecture_names_file_and_keys(tmp_path):
    path = tmp_path / "resnet50.pth"
    torch.save(_torchvision_resnet("resnet50").state_dict(), path)
    with pytest.raises(CheckpointError) as err:
        load_encoder("hvc", str(path))
    msg = str(err.value)
    assert str(path) in msg and "resnet18" in msg
    assert "unexpected keys" in msg and "layer1.0.conv3.weight" in msg
    assert "shape or dtype mismatches" in msg and "layer1.0.conv1.weight" in msg


def test_missing_checkpoint_says_where_to_put_it(tmp_path):
    path = tmp_path / "nowhere" / "hvc_coco.pth"
    with pytest.raises(CheckpointError, match="checkpoints/README.md") as err:
        load_encoder("hvc", str(path))
    assert str(path) in str(err.value)
    assert "python -m hvc.download hvc_coco" in str(err.value)
    assert "--checkpoint checkpoints/hvc_bsds_cpu.pth" in str(err.value)
    assert (Path(__file__).resolve().parents[1] / "checkpoints" / "hvc_bsds_cpu.pth").is_file()  # the one named


def test_unreadable_and_foreign_files_are_clear_errors(tmp_path):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        read_encoder_state(garbage)
    foreign = tmp_path / "foreign.pth"
    torch.save({"model": {"backbone.conv1.weight": torch.zeros(1)}}, foreign)
    with pytest.raises(CheckpointError, match="online_encoder"):
        read_encoder_state(foreign)


def test_random18_is_seeded_and_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    a = load_encoder("random18", seed=0)
    assert torch.equal(torch.rand(3), expected_next)
    b = load_encoder("random18", seed=0)
    c = load_encoder("random18", seed=1)
    assert torch.equal(a.conv1.weight, b.conv1.weight)
    assert not torch.equal(a.conv1.weight, c.conv1.weight)
    assert torch.all(a.layer1[0].bn2.weight == 0)  # the paper's init, not torchvision's


@pytest.mark.parametrize("dummy, key", [(True, "features_official_make_encoder"),
                                        (False, "features_eval_no_dummy_forward")])
def test_golden_export_features(tmp_path, golden_dir, dummy, key):
    from helpers.golden_state import load_hvc_state  # the repository's own decoder (tests/helpers/golden_state.py)

    path = tmp_path / "hvc_golden.pth"
    torch.save(load_hvc_state(str(golden_dir / "hybrid_loss" / "state_codes.npz"), case="A", export=True), path)
    gold = np.load(golden_dir / "hybrid_loss" / "export.npz")
    net = load_encoder("hvc", str(path), bn_dummy_forward_pass=dummy)
    with torch.no_grad():
        out = net(torch.from_numpy(gold["frame"])).numpy()
    ref = gold[key]
    assert np.linalg.norm(out - ref) / np.linalg.norm(ref) <= 1e-5
    assert np.abs(out - ref).max() <= 1e-3
    if dummy:
        np.testing.assert_allclose(net.bn1.running_var.numpy(), gold["bn_state_after_make_encoder/bn1.running_var"],
                                   rtol=1e-6)


def test_default_files_come_from_one_folder(tmp_path, monkeypatch):
    """--model hvc means checkpoints/hvc_bsds_cpu.pth for every entry point; the folder is
    $HVC_CHECKPOINT_DIR, else ./checkpoints if it exists, else the source checkout's."""
    monkeypatch.delenv("HVC_CHECKPOINT_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    assert source_checkout() == REPO  # the tests run from a clone
    assert checkpoint_path("hvc", None) == str(REPO / "checkpoints" / "hvc_bsds_cpu.pth")
    (tmp_path / "checkpoints").mkdir()
    assert checkpoint_path("hvc", None) == str(tmp_path / "checkpoints" / "hvc_bsds_cpu.pth")
    monkeypatch.setattr(cli, "source_checkout", lambda: None)  # an installed package
    (tmp_path / "checkpoints").rmdir()
    assert checkpoint_path("hvc", None) == str(tmp_path / "checkpoints" / "hvc_bsds_cpu.pth")
    assert checkpoint_path("hvc", "elsewhere/hvc_coco.pth") == "elsewhere/hvc_coco.pth"  # named: as given
    monkeypatch.setenv("HVC_CHECKPOINT_DIR", str(tmp_path / "weights"))
    assert checkpoint_path("mocov1", None) == str(tmp_path / "weights" / "moco_v1_200ep_pretrain.pth.tar")
    with pytest.raises(CheckpointError, match="HVC_CHECKPOINT_DIR") as err:
        load_encoder("hvc")
    assert str(tmp_path / "weights" / "hvc_bsds_cpu.pth") in str(err.value)
    with pytest.raises(CheckpointError, match="takes no checkpoint"):
        checkpoint_path("random18", None)
