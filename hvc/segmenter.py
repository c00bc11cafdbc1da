"""Video object segmentation frame by frame (docs/api.md): the one module that constructs and steps LabelPropagator."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Union

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from hvc.config.inference import TestConfig
from hvc.data.frames import to_input
from hvc.data.vos import scaled_size
from hvc.errors import NonFiniteError, UsageError
from hvc.models.encoders import load_encoder
from hvc.models.fast_encoder import wrap_encoder
from hvc.propagation import ContextPolicy, LabelPropagator, PropagationConfig, embed
from hvc.propagation.masks import resize_masks, upsample_argmax
from hvc.distributed import Job

_AMP_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
MAX_INPUT_SIZE = 480  # a shorter side above this is encoded at it (the DAVIS protocol's 480p)

ImageLike = Union[np.ndarray, Image.Image]


class FeatureExtractor:
    """``extractor(frames: [B, 3, h, w]) -> [B, C, h/8, w/8]``: :func:`embed`'s embeddings, float32 on ``device``."""

    def __init__(self, encoder: torch.nn.Module, merge_encoder: Optional[torch.nn.Module] = None,
                 merge_lambda: float = 1.05, device: torch.device | str = "cpu", amp: str = "off",
                 channels_last: bool = False, mode: str = "exact"):
        self.device, self.merge_lambda = torch.device(device), merge_lambda
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        # mode: "exact" | "fused" | "bf16" (hvc.models.fast_encoder), applied once on the device
        self.encoders = [wrap_encoder(e.to(self.device, memory_format=self.memory_format), mode)
                         for e in (encoder, merge_encoder) if e is not None]
        self.amp_dtype = _AMP_DTYPES.get(amp) if self.device.type == "cuda" else None  # CPU stays float32 (goldens)

    @torch.no_grad()
    def __call__(self, frames: Tensor) -> Tensor:
        x = frames.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            feats = [enc(x).float() for enc in self.encoders]
        return embed(*feats, merge_lambda=self.merge_lambda)  # feats: the encoder's, then the merged one's


def build_extractor(cfg: TestConfig, device: Optional[torch.device] = None) -> FeatureExtractor:
    """The configured encoder(s) on ``device`` (default: ``run.device``, checked to exist)."""
    m = cfg.model
    device = device or Job().device(cfg.run.device)
    main = load_encoder(m.name, m.checkpoint, seed=m.seed, bn_dummy_forward_pass=m.bn_dummy_forward, device=device)
    merge = None if m.merge_model is None else load_encoder(m.merge_model, m.merge_checkpoint, seed=m.seed,
                                                            bn_dummy_forward_pass=m.bn_dummy_forward, device=device)
    return FeatureExtractor(main, merge, m.merge_lambda, device, cfg.run.amp, cfg.run.channels_last, cfg.run.encoder)


def _nan_message(t: int, what: str) -> str:
    hint = "check the encoder's weights" if what == "features" else "check the propagation settings and the masks"
    return f"{what} of frame {t} hold NaN or inf; {hint}"


@dataclass(frozen=True)
class Segmentation:
    """One frame's result: ``ids`` uint8 [H, W]; ``soft`` float32 [K, H, W] when asked for."""

    ids: np.ndarray
    soft: Optional[np.ndarray] = None


@dataclass
class SegmenterState:
    """What :meth:`VideoSegmenter.restore` continues from, by frame: masks [K, h*w] and embeddings [C, h, w] of
    the stored frames, pending id maps [H, W]; the segmenter's own tensors, never changed in place (docs/api.md)."""

    record: dict
    masks: dict[int, Tensor]
    embeddings: Optional[dict[int, Tensor]] = None
    pending: Optional[dict[int, Tensor]] = None

    @property
    def stored(self) -> list[int]:
        """The frames whose masks and embeddings a restore needs."""
        start = self.record["start"]
        return [] if start is None else [f + start for f in self.record["propagator"]["stored"]]


