"""Label propagation over a benchmark: frames -> features -> propagated labels -> PNGs.

Frames stream through a DataLoader, the encoder runs on batches of frames and each
frame's embedding goes straight into the propagator, so memory stays bounded by the
propagator's context (not the video length).

The output folder follows the rules of :mod:`hvc.completion` (a sequence is finished only
through its completion record; a folder never mixes two settings) and is checked before any
work: validated settings, a writable folder, no other settings' results unless
``run.overwrite``. Features and soft masks are checked to be finite once per frame. The
sequences can be split over a torchrun job or ``--shard i/n`` processes
(:mod:`hvc.sharding`); the output is the same, byte for byte, as one process's.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader
from tqdm import tqdm

from hvc.completion import Record, ResultsFolder
from hvc.config.inference import TestConfig
from hvc.data.palette import save_indexed_png
from hvc.data.vos import (DatasetError, FrameDataset, VideoSequence, first_mask_problems, load_sequences,
                          read_label_map)
from hvc.errors import HvcError, ReportedElsewhere, UsageError
from hvc.results import (Plan, output_dir, output_files, prepare_output, result_tag, run_settings, sequence_outputs,
                         write_summary)
from hvc.segmenter import FeatureExtractor, VideoSegmenter, build_extractor  # noqa: F401 (FeatureExtractor: here too)
from hvc.sharding import Job, ShardSpec, job_shard, shard_of
from hvc.upsample import upsample_argmax
from hvc.exports.overlay import SequenceVisualizer

log = logging.getLogger(__name__)

# The encoder's stride: a frame of H x W gives ceil(H/8) x ceil(W/8) feature cells.
STRIDE = 8
# Fewer cells than this on a side leave the radius / top-k protocol nothing to choose from.
MIN_FEATURE_CELLS = 2


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the system has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def loader_workers(setting: Optional[int]) -> int:
    """``data.workers`` as a DataLoader takes it: the setting itself, or for None (automatic) 0
    on at most 2 usable CPUs, else 2. On 2 cores, loader processes decoding ahead compete with
    the encoder and the kernel: test.py at 480p took 9 min 16 s with 2 workers and 7 min 07 s
    with none (docs/speed.md); with cores to spare they hide the decoding."""
    if setting is not None:
        return setting
    return 0 if usable_cpus() <= 2 else 2


def check_frame_size(seq: VideoSequence, frames: FrameDataset, topk: int) -> None:
    """Frames too small for the protocol are an input error naming the sequence."""
    h, w = frames.out_size
    fh, fw = math.ceil(h / STRIDE), math.ceil(w / STRIDE)
    if min(fh, fw) < MIN_FEATURE_CELLS or fh * fw < topk:
        raise DatasetError(
            f"{seq.frames[0].parent}: frames of sequence {seq.name} ({frames.size[0]}x{frames.size[1]} px, "
            f"{h}x{w} at the encoder) give {fh}x{fw} feature cells; need at least "
            f"{MIN_FEATURE_CELLS}x{MIN_FEATURE_CELLS} and prop.topk={topk} positions")


def read_labels(seq: VideoSequence, t: int, size: tuple[int, int], num_classes: int) -> np.ndarray:
    """The id map annotated at frame t, its ids checked against ``prop.num_classes``."""
    path = seq.annotations[t]
    ids = read_label_map(path, seq.mask_format, size)
    for problem in first_mask_problems(seq, ids) if t == min(seq.annotations) else []:
        log.warning("warning: %s", problem)
    top = int(ids.max())
    if top >= num_classes:
        raise DatasetError(f"{path}: label id {top} is not below prop.num_classes={num_classes} "
                           f"(ids 0..{num_classes - 1}); raise prop.num_classes")
    return ids


Labels = Callable[[int, Tensor], tuple[Optional[Tensor], Optional[Tensor]]]


def propagate_frames(frames: FrameDataset, segmenter: VideoSegmenter, cfg: TestConfig, labels_at: Labels,
                     write: Callable[[int, Tensor], None], desc: str, progress: bool = True) -> None:
    """The benchmarks' loop (VOS, JHMDB, VIP): frames decoded by a DataLoader, encoded in batches,
    each embedding stepped as it comes. ``labels_at(t, emb)``: frame t's (ids, soft labels), each
    None or a map; ids seen before are not corrected (the protocol). ``write(t, soft [K, h, w])``."""
    loader = DataLoader(frames, batch_size=cfg.data.batch_size, num_workers=loader_workers(cfg.data.workers),
                        pin_memory=segmenter.extractor.device.type == "cuda")
    with tqdm(total=len(frames), desc=desc, unit="frame", leave=False, disable=not progress) as bar:
        for batch in loader:
            for emb in segmenter.extractor(batch):
                t = segmenter.frame
                labels, soft_labels = labels_at(t, emb)
                write(t, segmenter.step_features(emb, labels, soft_labels=soft_labels, correct=False))
                bar.update()


def segment_sequence(seq: VideoSequence, segmenter: VideoSegmenter, folder: Path, cfg: TestConfig,
                     vis_folder: Optional[Path] = None, progress: bool = True) -> None:
    """Propagate the annotations of ``seq`` through all its frames; write the output frames to ``folder``."""
    frames = FrameDataset(seq, cfg.data.input_size, cfg.data.mean, cfg.data.std, resize=cfg.data.resize)
    check_frame_size(seq, frames, cfg.prop.topk)
    outputs = set(seq.outputs)
    hints = {"features": "check the weights of model.checkpoint", "soft masks": "check the prop.* settings"}
    segmenter.reset(lambda t, what: f"{seq.frames[t]}: {what} of frame {t} of sequence {seq.name} hold NaN or inf; "
                                    f"{hints[what]}")

    def labels_at(t: int, emb: Tensor) -> tuple[Optional[Tensor], None]:
        annotated = t in seq.annotations
        return torch.from_numpy(read_labels(seq, t, frames.size, cfg.prop.num_classes)) if annotated else None, None

    with contextlib.ExitStack() as stack:
        vis = stack.enter_context(SequenceVisualizer(vis_folder, cfg.run.fps)) if vis_folder else None

        def write(t: int, soft: Tensor) -> None:
            if t in outputs:
                pred = upsample_argmax(soft, frames.size).cpu().numpy()
                save_indexed_png(folder / f"{seq.frame_name(t)}.png", pred)
                if vis is not None:
                    vis.add(seq.frames[t], pred)

        propagate_frames(frames, segmenter, cfg, labels_at, write, seq.name, progress)


def _segment_all(cfg: TestConfig, plan: Plan, names: list[str], job: Job, worker: str) -> None:
    """Segment ``names`` into staging folders and commit each with its completion record."""
    if not names:
        return
    segmenter = VideoSegmenter(cfg.prop, build_extractor(cfg, job.device(cfg.run.device)))
    vis_root = Path(f"{plan.out}_vis") if cfg.run.visualize else None
    by_name = {s.name: s for s in plan.sequences}
    for name in tqdm(names, desc=f"{result_tag(cfg)} {cfg.data.dataset} ({worker})", unit="seq",
                     disable=not job.is_main):
        seq = by_name[name]
        staging = plan.folder.start(name)
        start = time.perf_counter()
        segment_sequence(seq, segmenter, staging, cfg, vis_root / name if vis_root else None, progress=job.is_main)
        record = Record(name, plan.folder.settings, tuple(output_files(seq)), len(seq.frames),
                        round(time.perf_counter() - start, 3), worker)
        plan.folder.commit(record, sequence_outputs(plan.out, cfg.data.dataset, seq))


def run_inference(cfg: TestConfig, shard: Optional[ShardSpec] = None, merge_shards: bool = False,
                  job: Optional[Job] = None) -> Path:
    """Segment every sequence of ``cfg.data`` (or this process's share); returns the output folder.

    ``shard``: segment only shard ``i`` of ``n`` (no summary: ``merge_shards`` writes it once all
    shards are done). ``job``: the torchrun job this process belongs to (default: one process).
    Raises an :class:`hvc.errors.HvcError` on any expected failure, before writing anything
    where the check allows it.
    """
    job = job or Job()
    job.device(cfg.run.device)  # an unavailable device fails before anything is written
    if merge_shards and (shard is not None or cfg.run.overwrite or job.distributed):
        raise UsageError("--merge-shards: runs alone, after the shards (no --shard, --overwrite or torchrun)")
    if shard is not None and job.distributed:
        raise UsageError("--shard: use either torchrun or --shard i/n, not both")
    try:
        sequences = load_sequences(cfg.data.dataset, cfg.data.root, cfg.data.sequences)
    except HvcError as exc:  # the same on every rank: rank 0 reports it
        raise exc if job.is_main else ReportedElsewhere(exc.exit_code) from None
    if merge_shards:
        plan = Plan(output_dir(cfg), ResultsFolder(output_dir(cfg), run_settings(cfg)), sequences, [])
    else:
        plan = _prepare_job(cfg, sequences, shard, job)
        worker = f"shard {shard}" if shard is not None else job.describe()
        sizes = {s.name: len(s.frames) for s in sequences}
        share = job_shard(job, plan.todo, [sizes[n] for n in plan.todo], None)  # torchrun: this rank's part
        _segment_in_job(cfg, plan, share, job, worker)
    if shard is None and job.is_main:
        for path in write_summary(cfg, plan):
            log.info("wrote %s", path)
    return plan.out


def _prepare_job(cfg: TestConfig, sequences: list[VideoSequence], shard: Optional[ShardSpec], job: Job) -> Plan:
    """Rank 0 (or the only process) prepares the output folder; every rank gets its plan."""
    names = [s.name for s in sequences]
    mine = shard_of(names, [len(s.frames) for s in sequences], shard.index, shard.count) if shard else names
    plan, failure = None, None
    if job.is_main:
        try:
            plan = prepare_output(cfg, sequences, mine, partial=shard is not None)
        except HvcError as exc:
            failure = exc
    message = (plan.todo, plan.folder.settings, 0) if plan else (None, None, getattr(failure, "exit_code", 0))
    todo, settings, code = job.broadcast(message)
    if failure is not None:
        raise failure
    if todo is None:
        raise ReportedElsewhere(code)
    if job.is_main and len(mine) > len(todo):
        log.info("skipping %d finished sequence(s) in %s (--overwrite to redo)", len(mine) - len(todo), plan.out)
    out = output_dir(cfg)
    return plan or Plan(out, ResultsFolder(out, settings), sequences, todo)


def _segment_in_job(cfg: TestConfig, plan: Plan, share: list[str], job: Job, worker: str) -> None:
    """Segment this process's share. In a torchrun job every rank then waits for the others;
    if any failed, the lowest failing rank raises its error, the others exit with its code."""
    code, failure = 0, None
    try:
        _segment_all(cfg, plan, share, job, worker)
    except HvcError as exc:
        if not job.distributed:
            raise
        code, failure = exc.exit_code, exc
    worst = job.max_over_ranks(code)  # the barrier: every rank waits here for the slowest
    if worst:
        reporter = -job.max_over_ranks(-job.rank if code else -job.world_size)
        if failure is not None and job.rank == reporter:
            raise failure
        raise ReportedElsewhere(worst)
