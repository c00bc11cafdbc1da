"""DDP on CPU (gloo, 2 processes, batch 2 each) against one process with batch 4: the same
first-step loss and the same weights and BatchNorm statistics after the step, with
BatchNorm synchronised across processes; without synchronisation they differ."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from engine_support import read_log, tiny_config, tiny_image_folder
from hvc.checkpoint import load_checkpoint
from hvc.distributed import init_distributed
from hvc.engine import train


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, port: int, images, runs) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2",
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)  # two processes share the two cores
    env = init_distributed("cpu", "gloo")
    try:
        for out, sync in runs:
            train(tiny_config(out, images, "optim.max_steps=1", "runtime.flush_denormal=false", f"dist.sync_bn={sync}"), env)
    finally:
        dist.destroy_process_group()


def _first_loss(out) -> float:
    return next(r["loss"] for r in read_log(out) if r["event"] == "step")


def test_two_processes_with_half_batches_match_one_process(static_root, tmp_path):
    images = tiny_image_folder(static_root, tmp_path / "imgs")
    single = train(tiny_config(tmp_path / "single", images, "optim.max_steps=1", "runtime.flush_denormal=false"))
    runs = [(tmp_path / "ddp_sync", "true"), (tmp_path / "ddp_local", "false")]
    mp.spawn(_worker, args=(_free_port(), images, runs), nprocs=2, join=True)

    # float32 reductions in another order (1 vs 2 threads alone move this loss by ~5e-6);
    # without synchronised BatchNorm the loss differs by ~0.3
    assert _first_loss(tmp_path / "ddp_sync") == pytest.approx(single.losses[0], abs=2e-5)
    # Compare the gradients (Adam's first moment after one step is 0.1 * grad) and the
    # BatchNorm statistics: Adam's first update is lr * sign(grad), which flips on float
    # noise where the true gradient is 0 (conv biases before a BatchNorm), so the updated
    # weights themselves are not a stable check.
    single_ckpt = load_checkpoint(tmp_path / "single" / "checkpoint.pth")
    synced = load_checkpoint(tmp_path / "ddp_sync" / "checkpoint.pth")
    local = load_checkpoint(tmp_path / "ddp_local" / "checkpoint.pth")
    n_far = 0
    for i, state in single_ckpt["optimizer"]["state"].items():
        grad = state["exp_avg"]
        tol = 1e-3 * grad.abs().max().item() + 1e-6
        torch.testing.assert_close(synced["optimizer"]["state"][i]["exp_avg"], grad, rtol=0, atol=tol)
        n_far += (local["optimizer"]["state"][i]["exp_avg"] - grad).abs().max().item() > 10 * tol
    for key, value in single_ckpt["model"].items():
        if "running" in key or "num_batches" in key:
            torch.testing.assert_close(synced["model"][key], value, rtol=1e-5, atol=1e-6, msg=key)

    # per-process BatchNorm statistics are not the global batch's: the checks above can fail
    assert _first_loss(tmp_path / "ddp_local") != pytest.approx(single.losses[0], abs=1e-2)
    assert n_far > len(single_ckpt["optimizer"]["state"]) // 2
    key = "online_encoder.bn1.running_var"
    assert not torch.allclose(local["model"][key], single_ckpt["model"][key], rtol=1e-5, atol=1e-6)
