"""``test.py`` beyond VOS: JHMDB pose tracking and VIP part propagation (docs/tasks.md).

Both run on the engine of the VOS path (the same encoders, :class:`LabelPropagator` and its
kernels); what differs is how a clip starts and what is written:

* JHMDB: the 15 joints of frame 0 become Gaussian maps plus a background channel at feature
  resolution (:func:`hvc.tasks.pose.joint_label_maps`), enter the propagator as soft labels,
  and every frame is decoded back to coordinates (:class:`~hvc.tasks.writers.KeypointWriter`).
* VIP: the class ids of the first annotated frame enter as a 20-channel one-hot map; the
  propagation runs over the annotated frames only, as the paper's list does, and every frame
  is written as class ids (:class:`~hvc.tasks.writers.ClassIdWriter`).

DAVIS, YouTube-VOS and VOST (indexed PNGs) go through :func:`hvc.inference.run_inference`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Union

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader
from tqdm import tqdm

from hvc.config.core import ConfigError, dump_yaml, load_config
from hvc.config.inference import TestConfig
from hvc.data.jhmdb import JHMDBVideo, check_frame_count, image_size, jhmdb_videos
from hvc.data.vip import NUM_CLASSES as VIP_CLASSES
from hvc.data.vip import VIPVideo, read_class_ids, vip_videos
from hvc.data.vos import DatasetError, FrameDataset
from hvc.fileio import atomic_write_text
from hvc.inference import FeatureExtractor, build_extractor, run_inference
from hvc.results import _protocol, output_dir, result_tag
from hvc.metrics.pck import default_list
from hvc.propagation import LabelPropagator
from hvc.tasks.pose import NUM_JOINTS, feature_coords, joint_label_maps
from hvc.tasks.writers import ClassIdWriter, KeypointWriter

log = logging.getLogger(__name__)

TASKS = ("jhmdb", "vip")  # run here; every other dataset by hvc.inference
CHANNELS = {"jhmdb": 1 + NUM_JOINTS, "vip": VIP_CLASSES}  # label channels = prop.num_classes

Writer = Union[KeypointWriter, ClassIdWriter]


class TaskClip(Protocol):
    """One clip of a task: its frames, its first labels and its writer."""

    name: str
    video: Union[JHMDBVideo, VIPVideo]  # .frames: the frames propagated through, in order

    def finished(self) -> bool:
        """Whether its output exists (written atomically, so complete)."""

    def check(self) -> None:
        """Read what the clip starts from; DatasetError naming the file if it is bad. Called for
        every clip before anything is written, so bad input leaves no partial output."""

    def first_labels(self, frames: FrameDataset, feature_hw: tuple[int, int]) -> Tensor:
        """Soft labels [K, H, W] float32 of frame 0."""

    def writer(self, frames: FrameDataset) -> Writer:
        """The writer that receives the clip's propagated frames."""


@dataclass(frozen=True)
class JHMDBClip:
    """A JHMDB clip: joints of frame 0 in, ``<out>/<class>/<video>.npz`` out."""

    video: JHMDBVideo
    out: Path

    @property
    def name(self) -> str:
        return self.video.name

    @property
    def path(self) -> Path:
        return self.out / f"{self.video.name}.npz"

    def finished(self) -> bool:
        return self.path.is_file()

    def check(self) -> None:
        check_frame_count(self.video, self.video.joints())

    def first_labels(self, frames: FrameDataset, feature_hw: tuple[int, int]) -> Tensor:
        """Background + 15 Gaussian joint maps at feature resolution (videowalk's ``JhmdbSet``).

        The joints go from image pixels to the input size the frames were resized to, then to
        feature cells by the encoder's stride, input size / feature size (videowalk infers it
        the same way from its encoder: 8 for 320 -> 40).
        """
        joints = self.video.joints()  # [2, 15, T], 1-based pixels
        check_frame_count(self.video, joints)
        (in_h, in_w), (h, w) = frames.out_size, feature_hw
        coords = feature_coords(joints[:, :, :1], (frames.size[1], frames.size[0]), (in_w, in_h),
                                (in_w / w, in_h / h))
        return torch.from_numpy(joint_label_maps(coords[:, :, 0], (h, w)))

    def writer(self, frames: FrameDataset) -> KeypointWriter:
        return KeypointWriter(self.path, len(frames))


