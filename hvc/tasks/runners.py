"""``test.py`` beyond VOS: JHMDB pose tracking and VIP part propagation (docs/tasks.md).

Both run on the engine of the VOS path (:class:`hvc.segmenter.VideoSegmenter`: the same
encoders, propagator and kernels); what differs is how a clip starts and what is written:

* JHMDB: the 15 joints of frame 0 become Gaussian maps plus a background channel at feature
  resolution (:func:`hvc.tasks.pose.joint_label_maps`), enter the propagator as soft labels,
  and every frame is decoded back to coordinates (:class:`~hvc.tasks.writers.KeypointWriter`).
* VIP: the class ids of the first annotated frame enter as a 20-channel one-hot map; the
  propagation runs over the annotated frames only, as the paper's list does, and every frame
  is written as class ids (:class:`~hvc.tasks.writers.ClassIdWriter`).

The output folder follows the rules of :mod:`hvc.completion`, as VOS inference does: a clip
is finished only through its completion record, written after its last frame and naming the
settings hash (:func:`hvc.results.run_settings`); a folder never mixes two settings. The
writers write into the clip's staging folder; the files are moved into place only once the
clip is complete. JHMDB clips share their class folder (``<out>/<class>/<video>.npz``), so
they are moved in and removed file by file; a VIP clip has a folder of its own.

DAVIS, YouTube-VOS and VOST (indexed PNGs) go through :func:`hvc.inference.run_inference`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Protocol, Union

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from hvc.completion import Outputs, Record
from hvc.config.core import ConfigError
from hvc.config.inference import TestConfig
from hvc.data.jhmdb import JHMDBVideo, check_frame_count, image_size, jhmdb_videos
from hvc.data.keypoints import NUM_JOINTS
from hvc.data.vip import NUM_CLASSES as VIP_CLASSES
from hvc.data.vip import VIPVideo, read_class_ids, vip_videos
from hvc.data.vos import DatasetError, FrameDataset
from hvc.inference import propagate_frames, run_inference
from hvc.metrics.outputs import PCK_NAME, VIP_NAME
from hvc.metrics.pck import default_list
from hvc.results import output_dir, prepare_results, result_tag
from hvc.segmenter import VideoSegmenter, build_extractor
from hvc.sharding import Job
from hvc.tasks.pose import feature_coords, joint_label_maps
from hvc.tasks.writers import ClassIdWriter, KeypointWriter

log = logging.getLogger(__name__)

TASKS = ("jhmdb", "vip")  # run here; every other dataset by hvc.inference
CHANNELS = {"jhmdb": 1 + NUM_JOINTS, "vip": VIP_CLASSES}  # label channels = prop.num_classes
# What eval_metrics.py writes next to the results (hvc/metrics/outputs.py): stale once they change.
SCORES = {"jhmdb": (f"{PCK_NAME}.csv", f"{PCK_NAME}.png"), "vip": (f"{VIP_NAME}.json", f"{VIP_NAME}.png")}

Writer = Union[KeypointWriter, ClassIdWriter]


class TaskClip(Protocol):
    """One clip of a task: its frames, its first labels and its writer."""

    name: str
    video: Union[JHMDBVideo, VIPVideo]  # .frames: the frames propagated through, in order
    outputs: Outputs  # where its finished files go (hvc.completion)

    def check(self) -> None:
        """Read what the clip starts from; DatasetError naming the file if it is bad. Called for
        every clip before anything is written, so bad input leaves no partial output."""

    def first_labels(self, frames: FrameDataset, feature_hw: tuple[int, int]) -> Tensor:
        """Soft labels [K, H, W] float32 of frame 0."""

    def writer(self, frames: FrameDataset, folder: Path) -> Writer:
        """The writer that receives the clip's propagated frames and writes ``outputs.files``
        into ``folder`` (its staging folder)."""


@dataclass(frozen=True)
class JHMDBClip:
    """A JHMDB clip: joints of frame 0 in, ``<out>/<class>/<video>.npz`` out."""

    video: JHMDBVideo
    out: Path

    @property
    def name(self) -> str:
        return self.video.name

    @property
    def outputs(self) -> Outputs:
        return jhmdb_outputs(self.out, self.name)

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

    def writer(self, frames: FrameDataset, folder: Path) -> KeypointWriter:
        return KeypointWriter(folder / self.outputs.files[0], len(frames))


def jhmdb_outputs(out: Path, name: str) -> Outputs:
    """Clip ``<class>/<video>``: ``<out>/<class>/<video>.npz``, the class folder shared by its
    clips (the scorer's layout, :func:`hvc.metrics.pck.keypoint_path`)."""
    path = Path(name)
    return Outputs(out / path.parent, (f"{path.name}.npz",), shared=True)


@dataclass(frozen=True)
class VIPClip:
    """A VIP video (its annotated frames): class ids of the first in, ``<out>/<video>/<frame>.png`` out."""

    video: VIPVideo
    out: Path

    @property
    def name(self) -> str:
        return self.video.name

    @property
    def outputs(self) -> Outputs:
        return Outputs(self.out / self.name, tuple(f"{f}.png" for f in self.video.frame_names()))

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

    def writer(self, frames: FrameDataset, folder: Path) -> ClassIdWriter:
        return ClassIdWriter(folder, self.video.frame_names(), frames.size)


def task_clips(cfg: TestConfig, out: Path) -> list[TaskClip]:
    """The clips of ``cfg.data`` (a task of :data:`TASKS`), their outputs under ``out``."""
    data = cfg.data
    if data.dataset == "jhmdb":
        videos = jhmdb_videos(data.root, default_list(data.root, data.video_list), data.sequences)
        return [JHMDBClip(v, out) for v in videos]
    return [VIPClip(v, out) for v in vip_videos(data.root, data.video_list, data.sequences)]


def locate(task: str, out: Path, name: str) -> Outputs:
    """Where the files of clip ``name`` of ``task`` go, for any name (a record of an earlier run)."""
    return jhmdb_outputs(out, name) if task == "jhmdb" else Outputs(out / name, ())


def propagate_clip(clip: TaskClip, segmenter: VideoSegmenter, cfg: TestConfig, folder: Path) -> None:
    """Propagate the first labels of ``clip`` through its frames; its writer writes into ``folder``."""
    frames = FrameDataset(clip.video, cfg.data.input_size, cfg.data.mean, cfg.data.std, resize=cfg.data.resize)
    writer = clip.writer(frames, folder)
    hints = {"features": "check the weights of model.checkpoint", "soft masks": "check the prop.* settings"}
    segmenter.reset(lambda t, what: f"{clip.video.frames[t]}: {what} of frame {t} of clip {clip.name} hold NaN or inf; "
                                    f"{hints[what]}")

    def labels_at(t: int, emb: Tensor) -> tuple[None, Optional[Tensor]]:
        return None, clip.first_labels(frames, tuple(emb.shape[1:])).to(emb.device) if t == 0 else None

    propagate_frames(frames, segmenter, cfg, labels_at, lambda t, soft: writer.add(soft), clip.name)
    writer.close()


def _check_task_settings(cfg: TestConfig) -> None:
    task = cfg.data.dataset
    if cfg.prop.num_classes != CHANNELS[task]:
        raise ConfigError(f"{task} propagates {CHANNELS[task]} label channels: set prop.num_classes="
                          f"{CHANNELS[task]} (got {cfg.prop.num_classes})")
    if cfg.run.visualize:
        raise ConfigError(f"run.visualize (--visualize) writes VOS overlays; it is not available for {task}")


def run_task(cfg: TestConfig) -> Path:
    """Propagate every clip of a JHMDB or VIP run not finished with these settings; returns the
    output folder.

    As :func:`hvc.inference.run_inference` (the rules of :mod:`hvc.completion`): every clip's
    input is checked and the folder prepared (:func:`hvc.results.prepare_results`: results of
    other settings refused, or removed first with ``run.overwrite``) before anything is
    propagated; each clip is written to its staging folder and committed with its completion
    record after its last frame.
    """
    _check_task_settings(cfg)
    task = cfg.data.dataset
    device = Job().device(cfg.run.device)  # an unavailable device fails before anything is written
    out = output_dir(cfg)
    clips = task_clips(cfg, out)
    for clip in clips:
        clip.check()
    folder, todo = prepare_results(cfg, {c.name: c.outputs for c in clips}, lambda name: locate(task, out, name),
                                   [c.name for c in clips], partial=False, stale=SCORES[task])
    if len(todo) < len(clips):
        log.info("skipping %d finished clip(s) in %s (--overwrite to redo)", len(clips) - len(todo), out)
    if todo:
        segmenter = VideoSegmenter(cfg.prop, build_extractor(cfg, device))
        by_name = {c.name: c for c in clips}
        for name in tqdm(todo, desc=f"{result_tag(cfg)} {task}", unit="clip"):
            clip = by_name[name]
            staging = folder.start(name)
            start = time.perf_counter()
            propagate_clip(clip, segmenter, cfg, staging)
            record = Record(name, folder.settings, clip.outputs.files, len(clip.video.frames),
                            round(time.perf_counter() - start, 3), "single")
            folder.commit(record, clip.outputs)
    return out


def run_test(cfg: TestConfig) -> Path:
    """``test.py``: JHMDB and VIP here, every other dataset through :func:`hvc.inference.run_inference`."""
    return run_task(cfg) if cfg.data.dataset in TASKS else run_inference(cfg)
