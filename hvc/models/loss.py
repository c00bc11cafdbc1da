"""The hybrid (static + dynamic) correspondence loss of HVC (docs/training.md).

Two crops of one image are two views of the same scene; a cell of view q and a cell of
view k are a positive pair when their centres, in normalised coordinates of the source
image, lie closer than ``pos_radius`` times the larger cell diagonal. The loss pulls
together, over positive pairs,

* static: the features ``<q_i, k_j>``;
* dynamic: the forward flow ``flow(q, k)`` at cell i and the backward flow ``flow(k, q)``
  at cell j (normalised 2-vectors),

averaged per sample over its positive pairs (``+1e-6``: samples without any pair count as 0).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F


def cell_axes(coord: Tensor, h: int, w: int) -> tuple[Tensor, Tensor, Tensor]:
    """Cell centres of an ``h x w`` grid laid over each crop box, and the cell diagonals.

    coord: [N, 4] = [x0, y0, x1, y1] in normalised image coordinates.
    Returns xs [N, w] (centre x of each column), ys [N, h] (centre y of each row), diag [N].
    """
    x0, y0, x1, y1 = coord.float().unbind(1)
    bw = (x1 - x0) / w
    bh = (y1 - y0) / h
    xs = x0[:, None] + (torch.arange(w, device=coord.device) + 0.5)[None] * bw[:, None]
    ys = y0[:, None] + (torch.arange(h, device=coord.device) + 0.5)[None] * bh[:, None]
    return xs, ys, torch.hypot(bw, bh)


def positive_pairs(coord_q: Tensor, coord_k: Tensor, size_q: tuple[int, int], size_k: tuple[int, int],
                   pos_radius: float) -> Tensor:
    """Positive-pair mask between the cells of two views.

    coord_*: [N, 4]; size_* = (h, w) of each feature grid.
    Returns a bool mask [N, hq*wq, hk*wk] (cells row-major, index y*w + x):
    centre distance / larger cell diagonal < pos_radius (strict).
    """
    (hq, wq), (hk, wk) = size_q, size_k
    xq, yq, dq = cell_axes(coord_q, hq, wq)
    xk, yk, dk = cell_axes(coord_k, hk, wk)
    # The grids are separable: squared distance = dy^2 (row pair) + dx^2 (column pair),
    # which needs one [N, hq*wq, hk*wk] buffer (no [.., 2] difference vectors).
    dx2 = (xq[:, :, None] - xk[:, None, :]).square()  # [N, wq, wk]
    dy2 = (yq[:, :, None] - yk[:, None, :]).square()  # [N, hq, hk]
    dist = (dy2[:, :, None, :, None] + dx2[:, None, :, None, :]).sqrt_()  # [N, hq, wq, hk, wk]
    dist = dist.view(coord_q.shape[0], hq * wq, hk * wk)
    return dist.div_(torch.maximum(dq, dk)[:, None, None]) < pos_radius


def hybrid_loss(q: Tensor, k: Tensor, coord_q: Tensor, coord_k: Tensor, flow: nn.Module,
                pos_radius: float = 0.1) -> Tensor:
    """``-2 * (mean_n S_n + mean_n T_n)`` for one (prediction, target) direction.

    q: [N, C, hq, wq] online predictions, k: [N, C, hk, wk] targets, both unit norm over C;
    coord_q, coord_k: [N, 4] crop boxes of the two views; flow: a module mapping
    (a, b) -> [N, 2, h, w], called twice (flow(q, k) then flow(k, q), separate batch
    statistics in train mode). Returns a scalar.
    """
    pos = positive_pairs(coord_q, coord_k, tuple(q.shape[2:]), tuple(k.shape[2:]), pos_radius)
    f = F.normalize(flow(q, k), dim=1)
    g = F.normalize(flow(k, q), dim=1)
    # S_n and T_n share the mask and the denominator, so one product of the concatenated
    # [q; f] and [k; g] gives their sum: <q_i, k_j> + <f_i, g_j>.
    a = torch.cat([q, f], dim=1).flatten(2).transpose(1, 2)  # [N, hq*wq, C+2]
    b = torch.cat([k, g], dim=1).flatten(2).transpose(1, 2)  # [N, hk*wk, C+2]
    pos_f = pos.to(b.dtype)
    matched = torch.bmm(pos_f, b)  # [N, hq*wq, C+2]: sum over the positives j of each cell i
    total = (a.float() * matched.float()).sum(dim=(1, 2))  # [N]
    count = pos.sum(dim=(1, 2)).float()
    # A sample without positive pairs has total exactly 0 and so per_sample 0 either way, but
    # through 1 / (0 + 1e-6) it sends a gradient of 1e6 * a into `matched`: harmless in float32
    # (the bmm's backward multiplies it by the all-zero pos), inf in float16 (max 65504), which
    # under fp16 autocast made the GradScaler skip every step of a batch holding such a sample.
    # torch.where keeps the value and cuts that gradient path; samples with pairs are unchanged.
    per_sample = torch.where(count > 0, total / (count + 1e-6), torch.zeros_like(total))
    return -2.0 * per_sample.mean()
