"""Every shipped config file loads into its schema and holds the paper's values (SPEC
sections 2 and 3: ../shared/docs/SPEC.md), the BN dummy pass of the test configs reaches the
encoder, and the BSDS recipes train a step on CPU."""

from __future__ import annotations

import importlib
import math

import numpy as np
import pytest
import torch
from PIL import Image

from hvc.config import load_config
from hvc.config.inference import TestConfig
from hvc.config.training import TrainConfig, validate
from hvc.engine import train

from helpers.engine_support import REPO
from helpers.vos_trees import make_davis17

CONFIGS = sorted((REPO / "configs").glob("*.yaml"))
# dataset -> root of the paper-protocol test configs (README "Testing", data/README.md)
TEST_CONFIGS = {"davis16": "data/DAVIS", "davis17": "data/DAVIS", "davis17dev": "data/DAVIS",
                "ytvos": "data/YTB/2018", "ytvos19": "data/YTB/2019"}
# dataset -> (root, input size, context, top-k, temperature) of the label-propagation tasks
# beyond VOS: videowalk's test defaults at the paper's input sizes (docs/tasks.md); VOST is
# scored like DAVIS, so it keeps the DAVIS protocol.
TASK_CONFIGS = {"jhmdb": ("data/JHMDB", 320, 20, 10, 0.07), "vip": ("data/VIP", 560, 20, 10, 0.07),
                "vost": ("data/VOST", -1, 50, 15, 0.1)}
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
TRAIN_STATS = ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_file_loads(path):
    schema = TestConfig if path.name.startswith(("test_", "demo_test")) else TrainConfig
    cfg = load_config(schema, path)
    if schema is TrainConfig:
        if not cfg.data.roots:  # filled in at run time (the demo passes its own photo folder)
            cfg = load_config(schema, path, ["data.roots=[images]"])
        validate(cfg)


def test_every_benchmark_has_a_test_config():
    assert sorted(p.stem for p in REPO.glob("configs/test_*.yaml")) == sorted(
        f"test_{d}" for d in [*TEST_CONFIGS, *TASK_CONFIGS])


@pytest.mark.parametrize("dataset", sorted(TASK_CONFIGS))
def test_task_configs_hold_their_protocol(dataset):
    cfg = load_config(TestConfig, REPO / "configs" / f"test_{dataset}.yaml")
    root, size, context, topk, temperature = TASK_CONFIGS[dataset]
    assert cfg.data.dataset == dataset and cfg.data.root == root and cfg.data.input_size == size
    p = cfg.prop
    assert (p.context, p.radius, p.topk, p.temperature) == (context, 12, topk, temperature)
    assert cfg.model.bn_dummy_forward is True and cfg.model.name == "hvc"


@pytest.mark.parametrize("dataset", sorted(TEST_CONFIGS))
def test_test_configs_hold_the_paper_protocol(dataset):
    cfg = load_config(TestConfig, REPO / "configs" / f"test_{dataset}.yaml")
    assert cfg.data.dataset == dataset and cfg.data.root == TEST_CONFIGS[dataset]
    # full-resolution frames, ImageNet normalisation
    assert cfg.data.input_size == -1
    assert (tuple(cfg.data.mean), tuple(cfg.data.std)) == IMAGENET
    # context: first frame + previous 50; radius 12; top-15; temperature 0.1
    p = cfg.prop
    assert (p.context, p.radius, p.topk, p.temperature) == (50, 12, 15, 0.1)
    # the official dummy BatchNorm pass is on; feature merging stays off unless asked
    assert cfg.model.bn_dummy_forward is True
    assert cfg.model.merge_model is None and cfg.model.merge_lambda == 1.05
    assert cfg.model.name == "hvc" and cfg.run.amp == "off"


def test_demo_test_config_uses_the_paper_protocol_too():
    cfg = load_config(TestConfig, REPO / "configs" / "demo_test.yaml")
    assert cfg.model.bn_dummy_forward is True and cfg.data.input_size == -1
    assert (cfg.prop.context, cfg.prop.radius, cfg.prop.topk, cfg.prop.temperature) == (50, 12, 15, 0.1)


