"""The clips of ``test.py``'s benchmarks (docs/tasks.md): what :func:`hvc.inference.run_inference` needs to know of
each, its frames, first labels, where its files go (:mod:`hvc.completion`) and their writer, which takes the soft
masks frame after frame (``add(t, soft)``) into the clip's staging folder (``close`` ends the clip). JHMDB's joints
become label maps and back as in videowalk (``code/data/jhmdb.py``, ``code/utils/test_utils.py``), quirks included."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from hvc.completion import Outputs
from hvc.config.core import ConfigError
from hvc.config.inference import TestConfig
from hvc.data.jhmdb import NUM_JOINTS, JHMDBVideo, check_frame_count, jhmdb_videos, save_keypoints
from hvc.data.palette import save_indexed_png
from hvc.data.vip import NUM_CLASSES as VIP_CLASSES
from hvc.data.vip import VIPVideo, read_class_ids, vip_videos
from hvc.data.vos import (YTVOS_DATASETS, DatasetError, FrameDataset, VideoSequence, first_mask_problems,
                          load_sequences, read_label_map)
from hvc.data.sequence import image_size
from hvc.exports import SequenceVisualizer
from hvc.fileio import atomic_path
from hvc.metrics.report import PCK_NAME, VIP_NAME
from hvc.metrics.pck import default_list
from hvc.propagation import upsample_argmax

log = logging.getLogger(__name__)

TASKS = ("jhmdb", "vip")  # soft labels in, their own files out; every other dataset is VOS
CHANNELS = {"jhmdb": 1 + NUM_JOINTS, "vip": VIP_CLASSES}  # label channels = prop.num_classes
# What eval_metrics.py writes next to the results (hvc/metrics/report.py): stale once they change.
SCORES = {"jhmdb": (f"{PCK_NAME}.csv", f"{PCK_NAME}.png"), "vip": (f"{VIP_NAME}.json", f"{VIP_NAME}.png")}
VOS_SCORES = ("global_results-*.csv", "per-sequence_results-*.csv", "per-sequence_results-*.png")
SIGMA = 0.5  # Gaussian width in feature cells (videowalk's JhmdbSet default)
TOPK = 3  # positions averaged when decoding a joint map
LOST = -1.0  # coordinate of a joint whose propagated map is all zero

Labels = tuple[Optional[Tensor], Optional[Tensor]]  # (ids [H, W] int, soft labels [K, h, w] float): either None


def gaussian_heatmap(point_xy: tuple[float, float], map_hw: tuple[int, int], sigma: float = SIGMA) -> np.ndarray:
    """One joint as an unnormalised Gaussian (peak 1) in an empty [h, w] float64 map, as videowalk's
    ``draw_labelmap_np``: a (6σ+1)-wide kernel pasted with its upper-left corner at ``int(pt - 3σ)`` (truncated
    toward zero; docs/tasks.md). ``point_xy``: (x, y) at feature resolution, may lie outside the map."""
    h, w = map_hw
    out = np.zeros((h, w), dtype=np.float64)
    x, y = float(point_xy[0]), float(point_xy[1])
    left, top = int(x - 3 * sigma), int(y - 3 * sigma)
    right, bottom = int(x + 3 * sigma + 1), int(y + 3 * sigma + 1)
    if left >= w or top >= h or right < 0 or bottom < 0:  # the window misses the map
        return out
    size = 6 * sigma + 1
    grid, centre = np.arange(0, size, 1, float), size // 2
    kernel = np.exp(-((grid[None, :] - centre) ** 2 + (grid[:, None] - centre) ** 2) / (2 * sigma**2))
    # The pasted part: kernel columns [max(0, -left), min(right, w) - left), same for rows.
    out[max(0, top):min(bottom, h), max(0, left):min(right, w)] = kernel[max(0, -top):min(bottom, h) - top,
                                                                         max(0, -left):min(right, w) - left]
    return out


def joint_label_maps(points_xy: np.ndarray, map_hw: tuple[int, int], sigma: float = SIGMA) -> np.ndarray:
    """The label maps [J + 1, h, w] float32 (as videowalk's label tensor) of the joints ``points_xy`` [2, J] (x row 0,
    y row 1) at feature resolution: background (1 where no joint map reaches), then a Gaussian per joint."""
    points_xy = np.asarray(points_xy, dtype=np.float64)
    if points_xy.ndim != 2 or points_xy.shape[0] != 2:
        raise ValueError(f"expected joints as [2, J] (x row, y row), got shape {points_xy.shape}")
    joints = np.stack([gaussian_heatmap(p, map_hw, sigma) for p in points_xy.T]).astype(np.float32)
    background = (joints.sum(0) == 0).astype(np.float32)
    return np.concatenate([background[None], joints])


def feature_coords(pos_img: np.ndarray, image_wh: tuple[int, int], input_wh: tuple[int, int],
                   stride: tuple[int, int] | int) -> np.ndarray:
    """JHMDB joints ``pos_img`` [2, J, T] (x row 0, y row 1; 1-based image pixels) at feature resolution, [2, J, T]
    float64, as videowalk's ``JhmdbSet``: ``(pos - 1) * new_size / old_size / stride`` per axis, in that order.
    image_wh, input_wh: (width, height); stride: (x, y) or one int."""
    sx, sy = (stride, stride) if np.isscalar(stride) else stride
    coords = np.asarray(pos_img, dtype=np.float64) - 1
    coords[0] = coords[0] * float(input_wh[0]) / float(image_wh[0]) / sx
    coords[1] = coords[1] * float(input_wh[1]) / float(image_wh[1]) / sy
    return coords


def decode_keypoints(maps: np.ndarray | Tensor) -> np.ndarray:
    """Joints [2, K - 1] float32 (x row 0, y row 1, feature resolution) of propagated label maps [K, h, w], channel 0
    the background (videowalk's ``process_pose``): per joint, the TOPK largest values, normalised, weight their
    positions; an all-zero map is lost, (-1, -1). float32 and torch.topk on [h*w, J] as the official code: same ties."""
    maps = torch.as_tensor(maps)
    if maps.ndim != 3 or maps.shape[0] < 2:
        raise ValueError(f"expected label maps [K, h, w] with a background channel, got shape {tuple(maps.shape)}")
    joints = maps[1:].permute(1, 2, 0)  # [h, w, J], the official layout
    flat = joints.flatten(0, 1)  # [h*w, J]
    vals, ids = torch.topk(flat, k=min(flat.shape[0], TOPK), dim=0)
    vals = vals / vals.sum(0)[None]
    coords = torch.stack([((ids % maps.shape[2]) * vals).sum(0), ((ids // maps.shape[2]) * vals).sum(0)])
    coords[:, flat.sum(0) == 0] = LOST
    return coords.numpy()


class LabelPngWriter:
    """VOS and VIP: the labels of the frames ``names`` (t -> file stem) as ``<folder>/<name>.png`` at ``size`` (H, W),
    the argmax of the bilinearly up-sampled soft masks. ``palette``: VOS's object ids in the DAVIS palette, also to
    the overlay writer ``vis`` with the frame from ``images``; else VIP's class ids in greyscale (docs/tasks.md)."""

    def __init__(self, folder: Path, names: dict[int, str], size: tuple[int, int], palette: bool,
                 vis: Optional[SequenceVisualizer] = None, images: Sequence[Path] = ()):
        self.folder, self.names, self.size, self.palette = folder, names, size, palette
        self.vis, self.images, self.written = vis, images, 0

    def add(self, t: int, soft: Tensor) -> None:
        """soft: [num_classes, h, w] propagated masks of frame t."""
        if t not in self.names:
            return
        pred = upsample_argmax(soft, self.size).cpu().numpy()
        if self.palette:
            save_indexed_png(self.folder / f"{self.names[t]}.png", pred)
        else:
            with atomic_path(self.folder / f"{self.names[t]}.png") as tmp:
                Image.fromarray(pred).save(tmp, format="PNG")  # uint8 [H, W] -> mode L
        if self.vis is not None:
            self.vis.add(self.images[t], pred)
        self.written += 1

    def close(self) -> None:
        if self.written != len(self.names):  # never end a clip that stopped half-way
            raise RuntimeError(f"{self.folder}: {self.written} of {len(self.names)} frames propagated")


class KeypointWriter:
    """JHMDB: every propagated frame (frame 0 too, as videowalk's) decoded to joints at feature resolution; at
    ``close``, the clip's [2, J, T] array and the label-map size saved as ``path`` (hvc/data/jhmdb.py)."""

    def __init__(self, path: Path, num_frames: int):
        self.path, self.num_frames = path, num_frames
        self.coords: list[np.ndarray] = []  # per frame: [2, J] (x row 0, y row 1), -1 = lost
        self.feature_wh: tuple[int, int] | None = None

    def add(self, t: int, soft: Tensor) -> None:
        """soft: [1 + J, h, w] propagated maps of frame t, channel 0 the background."""
        self.feature_wh = (soft.shape[2], soft.shape[1])
        self.coords.append(decode_keypoints(soft.cpu()))

    def close(self) -> None:
        if len(self.coords) != self.num_frames:  # never write a clip that stopped half-way
            raise RuntimeError(f"{self.path}: {len(self.coords)} of {self.num_frames} frames propagated")
        save_keypoints(self.path, np.stack(self.coords, axis=-1), self.feature_wh)


@dataclass(frozen=True)
class Clip:
    """One clip of a benchmark. ``video.frames``: the frames propagated through; ``outputs``: where its files go;
    ``labels_at(t, frames, emb)``: the labels frame t adds (``emb``: its features [C, h, w]; ids seen before are not
    corrected); ``writer(frames, folder, vis)``: writes ``outputs.files`` into the clip's staging ``folder``."""

    video: Union[VideoSequence, JHMDBVideo, VIPVideo]

    @property
    def name(self) -> str:
        return self.video.name

    def check(self) -> None:
        """Read what the clip starts from (DatasetError naming a bad file); runs for every clip before any output."""


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
        if ids.max() >= self.num_classes:
            raise DatasetError(f"{path}: label id {ids.max()} is not below prop.num_classes={self.num_classes} "
                               "(raise it)")
        return torch.from_numpy(ids), None

    def writer(self, frames: FrameDataset, folder: Path, vis: Optional[SequenceVisualizer]) -> LabelPngWriter:
        names = {t: self.video.frame_name(t) for t in self.video.outputs}
        return LabelPngWriter(folder, names, frames.size, palette=True, vis=vis, images=self.video.frames)


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
        """Frame 0: background + 15 Gaussian joint maps at feature resolution (videowalk's ``JhmdbSet``): image
        pixels to the input size, then to cells by the stride input size / feature size (as videowalk: 320 -> 40: 8)."""
        if t:
            return None, None
        joints = self.video.joints()  # [2, 15, T], 1-based pixels, checked by check()
        (in_h, in_w), (h, w) = frames.out_size, tuple(emb.shape[1:])
        coords = feature_coords(joints[:, :, :1], (frames.size[1], frames.size[0]), (in_w, in_h), (in_w / w, in_h / h))
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
            raise DatasetError(f"{path}: size {ids.shape[0]}x{ids.shape[1]} differs from its frame's {height}x{width}")
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
        raise ConfigError(f"{task} propagates {CHANNELS[task]} label channels: set prop.num_classes={CHANNELS[task]}")
    if cfg.run.visualize:
        raise ConfigError(f"run.visualize (--visualize) writes VOS overlays; it is not available for {task}")
    if task == "jhmdb":
        return [JHMDBClip(v, out) for v in jhmdb_videos(data.root, default_list(data.root, data.video_list),
                                                        data.sequences)]
    return [VIPClip(v, out) for v in vip_videos(data.root, data.video_list, data.sequences)]


def locate(dataset: str, out: Path, name: str) -> Outputs:
    """Where the files of any ``name`` (of an earlier selection too) go: JHMDB ``<out>/<class>/<video>.npz``, the class
    folder shared by its clips; DAVIS, VOST, VIP ``<out>/<name>``; YouTube-VOS ``<out>/Annotations/<video>``."""
    if dataset == "jhmdb":
        path = Path(name)
        return Outputs(out / path.parent, (f"{path.name}.npz",), shared=True)
    return Outputs(out / "Annotations" / name if dataset in YTVOS_DATASETS else out / name, ())
