"""One code path for one process or a ``torchrun`` job (:class:`Job`), BatchNorm synchronised across processes,
and the split of a benchmark's sequences over the ranks of a job or ``--shard i/n`` processes (docs/multi_gpu.md)."""

from __future__ import annotations

import datetime
import inspect
import os
import re
from dataclasses import dataclass
from typing import Any, Literal, Optional, Sequence

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.distributed.nn.functional import all_reduce as all_reduce_with_grad
from torch.nn.parallel import DistributedDataParallel

from hvc.config.checks import check_device_name
from hvc.errors import DeviceError, UsageError


def resolve_device(name: str, key: str = "runtime.device", local_rank: Optional[int] = None) -> torch.device:
    """The device of this process for a setting ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``,
    checked to exist (a DeviceError names ``key``); under torchrun (``local_rank`` given) CUDA is its local rank's."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    check_device_name(key, name)
    device = torch.device(name)
    if device.type == "cpu":
        return device
    if not torch.cuda.is_available():
        raise DeviceError(f"{key}: {name} asked for, but no CUDA device is available to torch; use cpu")
    index = local_rank if local_rank is not None else (device.index or 0)
    if index >= torch.cuda.device_count():
        raise DeviceError(f"{key}: {name} asked for, but only {torch.cuda.device_count()} CUDA device(s) exist")
    return torch.device("cuda", index)


@dataclass(frozen=True)
class Job:
    """This process's place in a torchrun job (rank 0 of 1 without torchrun)."""

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
    """Join the environment's torchrun job, if any; backend ``auto``: gloo on CPU, ``cpu:gloo,cuda:nccl`` on CUDA."""
    job = Job(int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")),
              int(os.environ.get("LOCAL_RANK", "0")))
    if job.distributed and not dist.is_initialized():
        dev = job.device(device, key)
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        if backend == "auto":
            backend = "cpu:gloo,cuda:nccl" if dev.type == "cuda" else "gloo"
        # a rank done early waits for the slowest one at test.py's last barrier
        dist.init_process_group(backend=backend, rank=job.rank, world_size=job.world_size,
                                timeout=datetime.timedelta(hours=24))
    return job


def leave_job() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def balanced_shards(sizes: Sequence[int], n: int) -> list[list[int]]:
    """Indices of ``sizes`` in ``n`` shards of about equal totals (greedy longest-first, deterministic), each sorted."""
    loads = [0] * n
    shards: list[list[int]] = [[] for _ in range(n)]
    for i in sorted(range(len(sizes)), key=lambda i: (-sizes[i], i)):
        target = min(range(n), key=lambda s: (loads[s], s))
        shards[target].append(i)
        loads[target] += sizes[i]
    return [sorted(s) for s in shards]


@dataclass(frozen=True)
class ShardSpec:
    """``--shard i/n``: this process takes shard ``index`` (0-based) of ``count``."""

    index: int
    count: int


def parse_shard(text: str) -> ShardSpec:
    found = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not found or not int(found.group(1)) < int(found.group(2)):
        raise UsageError(f"--shard: expected i/n with 0 <= i < n (e.g. 0/4 ... 3/4), got {text!r}")
    return ShardSpec(int(found.group(1)), int(found.group(2)))


def shard_of(names: Sequence[str], sizes: Sequence[int], part: int, count: int) -> list[str]:
    return [names[i] for i in balanced_shards(sizes, count)[part]]


def all_reduce_sum(value: Tensor) -> Tensor:
    """Sum over processes (the input itself in a single one); its gradient is the sum of all processes' gradients."""
    return all_reduce_with_grad(value) if dist.is_initialized() and dist.get_world_size() > 1 else value


class CrossProcessBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d over the batches of all processes for CPU jobs, as SyncBatchNorm takes CUDA only (docs/design.md);
    ``x: [N, C, H, W] -> [N, C, H, W]``. Per-channel sums, squares and counts are all-reduced in float64 (else less
    exact than nn.BatchNorm2d); the biased variance normalises, the unbiased one goes to the running average."""

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        xd = x.double()
        cells = xd.new_full((x.shape[1],), float(x.shape[0] * x.shape[2] * x.shape[3]))  # per channel
        local = torch.stack([xd.sum(dim=(0, 2, 3)), (xd * xd).sum(dim=(0, 2, 3)), cells])
        total = all_reduce_sum(local)
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
    """Every BatchNorm2d synchronised across processes (CUDA: SyncBatchNorm, CPU: :class:`CrossProcessBatchNorm`)."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if type(model) is nn.BatchNorm2d:
        new = CrossProcessBatchNorm(model.num_features, model.eps, model.momentum, model.affine,
                                    model.track_running_stats)
        new.load_state_dict(model.state_dict())
        new.train(model.training)
        for name, param in new.named_parameters():
            param.requires_grad_(getattr(model, name).requires_grad)
        return new
    for name, child in model.named_children():
        setattr(model, name, convert_sync_batchnorm(child, device))
    return model


def wrap_ddp(model: nn.Module, device: torch.device, sync_buffers: bool) -> nn.Module:
    """DDP around ``model``; ``sync_buffers``: rank 0's buffers (BatchNorm statistics) broadcast before each forward."""
    new = "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters  # torch's later name
    option = "forward_sync_buffers" if new else "broadcast_buffers"
    devices = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=devices, **{option: sync_buffers})
