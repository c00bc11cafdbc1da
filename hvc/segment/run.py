"""Segment anyone's video from a first-frame mask or scribbles: streaming, bounded memory,
resumable (docs/own_video.md).

The output folder holds::

    masks/<frame>.png    indexed PNGs (DAVIS palette), each written atomically as it is produced
    overlay.mp4, binary/, alpha/, rle.json
                         the exports asked for (``save``; hvc/exports), made from the masks once
                         the last one is written
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
from tqdm import tqdm

from hvc.apart import refuse_overlap
from hvc.config.core import ConfigError
from hvc.config.propagation import recorded_settings
from hvc.data.frames import FrameSource, open_frames
from hvc.data.palette import save_indexed_png
from hvc.data.vos import scaled_size
from hvc.errors import InputError, UsageError
from hvc.exports import TARGETS, export_masks, remove_exports
from hvc.fileio import atomic_path, atomic_write_text
from hvc.locks import OutputLock
from hvc.models.encoders import checkpoint_path
from hvc.propagation import PropagationConfig
from hvc.scribbles.fill import labels_from_scribbles
from hvc.segment.prompt import PromptSpec, check_prompts, describe_colours, read_masks, read_scribble
from hvc.segmenter import MAX_INPUT_SIZE, SegmenterState, VideoSegmenter
from hvc.speed import SpeedSettings, mode_of

DAMAGED = {"settings_sha256": None}  # Progress.load: a record that cannot be read
RECORD_KEYS = {"settings_sha256", "settings", "frames_done", "finished", "state", "objects", "seconds", "runs"}


@dataclass
class Options:
    video: Path
    output: Path
    mask: Optional[Path] = None  # a mask for frame 0 (hvc/segment/prompt.py)
    scribble: Optional[Path] = None  # scribbles for frame 0
    model: str = "hvc"
    checkpoint: Optional[str] = None  # None: the model's default file (hvc.models.encoders.checkpoint_path)
    input_size: Optional[int] = None  # shorter side fed to the encoder; None: min(MAX_INPUT_SIZE, the frames')
    resize_mask: bool = False
    device: str = "cpu"
    context: int = 50
    memory: str = "recent"  # the memory policy, docs/memory.md
    encoder: str = "exact"  # how the encoder runs: exact, fused or bf16 (hvc/models/fast_encoder.py)
    precision: str = "fp32"  # the local kernel's arithmetic: fp32 (exact) or bf16 (docs/local_kernel.md)
    search_dims: Optional[int] = None  # the reduced search's principal axes (docs/local_kernel.md); None: all
    candidates: float = 2.0  # an approximate search's candidates, in units of topk (docs/local_kernel.md)
    overwrite: bool = False
    # Exports (hvc.exports.FORMATS) made after the last frame; the palette PNGs are always written
    # (the run resumes from them and the other formats are made from them). Not a setting of the
    # segmentation: a finished run asked for more formats only writes the missing ones.
    save: tuple[str, ...] = ("palette", "mp4")
    # Prompts on any frame, as parsed from --mask / --scribble FRAME:PATH (with mask / scribble:
    # all of them). For now a run takes exactly one, on frame 0.
    prompts: tuple[PromptSpec, ...] = ()
    # The command line's account of the speed mode it chose (hvc/speed.py), for the summary.
    speed_note: str = ""

    def all_prompts(self) -> list[PromptSpec]:
        return ([PromptSpec(0, "mask", Path(self.mask))] if self.mask is not None else []) + \
            ([PromptSpec(0, "scribble", Path(self.scribble))] if self.scribble is not None else []) + list(self.prompts)


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
        """The record; None if there is none; DAMAGED if it cannot be read (a truncated or
        empty file after a crash): the run then starts afresh with --overwrite."""
        if not self.path.is_file():
            return None
        try:
            record = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return DAMAGED
        complete = isinstance(record, dict) and RECORD_KEYS <= record.keys() and isinstance(record["settings_sha256"], str)
        return record if complete else DAMAGED

    def clear(self) -> None:
        """Remove the record and the state files (ours); the folder's lock file stays."""
        self.path.unlink(missing_ok=True)
        shutil.rmtree(self.state_dir, ignore_errors=True)

    def save(self, record: dict) -> None:
        atomic_write_text(self.path, json.dumps(record), durable=True)

    def save_mask(self, frame: int, mask: torch.Tensor) -> None:
        with atomic_path(self.state_dir / f"{frame}.pt", durable=True) as tmp:
            torch.save(mask.cpu().clone(), tmp)

    def load_mask(self, frame: int, device: torch.device) -> torch.Tensor:
        path = self.state_dir / f"{frame}.pt"
        try:
            return torch.load(path, map_location=device, weights_only=True)
        except Exception as exc:  # missing, truncated, not a tensor file: torch raises several kinds
            raise InputError(f"{path}: the saved state of frame {frame} is damaged ({type(exc).__name__}); "
                             f"pass --overwrite to segment the video afresh") from None

    def drop_masks(self, keep: set[int]) -> None:
        for f in self.state_dir.glob("*.pt") if self.state_dir.is_dir() else []:
            if f.stem.isdigit() and int(f.stem) not in keep:  # stray files are not ours: left alone
                f.unlink()


