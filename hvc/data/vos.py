"""VOS benchmarks (DAVIS 2016/2017, YouTube-VOS 2018/2019, VOST; trees: data/README.md) read into
:class:`VideoSequence` lists; :class:`FrameDataset` turns one into normalised tensors."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from hvc.data.frames import read_rgb, to_input
from hvc.data.sequence import (DAVIS_ANNOTATIONS, DAVIS_FRAMES, DAVIS_SPLITS, DatasetError, MaskFormat, VideoSequence,
                               check_no_gaps, image_size, list_frames, object_ids, read_label_png, require, select)
from hvc.names import check_name, read_name_list, short

YTVOS_DATASETS = ("ytvos", "ytvos19")
FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")


def read_label_map(path: Path, mask_format: MaskFormat, size: tuple[int, int]) -> np.ndarray:
    """Object ids int64 [H, W] of an annotation (binary 0/255 -> {0, 1}, palette: the index, void 255 -> 0);
    a size other than the frame's ``size`` (H, W) is an error."""
    values = read_label_png(path, DatasetError, palette=mask_format == "palette")
    if values.shape != tuple(size):
        (h, w), (fh, fw) = values.shape, size
        raise DatasetError(f"{path}: mask size {h}x{w} differs from the frame size {fh}x{fw}")
    return object_ids(values, binary=mask_format == "binary").astype(np.int64)


def first_mask_problems(seq: VideoSequence, ids: np.ndarray) -> list[str]:
    """Warnings about the first annotation's object ids ``ids`` [H, W] that the official tools accept but a user
    hardly means: no object at all; where one mask gives every object (DAVIS), ids 1 and 3 without 2."""
    present = sorted(int(i) for i in np.unique(ids) if i != 0)
    if not present:
        return [f"sequence {seq.name}: the first-frame mask {seq.annotations[min(seq.annotations)]} holds no object "
                f"(all background); every prediction will be background"]
    missing = sorted(set(range(1, present[-1] + 1)) - set(present))
    if missing and len(seq.annotations) == 1:
        return [f"sequence {seq.name}: the first-frame mask {seq.annotations[0]} has object ids {present} "
                f"without {missing[:10]}; the evaluation counts the missing ids as objects"]
    return []


def _files(folder: Path, pattern: str) -> list[Path]:
    found = sorted(folder.glob(pattern))
    if not found:
        raise DatasetError(f"{folder}: no {pattern} files")
    return found


def davis_sequences(root: str | os.PathLike, dataset: str, wanted: Sequence[str] = ()) -> list[VideoSequence]:
    """DAVIS 2016 / 2017 sequences of ``ImageSets/<year>/<split>.txt`` (480p); all frames written."""
    root = Path(root)
    year, split, mask_format = DAVIS_SPLITS[dataset]
    listing = require(root / "ImageSets" / year / f"{split}.txt", root, "DAVIS")
    sequences = []
    for name in select(read_name_list(listing, DatasetError), wanted, listing):
        frames = list_frames(root / DAVIS_FRAMES / name, FRAME_SUFFIXES, DatasetError)
        check_no_gaps(frames, name)
        first = root / DAVIS_ANNOTATIONS / name / f"{frames[0].stem}.png"
        if not first.is_file():
            raise DatasetError(f"{first}: first-frame mask not found")
        sequences.append(VideoSequence(name, tuple(frames), {0: first}, tuple(range(len(frames))), mask_format))
    return sequences


def ytvos_sequences(root: str | os.PathLike, wanted: Sequence[str] = ()) -> list[VideoSequence]:
    """YouTube-VOS validation videos of ``valid/meta.json``: frames of ``valid_all_frames/JPEGImages/<video>/``
    from the first annotated one on; each file of ``valid/Annotations/<video>/`` introduces the objects
    first seen there; only the frames meta.json lists are written (the submission layout)."""
    root = Path(root)
    meta_path = require(root / "valid" / "meta.json", root, "YouTube-VOS (YTB/<year>)")
    videos = _read_meta(meta_path)
    sequences = []
    for name in select(sorted(videos), wanted, meta_path):
        ann = _files(root / "valid" / "Annotations" / name, "*.png")
        frames = list_frames(root / "valid_all_frames/JPEGImages" / name, FRAME_SUFFIXES, DatasetError)
        stems = [p.stem for p in frames]
        if ann[0].stem not in stems:
            raise DatasetError(f"{ann[0]}: its frame is missing from {frames[0].parent}")
        frames = frames[stems.index(ann[0].stem):]
        index = {p.stem: t for t, p in enumerate(frames)}
        for stem in [*(p.stem for p in ann), *videos[name]]:
            if stem not in index:
                raise DatasetError(f"{frames[0].parent}: frame {stem} of video {name} (listed in "
                                   f"{meta_path.name} or annotated) is missing")
        outputs = tuple(index[f] for f in videos[name])
        check_no_gaps(frames, name, max([*outputs, *(index[p.stem] for p in ann)]))
        sequences.append(VideoSequence(name, tuple(frames), {index[p.stem]: p for p in ann}, outputs, "palette"))
    return sequences


