"""Label propagation, frame by frame: references, contexts and stored frames around a kernel (docs/propagation.md)."""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from hvc.config.propagation import PropagationConfig
from hvc.propagation.context import ContextPolicy, QualityFrames, RecentFrames
from hvc.propagation.kernel import DenseKernel, Kernel, KeyMemory, context_frames
from hvc.propagation.local.kernel import LocalKernel
from hvc.propagation.masks import one_hot, resize_masks

KERNELS = {"dense": DenseKernel, "local": LocalKernel}  # prop.impl -> the kernel class


def embed(feats: Tensor, merge_feats: Tensor | None = None, merge_lambda: float = 1.05) -> Tensor:
    """feats [(T,) C, h, w], merge_feats [(T,) C2, h, w] -> normalize(cat(merge_lambda * normalize(feats),
    normalize(merge_feats))) over channels, or normalize(feats)."""
    if feats.dim() not in (3, 4):
        raise ValueError(f"feats must be [C, h, w] or [T, C, h, w], got shape {tuple(feats.shape)}")
    dim = feats.dim() - 3  # channel axis
    out = F.normalize(feats, dim=dim)
    if merge_feats is None:
        return out
    if merge_feats.shape[:dim] + merge_feats.shape[dim + 1:] != feats.shape[:dim] + feats.shape[dim + 1:]:
        raise ValueError(f"merge_feats {tuple(merge_feats.shape)} must match feats {tuple(feats.shape)} "
                         "in all but channels")
    merged = torch.cat([merge_lambda * out, F.normalize(merge_feats, dim=dim)], dim=dim)
    return F.normalize(merged, dim=dim)


def predict(kernel: Kernel, query: Tensor, memory: KeyMemory, masks: dict[int, Tensor],
            context: Sequence[int], channels: Tensor | slice = slice(None)) -> Tensor:
    """Soft mask [K, hw] of a query [C, h, w]: its top-k neighbours' stored masks [K, hw], softmax-weighted. Channels
    other than ``channels`` (those started) are zeros without being gathered (20 channels cost 10x two)."""
    weights, index = kernel(query, memory, context)  # [hw, k] each, index = slot * hw + position
    frames = context_frames(context)
    out = masks[frames[0]].new_zeros(masks[frames[0]].shape)
    out[channels] = (torch.cat([masks[f][channels] for f in frames], dim=1)[:, index] * weights).sum(dim=2)
    return out