class Segmenter:
    """One run of :func:`segment`: the video, prompt, encoder and propagator, and the loop."""

    def __init__(self, opts: Options):
        self.opts = opts
        self.source = open_frames(opts.video)
        # Frame counts of video files come from their headers and may be off: checked for folders only.
        specs = check_prompts(opts.all_prompts(), self.source.count if self.source.path.is_dir() else None)
        later = [s for s in specs if s.frame != 0]
        if later:
            raise UsageError(f"{later[0]}: prompts on frames other than 0 are not supported yet (they "
                             f"come with the per-frame API); give one prompt, on frame 0")
        first = specs[0]
        prompt, colours = first.path, {}
        if first.kind == "mask":
            masks, colours = read_masks([prompt], self.source.size, opts.resize_mask)
            self.mask, self.scribbles = masks[0], None
            for line in describe_colours(colours):  # an RGB mask: say which colour became which id
                print(f"{prompt}: {line}", flush=True)
        else:
            self.mask, self.scribbles = None, read_scribble(prompt, self.source.size, opts.resize_mask)
        top = int((self.mask if self.mask is not None else self.scribbles).max())
        size = opts.input_size or min(MAX_INPUT_SIZE, min(self.source.size))
        self.input_size = scaled_size(self.source.size, size)
        # hvc's default file is recorded by its path (the settings hash); other models' defaults as None
        self.checkpoint = opts.checkpoint or (checkpoint_path("hvc", None) if opts.model == "hvc" else None)
        refuse_overlap(opts.output, "--output", {"VIDEO": opts.video, "--checkpoint": self.checkpoint,
                                                 **{str(p): p.path for p in opts.prompts}})
        # One channel per id present (ids are kept): fewer channels, the same propagation.
        self.prop_cfg = PropagationConfig(context=opts.context, memory=opts.memory, num_classes=top + 1,
                                          precision=opts.precision, search_dims=opts.search_dims,
                                          candidates=opts.candidates)
        self.settings = {
            "video": _video_identity(self.source), "size": list(self.source.size),
            "prompt": {"kind": first.kind, "path": str(Path(prompt).resolve()),
                       "sha256": _digest(Path(prompt)), "resized": opts.resize_mask},
            "model": opts.model, "checkpoint": self.checkpoint,
            "checkpoint_sha256": _digest(Path(self.checkpoint)) if self.checkpoint and Path(self.checkpoint).is_file() else None,
            "input_size": list(self.input_size), "propagation": recorded_settings(dataclasses.asdict(self.prop_cfg)),
        }
        if opts.encoder != "exact":  # recorded only when not the default, so older records keep their hash
            self.settings["encoder"] = opts.encoder
        if colours:  # an RGB mask (refused before, so no older record has it): which colour is which id
            self.settings["prompt"]["colours"] = {f"#{r:02x}{g:02x}{b:02x}": i for (r, g, b), i in colours.items()}
        self.key = hashlib.sha256(json.dumps(self.settings, sort_keys=True).encode()).hexdigest()
        self.progress = Progress(opts.output)
        self.masks = opts.output / "masks"

    # -- the pieces of the loop ------------------------------------------------------------
    def _segmenter(self) -> VideoSegmenter:
        seg = VideoSegmenter.from_checkpoint(self.checkpoint, self.prop_cfg, model=self.opts.model,
                                             device=self.opts.device, input_size=self.opts.input_size or None,
                                             encoder=self.opts.encoder)
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
        if record is not None and record is not DAMAGED and self.opts.overwrite and not self._state_readable(record):
            record = DAMAGED  # --overwrite always recovers: a damaged state starts the video afresh
        if record is not None and (record is DAMAGED or record["settings_sha256"] != self.key):
            if not self.opts.overwrite:
                what = "a damaged record" if record is DAMAGED else "a segmentation made with other settings"
                raise ConfigError(f"{self.opts.output}: holds {what} (see {self.progress.path}); pass --overwrite "
                                  f"to replace it or choose another --output")
            record = None
        if record is None:
            ours = self.progress.path.is_file()  # removes only what a record of ours says we wrote
            if not ours:  # not our folder: never delete what another tool wrote
                if self.masks.is_dir() and any(self.masks.iterdir()):
                    raise ConfigError(f"{self.masks}: exists and was not written by hvc.segment; "
                                      f"choose another --output")
                for name in TARGETS.values():
                    if name != TARGETS["palette"] and (self.opts.output / name).exists():
                        raise ConfigError(f"{self.opts.output / name}: exists and was not written by hvc.segment; "
                                          f"choose another --output")
            shutil.rmtree(self.masks, ignore_errors=True)
            self.progress.clear()
            if ours:
                remove_exports(self.opts.output)
                (self.opts.output / "summary.json").unlink(missing_ok=True)
            record = {"settings_sha256": self.key, "settings": self.settings, "frames_done": 0, "finished": False,
                      "state": None, "objects": {}, "seconds": {"encode": 0.0, "propagate": 0.0, "write": 0.0},
                      "runs": 0, "exports": []}
        else:  # a killed run's atomic writes may have left their temporaries
            leftovers = [*self.masks.glob(".tmp-*"), *self.progress.dir.rglob(".tmp-*"), *self.opts.output.glob(".tmp-*")]
            for tmp in leftovers:
                if tmp.is_file():
                    tmp.unlink(missing_ok=True)
        record["runs"] += 1
        return record

    def _state_readable(self, record: dict) -> bool:
        """Whether the soft masks an unfinished record needs can be read back."""
        if record["finished"] or not record["state"]:
            return True
        try:
            for frame in record["state"]["stored"]:
                self.progress.load_mask(frame, torch.device("cpu"))
        except (InputError, KeyError, TypeError):
            return False
        return True

    # -- the loop ----------------------------------------------------------------------------
    def run(self, on_frame: Optional[Callable[[int], None]] = None) -> dict:
        """Segment every unfinished frame, then write the exports and the summary; returns the summary.
        The output folder's lock (:mod:`hvc.locks`) is held throughout: one writer per folder."""
        with OutputLock(self.opts.output, "--output"):
            return self._run(on_frame)

    def _run(self, on_frame: Optional[Callable[[int], None]]) -> dict:
        record = self._start()
        if not record["finished"]:
            self.segmenter = self._segmenter()
            self._propagate(record, on_frame)
        self._export(record)
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
        save_indexed_png(self.masks / f"{self.source.name(t)}.png", pred, durable=True)  # the record vouches for it
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

    def _export(self, record: dict) -> None:
        """The formats of ``save`` not yet made (hvc/exports), from the written masks; each one
        is recorded as done once complete, so a rerun makes only what is missing."""
        if "exports" not in record:  # a record from before --save: it always made the overlay
            record["exports"] = ["mp4"] if (self.opts.output / TARGETS["mp4"]).is_file() else []
        todo = [f for f in self.opts.save if f != "palette" and f not in record["exports"]]
        if not todo:
            return
        frames = record["frames_done"]
        export_masks(todo, self.opts.output, [self.source.name(t) for t in range(frames)], size=self.source.size,
                     fps=self.source.fps, objects=sorted(int(i) for i in record["objects"]), frames=iter(self.source),
                     video=str(self.source.path))
        record["exports"] += todo
        self.progress.save(record)

    def _summary(self, record: dict) -> dict:
        frames = record["frames_done"]
        s = record["seconds"]
        objects = {i: {"frames_present": o["frames"], "mean_area": o["area"] / frames}
                   for i, o in sorted(record["objects"].items(), key=lambda kv: int(kv[0]))}
        return {
            "video": str(self.source.path), "frames": frames, "size": list(self.source.size),
            "fps": self.source.fps, "prompt": self.settings["prompt"], "model": self.opts.model,
            "checkpoint": self.checkpoint, "input_size": list(self.input_size),
            "propagation": self.settings["propagation"], "encoder": self.opts.encoder,
            "speed": {"mode": mode_of(SpeedSettings(self.opts.encoder, self.opts.precision, self.opts.search_dims,
                                                    self.opts.candidates)), "note": self.opts.speed_note},
            "objects": objects,
            "seconds": {k: round(v, 3) for k, v in s.items()},
            "seconds_per_frame": round(sum(s.values()) / max(frames, 1), 4),
            "runs": record["runs"],  # > 1: resumed after an interruption
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "masks": str(self.masks),
            "exports": {f: str(self.opts.output / TARGETS[f]) for f in ["palette", *record["exports"]]},
            "overlay": str(self.opts.output / TARGETS["mp4"]) if "mp4" in record["exports"] else None,
        }


def segment(opts: Options, on_frame: Optional[Callable[[int], None]] = None) -> dict:
    """Segment ``opts.video`` into ``opts.output``; returns the summary (also summary.json).
    ``on_frame(t)`` is called after frame t is finished (recorded)."""
    return Segmenter(opts).run(on_frame)
