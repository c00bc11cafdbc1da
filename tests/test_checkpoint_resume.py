"""A run killed right after a checkpoint and resumed with ``train.py --resume auto`` ends with
the same weights, optimizer state and per-step losses as an uninterrupted run (CPU, float32).

The kill point is not left to timing: the run dies right after its n-th ``checkpoint.pth``
reaches the disk (the atomic rename that publishes it), once in the middle of an epoch and
once at an epoch end.
"""

from __future__ import annotations

import importlib
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers.engine_support import REPO, read_log, tiny_config, tiny_image_folder, tiny_overrides
from hvc.checkpoint import load_checkpoint
from hvc.engine import train

TOTAL = 4  # 2 epochs x 2 steps

# Runs train.py as typed on the command line (argv below), SIGKILLing the process right after
# the n-th publication of checkpoint.pth: no cleanup, no flush, no handler runs after it.
_KILL_AFTER_NTH_CHECKPOINT = """
import os, signal, sys
n, argv = int(sys.argv[1]), sys.argv[2:]
real_replace, published = os.replace, []
def replace(src, dst, *args, **kwargs):
    real_replace(src, dst, *args, **kwargs)
    if os.path.basename(os.fspath(dst)) == "checkpoint.pth":
        published.append(dst)
        if len(published) == n:
            os.kill(os.getpid(), signal.SIGKILL)
os.replace = replace
sys.argv = ["train.py", *argv]
from hvc.entry.train import command
sys.exit(command())
"""


class _Crash(BaseException):
    """Stands for a crash: raised in-process right after a checkpoint is published."""


@pytest.fixture(scope="module")
def images(static_root, tmp_path_factory):
    return tiny_image_folder(static_root, tmp_path_factory.mktemp("imgs"))


@pytest.fixture(scope="module")
def reference(images, tmp_path_factory):
    """The uninterrupted 4-step run: its result and final checkpoint."""
    out = tmp_path_factory.mktemp("ref")
    result = train(tiny_config(out, images))
    assert result.global_step == TOTAL
    return result, load_checkpoint(out / "checkpoint.pth")


def _train_cli():
    return importlib.import_module("hvc.entry.train")


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}


def _assert_same_end(out: Path, reference) -> None:
    """Final checkpoint and logged losses of the resumed run equal the uninterrupted run's."""
    result, expected = reference
    got = load_checkpoint(out / "checkpoint.pth")
    assert got["global_step"] == expected["global_step"] == TOTAL and got["epoch"] == expected["epoch"] == 2
    assert list(got["model"]) == list(expected["model"])
    for key, value in expected["model"].items():
        assert torch.equal(got["model"][key], value), key
    assert got["optimizer"]["param_groups"] == expected["optimizer"]["param_groups"]
    assert set(got["optimizer"]["state"]) == set(expected["optimizer"]["state"]) != set()
    for index, state in expected["optimizer"]["state"].items():
        for name, value in state.items():
            assert torch.equal(got["optimizer"]["state"][index][name], value), (index, name)
    assert torch.equal(got["rng"]["torch"], expected["rng"]["torch"])
    # one log across the kill: steps 1..k from the killed run, k+1..4 from the resumed one,
    # with the uninterrupted run's losses
    steps = [r for r in read_log(out) if r["event"] == "step"]
    assert [r["step"] for r in steps] == list(range(1, TOTAL + 1))
    assert [r["loss"] for r in steps] == result.losses


def test_resume_after_sigkill_in_the_middle_of_an_epoch(images, reference, tmp_path, caplog):
    out = tmp_path / "killed"
    overrides = tiny_overrides(out, images, "output.save_every_steps=1")
    killed = subprocess.run([sys.executable, "-c", _KILL_AFTER_NTH_CHECKPOINT, "1", "--config",
                             "configs/train_img.yaml", *overrides],
                            cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert load_checkpoint(out / "checkpoint.pth")["global_step"] == 1  # step 1 of the 2 of epoch 1

    # the command line of the README, train.py --resume auto, through train.py's main(argv) here
    # (the script's own start is exercised by test_faults.py; a second interpreter start would
    # only add seconds)
    with caplog.at_level(logging.INFO):
        assert _train_cli().main(["--config", str(REPO / "configs" / "train_img.yaml"), "--resume", "auto",
                                  *overrides]) == 0
    assert f"resumed from {out / 'checkpoint.pth'} at step 1" in caplog.text
    _assert_same_end(out, reference)


def test_resume_after_a_crash_at_an_epoch_end(images, reference, tmp_path, monkeypatch):
    out = tmp_path / "crashed"
    # no periodic checkpoints: the first one is the epoch-end save of epoch 1 (step 2)
    argv = ["--config", str(REPO / "configs" / "train_img.yaml"), *tiny_overrides(out, images)]
    real_replace = os.replace

    def replace_then_crash(src, dst, *args, **kwargs):
        real_replace(src, dst, *args, **kwargs)
        if os.path.basename(os.fspath(dst)) == "checkpoint.pth":
            raise _Crash()

    cli = _train_cli()
    with monkeypatch.context() as patch:
        patch.setattr(os, "replace", replace_then_crash)
        with pytest.raises(_Crash):
            cli.main(argv)
    saved = load_checkpoint(out / "checkpoint.pth")
    assert (saved["global_step"], saved["epoch"]) == (2, 1)

    assert cli.main([*argv, "--resume", "auto"]) == 0
    _assert_same_end(out, reference)
