"""Per-object statistics over the evaluated frames (official ``db_statistics``)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

N_DECAY_BINS = 4  # the official Decay compares the first and the last of 4 quantile bins


class Statistics(NamedTuple):
    mean: float  # nanmean of the per-frame values
    recall: float  # fraction of frames with a value strictly above 0.5
    decay: float  # mean of the first bin minus mean of the last bin


def decay_bin_edges(n: int) -> np.ndarray:
    """First index of each bin and the last index: round(linspace(1, n, 5) + 1e-10) - 1; bin k is
    ``values[edges[k] : edges[k + 1] + 1]`` (docs/metrics.md, "Statistics and tables"). The official
    code casts the edges to uint8, which would wrap above 256 frames; DAVIS sequences have at most 104."""
    return (np.round(np.linspace(1, n, N_DECAY_BINS + 1) + 1e-10) - 1).astype(np.int64)


def db_statistics(values: np.ndarray) -> Statistics:
    """Mean, Recall and Decay of one object's per-frame J or F; values: [T] float64, T >= 1."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"expected a non-empty 1-D array of per-frame values, got shape {values.shape}")
    edges = decay_bin_edges(values.size)
    bins = [values[edges[k] : edges[k + 1] + 1] for k in range(N_DECAY_BINS)]
    return Statistics(mean=float(np.nanmean(values)), recall=float(np.nanmean(values > 0.5)),
                      decay=float(np.nanmean(bins[0]) - np.nanmean(bins[-1])))
