"""Segment anyone's video from prompts on any frames, either or both ways, streaming and resumable (docs/segment.md)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import resource
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import cv2
import numpy as np
import torch
from tqdm import tqdm

from hvc.completion import STATE_DIR, Outputs, Record, ResultsFolder, settings_hash
from hvc.config.core import ConfigError
from hvc.data.frames import FrameSource, open_frames
from hvc.data.palette import save_indexed_png
from hvc.data.vos import scaled_size
from hvc.errors import InputError, UsageError
from hvc.exports import FORMATS, TARGETS, export_masks, remove_exports
from hvc.fileio import OutputLock, atomic_torch_save, atomic_write_bytes, atomic_write_text, file_digest
from hvc.models.encoders import checkpoint_path
from hvc.names import refuse_overlap
from hvc.propagation import PropagationConfig
from hvc.scribbles.fill import labels_from_scribbles
from hvc.segment.prompt import KINDS, PromptSpec, check_prompts, describe_colours, read_masks, read_scribble
from hvc.segmenter import MAX_INPUT_SIZE, SegmenterState, VideoSegmenter
from hvc.speed import SpeedSettings, mode_of

DIRECTIONS = ("forward", "backward", "both")
SEQUENCE = "video"  # the one sequence of the results folder
DAMAGED = {"settings_sha256": None}  # InProgress.load: a file that cannot be read
PROGRESS_KEYS = {"settings_sha256", "pass", "done", "propagator", "frames", "objects", "seconds", "runs"}


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
    # hvc.exports.FORMATS made after the last frame (palette: always); not a setting: a rerun makes the missing ones
    save: tuple[str, ...] = ("palette", "mp4")
    prompts: tuple[PromptSpec, ...] = ()  # --mask / --scribble FRAME:PATH (with mask / scribble: all of them)
    direction: str = "forward"  # which way masks propagate from the prompts (DIRECTIONS)
    speed_note: str = ""  # the command line's account of the speed mode it chose (hvc/speed.py), for the summary

    def __post_init__(self):
        """The checks and the order of ``save`` every front end shares (palette first: always written)."""
        if self.direction not in DIRECTIONS:
            raise UsageError(f"direction {self.direction!r}: must be one of {', '.join(DIRECTIONS)}")
        if not set(self.save) <= set(FORMATS):
            raise UsageError(f"save {' '.join(self.save)}: the formats are {' '.join(FORMATS)}")
        self.save = tuple(dict.fromkeys(["palette", *self.save]))


def _video_identity(source: FrameSource) -> dict:
    """What tells this video from another at the same path."""
    if source.path.is_dir():
        return {"path": str(source.path.resolve()), "frames": [p.name for p in source.files]}
    st = source.path.stat()
    return {"path": str(source.path.resolve()), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}


class InProgress:
    """A run in progress (``.hvc/staging/progress``): progress.json, the held frames' soft masks, decoded frames."""

    def __init__(self, folder: ResultsFolder):
        staging = folder.staging("progress")  # beside the sequence's staging folder
        self.path, self.state_dir, self.frames_dir = staging / "progress.json", staging / "state", staging / "frames"

    def load(self) -> Optional[dict]:
        """The progress; None if there is none; DAMAGED if it cannot be read (truncated or empty after a crash)."""
        if not self.path.is_file():
            return None
        try:
            record = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return DAMAGED
        complete = (isinstance(record, dict) and PROGRESS_KEYS <= record.keys()
                    and isinstance(record["settings_sha256"], str))
        return record if complete else DAMAGED

    def save(self, record: dict) -> None:
        atomic_write_text(self.path, json.dumps(record), durable=True)

    def save_mask(self, i: int, mask: torch.Tensor) -> None:
        atomic_torch_save(mask.cpu().clone(), self.state_dir / f"{i}.pt")

    def load_mask(self, i: int, device: torch.device, frame: Optional[int] = None) -> torch.Tensor:
        """The soft masks of the pass's i-th frame (video frame ``frame``, for the message)."""
        path = self.state_dir / f"{i}.pt"
        try:
            return torch.load(path, map_location=device, weights_only=True)
        except Exception as exc:  # missing, truncated, not a tensor file: torch raises several kinds
            raise InputError(f"{path}: the saved state of frame {i if frame is None else frame} is damaged "
                             f"({type(exc).__name__}); pass --overwrite to segment the video afresh") from None

    def drop_masks(self, keep: set[int]) -> None:
        for f in self.state_dir.glob("*.pt") if self.state_dir.is_dir() else []:
            if f.stem.isdigit() and int(f.stem) not in keep:  # stray files are not ours: left alone
                f.unlink()

    def cache_frames(self, source: FrameSource, last: int) -> int:
        """Decode the video once, keeping frames 0..``last`` as lossless PNGs for a backward pass; returns its
        exact frame count. A killed run's cache is kept, or completed if half-written (each file is atomic)."""
        marker = self.frames_dir / "count.json"
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):  # missing or damaged: made below
            return int(json.loads(marker.read_text())["frames"])
        count = 0
        for t, rgb in tqdm(source, total=source.count or None, unit="frame", desc="decoding for the backward pass"):
            count = t + 1
            path = self.frames_dir / f"{t}.png"
            if t <= last and not path.is_file():
                ok, data = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 1])
                atomic_write_bytes(path, data.tobytes(), durable=True)
        atomic_write_text(marker, json.dumps({"frames": count}), durable=True)
        return count

    def read_frame(self, t: int) -> np.ndarray:
        """Frame t (uint8 [H, W, 3] RGB) of :meth:`cache_frames`."""
        path = self.frames_dir / f"{t}.png"
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise InputError(f"{path}: missing or damaged; pass --overwrite to segment the video afresh")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


