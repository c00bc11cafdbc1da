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
from hvc.distributed import convert_sync_batchnorm, init_distributed
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
            train(tiny_config(out, images, "optim.max_steps=1", f"dist.sync_bn={sync}"), env)
    finally:
        dist.destroy_process_group()


def _first_loss(out) -> float:
    return next(r["loss"] for r in read_log(out) if r["event"] == "step")


def test_two_processes_with_half_batches_match_one_process(static_root, tmp_path):
    images = tiny_image_folder(static_root, tmp_path / "imgs")
    single = train(tiny_config(tmp_path / "single", images, "optim.max_steps=1"))
    runs = [(tmp_path / "ddp_sync", "true"), (tmp_path / "ddp_local", "false")]
    mp.spawn(_worker, args=(_free_port(), images, runs), nprocs=2, join=True)

    # float32 reductions in another order (1 vs 2 threads alone move this loss by ~5e-6);
    # without synchronised BatchNorm the loss differs by ~0.3
    assert _first_loss(tmp_path / "ddp_sync") == pytest.approx(single.losses[0], abs=2e-5)
    # Compare the gradients (Adam's first moment after one step is 0.1 * grad) and the
    # BatchNorm statistics, not the updated weights: Adam's first update is lr * sign(grad),
    # which flips on float noise where the true gradient is 0 (conv biases before a
    # BatchNorm). Float noise also flips the odd LeakyReLU input that lies within ~1e-7 of
    # its kink, so the gradients agree to ~0.3 % (L2), against ~100 % without synchronised
    # BatchNorm.
    single_ckpt = load_checkpoint(tmp_path / "single" / "checkpoint.pth")
    synced = load_checkpoint(tmp_path / "ddp_sync" / "checkpoint.pth")
    local = load_checkpoint(tmp_path / "ddp_local" / "checkpoint.pth")

    def grads(ckpt) -> torch.Tensor:
        return torch.cat([state["exp_avg"].flatten() for state in ckpt["optimizer"]["state"].values()])

    reference = grads(single_ckpt)
    assert (grads(synced) - reference).norm() < 1e-2 * reference.norm()
    for key, value in single_ckpt["model"].items():
        if "running" in key or "num_batches" in key:
            torch.testing.assert_close(synced["model"][key], value, rtol=1e-5, atol=1e-5, msg=key)

    # per-process BatchNorm statistics are not the global batch's: the checks above can fail
    assert _first_loss(tmp_path / "ddp_local") != pytest.approx(single.losses[0], abs=1e-2)
    assert (grads(local) - reference).norm() > 0.5 * reference.norm()
    key = "online_encoder.bn1.running_var"
    assert not torch.allclose(local["model"][key], single_ckpt["model"][key], rtol=1e-5, atol=1e-6)


def _bn_worker(rank: int, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2")
    torch.set_num_threads(1)
    init_distributed("cpu", "gloo")
    try:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(4, 8, 5, 5, generator=g) * 3 + 1
        w = torch.randn(4, 8, 5, 5, generator=g)
        ref = torch.nn.BatchNorm2d(8)
        with torch.no_grad():
            ref.weight.uniform_(0.5, 1.5, generator=g)
            ref.bias.uniform_(-1, 1, generator=g)
        synced = convert_sync_batchnorm(torch.nn.Sequential(ref), torch.device("cpu"))[0]
        assert type(synced).__name__ == "CrossProcessBatchNorm"

        def run(bn, x, w, n):  # a mean over the samples, like the training loss
            x = x.clone().requires_grad_(True)
            (torch.nn.functional.leaky_relu(bn(x), 0.01) * w).sum().div(n).backward()
            return x.grad

        # this process's half of the batch vs the whole batch in a plain BatchNorm2d
        grad_local = run(synced, x[rank::2], w[rank::2], 2)
        grad_full = run(ref, x, w, 4)
        for p in synced.parameters():  # what DDP does with parameter gradients
            dist.all_reduce(p.grad)
            p.grad /= 2
        # the local loss averages 2 of the 4 samples: its input gradient is twice the global one
        torch.testing.assert_close(grad_local / 2, grad_full[rank::2], rtol=1e-5, atol=1e-6)
        for a, b in [(synced.weight.grad, ref.weight.grad), (synced.bias.grad, ref.bias.grad),
                     (synced.running_mean, ref.running_mean), (synced.running_var, ref.running_var)]:
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        assert synced.num_batches_tracked.item() == ref.num_batches_tracked.item() == 1
    finally:
        dist.destroy_process_group()


def test_cross_process_batchnorm_equals_batchnorm_over_the_global_batch():
    mp.spawn(_bn_worker, args=(_free_port(),), nprocs=2, join=True)