def _assert_paper_model_and_data(cfg: TrainConfig) -> None:
    d, m = cfg.data, cfg.model
    assert d.scale == (0.0, 1.0) and d.ratio == pytest.approx((3 / 4, 4 / 3))
    assert (tuple(d.mean), tuple(d.std)) == TRAIN_STATS
    assert m.arch == "resnet18" and (m.proj_hidden_dim, m.proj_dim, m.pred_hidden_dim) == (256, 256, 256)
    assert m.pos_radius == 0.1 and m.momentum == 0.99 and m.init_forward_size == 256
    assert cfg.optim.name == "adam" and cfg.optim.lr == 1e-3 and cfg.optim.weight_decay == 0.0
    assert cfg.runtime.seed == 42


@pytest.mark.parametrize("recipe, kind", [("train_img.yaml", "static"), ("train_vid.yaml", "video")])
def test_paper_training_recipes(recipe, kind):
    cfg = load_config(TrainConfig, REPO / "configs" / recipe)
    _assert_paper_model_and_data(cfg)
    assert cfg.data.kind == kind
    assert (cfg.data.size, cfg.data.batch_size, cfg.optim.epochs, cfg.optim.max_steps) == (256, 128, 20, None)
    assert cfg.runtime.amp is True and cfg.runtime.amp_dtype == "fp16"  # the official code's fp16 autocast


def test_bsds_recipes_keep_the_paper_optimisation():
    gpu = load_config(TrainConfig, REPO / "configs" / "train_bsds_gpu.yaml")
    _assert_paper_model_and_data(gpu)
    assert (gpu.data.size, gpu.data.batch_size) == (256, 128) and gpu.runtime.amp is True
    cpu = load_config(TrainConfig, REPO / "configs" / "train_bsds_cpu.yaml")
    _assert_paper_model_and_data(cpu)  # size, batch, epochs, device and the two CPU switches differ
    assert (cpu.data.size, cpu.data.batch_size, cpu.optim.epochs) == (128, 16, 180)
    assert cpu.model.layer4 is False and cpu.runtime.cpu_bf16 is True  # checkpoints/hvc_bsds_cpu.md


def _test_entry():
    return importlib.import_module("hvc.entry.test")


def _train_mode_stem_inputs(argv: list[str]) -> list[tuple[tuple[int, ...], bool]]:
    """Run test.py with ``argv``; for every train-mode call of a 3-channel-input convolution
    (the encoder's stem), (input shape, input is all zero)."""
    seen = []

    def hook(module, args):
        if isinstance(module, torch.nn.Conv2d) and module.in_channels == 3 and module.training:
            seen.append((tuple(args[0].shape), bool((args[0] == 0).all())))

    handle = torch.nn.modules.module.register_module_forward_pre_hook(hook)
    try:
        assert _test_entry().main(argv) == 0
    finally:
        handle.remove()
    return seen


def test_bn_dummy_pass_of_the_shipped_test_config_reaches_the_encoder(tmp_path):
    """configs/test_davis17.yaml as run by test.py: one train-mode forward of a 256x256 zero
    image (the official quirk), and none when the key is switched off."""
    root = make_davis17(tmp_path / "DAVIS", sequences=("alpha",), frames=2)
    argv = ["--config", str(REPO / "configs" / "test_davis17.yaml"), "--model", "random18",
            f"data.root={root}", "data.workers=0"]
    assert _train_mode_stem_inputs([*argv, "--output", str(tmp_path / "on")]) == [((1, 3, 256, 256), True)]
    assert _train_mode_stem_inputs([*argv, "--output", str(tmp_path / "off"), "model.bn_dummy_forward=false"]) == []
    for out in ("on", "off"):  # both runs segmented the sequence
        with Image.open(tmp_path / out / "alpha" / "00001.png") as im:
            assert set(np.unique(np.array(im))) == {0, 1, 2}


@pytest.mark.parametrize("recipe", ["train_bsds_cpu.yaml", "train_bsds_gpu.yaml"])
def test_bsds_recipe_trains_one_step_on_cpu(recipe, static_root, tmp_path):
    # The recipe as written, shrunk only where a CPU test must be small (crop, batch, device).
    cfg = load_config(TrainConfig, REPO / "configs" / recipe, [
        f"data.roots=[{static_root / 'BSDS500'}]", "data.size=64", "data.batch_size=4", "data.workers=0",
        "optim.max_steps=1", "model.init_forward_size=64", "runtime.device=cpu", "runtime.amp=false",
        f"output.dir={tmp_path / 'run'}",
    ])
    result = train(cfg)
    assert result.global_step == 1 and math.isfinite(result.losses[0])
    assert (tmp_path / "run" / "checkpoint.pth").is_file()