class Segmenter:
    """One run of :func:`segment`: the video, prompts, encoder and propagator, and the passes."""

    def __init__(self, opts: Options):
        self.opts = opts
        self.source = open_frames(opts.video)
        self.is_folder = self.source.path.is_dir()
        frame0 = [PromptSpec(0, kind, Path(path)) for kind in KINDS if (path := getattr(opts, kind)) is not None]
        # A video file's frame count comes from its header and may be off: checked here for folders only.
        self.specs = check_prompts(frame0 + list(opts.prompts), self.source.count if self.is_folder else None)
        self.prompt_frames = [s.frame for s in self.specs]
        mask_specs = [s for s in self.specs if s.kind == "mask"]
        masks, colours = read_masks([s.path for s in mask_specs], self.source.size, opts.resize_mask)
        for line in describe_colours(colours):  # RGB masks: say which colour became which id
            print(f"{', '.join(str(s.path) for s in mask_specs)}: {line}", flush=True)
        self.masks_given = {s.frame: m for s, m in zip(mask_specs, masks)}
        self.scribbles_given = {s.frame: read_scribble(s.path, self.source.size, opts.resize_mask)
                                for s in self.specs if s.kind == "scribble"}
        top = max(int(m.max()) for m in [*self.masks_given.values(), *self.scribbles_given.values()])
        self.input_size = scaled_size(self.source.size, opts.input_size or min(MAX_INPUT_SIZE, min(self.source.size)))
        # hvc's default file is recorded by its path (the settings hash); other models' defaults as None
        self.checkpoint = opts.checkpoint or (checkpoint_path("hvc", None) if opts.model == "hvc" else None)
        refuse_overlap(opts.output, "--output", {"VIDEO": opts.video, "--checkpoint": self.checkpoint,
                                                 **{str(p): p.path for p in self.specs}})
        # One channel per id present (ids are kept): fewer channels, the same propagation.
        self.prop_cfg = PropagationConfig(context=opts.context, memory=opts.memory, num_classes=top + 1,
                                          precision=opts.precision, search_dims=opts.search_dims,
                                          candidates=opts.candidates)
        prompts = [{"frame": s.frame, "kind": s.kind, "path": str(s.path.resolve()), "sha256": file_digest(s.path)}
                   for s in self.specs]
        has_weights = self.checkpoint and Path(self.checkpoint).is_file()
        self.settings = {
            "video": _video_identity(self.source), "size": list(self.source.size), "prompts": prompts,
            "resize_mask": opts.resize_mask, "direction": opts.direction, "model": opts.model,
            "checkpoint": self.checkpoint, "checkpoint_sha256": file_digest(self.checkpoint) if has_weights else None,
            "input_size": list(self.input_size), "propagation": dataclasses.asdict(self.prop_cfg),
            "encoder": opts.encoder, "colours": {f"#{r:02x}{g:02x}{b:02x}": i for (r, g, b), i in colours.items()},
        }
        self.key = settings_hash(self.settings)
        self.folder = ResultsFolder(opts.output, self.key)
        self.progress = InProgress(self.folder)
        self.masks = opts.output / TARGETS["palette"]
        self.staged = self.folder.staging(SEQUENCE)
        self.info_path = opts.output / STATE_DIR / "segment.json"  # the finished run: settings, objects, exports
        # The passes the direction needs: with both, a backward one only if it owns a frame, down to the lowest
        self.first, self.last = self.prompt_frames[0], self.prompt_frames[-1]
        backward = [t for t in range(self.last + 1) if self.owner(t) == "backward"]
        self.passes = ([] if opts.direction == "backward" else ["forward"]) + (["backward"] if backward else [])
        self.backward_stop = backward[0] if backward else 0
        self.background = np.zeros(self.source.size, np.uint8)  # the mask of a frame no prompt reaches

    def owner(self, t: int) -> Optional[str]:
        """Which pass gives frame ``t`` its mask: "forward", "backward", or None (background: no prompt in the
        direction(s) run). With both, the one whose prompt is nearer, forward on a tie."""
        before = [p for p in self.prompt_frames if p <= t] if self.opts.direction != "backward" else []
        after = [p for p in self.prompt_frames if p >= t] if self.opts.direction != "forward" else []
        if not before and not after:
            return None
        return "forward" if not after or (before and t - max(before) <= min(after) - t) else "backward"

    def _reset(self, frame_of: Callable[[int], int]) -> None:
        """Reset the segmenter for a pass whose i-th frame is video frame ``frame_of(i)``."""
        self.frame_of = frame_of
        hints = {"features": "check the weights of --checkpoint", "soft masks": "check --context and the prompts"}
        # Nothing of a frame with NaN or inf is written, so a rerun after the fix continues from the frame before.
        self.segmenter.reset(lambda i, what: f"{self.source.path}: {what} of frame {frame_of(i)} "
                                             f"({self.source.name(frame_of(i))}) hold NaN or inf; {hints[what]}")

    def _labels(self, t: int, emb: torch.Tensor) -> Optional[torch.Tensor]:
        """The prompt of frame t as ids [H, W] (scribbles filled on its embedding ``emb``), or None."""
        if t in self.masks_given:
            return torch.from_numpy(self.masks_given[t]).to(emb.device)
        if t in self.scribbles_given:
            return labels_from_scribbles(emb, self.scribbles_given[t], self.prop_cfg.num_classes).to(emb.device)
        return None

    def _frame(self, t: int) -> np.ndarray:
        """Frame t read on its own (a backward pass): the image file, or the decoded copy of a video's."""
        return self.source.frame(t) if self.is_folder else self.progress.read_frame(t)

    def _info(self) -> Optional[dict]:
        """``.hvc/segment.json`` of a finished run of these settings; None if absent or not that."""
        try:
            info = json.loads(self.info_path.read_text())
        except (OSError, ValueError):
            return None
        fits = isinstance(info, dict) and info.get("settings_sha256") == self.key
        return info if fits and {"frames", "objects", "seconds", "runs", "exports"} <= info.keys() else None

    def _start(self) -> tuple[Optional[dict], Optional[dict]]:
        """(progress, None) to continue from, fresh or a killed run's; or (None, info) if the video is finished."""
        old = self.opts.output / STATE_DIR / "progress.json"
        if old.is_file():  # an earlier version's layout, not read (docs/segment.md)
            raise ConfigError(f"{old}: written by an earlier version of hvc.segment; choose another --output")
        record = self.folder.record(SEQUENCE)
        info = self._info()
        if (record is not None and record.settings == self.key and info is not None
                and self.folder.is_finished(SEQUENCE, Outputs(self.masks, record.files))):
            self.folder.clear_staging()  # what a run killed after its commit left
            info["runs"] += 1
            atomic_write_text(self.info_path, json.dumps(info), durable=True)
            return None, info
        progress = self.progress.load()
        if progress not in (None, DAMAGED) and self.opts.overwrite and not self._state_readable(progress):
            progress = DAMAGED  # --overwrite always recovers: a damaged state starts the video afresh
        # A record that cannot be read is not another settings': its video is redone (hvc/completion.py).
        foreign = record is not None and record.settings != self.key
        other = progress is not None and (progress is DAMAGED or progress["settings_sha256"] != self.key)
        if (foreign or other) and not self.opts.overwrite:
            what = "a damaged record" if progress is DAMAGED else "a segmentation made with other settings"
            where = self.progress.path if other else self.folder.record_path(SEQUENCE)
            raise ConfigError(f"{self.opts.output}: holds {what} ({where}); use --overwrite or another --output")
        if progress is not None and not other and self.staged.is_dir():
            for tmp in [*(self.opts.output / STATE_DIR).rglob(".tmp-*"), *self.opts.output.glob(".tmp-*")]:
                if tmp.is_file():  # a killed run's atomic write left its temporary
                    tmp.unlink(missing_ok=True)
            progress["runs"] += 1
            return progress, None
        return self._fresh(), None

    def _fresh(self) -> dict:
        """Remove what an earlier run of ours left (nothing else) and start the video afresh."""
        out = self.opts.output
        ours = self.folder.owns(SEQUENCE) or self.info_path.is_file()
        if not ours:  # not our folder: never delete what another tool wrote
            for target in [self.masks] + [out / name for name in TARGETS.values() if name != TARGETS["palette"]]:
                if target.exists() or target.is_symlink():
                    raise ConfigError(f"{target}: exists and was not written by hvc.segment; choose another --output")
        self.folder.forget(SEQUENCE, Outputs(self.masks, ()))
        if ours:
            remove_exports(out)
            (out / "summary.json").unlink(missing_ok=True)
            self.info_path.unlink(missing_ok=True)
        self.folder.clear_staging()
        self.folder.start(SEQUENCE)
        return {"settings_sha256": self.key, "pass": 0, "done": 0, "propagator": None,
                "frames": self.source.count if self.is_folder else None, "objects": {},
                "seconds": {"encode": 0.0, "propagate": 0.0, "write": 0.0}, "runs": 1}

    def _state_readable(self, progress: dict) -> bool:
        """Whether the soft masks an unfinished pass needs can be read back."""
        try:
            for i in (progress["propagator"] or {}).get("stored", []):
                self.progress.load_mask(i, torch.device("cpu"))
        except (InputError, AttributeError, TypeError):
            return False
        return True

    def run(self, on_frame: Optional[Callable[[int], None]] = None) -> dict:
        """Segment every frame not done, commit the video, write the exports and the summary;
        returns the summary. The output folder's lock (:class:`hvc.fileio.OutputLock`) is held throughout."""
        with OutputLock(self.opts.output, "--output"):
            progress, info = self._start()
            if progress is not None:
                self.on_frame = on_frame
                self.segmenter = VideoSegmenter.from_checkpoint(
                    self.checkpoint, self.prop_cfg, model=self.opts.model, device=self.opts.device,
                    input_size=self.opts.input_size or None, encoder=self.opts.encoder)
                self._propagate(progress)
                info = self._commit(progress)
            self._export(info)
            summary = self._summary(info)
            atomic_write_text(self.opts.output / "summary.json", json.dumps(summary, indent=2))
            return summary

    def _propagate(self, progress: dict) -> None:
        """The passes not done, each from where the progress says it stopped."""
        if "backward" in self.passes[progress["pass"]:] and not self.is_folder:
            progress["frames"] = self.progress.cache_frames(self.source, self.last)
            check_prompts(self.specs, progress["frames"])  # a video file's count is known once decoded
            self.progress.save(progress)
        with tqdm(total=progress["frames"] or self.source.count or None, initial=len(list(self.staged.glob("*.png"))),
                  unit="frame", desc=self.source.path.name) as self.bar:
            while progress["pass"] < len(self.passes):
                name = self.passes[progress["pass"]]
                (self._forward if name == "forward" else self._backward)(progress)
                progress.update({"pass": progress["pass"] + 1, "done": 0, "propagator": None})
                self.progress.save(progress)
                self.progress.drop_masks(set())
                if name == "backward":
                    shutil.rmtree(self.progress.frames_dir, ignore_errors=True)

    def _forward(self, progress: dict) -> None:
        """Frames first.. (i-th: first + i), streamed; before the first prompt: background, or nothing (both)."""
        first = self.first
        self._reset(lambda i: first + i)
        done, state = progress["done"], progress["propagator"]
        held: dict[int, torch.Tensor] = {}
        t = -1
        for t, rgb in self.source:
            if t < done:  # resuming: re-encode only the frames the propagator held
                if state and t - first in state["stored"]:
                    held[t - first] = self.segmenter.encode(rgb)
                if state and t == done - 1:
                    self._restore(done - first, state, held)
            elif t < first:
                self._write(t, self.background if self.owner(t) is None else None, progress, t + 1, False)
            else:
                self._step(t, rgb, progress, t + 1, "forward")
        progress["frames"] = max(t + 1, done)
        check_prompts(self.specs, progress["frames"])  # a video file's count is known once decoded

    def _backward(self, progress: dict) -> None:
        """Frames last..stop (i-th: last - i), each read on its own; after the last prompt: background."""
        last = self.last
        self._reset(lambda i: last - i)
        done, state = progress["done"], progress["propagator"]
        if done == 0:
            for t in range(last + 1, progress["frames"]):
                if self.owner(t) is None and not (self.staged / f"{self.source.name(t)}.png").is_file():
                    self._write(t, self.background, progress, 0, False)
        if state:  # resuming: re-encode only the frames the propagator held
            self._restore(done, state, {i: self.segmenter.encode(self._frame(last - i)) for i in state["stored"]})
        for i in range(done, last - self.backward_stop + 1):
            self._step(last - i, self._frame(last - i), progress, i + 1, "backward")

    def _restore(self, i: int, state: dict, held: dict[int, torch.Tensor]) -> None:
        """Continue the pass at its i-th frame from ``state``; ``held``: the embeddings of ``state["stored"]``."""
        device = self.segmenter.extractor.device
        masks = {j: self.progress.load_mask(j, device, self.frame_of(j)) for j in state["stored"]}
        self.segmenter.restore(SegmenterState({"frame": i, "start": 0, "propagator": state}, masks), held)

    def _step(self, t: int, rgb: np.ndarray, progress: dict, done: int, name: str) -> None:
        """Frame t through the engine with its prompt, if any; :meth:`_write` its ids if the pass ``name`` owns t."""
        seg = self.segmenter
        start = time.perf_counter()
        emb = seg.encode(rgb)
        encoded = time.perf_counter()
        pred = seg.ids(seg.step_features(emb, self._labels(t, emb)), self.source.size)
        progress["seconds"]["encode"] += encoded - start
        progress["seconds"]["propagate"] += time.perf_counter() - encoded
        self._write(t, pred if self.owner(t) == name else None, progress, done, stepped=True)

    def _write(self, t: int, pred: Optional[np.ndarray], progress: dict, done: int, stepped: bool) -> None:
        """Frame t's mask ``pred`` (None: another pass's), the new stored frame if ``stepped``, then the progress."""
        start = time.perf_counter()
        if pred is not None:  # the progress vouches for it: durable before the progress says so
            save_indexed_png(self.staged / f"{self.source.name(t)}.png", pred, durable=True)
            ids, counts = np.unique(pred[pred > 0], return_counts=True)
            for k, n in zip(ids.tolist(), counts.tolist()):
                seen = progress["objects"].setdefault(str(k), {"frames": 0, "area": 0.0})
                seen["frames"] += 1
                seen["area"] += n / pred.size
        state = self.segmenter.state(embeddings=False) if stepped else None
        if state is not None:
            stored = self.segmenter.frame - 1
            if stored in state.masks:
                self.progress.save_mask(stored, state.masks[stored])
            progress["propagator"] = state.record["propagator"]
        progress["done"] = done
        progress["seconds"]["write"] += time.perf_counter() - start
        self.progress.save(progress)
        if state is not None:
            self.progress.drop_masks(set(state.masks))
        if pred is not None:
            self.bar.update()
            if self.on_frame is not None:
                self.on_frame(t)

    def _commit(self, progress: dict) -> dict:
        """``.hvc/segment.json``, then masks/ and the completion record (hvc/completion.py); returns the info."""
        count = progress["frames"]
        files = tuple(f"{self.source.name(t)}.png" for t in range(count))
        missing = [f for f in files if not (self.staged / f).is_file()]
        if missing:  # every frame has a pass or is background: a missing mask is a bug, never committed
            raise RuntimeError(f"{self.staged}: no mask for {missing[0]} after every pass")
        info = {"settings_sha256": self.key, "settings": self.settings, "frames": count, "objects": progress["objects"],
                "seconds": progress["seconds"], "runs": progress["runs"], "exports": []}
        atomic_write_text(self.info_path, json.dumps(info), durable=True)
        record = Record(SEQUENCE, self.key, files, count, round(sum(progress["seconds"].values()), 3), "single")
        self.folder.commit(record, Outputs(self.masks, files))
        self.folder.clear_staging()
        return info

    def _export(self, info: dict) -> None:
        """The formats of ``save`` not yet made, from the masks, recorded once complete (a rerun makes the rest)."""
        todo = [f for f in self.opts.save if f != "palette" and f not in info["exports"]]
        if not todo:
            return
        export_masks(todo, self.opts.output, [self.source.name(t) for t in range(info["frames"])],
                     size=self.source.size, fps=self.source.fps, objects=sorted(int(i) for i in info["objects"]),
                     frames=iter(self.source), video=str(self.source.path))
        info["exports"] += todo
        atomic_write_text(self.info_path, json.dumps(info), durable=True)

    def _summary(self, info: dict) -> dict:
        frames, s = info["frames"], info["seconds"]
        objects = {i: {"frames_present": o["frames"], "mean_area": o["area"] / frames}
                   for i, o in sorted(info["objects"].items(), key=lambda kv: int(kv[0]))}
        prompts = [{**p, "resized": self.opts.resize_mask} for p in self.settings["prompts"]]
        return {
            "video": str(self.source.path), "frames": frames, "size": list(self.source.size),
            "fps": self.source.fps, "prompt": prompts[0], "prompts": prompts, "direction": self.opts.direction,
            "model": self.opts.model, "checkpoint": self.checkpoint, "input_size": list(self.input_size),
            "propagation": self.settings["propagation"], "encoder": self.opts.encoder,
            "speed": {"mode": mode_of(SpeedSettings(self.opts.encoder, self.opts.precision, self.opts.search_dims,
                                                    self.opts.candidates)), "note": self.opts.speed_note},
            "objects": objects, "seconds": {k: round(v, 3) for k, v in s.items()},
            "seconds_per_frame": round(sum(s.values()) / max(frames, 1), 4),
            "runs": info["runs"],  # > 1: resumed after an interruption, or asked again
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "masks": str(self.masks),
            "exports": {f: str(self.opts.output / TARGETS[f]) for f in ["palette", *info["exports"]]},
            "overlay": str(self.opts.output / TARGETS["mp4"]) if "mp4" in info["exports"] else None,
        }


def segment(opts: Options, on_frame: Optional[Callable[[int], None]] = None) -> dict:
    """Segment ``opts.video`` into ``opts.output``; returns the summary (also summary.json). ``on_frame(t)``:
    called once frame t's mask is written and recorded (in the passes' order: descending in a backward one)."""
    return Segmenter(opts).run(on_frame)
