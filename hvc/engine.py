"""The training loop, one code path for CPU, one GPU and ``torchrun`` jobs (docs/design.md, docs/training_runs.md)."""

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
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler
from tqdm import tqdm

from hvc import checkpoint as ckpt_io
from hvc.config.core import ConfigError, dump_yaml, to_dict
from hvc.config.training import DataConfig, ModelConfig, OptimConfig, RuntimeConfig, TrainConfig, validate
from hvc.data.pairs import PairDataset, RandomResizedCropCoord, StaticImagePairs, VideoFramePairs, collate_pairs
from hvc.distributed import Job, all_reduce_sum, convert_sync_batchnorm, join_job, wrap_ddp
from hvc.errors import InputError, NonFiniteError
from hvc.fileio import OutputLock, atomic_write_text, writable_dir
from hvc.models.hvc import HVC, momentum_at
from hvc.names import refuse_overlap

log = logging.getLogger("hvc.train")


class NonFiniteLossError(NonFiniteError, RuntimeError):
    """The loss became NaN or infinite; training stopped without saving."""


@dataclass
class TrainResult:
    global_step: int  # optimiser steps done in total (resumed ones included)
    checkpoint: Optional[Path]  # last checkpoint written (rank 0), None if none was
    losses: list[float]  # loss of every step run by this call (global mean over processes)


def build_model(cfg: ModelConfig) -> HVC:
    return HVC(arch=cfg.arch, proj_hidden_dim=cfg.proj_hidden_dim, proj_dim=cfg.proj_dim,
               pred_hidden_dim=cfg.pred_hidden_dim, pos_radius=cfg.pos_radius,
               init_forward_size=cfg.init_forward_size, with_layer4=cfg.layer4)


def build_dataset(cfg: DataConfig, seed: int) -> PairDataset:
    """The training pairs; a missing or empty folder is an input error before training starts."""
    crop = RandomResizedCropCoord.from_config(cfg)
    if cfg.kind == "video" and len(cfg.roots) != 1:
        raise ConfigError(f"data.roots: video training takes one JPEGImages folder, got {len(cfg.roots)}")
    try:
        if cfg.kind == "static":
            return StaticImagePairs(cfg.roots, crop, seed)
        return VideoFramePairs(cfg.roots[0], crop, cfg.max_gap, seed)
    except ValueError as exc:
        raise InputError(f"data.roots: {exc}") from None


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    # all parameters, as the official code (the target ones never get a gradient): the official state-dict layout
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
    """The autocast dtype, or None for float32 (on the CPU: bfloat16 only with runtime.cpu_bf16)."""
    if device.type == "cpu":
        return torch.bfloat16 if runtime.cpu_bf16 else None
    if not runtime.amp or device.type != "cuda":
        return None
    return torch.float16 if runtime.amp_dtype == "fp16" else torch.bfloat16


def use_channels_last(runtime: RuntimeConfig, device: torch.device) -> bool:
    """channels_last layout: runtime.channels_last on CUDA, runtime.cpu_channels_last on the CPU."""
    return runtime.cpu_channels_last if device.type == "cpu" else runtime.channels_last and device.type == "cuda"


def make_scaler(device: torch.device, amp_dtype: Optional[torch.dtype]) -> torch.amp.GradScaler:
    """A GradScaler, enabled only for fp16 (bf16 and float32 need none)."""
    return torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)


def train_step(model: nn.Module, batch: Sequence[Tensor], optimizer: torch.optim.Optimizer,
               scaler: torch.amp.GradScaler, momentum: float, *, device: torch.device,
               amp_dtype: Optional[torch.dtype] = None, channels_last: bool = False) -> float:
    """One optimiser step on ``batch = (view1 [B,3,S,S], view2, coord1 [B,4], coord2 [B,4])``; the loss averaged
    over processes. A non-finite loss raises NonFiniteLossError on every process before any weight changes."""
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


