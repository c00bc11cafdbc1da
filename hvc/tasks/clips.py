"""What each benchmark of ``test.py`` starts from and writes: its clips (docs/tasks.md). One driver,
:func:`hvc.inference.run_inference`, propagates every benchmark; a clip tells it what differs: which frames, the
labels that start it, where its finished files go (:mod:`hvc.completion`) and their writer (:mod:`hvc.tasks.writers`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
from torch import Tensor

from hvc.completion import Outputs
from hvc.config.core import ConfigError
from hvc.config.inference import TestConfig
from hvc.data.jhmdb import NUM_JOINTS, JHMDBVideo, check_frame_count, jhmdb_videos
from hvc.data.vip import NUM_CLASSES as VIP_CLASSES
from hvc.data.vip import VIPVideo, read_class_ids, vip_videos
from hvc.data.vos import (YTVOS_DATASETS, DatasetError, FrameDataset, VideoSequence, first_mask_problems,
                          load_sequences, read_label_map)
from hvc.data.sequence import image_size
from hvc.exports.overlay import SequenceVisualizer
from hvc.metrics.report import PCK_NAME, VIP_NAME
from hvc.metrics.pck import default_list
from hvc.tasks.pose import feature_coords, joint_label_maps
from hvc.tasks.writers import KeypointWriter, LabelPngWriter

log = logging.getLogger(__name__)

TASKS = ("jhmdb", "vip")  # soft labels in, their own files out; every other dataset is VOS
CHANNELS = {"jhmdb": 1 + NUM_JOINTS, "vip": VIP_CLASSES}  # label channels = prop.num_classes
# What eval_metrics.py writes next to the results (hvc/metrics/report.py): stale once they change.
SCORES = {"jhmdb": (f"{PCK_NAME}.csv", f"{PCK_NAME}.png"), "vip": (f"{VIP_NAME}.json", f"{VIP_NAME}.png")}
VOS_SCORES = ("global_results-*.csv", "per-sequence_results-*.csv", "per-sequence_results-*.png")

Labels = tuple[Optional[Tensor], Optional[Tensor]]  # (ids [H, W] int, soft labels [K, h, w] float): either None


@dataclass(frozen=True)
class Clip:
    """One clip (a sequence, a video) of a benchmark. ``video.frames``: the frames propagated through, in order;
    ``outputs``: where its finished files go; ``labels_at(t, frames, emb)``: the labels frame t adds (``emb``: its
    features [C, h, w]), ids seen before are not corrected; ``writer(frames, folder, vis)``: the writer of
    ``outputs.files`` into ``folder`` (the clip's staging folder)."""

    video: Union[VideoSequence, JHMDBVideo, VIPVideo]

    @property
    def name(self) -> str:
        return self.video.name

    def check(self) -> None:
        """Read what the clip starts from; DatasetError naming the file if it is bad. Called for every clip
        before anything is written, so bad input leaves no partial output (VOS: the sequence reader checked it)."""


@dataclass(frozen=True)
class VOSClip(Clip):
    """A DAVIS / YouTube-VOS / VOST sequence: annotated id maps in, indexed PNGs of ``video.outputs`` out."""

    video: VideoSequence
    outputs: Outputs
    num_classes: int

    def labels_at(self, t: int, frames: FrameDataset, emb: Tensor) -> Labels:
        """The id map annotated at frame t (None if none), its ids checked against ``prop.num_classes``."""
        seq = self.video
        if t not in seq.annotations:
            return None, None
        path = seq.annotations[t]
        ids = read_label_map(path, seq.mask_format, frames.size)
        for problem in first_mask_problems(seq, ids) if t == min(seq.annotations) else []:
            log.warning("warning: %s", problem)
        top = int(ids.max())
        if top >= self.num_classes:
            raise DatasetError(f"{path}: label id {top} is not below prop.num_classes={self.num_classes} "
                               f"(ids 0..{self.num_classes - 1}); raise prop.num_classes")
        return torch.from_numpy(ids), None

    def writer(self, frames: FrameDataset, folder: Path, vis: Optional[SequenceVisualizer]) -> LabelPngWriter:
        seq = self.video
        names = {t: seq.frame_name(t) for t in seq.outputs}
        return LabelPngWriter(folder, names, frames.size, palette=True, vis=vis, images=seq.frames)


def vos_outputs(out: Path, dataset: str, seq: VideoSequence) -> Outputs:
    """A folder of its own (:func:`locate`), a PNG per output frame."""
    return Outputs(locate(dataset, out, seq.name).folder, tuple(f"{seq.frame_name(t)}.png" for t in seq.outputs))


@dataclass(frozen=True)
class JHMDBClip(Clip):
    """A JHMDB clip: joints of frame 0 in, ``<out>/<class>/<video>.npz`` out."""

    video: JHMDBVideo
    out: Path

    @property
    def outputs(self) -> Outputs:
        return locate("jhmdb", self.out, self.name)

    def check(self) -> None:
        check_frame_count(self.video, self.video.joints())

    def labels_at(self, t: int, frames: FrameDataset, emb: Tensor) -> Labels:
        """Frame 0: background + 15 Gaussian joint maps at feature resolution (videowalk's ``JhmdbSet``):
        image pixels to the input size, then to feature cells by the encoder's stride, input size /
        feature size (videowalk infers it the same way from its encoder: 8 for 320 -> 40)."""
        if t:
            return None, None
        joints = self.video.joints()  # [2, 15, T], 1-based pixels
        check_frame_count(self.video, joints)
        (in_h, in_w), (h, w) = frames.out_size, tuple(emb.shape[1:])
        coords = feature_coords(joints[:, :, :1], (frames.size[1], frames.size[0]), (in_w, in_h),
                                (in_w / w, in_h / h))
        return None, torch.from_numpy(joint_label_maps(coords[:, :, 0], (h, w))).to(emb.device)

    def writer(self, frames: FrameDataset, folder: Path, vis: Optional[SequenceVisualizer]) -> KeypointWriter:
        return KeypointWriter(folder / self.outputs.files[0], len(frames))


@dataclass(frozen=True)
class VIPClip(Clip):
    """A VIP video (its annotated frames): class ids of the first in, ``<out>/<video>/<frame>.png`` out."""

    video: VIPVideo
    out: Path

    @property
    def outputs(self) -> Outputs:
        return Outputs(self.out / self.name, tuple(f"{f}.png" for f in self.video.frame_names()))

    def check(self) -> None:
        self._first_ids()

    def _first_ids(self) -> np.ndarray:
        """Class ids of the first annotated frame, [H, W] uint8, checked against the frame's size."""
        path, frame = self.video.annotations[0], self.video.frames[0]
        ids = read_class_ids(path)
        height, width = image_size(frame)
        if ids.shape != (height, width):
            raise DatasetError(f"{path}: annotation size {ids.shape[0]}x{ids.shape[1]} differs from the "
                               f"size of its frame {frame} ({height}x{width})")
        return ids

    def labels_at(self, t: int, frames: FrameDataset, emb: Tensor) -> Labels:
        """Frame 0: 20-channel one-hot map of the first annotation at its full size; ignored pixels
        (255) get no channel, so they vote for nothing when the map is resized to the features."""
        if t:
            return None, None
        ids = self._first_ids()
        onehot = ids[None] == np.arange(VIP_CLASSES, dtype=ids.dtype)[:, None, None]  # 255 matches none
        return None, torch.from_numpy(onehot.astype(np.float32)).to(emb.device)

    def writer(self, frames: FrameDataset, folder: Path, vis: Optional[SequenceVisualizer]) -> LabelPngWriter:
        return LabelPngWriter(folder, dict(enumerate(self.video.frame_names())), frames.size, palette=False)


def load_clips(cfg: TestConfig, out: Path) -> list[Clip]:
    """The clips of ``cfg.data``, their outputs under ``out``; a ConfigError for settings the task cannot run."""
    data, task = cfg.data, cfg.data.dataset
    if task not in TASKS:
        return [VOSClip(s, vos_outputs(out, task, s), cfg.prop.num_classes)
                for s in load_sequences(task, data.root, data.sequences)]
    if cfg.prop.num_classes != CHANNELS[task]:
        raise ConfigError(f"{task} propagates {CHANNELS[task]} label channels: set prop.num_classes="
                          f"{CHANNELS[task]} (got {cfg.prop.num_classes})")
    if cfg.run.visualize:
        raise ConfigError(f"run.visualize (--visualize) writes VOS overlays; it is not available for {task}")
    if task == "jhmdb":
        return [JHMDBClip(v, out) for v in jhmdb_videos(data.root, default_list(data.root, data.video_list),
                                                        data.sequences)]
    return [VIPClip(v, out) for v in vip_videos(data.root, data.video_list, data.sequences)]


def locate(dataset: str, out: Path, name: str) -> Outputs:
    """Where the files of ``name`` go, for any name (a record of an earlier selection too): JHMDB
    ``<out>/<class>/<video>.npz``, the class folder shared by its clips; DAVIS, VOST, VIP
    ``<out>/<name>``; YouTube-VOS the submission layout ``<out>/Annotations/<video>``."""
    if dataset == "jhmdb":
        path = Path(name)
        return Outputs(out / path.parent, (f"{path.name}.npz",), shared=True)
    return Outputs(out / "Annotations" / name if dataset in YTVOS_DATASETS else out / name, ())
