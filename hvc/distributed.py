"""One code path for one process or a ``torchrun`` job: the job (:class:`Job`: process-group
setup, the device of each process, rank-0 helpers) and BatchNorm synchronised across processes.

A plain ``python train.py`` is a job of one process (no process group is created). Under
``torchrun --nproc_per_node N`` the environment variables RANK / WORLD_SIZE / LOCAL_RANK
describe the job and each process joins the default group.
"""

from __future__ import annotations

import datetime
import inspect
import os
from dataclasses import dataclass
from typing import Any, Literal, Optional

import torch
import torch.distributed as dist
from torch import Tensor, nn

from hvc.config.checks import check_device_name
from hvc.errors import DeviceError


def resolve_device(name: str, key: str = "runtime.device", local_rank: Optional[int] = None) -> torch.device:
    """The device of this process for a device setting, checked to exist (the one resolver of
    training, test.py and hvc.segment): ``auto`` (CUDA when available, else the CPU), ``cpu``,
    ``cuda`` or ``cuda:N``. Under torchrun (``local_rank`` given) CUDA means ``cuda:LOCAL_RANK``.
    A DeviceError names ``key``."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    check_device_name(key, name)
    device = torch.device(name)
    if device.type == "cpu":
        return device
    if not torch.cuda.is_available():
        raise DeviceError(f"{key}: {name} asked for, but no CUDA device is available (CUDA not available "
                          f"to torch); use cpu")
    index = local_rank if local_rank is not None else (device.index or 0)
    if index >= torch.cuda.device_count():
        raise DeviceError(f"{key}: {name} asked for, but only {torch.cuda.device_count()} CUDA device(s) exist")
    return torch.device("cuda", index)


# A rank that finishes early waits for the slowest one at a barrier (test.py's last one).
JOB_TIMEOUT = datetime.timedelta(hours=24)


@dataclass(frozen=True)
class Job:
    """This process's place in a torchrun job (rank 0 of 1 without torchrun): training and test.py."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def describe(self) -> str:
        return f"rank {self.rank}/{self.world_size}" if self.distributed else "single"

    def device(self, name: str, key: str = "run.device") -> torch.device:
        """The device of this process (:func:`resolve_device`): under torchrun, ``cuda`` means
        ``cuda:LOCAL_RANK``."""
        return resolve_device(name, key, self.local_rank if self.distributed else None)

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.distributed:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def max_over_ranks(self, value: int) -> int:
        """The largest ``value`` of all ranks; also a barrier."""
        if not self.distributed:
            return value
        t = torch.tensor([value], dtype=torch.int64)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return int(t.item())


def join_job(device: str, key: str = "run.device", backend: Literal["auto", "nccl", "gloo"] = "auto") -> Job:
    """Join the torchrun job described by the environment (a single process without one: no
    process group). ``auto``: gloo on CPU; on CUDA ``cpu:gloo,cuda:nccl``, so that control
    messages (CPU tensors) go over gloo and the rest over NCCL."""
    job = Job(int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")),
              int(os.environ.get("LOCAL_RANK", "0")))
    if job.distributed and not dist.is_initialized():
        dev = job.device(device, key)
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        if backend == "auto":
            backend = "cpu:gloo,cuda:nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=job.rank, world_size=job.world_size, timeout=JOB_TIMEOUT)
    return job


def leave_job() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(value: Tensor) -> Tensor:
    """Sum over processes (returns the input unchanged in a single process)."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        value = value.clone()
        dist.all_reduce(value)
    return value


class _AllReduceSum(torch.autograd.Function):
    """Sum over processes; the gradient of a sum reaching every process is the sum of the
    gradients of all processes."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        return all_reduce_sum(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        return all_reduce_sum(grad.contiguous())


class CrossProcessBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are taken over the batches of all processes.

    For CPU / gloo jobs, where ``torch.nn.SyncBatchNorm`` refuses to run. Per-channel sums,
    sums of squares and counts are all-reduced with autograd, so values and gradients are
    those of BatchNorm over the concatenated global batch. The sums are accumulated in
    float64 (sum-of-squares variance is otherwise less exact than nn.BatchNorm2d's).
    Running statistics follow nn.BatchNorm2d: biased variance to normalise, unbiased in the
    running average. In eval mode, or in a single process, it is a plain BatchNorm2d.

    ``x: [N, C, H, W] -> [N, C, H, W]``
    """

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        if self.momentum is None:
            raise ValueError("CrossProcessBatchNorm needs a fixed momentum (cumulative averaging is unsupported)")
        xd = x.double()
        local = torch.stack([
            xd.sum(dim=(0, 2, 3)),
            (xd * xd).sum(dim=(0, 2, 3)),
            xd.new_full((x.shape[1],), float(x.shape[0] * x.shape[2] * x.shape[3])),
        ])
        total = _AllReduceSum.apply(local)
        count = total[2, 0]
        mean = total[0] / count
        var = (total[1] / count - mean * mean).clamp_min(0.0)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                unbiased = (var * (count / (count - 1).clamp_min(1.0))).to(self.running_var.dtype)
                self.running_mean.mul_(1 - self.momentum).add_(mean.to(self.running_mean.dtype), alpha=self.momentum)
                self.running_var.mul_(1 - self.momentum).add_(unbiased, alpha=self.momentum)
        shape = (1, -1, 1, 1)
        scale = torch.rsqrt(var + self.eps).float()
        y = (x.float() - mean.float().view(shape)) * scale.view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def convert_sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """Make every BatchNorm2d synchronise its statistics across processes.

    CUDA: ``torch.nn.SyncBatchNorm``; CPU: :class:`CrossProcessBatchNorm`. Parameters and
    buffers are kept (same state-dict keys, so checkpoints are unchanged).
    """
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return _swap_batchnorm(model)


def wrap_ddp(model: nn.Module, device: torch.device, sync_buffers: bool) -> nn.Module:
    """DistributedDataParallel around ``model``; ``sync_buffers`` broadcasts rank 0's buffers
    (BatchNorm running statistics) before every forward."""
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [device.index] if device.type == "cuda" else None
    if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters:
        return DistributedDataParallel(model, device_ids=device_ids, forward_sync_buffers=sync_buffers)
    return DistributedDataParallel(model, device_ids=device_ids, broadcast_buffers=sync_buffers)


def _swap_batchnorm(module: nn.Module) -> nn.Module:
    if type(module) is nn.BatchNorm2d:
        new = CrossProcessBatchNorm(module.num_features, module.eps, module.momentum,
                                    module.affine, module.track_running_stats)
        new.load_state_dict(module.state_dict())
        new.train(module.training)
        if module.affine:
            new.weight.requires_grad_(module.weight.requires_grad)
            new.bias.requires_grad_(module.bias.requires_grad)
        return new
    for name, child in module.named_children():
        setattr(module, name, _swap_batchnorm(child))
    return module
