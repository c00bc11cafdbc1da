"""What the training loop reports: a loss/throughput meter over logging windows and the
append-only JSON-lines log (``log.jsonl``)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import NamedTuple, Optional


class WindowStats(NamedTuple):
    loss: float  # mean loss of the window's updates
    images_per_s: float  # global images per second of training (checkpoint writes excluded)


class StepMeter:
    """Mean loss and images/s since the last report, for one global batch size."""

    def __init__(self, batch_size: int):
        self.batch_size = batch_size
        self.losses: list[float] = []
        self.start = time.perf_counter()

    def add(self, loss: float) -> None:
        """One update whose (process-mean) loss was ``loss``."""
        self.losses.append(loss)

    def exclude(self, seconds: float) -> None:
        """Leave ``seconds`` (e.g. a checkpoint write) out of the window's time."""
        self.start += seconds

    def report(self) -> Optional[WindowStats]:
        """The window's statistics, then a new window; None when the window had no update."""
        if not self.losses:
            return None
        elapsed = time.perf_counter() - self.start
        stats = WindowStats(sum(self.losses) / len(self.losses),
                            len(self.losses) * self.batch_size / max(elapsed, 1e-9))
        self.losses, self.start = [], time.perf_counter()
        return stats


class JsonLog:
    """Append-only JSON-lines log, each record with its wall-clock time; without a path (ranks
    other than 0) it writes nothing."""

    def __init__(self, path: Optional[Path]):
        self.file = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.file = open(path, "a", encoding="utf-8")

    def write(self, **record) -> None:
        if self.file is not None:
            self.file.write(json.dumps({"time": round(time.time(), 3), **record}) + "\n")
            self.file.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
