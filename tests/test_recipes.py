"""Every shipped config file loads into its schema, and the BSDS recipes train a step on CPU."""

from __future__ import annotations

import math

import pytest

from hvc.config import load_config
from hvc.config.inference import TestConfig
from hvc.config.training import TrainConfig, validate
from hvc.engine import train

from engine_support import REPO

CONFIGS = sorted((REPO / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_file_loads(path):
    schema = TestConfig if path.name.startswith(("test_", "demo_test")) else TrainConfig
    cfg = load_config(schema, path)
    if schema is TrainConfig:
        if not cfg.data.roots:  # filled in at run time (the demo passes its own photo folder)
            cfg = load_config(schema, path, ["data.roots=[images]"])
        validate(cfg)


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
