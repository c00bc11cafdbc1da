"""Label propagation over a benchmark: frames -> features -> propagated labels -> PNGs.

Frames stream through a DataLoader, the encoder runs on batches of frames and each
frame's embedding goes straight into the propagator, so memory stays bounded by the
propagator's context (not the video length).
"""

from __future__ import annotations

import contextlib
import logging
import zipfile
from pathlib import Path
from typing import Optional

import torch
from torch import Tensor
from torch.utils.data import DataLoader
from tqdm import tqdm

from hvc.config.core import ConfigError, dump_yaml, load_config, to_dict
from hvc.config.inference import TestConfig
from hvc.data.palette import save_indexed_png
from hvc.data.vos import YTVOS_DATASETS, FrameDataset, VideoSequence, load_sequences, read_label_map
from hvc.fileio import atomic_path, atomic_write_text
from hvc.models.encoders import load_encoder
from hvc.propagation import LabelPropagator, embed, upsample_labels
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


def build_extractor(cfg: TestConfig) -> FeatureExtractor:
    m = cfg.model
    device = torch.device(cfg.run.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"run.device={cfg.run.device} but CUDA is not available; use --device cpu")
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


def is_finished(seq: VideoSequence, folder: Path) -> bool:
    """All output PNGs exist (they are written atomically, so existing files are complete)."""
    return all((folder / f"{seq.frame_name(t)}.png").is_file() for t in seq.outputs)


def segment_sequence(seq: VideoSequence, extractor: FeatureExtractor, propagator: LabelPropagator,
                     folder: Path, cfg: TestConfig, vis_folder: Optional[Path] = None) -> None:
    """Propagate the annotations of ``seq`` through all its frames; write the output frames."""
    frames = FrameDataset(seq, cfg.data.input_size, cfg.data.mean, cfg.data.std, resize=cfg.data.resize)
    loader = DataLoader(frames, batch_size=cfg.data.batch_size, num_workers=cfg.data.workers,
                        pin_memory=extractor.device.type == "cuda")
    outputs = set(seq.outputs)
    propagator.reset()
    with contextlib.ExitStack() as stack:
        vis = stack.enter_context(SequenceVisualizer(vis_folder, cfg.run.fps)) if vis_folder else None
        bar = stack.enter_context(tqdm(total=len(frames), desc=seq.name, unit="frame", leave=False))
        t = 0
        for batch in loader:
            for emb in extractor(batch):
                labels = None
                if t in seq.annotations:
                    ids = read_label_map(seq.annotations[t], seq.mask_format, frames.size)
                    labels = torch.from_numpy(ids).to(extractor.device)
                soft = propagator.step(emb, labels)
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
    ignored = ("root", "sequences", "video_list", "workers", "batch_size")  # what, where and how fast
    data = {k: v for k, v in d["data"].items() if k not in ignored}
    return {"model": d["model"], "data": data, "prop": d["prop"]}


def _check_protocol(cfg: TestConfig, record: Path) -> None:
    """Refuse to mix results of different settings in one folder (unless overwriting)."""
    if record.is_file() and not cfg.run.overwrite and _protocol(load_config(TestConfig, record)) != _protocol(cfg):
        raise ConfigError(f"{record.parent} holds results made with other settings (see {record}); "
                          f"pass --overwrite to redo them or choose another run.output_dir")


def zip_submission(out: Path) -> Path:
    """``<out>/submission.zip`` holding ``Annotations/<video>/<frame>.png`` (YouTube-VOS upload)."""
    target = out / "submission.zip"
    with atomic_path(target) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for png in sorted((out / "Annotations").rglob("*.png")):
            zf.write(png, png.relative_to(out).as_posix())
    return target


def run_inference(cfg: TestConfig) -> Path:
    """Run label propagation on every sequence of ``cfg.data``; returns the output folder."""
    sequences = load_sequences(cfg.data.dataset, cfg.data.root, cfg.data.sequences)
    out = output_dir(cfg)
    record = out / "config.yaml"
    _check_protocol(cfg, record)
    todo = [s for s in sequences if cfg.run.overwrite or not is_finished(s, sequence_dir(out, cfg.data.dataset, s.name))]
    if len(todo) < len(sequences):
        log.info("skipping %d finished sequence(s) in %s (--overwrite to redo)", len(sequences) - len(todo), out)
    if todo:
        extractor = build_extractor(cfg)
        propagator = LabelPropagator(cfg.prop)
        atomic_write_text(record, dump_yaml(cfg))  # only once the settings are known to work
        vis_root = Path(f"{out}_vis") if cfg.run.visualize else None
        for seq in tqdm(todo, desc=f"{result_tag(cfg)} {cfg.data.dataset}", unit="seq"):
            segment_sequence(seq, extractor, propagator, sequence_dir(out, cfg.data.dataset, seq.name), cfg,
                             vis_root / seq.name if vis_root else None)
    if cfg.data.dataset in YTVOS_DATASETS:
        log.info("wrote %s", zip_submission(out))
    return out
