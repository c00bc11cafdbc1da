"""The training loop on real photos: outputs, momentum schedule, non-finite loss, bad input."""

from __future__ import annotations

import logging
import math

import pytest
import torch

from helpers.engine_support import REPO, read_log, tiny_config, tiny_image_folder
from hvc.checkpoint import FORMAT_VERSION, load_checkpoint
from hvc.config import ConfigError, load_config, to_dict
from hvc.config.training import TrainConfig
from hvc.engine import NonFiniteLossError, train
from hvc.errors import InputError
from hvc.models.hvc import HVC, momentum_at


@pytest.fixture(scope="module")
def images(static_root, tmp_path_factory):
    return tiny_image_folder(static_root, tmp_path_factory.mktemp("imgs"))


def test_short_run_writes_log_config_and_checkpoint(images, tmp_path):
    out = tmp_path / "run"
    # crosses an epoch end; the paper's encoder (layer4 on), so the checkpoint has the official layout
    cfg = tiny_config(out, images, "optim.max_steps=3", "model.layer4=true")
    result = train(cfg)
    assert result.global_step == 3 and len(result.losses) == 3
    assert all(math.isfinite(v) for v in result.losses)

    records = read_log(out)
    steps = [r for r in records if r["event"] == "step"]
    assert [r["step"] for r in steps] == [1, 2, 3]
    assert [r["epoch"] for r in steps] == [1, 1, 2]
    assert [r["loss"] for r in steps] == pytest.approx(result.losses)
    # momentum of step s comes from the global step before it, over 2 x 2 = 4 scheduled steps
    assert [r["momentum"] for r in steps] == pytest.approx([momentum_at(s, 4, 0.99) for s in range(3)])
    assert all(r["lr"] == 1e-3 and r["images_per_s"] > 0 for r in steps)
    assert [r["event"] for r in records if r["event"] in ("epoch_end", "stopped")] == ["epoch_end", "stopped"]

    assert load_config(TrainConfig, out / "config.yaml") == cfg
    ckpt = load_checkpoint(out / "checkpoint.pth")
    assert ckpt["global_step"] == 3 and ckpt["epoch"] == 1 and ckpt["format_version"] == FORMAT_VERSION
    assert ckpt["args"] == to_dict(cfg)
    reference = HVC(init_forward_size=None).state_dict()
    assert list(ckpt["model"]) == list(reference)  # official keys, official order
    assert ckpt["optimizer"]["state"], "Adam state was saved"


@pytest.mark.parametrize("bad", [float("nan"), float("inf")], ids=["nan", "inf"])
def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(images, tmp_path, monkeypatch, bad):
    calls = {"n": 0}
    real_forward = HVC.forward

    def forward_bad_at_step_2(self, *args, **kwargs):
        calls["n"] += 1
        loss = real_forward(self, *args, **kwargs)
        return loss + bad if calls["n"] == 2 else loss

    monkeypatch.setattr(HVC, "forward", forward_bad_at_step_2)
    out = tmp_path / "run"
    with pytest.raises(NonFiniteLossError, match=rf"non-finite loss \({bad}\) at step 2 .*checkpoint\.pth"):
        train(tiny_config(out, images, "output.save_every_steps=1"))
    ckpt = load_checkpoint(out / "checkpoint.pth")
    assert ckpt["global_step"] == 1
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    assert read_log(out)[-1]["event"] == "non_finite_loss"


def _flush_denormal_during_forward() -> tuple[list[bool], object]:
    """Record, at every HVC forward, whether the CPU flushes denormals (a denormal times 1 is 0)."""
    seen: list[bool] = []

    def hook(module, args):
        if isinstance(module, HVC):
            seen.append((torch.tensor([1e-40]) * 1.0).item() == 0.0)

    return seen, torch.nn.modules.module.register_module_forward_pre_hook(hook)


