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
import csv
import io
import logging
import math
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader
from tqdm import tqdm

from hvc.completion import Record, ResultsFolder, file_digest, settings_hash
from hvc.config.core import ConfigError, dump_yaml, load_config, to_dict
from hvc.config.inference import TestConfig
from hvc.data.palette import save_indexed_png
from hvc.data.vos import YTVOS_DATASETS, DatasetError, FrameDataset, VideoSequence, load_sequences, read_label_map
from hvc.errors import HvcError, InputError, NonFiniteError, ReportedElsewhere, UsageError
from hvc.fileio import atomic_path, atomic_write_text, writable_dir
from hvc.models.encoders import checkpoint_path, load_encoder
from hvc.propagation import LabelPropagator, embed, upsample_labels
from hvc.sharding import Job, ShardSpec, job_shard, shard_of
from hvc.visualize import SequenceVisualizer

log = logging.getLogger(__name__)

_AMP_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


class FeatureExtractor:
    """Frames -> L2-normalised embeddings, optionally merged with a second encoder's features.

    ``extractor(frames: [B, 3, h, w]) -> [B, C, h/8, w/8]`` float32 on ``device``.
    """

    def __init__(self, encoder: torch.nn.Module, merge_encoder: Optional[torch.nn.Module] = None,
                 merge_lambda: float = 1.05, device: torch.device | str = "cpu", amp: str = "off",
                 channels_last: bool = False):
        self.device = torch.device(device)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.encoders = [e.to(self.device, memory_format=self.memory_format).eval()
                         for e in (encoder, merge_encoder) if e is not None]
        self.merge_lambda = merge_lambda
        # Autocast only on CUDA: the golden checks and CPU runs are float32.
        self.amp_dtype = _AMP_DTYPES.get(amp) if self.device.type == "cuda" else None

    @torch.no_grad()
    def __call__(self, frames: Tensor) -> Tensor:
        x = frames.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            feats = [enc(x).float() for enc in self.encoders]
        merge = feats[1] if len(feats) > 1 else None
        return embed(feats[0], merge_feats=merge, merge_lambda=self.merge_lambda)


def build_extractor(cfg: TestConfig, device: Optional[torch.device] = None) -> FeatureExtractor:
    """The configured encoder(s) on ``device`` (default: ``run.device``, checked to exist)."""
    m = cfg.model
    device = device or Job().device(cfg.run.device)
    main = load_encoder(m.name, m.checkpoint, seed=m.seed, bn_dummy_forward_pass=m.bn_dummy_forward, device=device)
    merge = None
    if m.merge_model is not None:
        merge = load_encoder(m.merge_model, m.merge_checkpoint, seed=m.seed,
                             bn_dummy_forward_pass=m.bn_dummy_forward, device=device)
    return FeatureExtractor(main, merge, m.merge_lambda, device, cfg.run.amp, cfg.run.channels_last)


def result_tag(cfg: TestConfig) -> str:
    """Folder name of a model's results: ``<model>`` or ``<model>+<merge_model>``."""
    return cfg.model.name + (f"+{cfg.model.merge_model}" if cfg.model.merge_model else "")


def output_dir(cfg: TestConfig) -> Path:
    return Path(cfg.run.output_dir or Path(cfg.run.results_root) / result_tag(cfg) / cfg.data.dataset)


def sequence_dir(out: Path, dataset: str, name: str) -> Path:
    """DAVIS: ``<out>/<seq>``; YouTube-VOS: the submission layout ``<out>/Annotations/<video>``."""
    return out / "Annotations" / name if dataset in YTVOS_DATASETS else out / name


def output_files(seq: VideoSequence) -> list[str]:
    """The files a finished sequence holds, in frame order."""
    return [f"{seq.frame_name(t)}.png" for t in seq.outputs]


# The encoder's stride: a frame of H x W gives ceil(H/8) x ceil(W/8) feature cells.
STRIDE = 8
# Fewer cells than this on a side leave the radius / top-k protocol nothing to choose from.
MIN_FEATURE_CELLS = 2


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
    top = int(ids.max())
    if top >= num_classes:
        raise DatasetError(f"{path}: label id {top} is not below prop.num_classes={num_classes} "
                           f"(ids 0..{num_classes - 1}); raise prop.num_classes")
    return ids


def check_finite(values: Tensor, what: str, seq: VideoSequence, t: int, hint: str) -> None:
    """Stop at the first non-finite value, naming the frame (one reduction per call: cheap)."""
    if not bool(torch.isfinite(values).all()):
        raise NonFiniteError(f"{seq.frames[t]}: {what} of frame {t} of sequence {seq.name} hold NaN or inf; {hint}")


