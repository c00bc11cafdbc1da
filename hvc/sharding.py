"""Splitting the sequences of a benchmark over processes, GPUs or machines.

Two ways, one assignment rule (:func:`balanced_shards`):

* ``torchrun --nproc_per_node N test.py ...``: one job; rank 0 prepares the output folder,
  every rank segments its share, rank 0 waits for all of them and writes the summary (and
  the YouTube-VOS zip). Control messages go over gloo (CPU tensors), also on GPU jobs,
  where the process group is ``cpu:gloo,cuda:nccl``.
* ``test.py --shard i/n`` (e.g. a SLURM job array): independent processes, no
  torch.distributed; then one ``test.py --merge-shards`` writes the summary / zip.
"""

from __future__ import annotations

import datetime
import os
import re
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import torch
import torch.distributed as dist

from hvc.distributed import resolve_device
from hvc.errors import UsageError

# A rank that finishes early waits for the slowest one at the final barrier.
JOB_TIMEOUT = datetime.timedelta(hours=24)


def balanced_shards(sizes: Sequence[int], n: int) -> list[list[int]]:
    """Indices of ``sizes`` split into ``n`` shards of about equal total size.

    Greedy longest-first: items by decreasing size (ties: lower index first), each to the
    shard with the least total so far (ties: lower shard). Deterministic, so independent
    processes compute the same split. Each shard lists its indices in increasing order.
    """
    if n < 1:
        raise ValueError(f"need at least one shard, got {n}")
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

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> ShardSpec:
    found = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not found or not int(found.group(1)) < int(found.group(2)):
        raise UsageError(f"--shard: expected i/n with 0 <= i < n (e.g. 0/4 ... 3/4), got {text!r}")
    return ShardSpec(int(found.group(1)), int(found.group(2)))


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

    def device(self, name: str) -> torch.device:
        """The device of this process (hvc.distributed.resolve_device): under torchrun, ``cuda``
        means ``cuda:LOCAL_RANK``."""
        return resolve_device(name, "run.device", self.local_rank if self.distributed else None)

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


def join_job(device_name: str) -> Job:
    """Join the torchrun job described by the environment (a single process without one)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    job = Job(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))
    if job.distributed and not dist.is_initialized():
        device = job.device(device_name)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        backend = "cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=job.rank, world_size=job.world_size, timeout=JOB_TIMEOUT)
    return job


def leave_job() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def shard_of(names: Sequence[str], sizes: Sequence[int], part: int, count: int) -> list[str]:
    """The names of shard ``part`` of ``count`` (see :func:`balanced_shards`)."""
    return [names[i] for i in balanced_shards(sizes, count)[part]]


def job_shard(job: Job, names: Sequence[str], sizes: Sequence[int], spec: Optional[ShardSpec]) -> list[str]:
    """Names this process segments: its ``--shard``, its torchrun rank's share, or all."""
    if spec is not None:
        return shard_of(names, sizes, spec.index, spec.count)
    if job.distributed:
        return shard_of(names, sizes, job.rank, job.world_size)
    return list(names)
