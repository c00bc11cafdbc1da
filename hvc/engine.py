"""The training loop: one code path for CPU, one GPU and ``torchrun`` jobs.

``train(cfg)`` builds the data, the HVC model and Adam, resumes when asked, and runs
``optim.epochs`` passes (or ``optim.max_steps`` steps) of the hybrid-loss objective:

* the EMA momentum of every step is ``momentum_at(global_step, total_steps, m0)`` with
  ``total_steps = steps_per_epoch * epochs``, computed here from the saved global step, so
  the schedule survives a resume;
* samples are drawn by a seeded DistributedSampler (also in one process), so a job of N
  processes with batch B/N each sees the same global batches as one process with batch B,
  and a resumed run skips exactly the batches its interrupted epoch had already done;
* rank 0 writes ``config.yaml``, ``log.jsonl`` (one JSON object a line) and
  ``checkpoint.pth`` (atomically, every ``output.save_every_steps`` steps, at each epoch
  end and at the end);
* a non-finite loss stops the job before the optimiser step, leaving the last good
  checkpoint on disk; a checkpoint is written only if every tensor in it is finite, so the
  one on disk is always a good one;
* an epoch in which no image could be read stops the job (nothing is saved).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Sampler
from torch.utils.data.distributed import DistributedSampler
from tqdm import tqdm

from hvc import checkpoint as ckpt_io
from hvc.config.core import ConfigError, dump_yaml, to_dict
from hvc.config.training import DataConfig, ModelConfig, OptimConfig, RuntimeConfig, TrainConfig, validate
from hvc.data.pairs import PairDataset, collate_pairs
from hvc.data.static import StaticImagePairs
from hvc.data.video import VideoFramePairs
from hvc.distributed import DistEnv, all_reduce_sum, convert_sync_batchnorm, init_distributed, wrap_ddp
from hvc.errors import InputError, NonFiniteError
from hvc.fileio import atomic_write_text, writable_dir
from hvc.finite import describe, non_finite_tensors
from hvc.models.hvc import HVC, momentum_at

log = logging.getLogger("hvc.train")


class NonFiniteLossError(NonFiniteError, RuntimeError):
    """The loss became NaN or infinite; training stopped without saving."""


def check_finite_before_saving(model: nn.Module, optimizer: torch.optim.Optimizer, path: Path, step: int,
                               kept: str) -> None:
    """Refuse to save (NonFiniteError) unless every weight and optimizer tensor is finite.

    Runs on every process (DDP keeps the states identical), so all of them stop together.
    """
    bad = non_finite_tensors({"model": model.state_dict(), "optimizer": optimizer.state_dict()["state"]})
    if bad:
        raise NonFiniteError(f"{path}: not written at step {step}, training produced {describe(bad)}; {kept}")


def check_epoch_trained(epoch_losses: list[float], epoch: int, skipped: int) -> None:
    """An epoch without a single update read no image: stop rather than save untrained weights."""
    if not epoch_losses:
        raise InputError(f"data.roots: no image of epoch {epoch} could be used ({skipped} unreadable or "
                         "degenerate, named in the warnings above); nothing was trained or saved")


@dataclass
class TrainResult:
    global_step: int  # optimiser steps done in total (resumed ones included)
    checkpoint: Optional[Path]  # last checkpoint written (rank 0), None if none was
    losses: list[float]  # loss of every step run by this call (global mean over processes)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def build_model(cfg: ModelConfig) -> HVC:
    return HVC(arch=cfg.arch, proj_hidden_dim=cfg.proj_hidden_dim, proj_dim=cfg.proj_dim,
               pred_hidden_dim=cfg.pred_hidden_dim, pos_radius=cfg.pos_radius,
               init_forward_size=cfg.init_forward_size)


def build_dataset(cfg: DataConfig, seed: int) -> PairDataset:
    """The training pairs; a missing or empty folder is an input error before training starts."""
    common = dict(size=cfg.size, scale=cfg.scale, ratio=cfg.ratio, mean=cfg.mean, std=cfg.std, seed=seed)
    if cfg.kind == "video" and len(cfg.roots) != 1:
        raise ConfigError(f"data.roots: video training takes one JPEGImages folder, got {len(cfg.roots)}")
    try:
        if cfg.kind == "static":
            return StaticImagePairs(cfg.roots, **common)
        return VideoFramePairs(cfg.roots[0], max_gap=cfg.max_gap, **common)
    except ValueError as exc:
        raise InputError(f"data.roots: {exc}") from None


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    # All parameters, as the official code: the target ones never get a gradient, and the
    # optimizer state dict keeps the official layout.
    return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


@contextlib.contextmanager
def flush_denormal(enabled: bool) -> Iterator[None]:
    """Treat denormal floats as zero on the CPU inside the block (torch's default, off, after)."""
    torch.set_flush_denormal(enabled)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def autocast_dtype(runtime: RuntimeConfig, device: torch.device) -> Optional[torch.dtype]:
    """The autocast dtype, or None for float32 (always on CPU)."""
    if not runtime.amp or device.type != "cuda":
        return None
    return torch.float16 if runtime.amp_dtype == "fp16" else torch.bfloat16


def make_scaler(device: torch.device, amp_dtype: Optional[torch.dtype]) -> torch.amp.GradScaler:
    """A GradScaler, enabled only for fp16 (bf16 and float32 need none)."""
    return torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)


