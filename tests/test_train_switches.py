"""Training speed switches (model.layer4, runtime.cpu_bf16, runtime.cpu_channels_last): off by
default, so the paper's recipe is unchanged; each on trains a sound model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from helpers.engine_support import read_log, tiny_config, tiny_image_folder
from hvc.config.training import DataConfig, ModelConfig, OptimConfig, RuntimeConfig
from hvc.data.pairs import RandomResizedCropCoord, StaticImagePairs, collate_pairs
from hvc.engine import autocast_dtype, build_model, build_optimizer, make_scaler, train, train_step, use_channels_last
from hvc.models.encoders import load_encoder
from hvc.models.hvc import HVC

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def photos(static_root, tmp_path_factory):
    return tiny_image_folder(static_root, tmp_path_factory.mktemp("photos"))


@pytest.fixture(scope="module")
def batch(photos):
    """Two 64x64 views of 4 real photos with their crop boxes."""
    data = StaticImagePairs(str(photos), RandomResizedCropCoord.from_config(DataConfig(size=64)), seed=42)
    return collate_pairs([data[i] for i in range(4)])[:4]


def _first_loss(model_cfg: ModelConfig, runtime: RuntimeConfig, batch) -> tuple[float, HVC]:
    torch.manual_seed(0)
    model = build_model(model_cfg)
    channels_last = use_channels_last(runtime, CPU)
    model = model.to(memory_format=torch.channels_last if channels_last else torch.preserve_format).train()
    amp = autocast_dtype(runtime, CPU)
    loss = train_step(model, batch, build_optimizer(model, OptimConfig()), make_scaler(CPU, amp), 0.99,
                      device=CPU, amp_dtype=amp, channels_last=channels_last)
    return loss, model


def test_defaults_are_the_paper_recipe():
    assert ModelConfig().layer4 and not RuntimeConfig().cpu_bf16 and not RuntimeConfig().cpu_channels_last
    assert autocast_dtype(RuntimeConfig(), CPU) is None and not use_channels_last(RuntimeConfig(), CPU)
    torch.manual_seed(0)
    paper = HVC(init_forward_size=None)
    torch.manual_seed(0)
    built = build_model(ModelConfig(init_forward_size=None))
    assert paper.online_encoder.layer4 is not None and paper.online_encoder.out_channels == 512
    assert paper.state_dict().keys() == built.state_dict().keys()
    assert all(torch.equal(v, built.state_dict()[k]) for k, v in paper.state_dict().items())


def test_without_layer4_the_projector_reads_layer3_and_the_export_loads(batch, tmp_path):
    loss, model = _first_loss(ModelConfig(layer4=False, init_forward_size=64), RuntimeConfig(), batch)
    assert torch.isfinite(torch.tensor(loss))
    assert model.online_encoder.layer4 is None and model.target_encoder.layer4 is None
    assert model.online_space_projector.block.conv1.in_channels == 256
    state = model.online_encoder.state_dict()
    assert not any(k.startswith("layer4.") for k in state)
    torch.save(state, tmp_path / "enc.pth")
    encoder = load_encoder("hvc", str(tmp_path / "enc.pth"))  # the test-time encoder is the same trunk
    assert all(torch.equal(v, state[k]) for k, v in encoder.state_dict().items())


def test_cpu_channels_last_is_the_float32_step_in_another_layout(batch):
    ref, ref_model = _first_loss(ModelConfig(init_forward_size=64), RuntimeConfig(), batch)
    loss, model = _first_loss(ModelConfig(init_forward_size=64), RuntimeConfig(cpu_channels_last=True), batch)
    assert model.online_encoder.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert loss == pytest.approx(ref, rel=1e-5)
    # train_step leaves this step's gradients in place (Adam's first update is +-lr wherever a
    # gradient is non-zero, so the weights themselves would amplify rounding)
    grads = [(name, p.grad, q.grad) for (name, p), q in zip(ref_model.named_parameters(), model.parameters())
             if p.grad is not None]
    scale = max(g.norm() for _, g, _ in grads)  # gradients far below it are rounding noise (e.g. conv biases before BN)
    for name, g, g_cl in grads:
        assert (g_cl - g).norm() <= 1e-3 * g.norm() + 1e-5 * scale, name


def test_cpu_bf16_autocasts_the_step_and_keeps_float32_weights(batch):
    runtime = RuntimeConfig(cpu_bf16=True)
    assert autocast_dtype(runtime, CPU) == torch.bfloat16
    assert not make_scaler(CPU, torch.bfloat16).is_enabled()  # bf16 needs no loss scaling
    small = ModelConfig(init_forward_size=64, layer4=False)  # the autocast does not depend on layer4
    ref, _ = _first_loss(small, RuntimeConfig(), batch)
    loss, model = _first_loss(small, runtime, batch)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    # bf16 keeps ~3 significant digits; the loss lies in [-8, 8] and starts near 0 here
    assert abs(loss - ref) < 0.1 and loss != ref


def test_switches_train_through_the_engine(photos, tmp_path):
    cfg = tiny_config(tmp_path / "fast", photos, "optim.max_steps=2", "model.layer4=false",
                      "runtime.cpu_bf16=true", "runtime.cpu_channels_last=true")
    result = train(cfg)
    assert result.global_step == 2 and all(torch.isfinite(torch.tensor(result.losses)))
    log = read_log(Path(cfg.output.dir))
    assert log[0]["event"] == "start" and log[0]["amp"] == "bfloat16"
    state = torch.load(result.checkpoint, map_location="cpu", weights_only=True)["model"]
    assert not any(".layer4." in k for k in state) and all(v.dtype != torch.bfloat16 for v in state.values())