def vost_sequences(root: str | os.PathLike, wanted: Sequence[str] = ()) -> list[VideoSequence]:
    """VOST val (docs/tasks.md), DAVIS-like with sparse annotations: the sequences of ``ImageSets/val.txt``, frames
    from the first annotated one on, which is the input; the annotated frames are the outputs."""
    root = Path(root)
    listing = require(root / "ImageSets" / "val.txt", root, "VOST")
    sequences = []
    for name in select(read_name_list(listing, DatasetError), wanted, listing):
        frames, labels = _files(root / "JPEGImages" / name, "*.jpg"), _files(root / "Annotations" / name, "*.png")
        index = {p.stem: t for t, p in enumerate(frames)}
        orphans = [p for p in labels if p.stem not in index]
        if orphans:
            raise DatasetError(f"{orphans[0]}: no frame {orphans[0].stem}.jpg in {frames[0].parent}")
        start = index[labels[0].stem]
        frames, outputs = frames[start:], tuple(index[p.stem] - start for p in labels)
        check_no_gaps(frames, name, max(outputs))  # frames between the annotations are all there
        sequences.append(VideoSequence(name, tuple(frames), {0: labels[0]}, outputs, "palette"))
    return sequences


def _read_meta(meta_path: Path) -> dict[str, list[str]]:
    """``{video: sorted frame names to write}`` of a YouTube-VOS meta.json, checked to be of the form
    ``{"videos": {video: {"objects": {id: {"frames": [name, ...]}}}}}``."""
    try:
        meta = json.loads(meta_path.read_text())
    except ValueError as exc:  # UnicodeDecodeError among them
        raise DatasetError(f"{meta_path}: not a YouTube-VOS meta.json (invalid JSON: {exc})") from None
    videos = meta.get("videos") if isinstance(meta, dict) else None
    if not isinstance(videos, dict):
        raise DatasetError(f"{meta_path}: not a YouTube-VOS meta.json (no 'videos' mapping at the top level)")
    listed = {}
    for name, video in videos.items():
        objects = video.get("objects") if isinstance(video, dict) else None
        if not isinstance(objects, dict) or not all(
                isinstance(obj, dict) and isinstance(obj.get("frames"), list)
                and all(isinstance(f, str) for f in obj["frames"]) for obj in objects.values()):
            raise DatasetError(f"{meta_path}: video {short(name)} is not of the form "
                               '{"objects": {"<id>": {"frames": ["<name>", ...]}}}')
        check_name(name, f"{meta_path}, key videos", error=DatasetError)
        frames, where = set(), f"{meta_path}, videos.{name}.objects"
        for obj_id, obj in objects.items():
            check_name(obj_id, where, error=DatasetError)
            frames.update(check_name(frame_stem(f), f"{where}.{obj_id}.frames", error=DatasetError)
                          for f in obj["frames"])
        listed[name] = sorted(frames)
    return listed


def frame_stem(name: str) -> str:
    """A frame name as meta.json may give it, ``00005`` or ``00005.jpg``: ``00005``."""
    stem, ext = os.path.splitext(name)
    return stem if ext.lower() in (".jpg", ".jpeg", ".png") else name


def load_sequences(dataset: str, root: str | os.PathLike, wanted: Sequence[str] = ()) -> list[VideoSequence]:
    """The sequences of benchmark ``dataset`` (davis16, davis17, davis17dev, ytvos, ytvos19, vost)."""
    if dataset in DAVIS_SPLITS:
        return davis_sequences(root, dataset, wanted)
    if dataset in YTVOS_DATASETS:
        return ytvos_sequences(root, wanted)
    if dataset == "vost":  # VOST val: DAVIS-like, sparse annotations
        return vost_sequences(root, wanted)
    raise DatasetError(f"data.dataset: {dataset!r} is not one of {[*DAVIS_SPLITS, *YTVOS_DATASETS, 'vost']}")


def scaled_size(size: tuple[int, int], shorter: int) -> tuple[int, int]:
    """(h, w) with the shorter side ``shorter`` (truncated like the official scale_smallest); -1 keeps ``size``."""
    h, w = size
    if shorter < 0:
        return h, w
    return (shorter, int(w * shorter / h)) if h <= w else (int(h * shorter / w), shorter)


class FrameDataset(Dataset):
    """Frames of one sequence (anything with a ``frames`` tuple of image files) for the encoder: ``dataset[t] ->
    [3, h, w]`` float32, RGB in [0, 1], resized, normalised. ``"shorter"``: the shorter side becomes ``input_size``
    (bilinear, align_corners=True, the official HVC loader); ``"square"``: ``input_size`` x ``input_size`` with
    half-pixel centres (``cv2.resize`` in videowalk's JHMDB / VIP loaders). ``input_size`` = -1 keeps the size."""

    def __init__(self, sequence: VideoSequence, input_size: int, mean: Sequence[float], std: Sequence[float],
                 resize: Literal["shorter", "square"] = "shorter"):
        self.sequence = sequence
        self.size = image_size(sequence.frames[0])
        square = resize == "square" and input_size > 0
        self.out_size = (input_size, input_size) if square else scaled_size(self.size, input_size)
        self.align_corners = not square
        self.mean, self.std = (torch.tensor(v, dtype=torch.float32).view(3, 1, 1) for v in (mean, std))

    def __len__(self) -> int:
        return len(self.sequence.frames)

    def __getitem__(self, t: int) -> Tensor:
        path = self.sequence.frames[t]
        rgb = read_rgb(path, DatasetError, "frame")  # a writable copy for torch.from_numpy; 16-bit grey scaled
        if rgb.shape[:2] != self.size:
            (h, w), (sh, sw) = rgb.shape[:2], self.size
            raise DatasetError(f"{path}: frame size {h}x{w} differs from the sequence's {sh}x{sw}")
        return to_input(rgb, self.out_size, self.mean, self.std, self.align_corners)