def train_step(model: nn.Module, batch: Sequence[Tensor], optimizer: torch.optim.Optimizer,
               scaler: torch.amp.GradScaler, momentum: float, *, device: torch.device,
               amp_dtype: Optional[torch.dtype] = None, channels_last: bool = False) -> float:
    """One optimiser step on ``batch = (view1 [B,3,S,S], view2, coord1 [B,4], coord2 [B,4])``.

    Returns the loss averaged over processes. A non-finite loss raises NonFiniteLossError on
    every process before any weight changes (the all-reduced value is the same everywhere).
    """
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    view1, view2 = (v.to(device, non_blocking=True, memory_format=fmt) for v in batch[:2])
    coord1, coord2 = (c.to(device, non_blocking=True) for c in batch[2:4])
    with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
        loss = model(view1, view2, coord1, coord2, momentum)
    world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
    value = float(all_reduce_sum(loss.detach().float()).item()) / world
    if not math.isfinite(value):
        raise NonFiniteLossError(f"non-finite loss ({value})")
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return value


class _ResumableSampler(Sampler[int]):
    """This process's DistributedSampler indices for an epoch, minus the first ``skip``."""

    def __init__(self, base: DistributedSampler):
        self.base = base
        self.skip = 0

    def __iter__(self) -> Iterator[int]:
        return itertools.islice(iter(self.base), self.skip, None)

    def __len__(self) -> int:
        return len(self.base) - self.skip


class _JsonLog:
    """Append-only JSON-lines log (rank 0); every record carries a wall-clock time."""

    def __init__(self, path: Optional[Path]):
        self.file = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.file = open(path, "a", encoding="utf-8")

    def write(self, **record) -> None:
        if self.file is not None:
            self.file.write(json.dumps({"time": round(time.time(), 3), **record}) + "\n")
            self.file.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def _kept(saved: Optional[Path]) -> str:
    return f"the last good checkpoint is {saved}" if saved else "no checkpoint was written"


def _resume_source(resume: Optional[str], out_dir: Path) -> Optional[Path]:
    if resume is None:
        return None
    if resume == "auto":
        path = out_dir / ckpt_io.CHECKPOINT_NAME
        return path if path.is_file() else None
    return Path(resume)