@dataclass(frozen=True)
class VIPClip:
    """A VIP video (its annotated frames): class ids of the first in, ``<out>/<video>/<frame>.png`` out."""

    video: VIPVideo
    out: Path

    @property
    def name(self) -> str:
        return self.video.name

    def finished(self) -> bool:
        return all((self.out / self.name / f"{f}.png").is_file() for f in self.video.frame_names())

    def check(self) -> None:
        self._first_ids()

    def _first_ids(self) -> np.ndarray:
        """Class ids of the first annotated frame, [H, W] uint8, checked against the frame's size."""
        path, frame = self.video.annotations[0], self.video.frames[0]
        ids = read_class_ids(path)
        width, height = image_size(frame)
        if ids.shape != (height, width):
            raise DatasetError(f"{path}: annotation size {ids.shape[0]}x{ids.shape[1]} differs from the "
                               f"size of its frame {frame} ({height}x{width})")
        return ids

    def first_labels(self, frames: FrameDataset, feature_hw: tuple[int, int]) -> Tensor:
        """20-channel one-hot map of the first annotation at its full size; ignored pixels (255)
        get no channel, so they vote for nothing when the map is resized to the features."""
        ids = self._first_ids()
        onehot = ids[None] == np.arange(VIP_CLASSES, dtype=ids.dtype)[:, None, None]  # 255 matches none
        return torch.from_numpy(onehot.astype(np.float32))

    def writer(self, frames: FrameDataset) -> ClassIdWriter:
        return ClassIdWriter(self.out / self.name, self.video.frame_names(), frames.size)


def task_clips(cfg: TestConfig, out: Path) -> list[TaskClip]:
    """The clips of ``cfg.data`` (a task of :data:`TASKS`), their outputs under ``out``."""
    data = cfg.data
    if data.dataset == "jhmdb":
        videos = jhmdb_videos(data.root, default_list(data.root, data.video_list), data.sequences)
        return [JHMDBClip(v, out) for v in videos]
    return [VIPClip(v, out) for v in vip_videos(data.root, data.video_list, data.sequences)]


def propagate_clip(clip: TaskClip, extractor: FeatureExtractor, propagator: LabelPropagator,
                   cfg: TestConfig) -> None:
    """Propagate the first labels of ``clip`` through its frames into its writer."""
    frames = FrameDataset(clip.video, cfg.data.input_size, cfg.data.mean, cfg.data.std, resize=cfg.data.resize)
    loader = DataLoader(frames, batch_size=cfg.data.batch_size, num_workers=cfg.data.workers,
                        pin_memory=extractor.device.type == "cuda")
    writer = clip.writer(frames)
    propagator.reset()
    t = 0
    with tqdm(total=len(frames), desc=clip.name, unit="frame", leave=False) as bar:
        for batch in loader:
            for emb in extractor(batch):
                first = clip.first_labels(frames, tuple(emb.shape[1:])).to(emb.device) if t == 0 else None
                writer.add(propagator.step(emb, soft_labels=first))
                t += 1
                bar.update()
    writer.close()


def _check_task_settings(cfg: TestConfig) -> None:
    task = cfg.data.dataset
    if cfg.prop.num_classes != CHANNELS[task]:
        raise ConfigError(f"{task} propagates {CHANNELS[task]} label channels: set prop.num_classes="
                          f"{CHANNELS[task]} (got {cfg.prop.num_classes})")
    if cfg.run.visualize:
        raise ConfigError(f"run.visualize (--visualize) writes VOS overlays; it is not available for {task}")


def _check_protocol(cfg: TestConfig, record: Path) -> None:
    """Refuse to mix clips made with other settings in one folder (unless overwriting)."""
    if record.is_file() and not cfg.run.overwrite and _protocol(load_config(TestConfig, record)) != _protocol(cfg):
        raise ConfigError(f"{record.parent}: holds results made with other settings (see {record}); "
                          f"pass --overwrite to redo them or choose another run.output_dir")


def run_task(cfg: TestConfig) -> Path:
    """Propagate every clip of a JHMDB or VIP run; returns the output folder.

    As :func:`hvc.inference.run_inference`: clips whose output exists are skipped (unless
    ``run.overwrite``), and the settings are recorded in ``<out>/config.yaml``, refusing to mix
    results of other settings in one folder.
    """
    _check_task_settings(cfg)
    out = output_dir(cfg)
    clips = task_clips(cfg, out)
    for clip in clips:
        clip.check()
    record = out / "config.yaml"
    _check_protocol(cfg, record)
    todo = [c for c in clips if cfg.run.overwrite or not c.finished()]
    if len(todo) < len(clips):
        log.info("skipping %d finished clip(s) in %s (--overwrite to redo)", len(clips) - len(todo), out)
    if todo:
        extractor = build_extractor(cfg)
        propagator = LabelPropagator(cfg.prop)
        atomic_write_text(record, dump_yaml(cfg))  # only once the settings are known to work
        for clip in tqdm(todo, desc=f"{result_tag(cfg)} {cfg.data.dataset}", unit="clip"):
            propagate_clip(clip, extractor, propagator, cfg)
    return out


def run_test(cfg: TestConfig) -> Path:
    """``test.py``: JHMDB and VIP here, every other dataset through :func:`hvc.inference.run_inference`."""
    return run_task(cfg) if cfg.data.dataset in TASKS else run_inference(cfg)