class LabelPropagator:
    """Propagates labels by top-k feature affinities: ``config`` (default ``PropagationConfig()``) with ``changes``;
    the policy defaults to the one ``config.memory`` names, RecentFrames or QualityFrames (docs/memory.md)."""

    def __init__(self, config: Optional[PropagationConfig] = None, *, policy: Optional[ContextPolicy] = None,
                 **changes):
        # the schema's one check (ConfigError naming prop.<field>); kernels and policies take the values as they are
        cfg = self.config = dataclasses.replace(config or PropagationConfig(), **changes).validate()
        self.num_classes = cfg.num_classes
        self.kernel: Kernel = KERNELS[cfg.impl].from_config(cfg)
        self.policy = policy or (QualityFrames(cfg.context, cfg.quality) if cfg.memory == "quality"
                                 else RecentFrames(cfg.context))
        self.reset()

    def reset(self) -> None:
        """Forget the current video."""
        self.t = 0
        self.seen: set[int] = set()  # channels (object ids) that have started
        self.references: list[int] = []  # frames where objects started, in order
        self.valid: dict[int, Tensor] = {}  # reference frame -> [K] bool, the channels it predicts
        self.store: dict[int, Tensor] = {}  # stored frame -> its soft mask [K, h*w]
        self.memory = self.kernel.memory()  # stored frame -> its key, in the kernel's form
        self.last_contexts: dict[int, list[int]] = {}  # reference frame -> context used at the last step
        self._shape: tuple[int, int, int] | None = None
        self.policy.reset()

    def _ids(self, labels: Tensor) -> list[int]:
        """The ids of an id map (with background at frame 0), checked against num_classes."""
        if labels.dim() != 2 or labels.dtype.is_floating_point or labels.dtype == torch.bool:
            raise ValueError(f"frame {self.t}: labels must be an [H, W] integer id map, not {labels.dtype} "
                             f"{tuple(labels.shape)}")
        lo, hi = labels.min().item(), labels.max().item()
        if lo < 0 or hi >= self.num_classes:
            raise ValueError(f"frame {self.t}: label ids span {lo}..{hi}, outside 0..{self.num_classes - 1} "
                             "(raise num_classes)")
        ids = torch.bincount(labels.flatten(), minlength=self.num_classes).nonzero().flatten().tolist()
        return sorted(set(ids) | {0}) if self.t == 0 else ids  # background always starts at frame 0

    def _channels(self, soft: Tensor) -> list[int]:
        if soft.dim() != 3 or soft.shape[0] != self.num_classes or not soft.dtype.is_floating_point:
            raise ValueError(f"frame {self.t}: soft_labels must be a float [{self.num_classes}, H, W] tensor, "
                             f"not {soft.dtype} {tuple(soft.shape)}")
        return soft.flatten(1).ne(0).any(dim=1).nonzero().flatten().tolist()

    def _starting_labels(self, labels: Optional[Tensor], soft: Optional[Tensor], device: torch.device,
                         correct: bool) -> tuple[list[int], list[int], Optional[Tensor]]:
        """New channels, corrected ones (seen before, not 0; with ``correct``) and their maps [K, H, W] (others 0)."""
        if labels is not None and soft is not None:
            raise ValueError(f"frame {self.t}: give labels or soft_labels, not both")
        given = self._channels(soft) if soft is not None else self._ids(labels) if labels is not None else []
        new = [c for c in given if c not in self.seen]
        fixed = [c for c in given if c in self.seen and c != 0] if correct else []
        if not new and not fixed:
            return new, fixed, None
        if soft is not None:
            init = torch.zeros(soft.shape, dtype=torch.float32, device=device)
            init[new + fixed] = soft[new + fixed].to(device, torch.float32)
            return new, fixed, init
        return new, fixed, one_hot(labels.to(device), new + fixed, self.num_classes)

    def _check_embedding(self, emb: Tensor) -> None:
        if emb.dim() != 3 or not emb.dtype.is_floating_point:
            raise ValueError(f"frame {self.t}: emb must be a float [C, h, w] tensor, not {emb.dtype} "
                             f"{tuple(emb.shape)}")
        if self._shape is None:
            if emb.shape[1] * emb.shape[2] < self.config.topk:
                raise ValueError(f"feature map {tuple(emb.shape[1:])} has fewer positions than topk={self.config.topk}")
            self._shape = tuple(emb.shape)
        elif tuple(emb.shape) != self._shape:
            raise ValueError(f"frame {self.t}: emb shape {tuple(emb.shape)} differs from this video's {self._shape}")

    def _predict(self, t0: int, query: Tensor) -> Tensor:
        """Soft mask [K, hw] of the current frame predicted from reference t0's context."""
        context = self.policy.context(t0, self.t)
        if context[0] != t0:
            raise ValueError(f"frame {self.t}: the context of reference {t0} must start with it, got {context[:3]}...")
        self.last_contexts[t0] = context
        return predict(self.kernel, query, self.memory, self.store, context, self.valid[t0].nonzero().flatten())

    @torch.no_grad()
    def step(self, emb: Tensor, labels: Tensor | None = None, *, soft_labels: Tensor | None = None,
             correct: bool = False) -> Tensor:
        """emb: [C, h, w] L2-normalised -> the frame's soft mask [num_classes, h, w]. Labels (frame 0 must give
        them), at any size: ``labels`` [H, W] ids or ``soft_labels`` float [num_classes, H, W]. New channels
        replace the prediction in proportion to their sum (at most 1 per position). With ``correct``, channels
        given again (not the background) become the given maps, their old share goes to the background and this
        frame is their only reference; without it (the benchmarks' protocol) they are ignored."""
        self._check_embedding(emb)
        new, fixed, init = self._starting_labels(labels, soft_labels, emb.device, correct)
        if self.t == 0 and init is None:
            raise ValueError("frame 0 needs labels: an id map or soft label maps, not all zero, start the propagation")
        _, h, w = emb.shape
        if self.t == 0:
            mask = resize_masks(init, (h, w)).flatten(1)  # [K, hw]
            self.valid[0] = mask.sum(dim=1) != 0
            self.references.append(0)
        else:
            mask = sum(self.valid[t0][:, None] * self._predict(t0, emb) for t0 in self.references)
            if init is not None:  # channels starting here: blend them in and open their reference
                d = resize_masks(init, (h, w)).flatten(1)
                s = d.sum(dim=0, keepdim=True)
                blended = (1 - s) * mask + s * d
                if fixed:
                    blended[0] += ((1 - s) * mask[fixed]).sum(dim=0)
                    blended[fixed] = s * d[fixed]
                    self._move_references(fixed)
                mask = blended
                self.valid[self.t] = init.flatten(1).any(dim=1)
                self.references.append(self.t)
        self.seen.update(new)
        if self.policy.store(self.t, mask) or self.t in self.valid:  # references are always stored
            self.memory.add(self.t, emb)
            self.store[self.t] = mask
        for f in self.policy.evict(list(self.store), self.t):
            if f not in self.valid:
                self.memory.remove(f)
                del self.store[f]
        self.t += 1
        return mask.view(self.num_classes, h, w)

    def _move_references(self, channels: list[int]) -> None:
        """Earlier references stop predicting ``channels``; one left with none is dropped."""
        for t0 in list(self.references):
            self.valid[t0][channels] = False
            if not bool(self.valid[t0].any()):
                self.references.remove(t0)
                del self.valid[t0]

    def embeddings(self) -> dict[int, Tensor]:
        """The embeddings [C, h, w] of the stored frames (what :meth:`restore` takes)."""
        return {f: self.memory.embedding(f, self._shape) for f in sorted(self.store)}

    def state(self) -> dict:
        """This video's bookkeeping, JSON-able: with ``store`` and :meth:`embeddings`, :meth:`restore` continues it."""
        return {"t": self.t, "seen": sorted(self.seen), "references": list(self.references),
                "valid": [[f, v.nonzero().flatten().tolist()] for f, v in self.valid.items()],
                "stored": sorted(self.store), "shape": list(self._shape) if self._shape else None,
                "policy": self.policy.state()}

    def restore(self, state: dict, masks: dict[int, Tensor], embeddings: dict[int, Tensor]) -> None:
        """Continue a video from :meth:`state`, the stored frames' soft masks [K, hw] and embeddings [C, h, w]."""
        self.reset()
        if sorted(masks) != state["stored"] or sorted(embeddings) != state["stored"]:
            raise ValueError(f"restore needs the masks and embeddings of frames {state['stored']}")
        self.t, self.seen, self.references = state["t"], set(state["seen"]), list(state["references"])
        for f, channels in state["valid"]:  # reference frames are always stored
            self.valid[f] = torch.zeros(self.num_classes, dtype=torch.bool, device=masks[f].device)
            self.valid[f][channels] = True
        self._shape = tuple(state["shape"]) if state["shape"] else None
        for f in state["stored"]:
            self.memory.add(f, embeddings[f])
            self.store[f] = masks[f]
        self.policy.load_state(state["policy"])