def segment_sequence(seq: VideoSequence, extractor: FeatureExtractor, propagator: LabelPropagator,
                     folder: Path, cfg: TestConfig, vis_folder: Optional[Path] = None, progress: bool = True) -> None:
    """Propagate the annotations of ``seq`` through all its frames; write the output frames to ``folder``."""
    frames = FrameDataset(seq, cfg.data.input_size, cfg.data.mean, cfg.data.std)
    check_frame_size(seq, frames, cfg.prop.topk)
    loader = DataLoader(frames, batch_size=cfg.data.batch_size, num_workers=cfg.data.workers,
                        pin_memory=extractor.device.type == "cuda")
    outputs = set(seq.outputs)
    propagator.reset()
    with contextlib.ExitStack() as stack:
        vis = stack.enter_context(SequenceVisualizer(vis_folder, cfg.run.fps)) if vis_folder else None
        bar = stack.enter_context(tqdm(total=len(frames), desc=seq.name, unit="frame", leave=False,
                                       disable=not progress))
        t = 0
        for batch in loader:
            for emb in extractor(batch):
                check_finite(emb, "features", seq, t, "check the weights of model.checkpoint")
                labels = None
                if t in seq.annotations:
                    ids = read_labels(seq, t, frames.size, cfg.prop.num_classes)
                    labels = torch.from_numpy(ids).to(extractor.device)
                soft = propagator.step(emb, labels)
                check_finite(soft, "soft masks", seq, t, "check the prop.* settings")
                if t in outputs:
                    pred, _ = upsample_labels(soft, frames.size)
                    pred = pred.cpu().numpy()
                    save_indexed_png(folder / f"{seq.frame_name(t)}.png", pred)
                    if vis is not None:
                        vis.add(seq.frames[t], pred)
                t += 1
                bar.update()


def _protocol(cfg: TestConfig) -> dict:
    """The settings that change the results (not where they go or how fast they come)."""
    d = to_dict(cfg)
    data = {k: v for k, v in d["data"].items() if k not in ("root", "sequences", "workers", "batch_size")}
    return {"model": d["model"], "data": data, "prop": d["prop"]}


def run_settings(cfg: TestConfig) -> str:
    """The settings hash of completion records: the protocol, the autocast precision and the
    bytes of every checkpoint file (a retrained file at the same path is other settings)."""
    m = cfg.model
    digests = {}
    for name, given in ((m.name, m.checkpoint), (m.merge_model, m.merge_checkpoint)):
        if name is not None and name != "random18":
            path = checkpoint_path(name, given)
            digests[name] = file_digest(path) if Path(path).is_file() else None  # missing: load_encoder says so
    return settings_hash({"protocol": _protocol(cfg), "amp": cfg.run.amp, "checkpoints": digests})


def _legacy_settings_differ(cfg: TestConfig, record: Path) -> bool:
    """A ``config.yaml`` of other settings (folders written before completion records existed)."""
    if not record.is_file():
        return False
    try:
        return _protocol(load_config(TestConfig, record)) != _protocol(cfg)
    except HvcError:
        return True


@dataclass
class Plan:
    """What this run does in its output folder."""

    out: Path
    folder: ResultsFolder
    sequences: list[VideoSequence]  # every sequence of the benchmark selection, in list order
    todo: list[str]  # names to segment (not finished with these settings), in list order


