"""A run killed with SIGKILL and resumed with --resume auto ends with the same weights as
an uninterrupted run (CPU, float32)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import torch

from engine_support import REPO, read_log, tiny_config, tiny_image_folder, tiny_overrides
from hvc.checkpoint import load_checkpoint
from hvc.engine import train

TOTAL = 4  # 2 epochs x 2 steps


def _kill_after_first_checkpoint(out, images) -> int:
    """Start train.py, SIGKILL it once checkpoint.pth exists; return the saved global step."""
    cmd = [sys.executable, "train.py", "--config", "configs/train_img.yaml",
           *tiny_overrides(out, images, "output.save_every_steps=1")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ckpt = out / "checkpoint.pth"
    deadline = time.monotonic() + 120
    while not ckpt.exists():
        if proc.poll() is not None:
            raise AssertionError(f"train.py ended before its first checkpoint: {proc.stderr.read().decode()}")
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    return load_checkpoint(ckpt)["global_step"]


def test_resume_after_sigkill_matches_an_uninterrupted_run(static_root, tmp_path):
    images = tiny_image_folder(static_root, tmp_path / "imgs")
    reference = train(tiny_config(tmp_path / "ref", images))
    assert reference.global_step == TOTAL

    out = tmp_path / "killed"
    killed_at = _kill_after_first_checkpoint(out, images)
    assert 0 < killed_at < TOTAL, f"the run was killed at step {killed_at}, not in the middle"

    resumed = train(tiny_config(out, images, "output.save_every_steps=1", "resume=auto"))
    assert resumed.global_step == TOTAL
    assert resumed.losses == reference.losses[killed_at:]

    expected = load_checkpoint(tmp_path / "ref" / "checkpoint.pth")
    got = load_checkpoint(out / "checkpoint.pth")
    assert got["global_step"] == expected["global_step"] == TOTAL
    for key, value in expected["model"].items():
        assert torch.equal(got["model"][key], value), key
    for a, b in zip(expected["optimizer"]["state"].values(), got["optimizer"]["state"].values()):
        assert all(torch.equal(a[k], b[k]) for k in a)
    # the log continues where the checkpoint left off (steps after the kill may repeat)
    steps = [r["step"] for r in read_log(out) if r["event"] == "step"]
    assert steps[-(TOTAL - killed_at):] == list(range(killed_at + 1, TOTAL + 1))
