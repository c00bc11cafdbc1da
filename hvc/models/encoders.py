"""Test-time encoders (layer3 output, stride 8) and the loaders of their checkpoints, whatever the file's layout
(docs/checkpoints.md, "What the test encoder accepts"); every problem is a :class:`hvc.checkpoint.CheckpointError`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Optional

import torch
from torch import Tensor

from hvc.checkpoint import CheckpointError, read_checkpoint_file, tensor_mismatches
from hvc.cli import project_folder
from hvc.models.resnet import ResNet

ARCH = {"hvc": "resnet18", "mocov1": "resnet50", "imagenet18": "resnet18", "imagenet50": "resnet50",
        "random18": "resnet18"}
# Each model's default file in the checkpoint folder, for every entry point; hvc's is the committed one, so that
# --model hvc runs on a fresh clone (docs/checkpoints.md, "Which file --model M loads").
DEFAULT_CHECKPOINT = {"hvc": "hvc_bsds_cpu.pth", "mocov1": "moco_v1_200ep_pretrain.pth.tar",
                      "imagenet18": "resnet18-f37072fd.pth", "imagenet50": "resnet50-0676ba61.pth"}
DOWNLOAD_ITEM = {"hvc": "hvc_coco", "mocov1": "moco_v1"}  # model -> the hvc.download item of its paper file
_UNUSED_PREFIXES = ("fc.", "layer4.")
_SHOWN_KEYS = 8  # keys listed per category in error messages
# checkpoint dicts: (key of the encoder's entries, their prefix, what the file is)
_LAYOUTS = (("state_dict", "module.encoder_q.", "a MoCo v1 file"),
            ("model", "online_encoder.", "an HVC training checkpoint"))


def read_encoder_state(path: str | os.PathLike) -> dict[str, Tensor]:
    """Encoder weights from a checkpoint file, whatever its layout: float32, without ``fc.*`` / ``layer4.*``."""
    path = os.fspath(path)
    state = read_checkpoint_file(path)
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path}: expected a state dict or a checkpoint dict, got {type(state).__name__}")
    for key, prefix, what in _LAYOUTS:
        if key in state:
            state = {k[len(prefix):]: v for k, v in state[key].items() if k.startswith(prefix)}
            if not state:
                raise CheckpointError(f"{path}: {key!r} has no '{prefix}*' keys (not {what})")
            break
    bad = [k for k, v in state.items() if not isinstance(v, Tensor)]
    if bad:
        raise CheckpointError(f"{path}: not a state dict (non-tensor entries {bad[:_SHOWN_KEYS]})")
    return {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()
            if not k.startswith(_UNUSED_PREFIXES)}


def _listing(keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOWN_KEYS])
    return shown + (f" ... (+{len(keys) - _SHOWN_KEYS} more)" if len(keys) > _SHOWN_KEYS else "")


def load_state_strict(net: ResNet, state: Mapping[str, Tensor], path: str) -> None:
    """``load_state_dict(strict=True)`` with an error naming the file and every mismatch."""
    expected = net.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = tensor_mismatches(expected, state)  # shapes, and dtypes that cannot be weights (int64, bool)
    if missing or unexpected or wrong:
        found = (("missing keys", missing), ("unexpected keys", unexpected), ("shape or dtype mismatches", wrong))
        raise CheckpointError("; ".join([f"{path} does not fit a {net.arch} test encoder (wrong architecture?)"]
                                        + [f"{what} ({len(keys)}): {_listing(keys)}" for what, keys in found if keys]))
    net.load_state_dict(state, strict=True)


def checkpoint_path(name: str, checkpoint: Optional[str]) -> str:
    """The file to load for ``name``: ``checkpoint``, else the model's default file in $HVC_CHECKPOINT_DIR, else in
    ./checkpoints if it exists or the package is not run from a checkout, else in the checkout's checkpoints/."""
    if checkpoint is not None:
        return checkpoint
    if name not in DEFAULT_CHECKPOINT:
        raise CheckpointError(f"model.name: model {name!r} takes no checkpoint")
    folder = os.environ.get("HVC_CHECKPOINT_DIR")
    return str((Path(folder).resolve() if folder else project_folder("checkpoints")) / DEFAULT_CHECKPOINT[name])


def load_encoder(name: str, checkpoint: Optional[str] = None, *, seed: int = 0, bn_dummy_forward_pass: bool = False,
                 device: torch.device | str = "cpu") -> ResNet:
    """The eval-mode test encoder of model ``name`` on ``device``: ``forward(frames: [N, 3, H, W]) -> [N, C, ceil(H/8),
    ceil(W/8)]``, C = 256 (ResNet-18) or 1024 (ResNet-50). ``bn_dummy_forward_pass``: the official set-up pass, one
    train-mode forward of a 256x256 zero image (BatchNorm running stats become 0.9 * stored + 0.1 * batch stats)."""
    if name not in ARCH:
        raise CheckpointError(f"model.name: unknown model {name!r}; choose one of {sorted(ARCH)}")
    if name == "random18":
        with torch.random.fork_rng(devices=[]):  # seeded without touching the caller's RNG
            torch.manual_seed(seed)
            net = ResNet(ARCH[name], with_layer4=False)
    else:
        net = ResNet(ARCH[name], with_layer4=False)
        path = checkpoint_path(name, checkpoint)
        if not os.path.isfile(path):
            get = f"`python -m hvc.download {DOWNLOAD_ITEM[name]}`" if name in DOWNLOAD_ITEM else "put the file there"
            raise CheckpointError(f"{path}: checkpoint for --model {name} not found; {get} (checkpoints/README.md), "
                                  f"set $HVC_CHECKPOINT_DIR, pass --checkpoint PATH, or run --model hvc --checkpoint "
                                  f"checkpoints/{DEFAULT_CHECKPOINT['hvc']} (committed) or --model random18")
        load_state_strict(net, read_encoder_state(path), path)
    net.to(device)
    if bn_dummy_forward_pass:
        with torch.no_grad():
            net.train()(torch.zeros(1, 3, 256, 256, device=device))
    return net.eval()
