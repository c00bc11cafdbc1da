"""Scoring sequences one after another or in worker processes, with a progress bar."""

from __future__ import annotations

import concurrent.futures as cf
from typing import Callable, Sequence, TypeVar

from tqdm import tqdm

T = TypeVar("T")


def map_sequences(fn: Callable[..., T], jobs: Sequence[tuple], workers: int, desc: str, progress: bool) -> list[T]:
    """``[fn(*job) for job in jobs]``, in ``workers`` processes when above 1, in the order of ``jobs``.
    The first error a worker raises is re-raised here, message intact, and the remaining jobs cancelled."""
    with tqdm(total=len(jobs), desc=desc, unit="seq", disable=not progress) as bar:  # closed before an error prints
        if workers <= 1 or len(jobs) <= 1:
            results = []
            for job in jobs:
                results.append(fn(*job))
                bar.update()
            return results
        pool = cf.ProcessPoolExecutor(max_workers=min(workers, len(jobs)))
        try:
            futures = [pool.submit(fn, *job) for job in jobs]
            for done in cf.as_completed(futures):
                done.result()  # re-raises a worker's error here
                bar.update()
            return [fut.result() for fut in futures]
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
