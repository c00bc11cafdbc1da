"""Label propagation through a video, one frame at a time (docs/propagation.md).

Shared bookkeeping around an affinity kernel (``dense`` reference or ``local`` fast path):
references for objects that start at later frames, the per-reference context lists, the store
of embeddings and soft masks, mask down-sampling and the merge of per-reference predictions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Union

import torch
from torch import Tensor

from hvc.propagation.dense import DenseKernel
from hvc.propagation.local import LocalKernel
from hvc.propagation.masks import one_hot, resize_masks

Kernel = Union[DenseKernel, LocalKernel]
KERNELS = {"dense": DenseKernel, "local": LocalKernel}


def predict(kernel: Kernel, query: Any, keys: list[Any], masks: list[Tensor], context: list[int]) -> Tensor:
    """Soft mask [K, hw] of a query frame: the softmax-weighted sum of its top-k neighbours' masks.

    keys / masks ([K, hw]): the distinct context frames; context: the entries as indices into
    them, entry 0 the long-term one (no radius limit).
    """
    weights, index = kernel(query, keys, context)  # [hw, k] each, index = frame * hw + position
    return (torch.cat(masks, dim=1)[:, index] * weights).sum(dim=2)


@dataclass
class _Frame:
    key: Any  # the kernel's cached form of this frame's embedding
    mask: Tensor  # [K, h*w] soft mask carried forward


class LabelPropagator:
    """Propagates first-frame (and later-frame) object masks by top-k feature affinities.

    Context of reference frame t0 at frame t: ``[t0] + [max(s, t0) for s in range(t - context, t)]``
    (duplicates kept), keys of entries after the first limited to grid distance < ``radius``.
    """

    def __init__(self, radius: float = 12.0, temperature: float = 0.1, topk: int = 15, context: int = 50,
                 num_classes: int = 20, impl: Literal["local", "dense"] = "local"):
        if impl not in KERNELS:
            raise ValueError(f"impl must be one of {sorted(KERNELS)}, got {impl!r}")
        if radius <= 0 or temperature <= 0 or topk < 1 or context < 1:
            raise ValueError(f"need radius > 0, temperature > 0, topk >= 1, context >= 1; got "
                             f"{radius}, {temperature}, {topk}, {context}")
        if not 1 <= num_classes <= 256:
            raise ValueError(f"num_classes must be in 1..256 (uint8 labels), got {num_classes}")
        self.context = context
        self.num_classes = num_classes
        self.kernel = KERNELS[impl](radius, temperature, topk)
        self.topk = topk
        self.reset()

    def reset(self) -> None:
        """Forget the current video."""
        self.t = 0
        self.seen: set[int] = set()  # object ids that have started
        self.references: list[int] = []  # frames where objects started, in order
        self.valid: dict[int, Tensor] = {}  # reference frame -> [K] bool, the channels it predicts
        self.store: dict[int, _Frame] = {}  # frame -> key and soft mask (window + references)
        self.last_contexts: dict[int, list[int]] = {}  # reference frame -> context used at the last step
        self._shape: tuple[int, int, int] | None = None

    def _context(self, t0: int, t: int) -> list[int]:
        return [t0] + [max(s, t0) for s in range(t - self.context, t)]

    def _new_ids(self, labels: Tensor) -> list[int]:
        if labels.dim() != 2 or labels.dtype.is_floating_point or labels.dtype == torch.bool:
            raise ValueError(f"frame {self.t}: labels must be an [H, W] integer id map, "
                             f"got {labels.dtype} {tuple(labels.shape)}")
        lo, hi = labels.min().item(), labels.max().item()
        if lo < 0 or hi >= self.num_classes:
            raise ValueError(f"frame {self.t}: label ids span {lo}..{hi}, outside 0..{self.num_classes - 1} "
                             f"(raise num_classes, or map void pixels first)")
        ids = torch.bincount(labels.flatten(), minlength=self.num_classes).nonzero().flatten().tolist()
        if self.t == 0:
            ids = sorted(set(ids) | {0})  # background always starts at frame 0
        return [i for i in ids if i not in self.seen]

    def _predict(self, t0: int, query: Any) -> Tensor:
        """Soft mask [K, hw] of the current frame predicted from reference t0's context."""
        context = self._context(t0, self.t)
        self.last_contexts[t0] = context
        frames = sorted(set(context))
        slot = {f: i for i, f in enumerate(frames)}
        return predict(self.kernel, query, [self.store[f].key for f in frames],
                       [self.store[f].mask for f in frames], [slot[f] for f in context])

    @torch.no_grad()
    def step(self, emb: Tensor, labels: Tensor | None = None) -> Tensor:
        """Process the next frame.

        emb: [C, h, w] L2-normalised embedding of this frame. labels: optional [H, W] int64 id map
        at full resolution; ids not seen before in this video start here (frame 0 must give
        labels). Returns the soft mask of this frame at feature resolution: [num_classes, h, w].
        """
        if emb.dim() != 3 or not emb.dtype.is_floating_point:
            raise ValueError(f"frame {self.t}: emb must be a float [C, h, w] tensor, got {emb.dtype} {tuple(emb.shape)}")
        if self._shape is None:
            if emb.shape[1] * emb.shape[2] < self.topk:
                raise ValueError(f"feature map {tuple(emb.shape[1:])} has fewer positions than topk={self.topk}")
            self._shape = tuple(emb.shape)
        elif tuple(emb.shape) != self._shape:
            raise ValueError(f"frame {self.t}: emb shape {tuple(emb.shape)} differs from this video's {self._shape}")
        if self.t == 0 and labels is None:
            raise ValueError("frame 0 needs labels: the first-frame id map starts the propagation")
        _, h, w = emb.shape
        new = self._new_ids(labels) if labels is not None else []
        init = one_hot(labels.to(emb.device), new, self.num_classes) if new else None
        key = self.kernel.prepare(emb)

        if self.t == 0:
            mask = resize_masks(init, (h, w)).flatten(1)  # [K, hw]
            self.valid[0] = mask.sum(dim=1) != 0
            self.references.append(0)
        else:
            mask = sum(self.valid[t0][:, None] * self._predict(t0, key) for t0 in self.references)
            if init is not None:  # objects starting here: blend them in and open their reference
                d = resize_masks(init, (h, w)).flatten(1)
                s = d.sum(dim=0, keepdim=True)
                mask = (1 - s) * mask + s * d
                self.valid[self.t] = init.flatten(1).any(dim=1)
                self.references.append(self.t)
        self.seen.update(new)

        self.store[self.t] = _Frame(key, mask)
        oldest = self.t + 1 - self.context  # the next step's window starts here
        for f in [f for f in self.store if f < oldest and f not in self.valid]:
            del self.store[f]
        self.t += 1
        return mask.view(self.num_classes, h, w)
