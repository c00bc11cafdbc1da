"""Segment anyone's video from a first-frame mask or scribbles: streaming, bounded memory,
resumable (README, "Your own video").

The output folder holds::

    masks/<frame>.png    indexed PNGs (DAVIS palette), each written atomically as it is produced
    overlay.mp4          the masks drawn over the frames (made once the last mask is written)
    summary.json         what ran on what, the objects' presence and area, timings, peak memory
    .hvc/progress.json   the completion record: settings hash, frames finished, propagator state
    .hvc/state/<t>.pt    soft masks of the frames the propagator holds, to resume exactly

A frame counts as finished only once the record says so (written after its mask and state).
A killed run started again with the same settings re-encodes the few frames the propagator
held, restores its state and continues with the next unfinished frame; the masks are then the
same, byte for byte, as an uninterrupted run's. A finished run is not redone; other settings
in the same folder are refused unless ``overwrite``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import resource
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from hvc.config.core import ConfigError
from hvc.data.frames import FrameSource, open_frames
from hvc.data.palette import save_indexed_png
from hvc.data.vos import scaled_size
from hvc.fileio import atomic_path, atomic_write_text
from hvc.propagation import PropagationConfig
from hvc.propagation.config import recorded_settings
from hvc.scribbles.fill import labels_from_scribbles
from hvc.segment.prompt import read_mask, read_scribble
from hvc.segmenter import MAX_INPUT_SIZE, SegmenterState, VideoSegmenter
from hvc.visualize import overlay

REPO = Path(__file__).resolve().parents[2]
# The committed checkpoint (checkpoints/hvc_bsds_cpu.md): what --model hvc uses unless told.
DEFAULT_HVC_CHECKPOINT = REPO / "checkpoints" / "hvc_bsds_cpu.pth"


@dataclass
class Options:
    video: Path
    output: Path
    mask: Optional[Path] = None  # exactly one of mask / scribble
    scribble: Optional[Path] = None
    model: str = "hvc"
    checkpoint: Optional[str] = None  # None: DEFAULT_HVC_CHECKPOINT for hvc, the model's default otherwise
    input_size: Optional[int] = None  # shorter side fed to the encoder; None: min(MAX_INPUT_SIZE, the frames')
    resize_mask: bool = False
    device: str = "cpu"
    context: int = 50
    memory: str = "recent"  # the memory policy, docs/memory.md
    precision: str = "fp32"  # the local kernel's arithmetic: fp32 (exact) or bf16 (docs/local_kernel.md)
    search_dims: Optional[int] = None  # the reduced search's principal axes (docs/local_kernel.md); None: all
    candidates: float = 2.0  # an approximate search's candidates, in units of topk (docs/local_kernel.md)
    overwrite: bool = False


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _video_identity(source: FrameSource) -> dict:
    """What tells this video from another at the same path."""
    if source.path.is_dir():
        return {"path": str(source.path.resolve()), "frames": [p.name for p in source.files]}
    st = source.path.stat()
    return {"path": str(source.path.resolve()), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}


class Progress:
    """The completion record ``.hvc/progress.json`` and the state files next to it."""

    def __init__(self, output: Path):
        self.dir = output / ".hvc"
        self.path = self.dir / "progress.json"
        self.state_dir = self.dir / "state"

    def load(self) -> Optional[dict]:
        return json.loads(self.path.read_text()) if self.path.is_file() else None

    def save(self, record: dict) -> None:
        atomic_write_text(self.path, json.dumps(record))

    def save_mask(self, frame: int, mask: torch.Tensor) -> None:
        with atomic_path(self.state_dir / f"{frame}.pt") as tmp:
            torch.save(mask.cpu().clone(), tmp)

    def load_mask(self, frame: int, device: torch.device) -> torch.Tensor:
        return torch.load(self.state_dir / f"{frame}.pt", map_location=device, weights_only=True)

    def drop_masks(self, keep: set[int]) -> None:
        for f in self.state_dir.glob("*.pt") if self.state_dir.is_dir() else []:
            if int(f.stem) not in keep:
                f.unlink()


class Segmenter:
    """One run of :func:`segment`: the video, prompt, encoder and propagator, and the loop."""

    def __init__(self, opts: Options):
        if (opts.mask is None) == (opts.scribble is None):
            raise ConfigError("give one first-frame prompt: --mask FIRST.png or --scribble S.png")
        self.opts = opts
        self.source = open_frames(opts.video)
        prompt = opts.mask or opts.scribble
        if opts.mask is not None:
            self.mask, self.scribbles = read_mask(opts.mask, self.source.size, opts.resize_mask), None
        else:
            self.mask, self.scribbles = None, read_scribble(opts.scribble, self.source.size, opts.resize_mask)
        top = int((self.mask if self.mask is not None else self.scribbles).max())
        size = opts.input_size or min(MAX_INPUT_SIZE, min(self.source.size))
        self.input_size = scaled_size(self.source.size, size)
        self.checkpoint = opts.checkpoint or (str(DEFAULT_HVC_CHECKPOINT) if opts.model == "hvc" else None)
        # One channel per id present (ids are kept): fewer channels, the same propagation.
        self.prop_cfg = PropagationConfig(context=opts.context, memory=opts.memory, num_classes=top + 1,
                                          precision=opts.precision, search_dims=opts.search_dims,
                                          candidates=opts.candidates)
        self.settings = {
            "video": _video_identity(self.source), "size": list(self.source.size),
            "prompt": {"kind": "mask" if opts.mask else "scribble", "path": str(Path(prompt).resolve()),
                       "sha256": _digest(Path(prompt)), "resized": opts.resize_mask},
            "model": opts.model, "checkpoint": self.checkpoint,
            "checkpoint_sha256": _digest(Path(self.checkpoint)) if self.checkpoint and Path(self.checkpoint).is_file() else None,
            "input_size": list(self.input_size), "propagation": recorded_settings(dataclasses.asdict(self.prop_cfg)),
        }
        self.key = hashlib.sha256(json.dumps(self.settings, sort_keys=True).encode()).hexdigest()
        self.progress = Progress(opts.output)
        self.masks = opts.output / "masks"

    # -- the pieces of the loop ------------------------------------------------------------
    def _segmenter(self) -> VideoSegmenter:
        seg = VideoSegmenter.from_checkpoint(self.checkpoint, self.prop_cfg, model=self.opts.model,
                                             device=self.opts.device, input_size=self.opts.input_size or None)
        hints = {"features": "check the weights of --checkpoint", "soft masks": "check --context and the prompt"}
        # Nothing of a frame with NaN or inf is written, so a rerun after the fix continues from the frame before.
        seg.reset(lambda t, what: f"{self.source.path}: {what} of frame {t} ({self.source.name(t)}) hold NaN or inf; "
                                  f"{hints[what]}")
        return seg

    def _encode(self, rgb: np.ndarray) -> torch.Tensor:
        return self.segmenter.encode(rgb)

    def _first_labels(self, emb: torch.Tensor) -> torch.Tensor:
        if self.mask is not None:
            return torch.from_numpy(self.mask).to(emb.device)
        return labels_from_scribbles(emb, self.scribbles, self.prop_cfg.num_classes).to(emb.device)

    def _start(self) -> dict:
        """The record to continue from: a fresh one, or the one a killed run left."""
        record = self.progress.load()
        if record is not None and record["settings_sha256"] != self.key:
            if not self.opts.overwrite:
                raise ConfigError(f"{self.opts.output}: holds a segmentation made with other settings (see "
                                  f"{self.progress.path}); pass --overwrite to replace it or choose another --output")
            record = None
        if record is None:
            if self.progress.load() is None and self.masks.is_dir() and any(self.masks.iterdir()):
                raise ConfigError(f"{self.masks}: exists and was not written by hvc.segment; choose another --output")
            for folder in (self.masks, self.progress.dir):
                shutil.rmtree(folder, ignore_errors=True)
            for name in ("overlay.mp4", "summary.json"):
                (self.opts.output / name).unlink(missing_ok=True)
            record = {"settings_sha256": self.key, "settings": self.settings, "frames_done": 0, "finished": False,
                      "state": None, "objects": {}, "seconds": {"encode": 0.0, "propagate": 0.0, "write": 0.0},
                      "runs": 0}
        else:  # a killed run's atomic writes may have left their temporaries
            for tmp in [*self.masks.glob(".tmp-*"), *self.progress.dir.rglob(".tmp-*")]:
                tmp.unlink(missing_ok=True)
        record["runs"] += 1
        return record

    # -- the loop ----------------------------------------------------------------------------
    def run(self, on_frame: Optional[Callable[[int], None]] = None) -> dict:
        """Segment every unfinished frame, then write the overlay and the summary; returns the summary."""
        record = self._start()
        if not record["finished"]:
            self.segmenter = self._segmenter()
            self._propagate(record, on_frame)
        if not (self.opts.output / "overlay.mp4").is_file():
            self._overlay(record["frames_done"])
        summary = self._summary(record)
        atomic_write_text(self.opts.output / "summary.json", json.dumps(summary, indent=2))
        return summary

    def _propagate(self, record: dict, on_frame: Optional[Callable[[int], None]]) -> None:
        seg = self.segmenter
        done, state = record["frames_done"], record["state"]
        # The record keeps the propagator's bookkeeping (a video starts at frame 0 here).
        resume = SegmenterState({"frame": done, "start": 0, "propagator": state}, {}) if state else None
        held: dict[int, torch.Tensor] = {}
        seconds = record["seconds"]
        bar = tqdm(total=self.source.count or None, initial=done, unit="frame", desc=self.source.path.name)
        with bar:
            for t, rgb in self.source:
                if t < done:  # resuming: re-encode only the frames the propagator held
                    if t in resume.stored:
                        held[t] = self._encode(rgb)
                    if t == done - 1:
                        resume.masks = {f: self.progress.load_mask(f, seg.extractor.device) for f in resume.stored}
                        seg.restore(resume, held)
                        held = {}
                    continue
                start = time.perf_counter()
                emb = self._encode(rgb)
                encoded = time.perf_counter()
                if t == 0:
                    seg.add_mask(0, self._first_labels(emb))
                pred = seg.ids(seg.step_features(emb), self.source.size)
                propagated = time.perf_counter()
                self._write_frame(t, pred, record)
                seconds["encode"] += encoded - start
                seconds["propagate"] += propagated - encoded
                seconds["write"] += time.perf_counter() - propagated
                bar.update()
                if on_frame is not None:
                    on_frame(t)
        record["finished"] = True
        self.progress.save(record)

    def _write_frame(self, t: int, pred: np.ndarray, record: dict) -> None:
        """Mask, then the propagator's new stored frame, then the record (the commit), then
        the soft masks the propagator no longer holds."""
        save_indexed_png(self.masks / f"{self.source.name(t)}.png", pred)
        state = self.segmenter.state(embeddings=False)
        if t in state.masks:
            self.progress.save_mask(t, state.masks[t])
        ids, counts = np.unique(pred, return_counts=True)
        for i, n in zip(ids.tolist(), counts.tolist()):
            if i:
                seen = record["objects"].setdefault(str(i), {"frames": 0, "area": 0.0})
                seen["frames"] += 1
                seen["area"] += n / pred.size
        record["frames_done"], record["state"] = t + 1, state.record["propagator"]
        self.progress.save(record)
        self.progress.drop_masks(set(state.masks))

    def _overlay(self, frames: int) -> None:
        """overlay.mp4: the written masks over the frames, streamed (a second decoding pass)."""
        import cv2

        path = self.opts.output / "overlay.mp4"
        h, w = self.source.size
        with atomic_path(path) as tmp:
            video = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*"mp4v"), self.source.fps, (w, h))
            if not video.isOpened():
                raise OSError(f"{path}: OpenCV cannot write an mp4 video here")
            try:
                for t, rgb in self.source:
                    if t >= frames:
                        break
                    with Image.open(self.masks / f"{self.source.name(t)}.png") as im:
                        labels = np.array(im)
                    video.write(np.ascontiguousarray(overlay(rgb, labels)[..., ::-1]))
            finally:
                video.release()

    def _summary(self, record: dict) -> dict:
        frames = record["frames_done"]
        s = record["seconds"]
        objects = {i: {"frames_present": o["frames"], "mean_area": o["area"] / frames}
                   for i, o in sorted(record["objects"].items(), key=lambda kv: int(kv[0]))}
        return {
            "video": str(self.source.path), "frames": frames, "size": list(self.source.size),
            "fps": self.source.fps, "prompt": self.settings["prompt"], "model": self.opts.model,
            "checkpoint": self.checkpoint, "input_size": list(self.input_size),
            "propagation": self.settings["propagation"], "objects": objects,
            "seconds": {k: round(v, 3) for k, v in s.items()},
            "seconds_per_frame": round(sum(s.values()) / max(frames, 1), 4),
            "runs": record["runs"],  # > 1: resumed after an interruption
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "masks": str(self.masks), "overlay": str(self.opts.output / "overlay.mp4"),
        }


def segment(opts: Options, on_frame: Optional[Callable[[int], None]] = None) -> dict:
    """Segment ``opts.video`` into ``opts.output``; returns the summary (also summary.json).
    ``on_frame(t)`` is called after frame t is finished (recorded)."""
    return Segmenter(opts).run(on_frame)