def train(cfg: TrainConfig, env: Optional[DistEnv] = None) -> TrainResult:
    """Run (or continue) the training described by ``cfg``; see the module docstring."""
    validate(cfg)
    env = env or init_distributed(cfg.runtime.device, cfg.dist.backend)
    device, world = env.device, env.world_size
    if cfg.data.batch_size % world:
        raise ConfigError(f"data.batch_size: {cfg.data.batch_size} does not split over {world} processes")
    per_rank = cfg.data.batch_size // world
    seed_everything(cfg.runtime.seed)

    dataset = build_dataset(cfg.data, cfg.runtime.seed)
    sampler = DistributedSampler(dataset, num_replicas=world, rank=env.rank, shuffle=True,
                                 seed=cfg.runtime.seed, drop_last=True)
    steps_per_epoch = len(sampler) // per_rank
    if steps_per_epoch == 0:
        raise ConfigError(f"data.roots: {len(dataset)} samples, fewer than one batch of {cfg.data.batch_size}")
    if env.is_main:
        writable_dir(cfg.output.dir, "output.dir")  # before any work, not after hours of it
    total_steps = steps_per_epoch * cfg.optim.epochs
    last_step = min(total_steps, cfg.optim.max_steps or total_steps)

    if device.type == "cuda":
        torch.backends.cudnn.benchmark = cfg.runtime.cudnn_benchmark
    model = build_model(cfg.model)
    if env.distributed and cfg.dist.sync_bn:
        model = convert_sync_batchnorm(model, device)
    channels_last = cfg.runtime.channels_last and device.type == "cuda"
    model = model.to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    optimizer = build_optimizer(model, cfg.optim)
    amp_dtype = autocast_dtype(cfg.runtime, device)
    scaler = make_scaler(device, amp_dtype)

    out_dir = Path(cfg.output.dir)
    ckpt_path = out_dir / ckpt_io.CHECKPOINT_NAME
    global_step = 0
    source = _resume_source(cfg.resume, out_dir)
    if source is not None:
        state = ckpt_io.load_checkpoint(source)
        global_step = ckpt_io.restore(state, model=model, optimizer=optimizer, scaler=scaler,
                                      steps_per_epoch=steps_per_epoch, source=str(source),
                                      info=log.info if env.is_main else (lambda _msg: None))
        del state
        if env.is_main:
            log.info(f"resumed from {source} at step {global_step}")
    elif cfg.resume == "auto" and env.is_main:
        log.info(f"no checkpoint in {out_dir}: starting from scratch")

    net: nn.Module = model
    if env.distributed:
        # with synchronised BatchNorm every process already holds the same statistics
        net = wrap_ddp(model, device, sync_buffers=not cfg.dist.sync_bn)
    config_dict = to_dict(cfg)
    jlog = _JsonLog(out_dir / "log.jsonl" if env.is_main else None)
    if env.is_main:
        atomic_write_text(out_dir / "config.yaml", dump_yaml(cfg))
        jlog.write(event="start", global_step=global_step, total_steps=total_steps, last_step=last_step,
                   steps_per_epoch=steps_per_epoch, world_size=world, device=str(device),
                   amp=str(amp_dtype).replace("torch.", "") if amp_dtype else "off", samples=len(dataset))
        log.info(f"{len(dataset)} samples, {steps_per_epoch} steps per epoch, steps {global_step} -> {last_step} "
                 f"of {total_steps}, batch {cfg.data.batch_size} on {world} process(es), device {device}")

    saved: Optional[Path] = ckpt_path if source is not None and ckpt_path.is_file() else None

    def save() -> None:
        nonlocal saved
        check_finite_before_saving(model, optimizer, ckpt_path, global_step, _kept(saved))
        if env.is_main:
            ckpt_io.save_checkpoint(ckpt_path, model=model, optimizer=optimizer, scaler=scaler,
                                    epoch=global_step // steps_per_epoch, global_step=global_step,
                                    config=config_dict)
        saved = ckpt_path

    resumable = _ResumableSampler(sampler)
    loader_gen = torch.Generator()  # worker seeds come from here, not from the global RNG
    losses: list[float] = []
    bar = tqdm(total=last_step, initial=global_step, disable=not env.is_main, unit="step", dynamic_ncols=True)
    window_losses: list[float] = []
    window_start = time.perf_counter()
    net.train()
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(jlog.close)
        cleanup.callback(bar.close)
        cleanup.enter_context(flush_denormal(cfg.runtime.flush_denormal and device.type == "cpu"))
        for epoch in range(global_step // steps_per_epoch, cfg.optim.epochs):
            if global_step >= last_step:
                break
            sampler.set_epoch(epoch)
            dataset.set_epoch(epoch)  # before the loader's iterator copies it into workers
            resumable.skip = (global_step - epoch * steps_per_epoch) * per_rank
            loader_gen.manual_seed(cfg.runtime.seed * 1000 + epoch)
            loader = DataLoader(dataset, batch_size=per_rank, sampler=resumable, num_workers=cfg.data.workers,
                                collate_fn=collate_pairs, pin_memory=device.type == "cuda", drop_last=True,
                                generator=loader_gen)
            skipped = 0
            epoch_losses: list[float] = []
            for view1, view2, coord1, coord2, n_skipped in loader:
                skipped += n_skipped
                momentum = momentum_at(global_step, total_steps, cfg.model.momentum)
                if view1.shape[0] == 0:
                    # every image of this process's batch was unreadable: one process skips the
                    # update; in a job the others would wait for it in their collectives
                    if env.distributed:
                        raise InputError(f"data.roots: rank {env.rank}: every image of a batch was unreadable "
                                         f"(epoch {epoch + 1}, step {global_step + 1})")
                    log.warning(f"step {global_step + 1}: every image of the batch was unreadable; no update")
                else:
                    try:
                        loss = train_step(net, (view1, view2, coord1, coord2), optimizer, scaler, momentum,
                                          device=device, amp_dtype=amp_dtype, channels_last=channels_last)
                    except NonFiniteLossError as exc:
                        jlog.write(event="non_finite_loss", step=global_step + 1, epoch=epoch + 1)
                        raise NonFiniteLossError(f"{exc} at step {global_step + 1} (epoch {epoch + 1}); "
                                                 f"training stopped, {_kept(saved)}") from None
                    losses.append(loss)
                    epoch_losses.append(loss)
                    window_losses.append(loss)
                global_step += 1
                bar.update(1)
                if window_losses and (global_step % cfg.output.log_every == 0 or global_step == last_step):
                    elapsed = time.perf_counter() - window_start
                    record = dict(step=global_step, epoch=epoch + 1, loss=sum(window_losses) / len(window_losses),
                                  lr=optimizer.param_groups[0]["lr"], momentum=momentum,
                                  images_per_s=len(window_losses) * cfg.data.batch_size / max(elapsed, 1e-9))
                    jlog.write(event="step", **record)
                    bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{record['lr']:.2g}", m=f"{momentum:.5f}",
                                    img_s=f"{record['images_per_s']:.1f}")
                    window_losses, window_start = [], time.perf_counter()
                every = cfg.output.save_every_steps
                if (global_step % steps_per_epoch == 0 or global_step == last_step
                        or (every and global_step % every == 0)) and epoch_losses:
                    t0 = time.perf_counter()
                    save()
                    window_start += time.perf_counter() - t0  # images/s measures training only
                if global_step >= last_step:
                    break
            skipped = int(all_reduce_sum(torch.tensor(skipped)).item())
            check_epoch_trained(epoch_losses, epoch + 1, skipped)
            if skipped and env.is_main:
                log.warning(f"epoch {epoch + 1}: {skipped} unreadable image(s) skipped (named in the warnings above)")
            jlog.write(event="epoch_end" if global_step % steps_per_epoch == 0 else "stopped", epoch=epoch + 1,
                       step=global_step, skipped_images=skipped,
                       mean_loss=sum(epoch_losses) / len(epoch_losses) if epoch_losses else None)
    return TrainResult(global_step=global_step, checkpoint=saved if env.is_main else None, losses=losses)
