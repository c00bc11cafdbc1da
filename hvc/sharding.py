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

import re
from dataclasses import dataclass
from typing import Sequence

from hvc.errors import UsageError


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


def shard_of(names: Sequence[str], sizes: Sequence[int], part: int, count: int) -> list[str]:
    """The names of shard ``part`` of ``count`` (see :func:`balanced_shards`)."""
    return [names[i] for i in balanced_shards(sizes, count)[part]]

