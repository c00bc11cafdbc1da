"""The one device resolver (hvc.distributed.resolve_device) of training, test.py and hvc.segment.

CUDA's presence is patched, so every case runs the same on a machine with or without a GPU."""

from __future__ import annotations

import pytest
import torch

from hvc.config import load_config
from hvc.config.inference import TestConfig
from hvc.distributed import Job, resolve_device
from hvc.errors import DeviceError


@pytest.fixture
def gpus(monkeypatch):
    """``gpus(n)``: pretend this machine has n CUDA devices (0: none)."""
    def pretend(n: int) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n)
    return pretend


@pytest.mark.parametrize("name, local_rank, count, expected", [
    ("cpu", None, 2, "cpu"),
    ("auto", None, 0, "cpu"),
    ("auto", None, 1, "cuda:0"),
    ("cuda", None, 2, "cuda:0"),
    ("cuda:1", None, 2, "cuda:1"),
    ("cuda", 1, 2, "cuda:1"),  # under torchrun: cuda:LOCAL_RANK
    ("cuda:0", 1, 2, "cuda:1"),
])
def test_devices(gpus, name, local_rank, count, expected):
    gpus(count)
    assert resolve_device(name, "run.device", local_rank) == torch.device(expected)


@pytest.mark.parametrize("name, count, message", [
    ("gpu0", 2, r"^run\.device: 'gpu0' is not a device; use cpu, cuda or cuda:N$"),
    ("cuda:x", 2, r"^run\.device: 'cuda:x' is not a device"),
    ("cuda", 0, r"^run\.device: cuda asked for, but no CUDA device is available"),
    ("cuda:2", 2, r"^run\.device: cuda:2 asked for, but only 2 CUDA device\(s\) exist$"),
])
def test_bad_devices_name_the_key(gpus, name, count, message):
    gpus(count)
    with pytest.raises(DeviceError, match=message):
        resolve_device(name, "run.device")


def test_test_py_and_training_use_it(gpus):
    gpus(0)
    with pytest.raises(DeviceError, match=r"^run\.device: cuda asked for"):
        Job(rank=1, world_size=2, local_rank=1).device("cuda")
    with pytest.raises(DeviceError, match=r"^runtime\.device: cuda asked for, but no CUDA device"):
        resolve_device("cuda")
    with pytest.raises(DeviceError, match=r"^run\.device: 'tpu' is not a device"):  # at config load, no torch
        load_config(TestConfig, None, ["run.device=tpu"])