class VideoSegmenter:
    """Segments one video at a time, frame after frame (:meth:`reset` starts the next one): docs/api.md."""

    def __init__(self, prop: Optional[PropagationConfig] = None, extractor: Optional[FeatureExtractor] = None, *,
                 input_size: Optional[int] = None, mean: tuple[float, ...] = TestConfig().data.mean,
                 std: tuple[float, ...] = TestConfig().data.std, policy: Optional[ContextPolicy] = None):
        self.propagator = LabelPropagator(prop, policy=policy)
        self.num_classes = self.propagator.num_classes
        self.extractor, self.input_size = extractor, input_size
        self.mean, self.std = torch.tensor(mean).view(3, 1, 1), torch.tensor(std).view(3, 1, 1)
        self.reset()

    @classmethod
    def from_checkpoint(cls, checkpoint: Optional[str], prop: Optional[PropagationConfig] = None, *,
                        model: str = "hvc", device: str = "cpu", input_size: Optional[int] = None,
                        encoder: str = "exact", policy: Optional[ContextPolicy] = None) -> "VideoSegmenter":
        """Encoder ``model``, weights ``checkpoint`` (None: its default), ``encoder`` exact/fused/bf16: docs/api.md."""
        cfg = TestConfig()
        cfg.model.name, cfg.model.checkpoint, cfg.model.bn_dummy_forward = model, checkpoint, True
        cfg.run.device, cfg.run.encoder = device, encoder
        return cls(prop, build_extractor(cfg), input_size=input_size, policy=policy)  # mean, std: TestConfig's

    def reset(self, describe: Callable[[int, str], str] = _nan_message) -> None:
        """Start a new video; ``describe(t, what)``: the error when ``what`` of frame t hold NaN or inf."""
        self.propagator.reset()
        self.describe = describe
        self.frame = 0  # the next frame to step
        self.start: Optional[int] = None  # the first frame with a mask: the propagator's frame 0
        self.pending: dict[int, Tensor] = {}
        self._given: Optional[Tensor] = None  # the id map applied at the last step
        self._corrected = False  # whether that map corrected the ids it holds (step_features' correct)

    def add_mask(self, frame: int, ids: Union[ImageLike, Tensor]) -> None:
        """Ids [H, W] (0 background) of ``frame``, this or a later one: new ids start there, tracked ones corrected."""
        if frame < self.frame:
            raise UsageError(f"add_mask: frame {frame} is already segmented (the next frame is {self.frame})")
        ids = torch.as_tensor(np.asarray(ids) if not isinstance(ids, Tensor) else ids)
        if ids.dim() != 2 or ids.dtype.is_floating_point or ids.dtype == torch.bool:
            raise UsageError(f"add_mask: ids must be an [H, W] integer map, got {ids.dtype} {tuple(ids.shape)}")
        ids = ids.long()
        if int(ids.min()) < 0 or int(ids.max()) >= self.num_classes:
            raise UsageError(f"add_mask: ids span {int(ids.min())}..{int(ids.max())}, outside "
                             f"0..{self.num_classes - 1} (raise num_classes)")
        self.pending[frame] = ids

    def encode(self, image: ImageLike) -> Tensor:
        """The embedding [C, h, w] of an RGB image (uint8 [H, W, 3] or PIL), checked to be finite."""
        if self.extractor is None:
            raise UsageError("this VideoSegmenter has no encoder: use step_features, or from_checkpoint")
        rgb = np.array(image.convert("RGB")) if isinstance(image, Image.Image) else np.asarray(image)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise UsageError(f"an image must be uint8 [H, W, 3] RGB, got {rgb.dtype} {rgb.shape}")
        shorter = self.input_size if self.input_size is not None else min(MAX_INPUT_SIZE, *rgb.shape[:2])
        # one frame at a time: no batch neighbours, so a frame encoded again on resume is bit-identical
        emb = self.extractor(to_input(rgb, scaled_size(rgb.shape[:2], shorter), self.mean, self.std)[None])[0]
        self._check(emb, "features")
        return emb

    def step(self, image: ImageLike, soft: bool = False) -> Segmentation:
        """Segment the next frame: ids uint8 [H, W] at its size (a given mask's ids), with ``soft`` masks [K, H, W]."""
        size = image.size[::-1] if isinstance(image, Image.Image) else np.asarray(image).shape[:2]
        if self.start is None and self.frame not in self.pending:  # nothing to follow yet
            self.frame += 1
            zeros = np.zeros((self.num_classes, *size), np.float32) if soft else None
            return Segmentation(np.zeros(size, np.uint8), zeros)
        masks = self.step_features(self.encode(image), checked=True)
        return Segmentation(self.ids(masks, size), resize_masks(masks, size).cpu().numpy() if soft else None)

    def step_features(self, emb: Tensor, labels: Optional[Tensor] = None, *, soft_labels: Optional[Tensor] = None,
                      correct: bool = True, checked: bool = False) -> Tensor:
        """The next frame's embedding [C, h, w] -> its soft masks [K, h, w]; its ``labels`` [H, W] or ``soft_labels``
        [K, H, W] (default: an :meth:`add_mask` mask), docs/api.md; ``checked``: ``emb`` is from :meth:`encode`."""
        if not checked:
            self._check(emb, "features")
        added = self.pending.pop(self.frame, None)  # labels given here take its place
        if labels is None and soft_labels is None:
            labels = added
        self._given, self._corrected = labels, correct
        t, self.frame = self.frame, self.frame + 1
        if self.start is None:
            if labels is None and soft_labels is None:
                return emb.new_zeros((self.num_classes, *emb.shape[1:]))
            self.start = t
        masks = self.propagator.step(emb, labels, soft_labels=soft_labels, correct=correct)
        self._check(masks, "soft masks", t)
        return masks

    def ids(self, masks: Tensor, size: tuple[int, int]) -> np.ndarray:
        """Ids uint8 [H, W] of the last step's soft masks [K, h, w] at ``size``; where that frame was given an id
        map, its ids (the whole map at the first mask); a corrected id's pixels outside its mask become 0."""
        ids = upsample_argmax(masks, tuple(size))
        given = self._given
        if given is not None and tuple(given.shape) == tuple(ids.shape):
            given, first = given.to(ids.device), self.frame - 1 == self.start
            if self._corrected and not first:  # without correction (the benchmarks') a given id only adds pixels
                ids = torch.where(torch.isin(ids, given[given > 0]), 0, ids)
            ids = given if first else torch.where(given > 0, given, ids)
        return ids.to(torch.uint8).cpu().numpy()

    def _check(self, values: Tensor, what: str, t: Optional[int] = None) -> None:
        """Stop at the first NaN or inf, naming the frame (one reduction: cheap)."""
        if not bool(torch.isfinite(values).all()):
            raise NonFiniteError(self.describe(self.frame if t is None else t, what))

    def state(self, embeddings: bool = True) -> SegmenterState:
        """Where this video stands, for :meth:`restore`; ``embeddings``: False when the caller re-encodes them."""
        shift = self.start or 0
        masks = {f + shift: m for f, m in self.propagator.store.items()}
        embs = {f + shift: e for f, e in self.propagator.embeddings().items()} if embeddings else None
        record = {"frame": self.frame, "start": self.start, "propagator": self.propagator.state()}
        return SegmenterState(record, masks, embs, dict(self.pending))

    def restore(self, state: SegmenterState, embeddings: Optional[dict[int, Tensor]] = None) -> None:
        """Continue from :meth:`state` (same settings, any process); ``embeddings``: those of ``state.stored``."""
        embeddings = embeddings if embeddings is not None else state.embeddings
        if embeddings is None:
            raise UsageError(f"restore needs the embeddings of frames {state.stored}")
        self.reset(self.describe)
        self.frame, self.start = state.record["frame"], state.record["start"]
        self.pending = dict(state.pending or {})
        if self.start is not None:
            self.propagator.restore(state.record["propagator"], {f - self.start: m for f, m in state.masks.items()},
                                    {f - self.start: e for f, e in embeddings.items()})
