"""Checkpoint layout, loading of the paper's format, bad files, RNG state, export."""

from __future__ import annotations

import argparse
import logging
import random

import numpy as np
import pytest
import torch

from hvc import checkpoint as ck
from hvc.engine import build_optimizer, make_scaler
from hvc.config.training import OptimConfig
from hvc.export import main as export_main
from hvc.models.encoders import load_encoder
from hvc.models.hvc import HVC
from hvc.models.resnet import ResNet


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return HVC(init_forward_size=32)


def _state(model):
    opt = build_optimizer(model, OptimConfig())
    return opt, make_scaler(torch.device("cpu"), None)


def _take_a_step(model, opt, seed: int) -> None:
    """One Adam step on a random linear loss of every trainable parameter: afterwards the
    optimizer holds per-parameter state (step, exp_avg, exp_avg_sq) that a restore must bring back."""
    gen = torch.Generator().manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    loss = sum((p * torch.randn(p.shape, generator=gen)).sum() for p in params)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def _assert_same_optimizer_state(got: dict, expected: dict) -> int:
    """Equal optimizer state dicts (param groups and every state tensor); returns the tensors compared."""
    assert got["param_groups"] == expected["param_groups"]
    assert set(got["state"]) == set(expected["state"])
    compared = 0
    for index, state in expected["state"].items():
        assert set(got["state"][index]) == set(state), index
        for name, value in state.items():
            assert torch.equal(torch.as_tensor(got["state"][index][name]), torch.as_tensor(value)), (index, name)
            compared += 1
    return compared


def test_round_trip_restores_model_optimizer_step_and_rng(tmp_path):
    torch.manual_seed(0)
    model = HVC(init_forward_size=32)
    opt, scaler = _state(model)
    _take_a_step(model, opt, seed=0)
    assert opt.state_dict()["state"], "the step left no optimizer state"
    path = tmp_path / "checkpoint.pth"
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    ck.save_checkpoint(path, model=model, optimizer=opt, scaler=scaler, epoch=2, global_step=7,
                       config={"optim": {"lr": 1e-3}})
    expected = (random.random(), np.random.rand(), torch.rand(1))
    random.seed(9), np.random.seed(9), torch.manual_seed(9)

    fresh = HVC(init_forward_size=None)
    fresh_opt, fresh_scaler = _state(fresh)
    data = ck.load_checkpoint(path)
    assert {"model", "optimizer", "epoch", "args", "global_step", "scaler", "rng", "format_version"} <= set(data)
    step = ck.restore(data, model=fresh, optimizer=fresh_opt, scaler=fresh_scaler, steps_per_epoch=100, source="x")
    assert step == 7
    assert (random.random(), np.random.rand(), torch.rand(1)) == expected
    for (k, a), b in zip(model.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), k
    # every Adam tensor (step, first and second moments of each trained parameter) came back
    n_trained = sum(p.requires_grad for p in model.parameters())
    assert _assert_same_optimizer_state(fresh_opt.state_dict(), opt.state_dict()) == 3 * n_trained
    # and the restored pair continues exactly as the original would
    _take_a_step(model, opt, seed=1)
    _take_a_step(fresh, fresh_opt, seed=1)
    for (k, a), b in zip(model.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), k


def test_paper_checkpoint_loads_and_derives_the_global_step(model, tmp_path, caplog):
    opt, scaler = _state(model)
    path = tmp_path / "hvc.pth"
    # the official save_model: {'model', 'optimizer', 'epoch', 'args': argparse.Namespace}
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 3,
                "args": argparse.Namespace(lr=1e-3, arch="resnet18")}, path)
    data = ck.load_checkpoint(path)
    assert data["args"].arch == "resnet18"
    fresh = HVC(init_forward_size=None)
    fresh_opt, fresh_scaler = _state(fresh)
    with caplog.at_level(logging.INFO, logger="hvc.checkpoint"):
        step = ck.restore(data, model=fresh, optimizer=fresh_opt, scaler=fresh_scaler, steps_per_epoch=50,
                          source=str(path))
    assert step == 150
    assert "no global_step" in caplog.text and "step 150" in caplog.text


@pytest.mark.parametrize("content, message", [
    (b"this is not a checkpoint", "not a readable checkpoint"),
    (None, "not a training checkpoint"),
])
def test_bad_files_are_named(tmp_path, content, message):
    path = tmp_path / "bad.pth"
    if content is None:
        torch.save({"state_dict": {}}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(ck.CheckpointError, match=f"{path}.*{message}"):
        ck.load_checkpoint(path)
    with pytest.raises(ck.CheckpointError, match="not found"):
        ck.load_checkpoint(tmp_path / "missing.pth")


def test_mismatched_model_is_a_clear_error(model, tmp_path):
    opt, scaler = _state(model)
    path = tmp_path / "checkpoint.pth"
    ck.save_checkpoint(path, model=model, optimizer=opt, scaler=scaler, epoch=0, global_step=0, config={})
    other = HVC(proj_dim=128, init_forward_size=None)
    other_opt, other_scaler = _state(other)
    with pytest.raises(ck.CheckpointError, match="do not match"):
        ck.restore(ck.load_checkpoint(path), model=other, optimizer=other_opt, scaler=other_scaler,
                   steps_per_epoch=1, source=str(path))


def test_export_writes_the_official_encoder_format(model, tmp_path, capsys):
    opt, scaler = _state(model)
    path = tmp_path / "checkpoint.pth"
    ck.save_checkpoint(path, model=model, optimizer=opt, scaler=scaler, epoch=1, global_step=5, config={})

    assert export_main([str(path), str(tmp_path / "enc.pth")]) == 0
    assert "120 tensors" in capsys.readouterr().out
    enc = torch.load(tmp_path / "enc.pth", weights_only=True)
    expected = model.online_encoder.state_dict()
    assert list(enc) == list(expected) and len(enc) == 120
    assert all(torch.equal(enc[k], expected[k]) for k in enc)
    ResNet("resnet18", with_layer4=True).load_state_dict(enc)  # strict

    # the README's command line, python -m hvc.export CKPT OUT --drop-layer4 --half, through its main(argv)
    # here (a real `python -m hvc.export` process runs in test_cli.py; a second interpreter start
    # with its torch import would only add seconds)
    assert export_main([str(path), str(tmp_path / "small.pth"), "--drop-layer4", "--half"]) == 0
    printed = capsys.readouterr().out
    small = torch.load(tmp_path / "small.pth", weights_only=True)
    kept = [k for k in expected if not k.startswith("layer4.")]
    assert list(small) == kept and len(kept) < len(expected) and f"{len(kept)} tensors" in printed
    for k in kept:
        want = expected[k].half() if expected[k].is_floating_point() else expected[k]
        assert small[k].dtype == want.dtype and torch.equal(small[k], want), k
    assert (tmp_path / "small.pth").stat().st_size < 8 * 2**20
    net = load_encoder("hvc", str(tmp_path / "small.pth"))  # the test encoder reads it back as float32
    assert all(torch.equal(v, small[k].float()) for k, v in net.state_dict().items() if v.is_floating_point())
    ResNet("resnet18", with_layer4=False).load_state_dict(small)  # strict


def test_export_of_a_non_hvc_checkpoint_fails_clearly(tmp_path, capsys):
    path = tmp_path / "other.pth"
    torch.save({"model": {"conv1.weight": torch.zeros(1)}, "optimizer": {}, "epoch": 0}, path)
    assert export_main([str(path), str(tmp_path / "out.pth")]) == 3
    assert "online_encoder" in capsys.readouterr().err
    assert not (tmp_path / "out.pth").exists()