def prepare_output(cfg: TestConfig, sequences: list[VideoSequence], mine: list[str], partial: bool) -> Plan:
    """Check and prepare the output folder before any work (see :mod:`hvc.completion`).

    ``mine``: the sequences this process is responsible for; ``partial``: a ``--shard`` run,
    which removes (with --overwrite) only its own sequences and other settings' results.
    """
    out = output_dir(cfg)
    writable_dir(out, "run.output_dir")
    if cfg.run.visualize:
        writable_dir(f"{out}_vis", "run.output_dir (visualisations: <output_dir>_vis)")
    folder = ResultsFolder(out, run_settings(cfg))
    config_record = out / "config.yaml"
    dirs = {s.name: sequence_dir(out, cfg.data.dataset, s.name) for s in sequences}
    foreign = folder.foreign()
    legacy = (not folder.records() and _legacy_settings_differ(cfg, config_record)
              and any(d.is_dir() for d in dirs.values()))
    if (foreign or legacy) and not cfg.run.overwrite:
        what = f"{len(foreign)} sequence(s), e.g. {foreign[0]}" if foreign else "sequence folders"
        raise ConfigError(f"{out}: holds results made with other settings ({what}; see {config_record}); "
                          f"pass --overwrite to replace them, or choose another run.output_dir")
    if cfg.run.overwrite:  # remove first: a rerun then never mixes two settings
        targets = set(foreign) | set(mine if partial else [*dirs, *folder.records()])
        for name in sorted(targets):
            folder.forget(name, dirs.get(name, sequence_dir(out, cfg.data.dataset, name)))
    folder.clear_staging(mine if partial else None)  # frames of killed runs
    atomic_write_text(config_record, dump_yaml(cfg))
    todo = [s.name for s in sequences if s.name in set(mine)
            and not folder.is_finished(s.name, dirs[s.name], output_files(s))]
    if todo or cfg.run.overwrite:  # summaries and scores of earlier results no longer describe the folder
        for pattern in STALE_SUMMARIES:
            for stale in out.glob(pattern):
                stale.unlink()
    return Plan(out, folder, sequences, todo)


SUMMARY_NAME = "sequences.csv"
ZIP_NAME = "submission.zip"
# Written from complete results: ours, and eval_metrics.py's CSVs (scripts/run_metrics puts them here).
STALE_SUMMARIES = (SUMMARY_NAME, ZIP_NAME, "global_results-*.csv", "per-sequence_results-*.csv")


def finished_records(cfg: TestConfig, plan: Plan) -> list[Record]:
    """Every sequence's record; an InputError naming the unfinished ones if any is not finished."""
    missing = [s.name for s in plan.sequences
               if not plan.folder.is_finished(s.name, sequence_dir(plan.out, cfg.data.dataset, s.name),
                                              output_files(s))]
    if missing:
        raise InputError(f"{plan.out}: {len(missing)} sequence(s) not finished with these settings: "
                         f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''} "
                         f"(run the missing shards, or test.py without --shard)")
    return [plan.folder.record(s.name) for s in plan.sequences]


def write_summary(cfg: TestConfig, plan: Plan) -> list[Path]:
    """``sequences.csv`` (one row a sequence) and, for YouTube-VOS, ``submission.zip``."""
    records = finished_records(cfg, plan)
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["sequence", "frames", "outputs", "seconds", "worker", "settings"])
    for r in records:
        writer.writerow([r.sequence, r.frames, len(r.files), f"{r.seconds:.2f}", r.worker, r.settings[:12]])
    atomic_write_text(plan.out / SUMMARY_NAME, text.getvalue())
    written = [plan.out / SUMMARY_NAME]
    if cfg.data.dataset in YTVOS_DATASETS:
        written.append(zip_submission(plan.out, records, plan.folder.settings))
    return written


def zip_submission(out: Path, records: list[Record], settings: str) -> Path:
    """``<out>/submission.zip`` holding ``Annotations/<video>/<frame>.png`` (YouTube-VOS upload):
    exactly the files of the completion records; the zip comment names the settings hash."""
    target = out / ZIP_NAME
    with atomic_path(target) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.comment = f"hvc settings {settings}".encode()
        for record in records:
            for name in record.files:
                zf.write(out / "Annotations" / record.sequence / name, f"Annotations/{record.sequence}/{name}")
    return target


def _segment_all(cfg: TestConfig, plan: Plan, names: list[str], job: Job, worker: str) -> None:
    """Segment ``names`` into staging folders and commit each with its completion record."""
    if not names:
        return
    p = cfg.prop
    extractor = build_extractor(cfg, job.device(cfg.run.device))
    propagator = LabelPropagator(radius=p.radius, temperature=p.temperature, topk=p.topk, context=p.context,
                                 num_classes=p.num_classes, impl=p.impl)
    vis_root = Path(f"{plan.out}_vis") if cfg.run.visualize else None
    by_name = {s.name: s for s in plan.sequences}
    for name in tqdm(names, desc=f"{result_tag(cfg)} {cfg.data.dataset} ({worker})", unit="seq",
                     disable=not job.is_main):
        seq = by_name[name]
        staging = plan.folder.start(name)
        start = time.perf_counter()
        segment_sequence(seq, extractor, propagator, staging, cfg, vis_root / name if vis_root else None,
                         progress=job.is_main)
        record = Record(name, plan.folder.settings, tuple(output_files(seq)), len(seq.frames),
                        round(time.perf_counter() - start, 3), worker)
        plan.folder.commit(record, sequence_dir(plan.out, cfg.data.dataset, name))


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
