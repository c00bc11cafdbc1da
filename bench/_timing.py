"""Side-by-side timing for the benchmarks on a shared machine.

Variants run in alternation (round 1: A, B, C; round 2: A, B, C; ...), so that a change of
load on the machine hits every variant alike; the figure kept is the median over rounds, and
ratios are taken between medians of the same run.
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Callable


def load_line() -> str:
    """The machine's load average and thread budget, for the benchmark's header."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} logical CPUs"


def alternate(variants: dict[str, Callable[[], object]], rounds: int, warmup: int = 1) -> dict[str, list[float]]:
    """Wall seconds of each call of each variant, variants interleaved round by round."""
    for _ in range(warmup):
        for fn in variants.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def median(values: list[float]) -> float:
    return statistics.median(values)
