"""Training checkpoints: the official layout plus what an exact resume needs; the paper's released training
checkpoints load too. Keys, resume and the reading rules: docs/checkpoints.md."""

from __future__ import annotations

import argparse
import logging
import os
import random
import re
from typing import Any, Mapping

import numpy as np
import torch
from torch import Tensor, nn

from hvc.errors import InputError
from hvc.fileio import atomic_torch_save
from hvc.finite import describe, non_finite_tensors

FORMAT_VERSION = 1
CHECKPOINT_NAME = "checkpoint.pth"
_REQUIRED = ("model", "optimizer", "epoch")

log = logging.getLogger(__name__)


class CheckpointError(InputError, ValueError):
    """A checkpoint file (named in the message) is missing, unreadable, or not what it is loaded as: the one
    error type of every checkpoint reader (this module, :mod:`hvc.models.encoders`, :mod:`hvc.export`)."""


def read_checkpoint_file(path: str | os.PathLike) -> Any:
    """Unpickle a checkpoint file onto the CPU, the one ``torch.load`` of the package: only plain data plus
    ``argparse.Namespace`` (the paper's ``args``); a file that would run code, missing, unreadable: CheckpointError."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - the unpickler raises many types on garbage input
        text, problem = str(exc), f"{type(exc).__name__}: {exc}"
        # a refused global (a pickle that would import or run code) is named instead of torch's long advice text
        refused = re.search(r"unsupported GLOBAL (\S+) ", text) or re.search(r"Unsupported global: GLOBAL (\S+)", text)
        if refused:
            problem = (f"refused to unpickle {refused.group(1)}: the file would import or run code, "
                       "only plain data is loaded")
        raise CheckpointError(f"{path}: not a readable checkpoint ({problem})") from None


def rng_state() -> dict[str, Any]:
    """RNG states of torch (CPU and CUDA), numpy and python, storable with weights_only."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    numpy_state = {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                   "has_gauss": int(has_gauss), "gauss": float(gauss)}
    state = {"torch": torch.get_rng_state(), "numpy": numpy_state, "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    random.setstate(_as_tuples(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuples(value: Any) -> Any:
    # random.setstate wants tuples; some pickle round trips turn them into lists
    return tuple(_as_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def save_checkpoint(path: str | os.PathLike, *, model: nn.Module, optimizer: torch.optim.Optimizer,
                    scaler: torch.amp.GradScaler, epoch: int, global_step: int, config: dict) -> None:
    """Write the checkpoint atomically (a crash mid-write keeps the previous file)."""
    atomic_torch_save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
                       "args": config, "global_step": global_step, "scaler": scaler.state_dict(),
                       "rng": rng_state(), "format_version": FORMAT_VERSION}, path)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a training checkpoint onto the CPU (:func:`read_checkpoint_file`), checking its layout."""
    path = os.fspath(path)
    ckpt = read_checkpoint_file(path)
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in _REQUIRED):
        found = sorted(ckpt) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(f"{path}: not a training checkpoint; expected keys {list(_REQUIRED)}, found {found}")
    return ckpt


def _kind(t: Tensor) -> str:
    return "bool" if t.dtype == torch.bool else "float" if t.is_floating_point() or t.is_complex() else "int"


def tensor_mismatches(expected: Mapping[str, Tensor], given: Mapping[str, Any]) -> list[str]:
    """``"<name> <given> vs <expected>"`` for each tensor of ``given`` whose kind of dtype (float,
    integer, bool) or shape differs from ``expected``'s: weights cast to int64 or bool would
    otherwise be copied in silently (and segment nothing)."""
    wrong = []
    for name, want in expected.items():
        got = given.get(name)
        if not isinstance(got, Tensor):
            continue
        if _kind(got) != _kind(want):
            wrong.append(f"{name} dtype {str(got.dtype).replace('torch.', '')} vs "
                         f"{str(want.dtype).replace('torch.', '')}")
        elif got.shape != want.shape:
            wrong.append(f"{name} shape {tuple(got.shape)} vs {tuple(want.shape)}")
    return wrong


def restore(ckpt: dict[str, Any], *, model: nn.Module, optimizer: torch.optim.Optimizer,
            scaler: torch.amp.GradScaler, steps_per_epoch: int, source: str) -> int:
    """Load model / optimizer / scaler / RNG states from ``ckpt``; return the global step. A checkpoint holding
    NaN or inf (weights or optimizer state) is refused: training would continue from garbage."""
    bad = non_finite_tensors({"model": ckpt["model"], "optimizer": ckpt["optimizer"]})
    if bad:
        raise CheckpointError(f"{source}: not resuming from {describe(bad)}")
    wrong = tensor_mismatches(model.state_dict(), ckpt["model"]) if isinstance(ckpt["model"], Mapping) else []
    if wrong:
        more = f" (+{len(wrong) - 1} more)" if len(wrong) > 1 else ""
        raise CheckpointError(f"{source}: model weights do not match this model: {wrong[0]}{more}")
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise CheckpointError(f"{source}: model weights do not match this model ({exc})") from None
    try:
        optimizer.load_state_dict(ckpt["optimizer"])
    except (ValueError, KeyError, TypeError, IndexError, RuntimeError) as exc:
        raise CheckpointError(f"{source}: its optimizer state does not fit this model's optimizer "
                              f"({type(exc).__name__}: {exc})") from None
    if ckpt.get("scaler"):
        scaler.load_state_dict(ckpt["scaler"])
    if "rng" in ckpt:
        set_rng_state(ckpt["rng"])
    if "global_step" in ckpt:
        return int(ckpt["global_step"])
    step = int(ckpt["epoch"]) * steps_per_epoch
    log.info(f"{source} has no global_step (official checkpoint): using epoch {ckpt['epoch']} x "
             f"{steps_per_epoch} steps per epoch = step {step}")
    return step

