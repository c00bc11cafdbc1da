"""Helpers shared by the engine, checkpoint and DDP tests: a tiny image folder of real
photos and the small training configuration (64x64 crops, batch 4, ResNet-18 without layer4).

These tests check the training loop (steps, logs, checkpoints, resume, DDP), not the network:
the paper's encoder, layer4 included, is checked against the official code in
test_golden_model.py and trains a step in test_recipes.py. Without layer4 (``model.layer4``)
a step costs ~2.5x less and a checkpoint is a quarter of the size."""

from __future__ import annotations

import json
import os
from pathlib import Path

from hvc.config import load_config
from hvc.config.training import TrainConfig

from .locations import REPO  # noqa: F401 - also imported from here by the tests

N_IMAGES = 8  # batch 4 -> 2 steps per epoch


def tiny_image_folder(static_root: Path, dest: Path, n: int = N_IMAGES) -> Path:
    """``dest`` with links to the first ``n`` photos of BSDS500 (no data is copied)."""
    photos = sorted((static_root / "BSDS500").glob("*.jpg"))[:n]
    assert len(photos) == n, f"expected {n} photos in {static_root / 'BSDS500'}"
    dest.mkdir(parents=True, exist_ok=True)
    for p in photos:
        os.symlink(p, dest / p.name)
    return dest


def tiny_overrides(out_dir: Path, root: Path, *extra: str) -> list[str]:
    return [f"data.roots=[{root}]", "data.size=64", "data.batch_size=4", "data.workers=0",
            "optim.epochs=2", "model.init_forward_size=64", "model.layer4=false", "runtime.device=cpu",
            f"output.dir={out_dir}", "output.log_every=1", "output.save_every_steps=0", *extra]


def tiny_config(out_dir: Path, root: Path, *extra: str) -> TrainConfig:
    return load_config(TrainConfig, REPO / "configs" / "train_img.yaml", tiny_overrides(out_dir, root, *extra))


def read_log(out_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (out_dir / "log.jsonl").read_text().splitlines()]