def test_cpu_ignores_amp_and_channels_last_and_flushes_denormals_only_while_training(images, tmp_path):
    """On the CPU runtime.amp and runtime.channels_last change nothing (float32, bit for bit);
    runtime.flush_denormal holds during the steps and is undone afterwards."""
    runs = {"defaults": [],  # train_img.yaml: amp on, channels_last on, flush_denormal on
            "plain": ["runtime.amp=false", "runtime.channels_last=false"],
            "no_flush": ["runtime.flush_denormal=false"]}
    small = ["optim.max_steps=2", "data.size=32", "model.init_forward_size=32"]  # 32x32 crops: 4x4 feature maps
    results, flushing = {}, {}
    for name, extra in runs.items():
        seen, handle = _flush_denormal_during_forward()
        try:
            results[name] = train(tiny_config(tmp_path / name, images, *small, *extra))
        finally:
            handle.remove()
        assert len(seen) == 2, name  # one forward per step
        flushing[name] = set(seen)
        assert (torch.tensor([1e-40]) * 1.0).item() != 0.0, f"{name}: denormals still flushed after training"
    assert results["defaults"].losses == results["plain"].losses
    a = load_checkpoint(tmp_path / "defaults" / "checkpoint.pth")["model"]
    b = load_checkpoint(tmp_path / "plain" / "checkpoint.pth")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert read_log(tmp_path / "defaults")[0]["amp"] == "off"
    assert flushing == {"defaults": {True}, "plain": {True}, "no_flush": {False}}
    assert results["no_flush"].losses == pytest.approx(results["defaults"].losses, rel=1e-5)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["data.roots=[]"], "data.roots: empty"),
        (["data.batch_size=64"], "fewer than one batch"),
        (["optim.epochs=0"], "optim.epochs"),
        (["data.scale=[0.5, 0.2]"], "data.scale"),
    ],
)
def test_bad_configs_fail_before_training(images, tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        train(tiny_config(tmp_path / "run", images, *overrides))
    assert not (tmp_path / "run" / "checkpoint.pth").exists()


def test_missing_or_empty_data_folder_is_named(images, tmp_path):
    missing, empty = tmp_path / "nope", tmp_path / "empty"
    empty.mkdir()
    for folder in (missing, empty):
        with pytest.raises(InputError, match=f"data.roots: .*{folder}"):
            train(tiny_config(tmp_path / "run", images, f"data.roots=[{images}, {folder}]"))
    assert not (tmp_path / "run" / "checkpoint.pth").exists()


def test_unreadable_images_are_skipped_named_and_counted(static_root, tmp_path, caplog):
    images = tiny_image_folder(static_root, tmp_path / "imgs", n=3)
    (images / "broken.jpg").write_bytes(b"not a jpeg")  # 4 files: one batch holds them all
    out = tmp_path / "run"
    with pytest.warns(RuntimeWarning, match="broken.jpg"), caplog.at_level(logging.WARNING, logger="hvc.train"):
        result = train(tiny_config(out, images, "optim.epochs=1"))
    assert result.global_step == 1 and all(math.isfinite(v) for v in result.losses)
    assert "1 unreadable image(s) skipped" in caplog.text
    assert [r["skipped_images"] for r in read_log(out) if r["event"] == "epoch_end"] == [1]


def test_video_pairs_train_through_the_same_loop(davis_root, tmp_path):
    frames = davis_root / "JPEGImages" / "480p"  # 10 sequences: one sample per video
    out = tmp_path / "run"
    result = train(tiny_config(out, frames, "data.kind=video", "data.max_gap=3", "optim.max_steps=1"))
    assert result.global_step == 1 and math.isfinite(result.losses[0])
    assert read_log(out)[0]["samples"] == 10


def test_cli_names_a_bad_key_and_exits_2(capsys):
    from hvc.entry import train as cli

    assert cli.main(["--config", str(REPO / "configs" / "train_img.yaml"), "optim.lrr=0.1"]) == 2
    assert "optim.lrr" in capsys.readouterr().err