def _claim_output(cfg: TrainConfig) -> OutputLock:
    """Rank 0 first: the output folder apart from inputs, writable, locked, without a run unless resumed/overwritten."""
    out = Path(cfg.output.dir)
    refuse_overlap(out, "output.dir", {"data.roots": cfg.data.roots})  # inputs are read-only
    writable_dir(out, "output.dir")
    lock = OutputLock(out, "output.dir")
    ours = [out / name for name in (ckpt_io.CHECKPOINT_NAME, "log.jsonl")]
    continues_it = cfg.resume == "auto" or (cfg.resume is not None and
                                            os.path.realpath(cfg.resume) == os.path.realpath(ours[0]))
    if not continues_it and any(p.exists() for p in ours):  # a fresh run, or one resumed from elsewhere
        if not cfg.output.overwrite:
            raise ConfigError(f"{out}: output.dir holds a training run ({ckpt_io.CHECKPOINT_NAME}, log.jsonl); pass "
                              "--resume auto to continue it, --overwrite to start afresh, or choose another output.dir")
        for path in ours:  # a fresh run: its checkpoint and log replace the old ones
            path.unlink(missing_ok=True)
    return lock


def train(cfg: TrainConfig, env: Optional[Job] = None) -> TrainResult:
    """Run (or continue) the training described by ``cfg``."""
    validate(cfg)
    run = TrainingRun(cfg, env or join_job(cfg.runtime.device, "runtime.device", cfg.dist.backend))
    run.net.train()
    with contextlib.ExitStack() as cleanup:
        if run.env.is_main:
            cleanup.callback(run.log_file.close)
            cleanup.callback(run.lock.release)
        cleanup.callback(run.bar.close)
        cleanup.enter_context(flush_denormal(cfg.runtime.flush_denormal and run.device.type == "cpu"))
        for epoch in range(run.step // run.steps_per_epoch, cfg.optim.epochs):
            if run.step >= run.last_step:
                break
            run.train_one_epoch(epoch)
    return TrainResult(run.step, run.last_checkpoint if run.env.is_main else None, run.losses)


class TrainingRun:
    """What the steps of one training run share; ``step`` and ``losses`` advance as :meth:`train_one_epoch` runs."""

    def __init__(self, cfg: TrainConfig, env: Job):
        self.cfg, self.env, out = cfg, env, Path(cfg.output.dir)
        self.device = device = env.device(cfg.runtime.device, "runtime.device")
        random.seed(cfg.runtime.seed)
        np.random.seed(cfg.runtime.seed)
        torch.manual_seed(cfg.runtime.seed)  # also seeds every CUDA device
        self.dataset = build_dataset(cfg.data, cfg.runtime.seed)
        if cfg.data.batch_size % env.world_size:
            raise ConfigError(f"data.batch_size: {cfg.data.batch_size} does not split over {env.world_size} processes")
        self.per_rank = cfg.data.batch_size // env.world_size  # samples per process per step
        self.sampler = DistributedSampler(self.dataset, num_replicas=env.world_size, rank=env.rank, shuffle=True,
                                          seed=cfg.runtime.seed, drop_last=True)
        self.steps_per_epoch = len(self.sampler) // self.per_rank
        if self.steps_per_epoch == 0:
            raise ConfigError(f"data.roots: {len(self.dataset)} samples, fewer than one batch of {cfg.data.batch_size}")
        self.total_steps = self.steps_per_epoch * cfg.optim.epochs  # the span of the momentum schedule
        self.last_step = min(self.total_steps, cfg.optim.max_steps or self.total_steps)  # where this run stops
        self.lock = _claim_output(cfg) if env.is_main else None  # held until train() returns (or the process dies)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = cfg.runtime.cudnn_benchmark
        model = build_model(cfg.model)
        if env.distributed and cfg.dist.sync_bn:  # statistics over the global batch (hvc/distributed.py)
            model = convert_sync_batchnorm(model, device)
        self.channels_last = use_channels_last(cfg.runtime, device)
        layout = torch.channels_last if self.channels_last else torch.preserve_format
        self.model = model.to(device, memory_format=layout)
        self.optimizer = build_optimizer(self.model, cfg.optim)
        self.amp_dtype = autocast_dtype(cfg.runtime, device)
        self.scaler = make_scaler(device, self.amp_dtype)
        self.checkpoint = out / ckpt_io.CHECKPOINT_NAME
        resumed = self._resume()
        # DDP-wrapped in a job; with synchronised BatchNorm every process already holds the same statistics
        self.net = wrap_ddp(self.model, device, sync_buffers=not cfg.dist.sync_bn) if env.distributed else self.model
        # the last checkpoint written, or (a resumed run continues) the one already in the folder
        self.last_checkpoint = self.checkpoint if resumed is not None and self.checkpoint.is_file() else None
        self.step, self.losses = resumed or 0, []
        self.log_file = open(out / "log.jsonl", "a", encoding="utf-8") if env.is_main else None  # train() closes it
        if env.is_main:
            atomic_write_text(out / "config.yaml", dump_yaml(cfg))
            self._log(event="start", global_step=self.step, total_steps=self.total_steps, last_step=self.last_step,
                      steps_per_epoch=self.steps_per_epoch, world_size=env.world_size, device=str(device),
                      amp=str(self.amp_dtype).replace("torch.", "") if self.amp_dtype else "off",
                      samples=len(self.dataset))
            log.info(f"{len(self.dataset)} samples, {self.steps_per_epoch} steps per epoch, steps {self.step} -> "
                     f"{self.last_step} of {self.total_steps}, batch {cfg.data.batch_size} on {env.world_size} "
                     f"process(es), device {device}")
        self.bar = tqdm(total=self.last_step, initial=self.step, disable=not env.is_main, unit="step",
                        dynamic_ncols=True)
        # the logging window: its updates' losses and its start, checkpoint writes excluded
        self.window, self.window_start = [], time.perf_counter()

    def _resume(self) -> Optional[int]:
        """Restore the state of ``cfg.resume`` (RNG included); its global step, None if none."""
        resume = self.cfg.resume
        if resume is None:
            return None
        source = self.checkpoint if resume == "auto" else Path(resume)
        if resume == "auto" and not source.is_file():  # log.info: rank 0 only, by train.py's logging level
            log.info(f"no checkpoint in {source.parent}: starting from scratch")
            return None
        step = ckpt_io.restore(ckpt_io.load_checkpoint(source), model=self.model, optimizer=self.optimizer,
                               scaler=self.scaler, steps_per_epoch=self.steps_per_epoch, source=str(source))
        log.info(f"resumed from {source} at step {step}")
        return step

    def _epoch_loader(self, epoch: int) -> DataLoader:
        """This process's batches of ``epoch``, without those a resumed run already did."""
        self.sampler.set_epoch(epoch)
        self.dataset.set_epoch(epoch)  # before the loader's iterator copies it into workers
        done = (self.step - epoch * self.steps_per_epoch) * self.per_rank  # samples a resumed run did
        seeds = torch.Generator().manual_seed(self.cfg.runtime.seed * 1000 + epoch)  # worker seeds: not the global RNG
        order = list(itertools.islice(self.sampler, done, None))  # this process's sample indices, in sampler order
        return DataLoader(self.dataset, batch_size=self.per_rank, sampler=order,
                          num_workers=self.cfg.data.workers, collate_fn=collate_pairs,
                          pin_memory=self.device.type == "cuda", drop_last=True, generator=seeds)

    def train_one_epoch(self, epoch: int) -> None:
        """The steps of one epoch (the rest of it after a resume): update, log, save when due."""
        skipped, epoch_losses = 0, []
        for *batch, n_skipped in self._epoch_loader(epoch):
            skipped += n_skipped
            momentum = momentum_at(self.step, self.total_steps, self.cfg.model.momentum)
            loss = self._update(batch, momentum, epoch)
            if loss is not None:
                self.losses.append(loss)
                epoch_losses.append(loss)
                self.window.append(loss)
            self.step += 1
            self.bar.update(1)
            if self.step % self.cfg.output.log_every == 0 or self.step == self.last_step:
                self._report(epoch, momentum)
            if epoch_losses:  # an epoch that trained nothing saves nothing
                self.window_start += self._save_if_due()  # images/s measures training only
            if self.step >= self.last_step:
                break
        # on the process's device: NCCL, the backend of a CUDA job, reduces CUDA tensors only
        skipped = int(all_reduce_sum(torch.tensor(skipped, device=self.device)).item())
        if not epoch_losses:  # not a single update: stop rather than save untrained weights
            raise InputError(f"data.roots: no image of epoch {epoch + 1} could be used ({skipped} unreadable or "
                             "degenerate, named above); nothing was trained or saved")
        if skipped and self.env.is_main:
            log.warning(f"epoch {epoch + 1}: {skipped} unreadable image(s) skipped (named in the warnings above)")
        self._log(event="epoch_end" if self.step % self.steps_per_epoch == 0 else "stopped", epoch=epoch + 1,
                  step=self.step, skipped_images=skipped, mean_loss=sum(epoch_losses) / len(epoch_losses))

    def _update(self, batch: Sequence[Tensor], momentum: float, epoch: int) -> Optional[float]:
        """One optimiser step on this process's batch; None when every image of it was unreadable."""
        if batch[0].shape[0] == 0:
            if self.env.distributed:  # one process skipping the update: the others would wait for it in collectives
                raise InputError(f"data.roots: rank {self.env.rank}: every image of a batch was unreadable "
                                 f"(epoch {epoch + 1}, step {self.step + 1})")
            log.warning(f"step {self.step + 1}: every image of the batch was unreadable; no update")
            return None
        try:
            return train_step(self.net, batch, self.optimizer, self.scaler, momentum, device=self.device,
                              amp_dtype=self.amp_dtype, channels_last=self.channels_last)
        except NonFiniteLossError as exc:
            self._log(event="non_finite_loss", step=self.step + 1, epoch=epoch + 1)
            raise NonFiniteLossError(f"{exc} at step {self.step + 1} (epoch {epoch + 1}); "
                                     f"training stopped, {self._kept()}") from None

    def _kept(self) -> str:
        """What a failed run leaves on disk, for its message."""
        last = self.last_checkpoint
        return f"the last good checkpoint is {last}" if last else "no checkpoint was written"

    def _save_if_due(self) -> float:
        """Rank 0 saves at epoch ends, the last step and every ``output.save_every_steps``; returns the seconds."""
        step, every = self.step, self.cfg.output.save_every_steps
        if not (step % self.steps_per_epoch == 0 or step == self.last_step or every and step % every == 0):
            return 0.0
        # only finite tensors are saved; checked on every process (DDP keeps the states identical): all stop together
        state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()["state"]}
        bad = ckpt_io.non_finite_tensors(state)
        if bad:
            raise NonFiniteError(f"{self.checkpoint}: not written at step {step}, training produced "
                                 f"{ckpt_io.describe(bad)}; {self._kept()}")
        start = time.perf_counter()
        if self.env.is_main:
            ckpt_io.save_checkpoint(self.checkpoint, model=self.model, optimizer=self.optimizer, scaler=self.scaler,
                                    epoch=step // self.steps_per_epoch, global_step=step, config=to_dict(self.cfg))
        self.last_checkpoint = self.checkpoint
        return time.perf_counter() - start

    def _log(self, **record) -> None:
        """A record of log.jsonl (rank 0), with its wall-clock time."""
        if self.log_file is not None:
            self.log_file.write(json.dumps({"time": round(time.time(), 3), **record}) + "\n")
            self.log_file.flush()

    def _report(self, epoch: int, momentum: float) -> None:
        """A log record and progress-bar figures (mean loss, global images/s) of the window since the last report."""
        if not self.window:
            return
        elapsed = max(time.perf_counter() - self.window_start, 1e-9)
        loss, images_per_s = sum(self.window) / len(self.window), len(self.window) * self.cfg.data.batch_size / elapsed
        self.window, self.window_start = [], time.perf_counter()
        lr = self.optimizer.param_groups[0]["lr"]
        self._log(event="step", step=self.step, epoch=epoch + 1, loss=loss, lr=lr, momentum=momentum,
                  images_per_s=images_per_s)
        self.bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2g}", m=f"{momentum:.5f}", img_s=f"{images_per_s:.1f}")
