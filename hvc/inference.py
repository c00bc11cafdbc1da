"""test.py's loop: clips -> features -> labels -> writers, equal bytes over torchrun or shards (docs/multi_gpu.md)."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from pathlib import Path
from typing import Optional

from torch.utils.data import DataLoader
from tqdm import tqdm

from hvc.completion import (STALE_SUMMARIES, Record, ResultsFolder, output_dir, prepare_results, result_tag,
                            run_settings, write_summary)
from hvc.config.inference import TestConfig
from hvc.data.vos import DatasetError, FrameDataset
from hvc.distributed import Job, ShardSpec, shard_of
from hvc.errors import HvcError, ReportedElsewhere, UsageError
from hvc.exports import SequenceVisualizer
from hvc.segmenter import FeatureExtractor, VideoSegmenter, build_extractor  # noqa: F401 (FeatureExtractor: here too)
from hvc.tasks.clips import SCORES, VOS_SCORES, Clip, load_clips, locate

log = logging.getLogger(__name__)

STRIDE = 8  # the encoder's: a frame of H x W gives ceil(H/8) x ceil(W/8) feature cells
MIN_FEATURE_CELLS = 2  # fewer on a side leave the radius / top-k protocol nothing to choose from


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the system has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def loader_workers(setting: Optional[int]) -> int:
    """``data.workers``, None: 0 on at most 2 usable CPUs (where loaders slow test.py down: docs/speed.md), else 2."""
    return setting if setting is not None else 0 if usable_cpus() <= 2 else 2


def segment_clip(clip: Clip, segmenter: VideoSegmenter, folder: Path, cfg: TestConfig,
                 vis_folder: Optional[Path] = None, progress: bool = True) -> None:
    """Propagate ``clip``'s labels through its frames (encoded in batches); its writer writes into ``folder``."""
    frames = FrameDataset(clip.video, cfg.data.input_size, cfg.data.mean, cfg.data.std, resize=cfg.data.resize)
    h, w = frames.out_size
    fh, fw = math.ceil(h / STRIDE), math.ceil(w / STRIDE)
    if min(fh, fw) < MIN_FEATURE_CELLS or fh * fw < cfg.prop.topk:
        raise DatasetError(f"{clip.video.frames[0].parent}: frames of sequence {clip.name} ({frames.size[0]}x"
                           f"{frames.size[1]} px, {h}x{w} at the encoder) give {fh}x{fw} feature cells; need "
                           f"{MIN_FEATURE_CELLS}x{MIN_FEATURE_CELLS} and prop.topk={cfg.prop.topk} positions")
    hints = {"features": "check the weights of model.checkpoint", "soft masks": "check the prop.* settings"}
    segmenter.reset(lambda t, what: f"{clip.video.frames[t]}: {what} of frame {t} of sequence {clip.name} hold "
                                    f"NaN or inf; {hints[what]}")
    loader = DataLoader(frames, batch_size=cfg.data.batch_size, num_workers=loader_workers(cfg.data.workers),
                        pin_memory=segmenter.extractor.device.type == "cuda")
    with contextlib.ExitStack() as stack:
        vis = stack.enter_context(SequenceVisualizer(vis_folder, cfg.run.fps)) if vis_folder else None
        writer = clip.writer(frames, folder, vis)
        bar = stack.enter_context(tqdm(total=len(frames), desc=clip.name, unit="frame", leave=False,
                                       disable=not progress))
        for batch in loader:
            for emb in segmenter.extractor(batch):
                t = segmenter.frame
                labels, soft_labels = clip.labels_at(t, frames, emb)
                writer.add(t, segmenter.step_features(emb, labels, soft_labels=soft_labels, correct=False))
                bar.update()
        writer.close()


def run_inference(cfg: TestConfig, shard: Optional[ShardSpec] = None, merge_shards: bool = False,
                  job: Optional[Job] = None) -> Path:
    """Segment the clips of ``cfg.data`` (or ``shard`` i of n, or this rank's share) into the returned folder; a shard
    writes no summary, ``merge_shards`` does. Failures are HvcErrors, raised before writing where possible."""
    job = job or Job()
    job.device(cfg.run.device)  # an unavailable device fails before anything is written
    if merge_shards and (shard is not None or cfg.run.overwrite or job.distributed):
        raise UsageError("--merge-shards: runs alone, after the shards (no --shard, --overwrite or torchrun)")
    if shard is not None and job.distributed:
        raise UsageError("--shard: use either torchrun or --shard i/n, not both")
    out = output_dir(cfg)
    try:
        clips = load_clips(cfg, out)
        for clip in clips:
            clip.check()
    except HvcError as exc:  # the same on every rank: rank 0 reports it
        raise exc if job.is_main else ReportedElsewhere(exc.exit_code) from None
    if merge_shards:
        folder = ResultsFolder(out, run_settings(cfg))
    else:
        folder, todo = _prepare_job(cfg, clips, shard, job)
        worker = f"shard {shard.index}/{shard.count}" if shard is not None else job.describe()
        _segment_in_job(cfg, folder, clips, todo, job, worker)
    if shard is None and job.is_main:
        for path in write_summary(cfg, folder, clips):
            log.info("wrote %s", path)
    return out


def _prepare_job(cfg: TestConfig, clips: list[Clip], shard: Optional[ShardSpec],
                 job: Job) -> tuple[ResultsFolder, list[str]]:
    """Rank 0 prepares the output folder (:func:`hvc.completion.prepare_results`); every rank gets it and its todo."""
    names, out, dataset = [c.name for c in clips], output_dir(cfg), cfg.data.dataset
    mine = shard_of(names, [len(c.video.frames) for c in clips], shard.index, shard.count) if shard else names
    folder, todo, failure = None, None, None
    if job.is_main:
        try:
            folder, todo = prepare_results(cfg, {c.name: c.outputs for c in clips},
                                           lambda name: locate(dataset, out, name), mine, partial=shard is not None,
                                           stale=STALE_SUMMARIES + SCORES.get(dataset, VOS_SCORES))
        except HvcError as exc:
            failure = exc
    message = (todo, folder.settings, 0) if folder else (None, None, getattr(failure, "exit_code", 0))
    todo, settings, code = job.broadcast(message)
    if failure is not None:
        raise failure
    if todo is None:
        raise ReportedElsewhere(code)
    if job.is_main and len(mine) > len(todo):
        log.info("skipping %d finished sequence(s) in %s (--overwrite to redo)", len(mine) - len(todo), out)
    return folder or ResultsFolder(out, settings), todo


def _segment_in_job(cfg: TestConfig, folder: ResultsFolder, clips: list[Clip], todo: list[str], job: Job,
                    worker: str) -> None:
    """Segment this rank's share of ``todo``, committing each clip with its record. In a torchrun job every rank then
    waits for the others; if any failed, the lowest failing rank raises its error, the others exit with its code."""
    code, failure = 0, None
    by_name = {c.name: c for c in clips}
    share = shard_of(todo, [len(by_name[n].video.frames) for n in todo], job.rank, job.world_size)
    try:
        segmenter = VideoSegmenter(cfg.prop, build_extractor(cfg, job.device(cfg.run.device))) if share else None
        for name in tqdm(share, desc=f"{result_tag(cfg)} {cfg.data.dataset} ({worker})", unit="seq",
                         disable=not job.is_main or not share):
            clip, staging, start = by_name[name], folder.start(name), time.perf_counter()
            vis = Path(f"{folder.root}_vis") / name if cfg.run.visualize else None
            segment_clip(clip, segmenter, staging, cfg, vis, progress=job.is_main)
            folder.commit(Record(name, folder.settings, clip.outputs.files, len(clip.video.frames),
                                 round(time.perf_counter() - start, 3), worker), clip.outputs)
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
