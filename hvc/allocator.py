"""Keep freed memory in the process instead of handing it back to the system at every step.

Steps allocate and free tensors of the same few sizes (several MiB); with glibc's defaults blocks above its mmap
threshold are unmapped on free and the heap top trimmed, so each step page-faults on memory the previous one handed
back. Fixing the mmap threshold at glibc's ceiling (32 MiB) and the trim threshold at 1 GiB reuses freed blocks;
results do not change (measured: docs/local_kernel.md, "Cost"). Linux (glibc's ``mallopt``) only;
``HVC_KEEP_FREED_MEMORY=0`` turns it off. Every entry point calls it (:func:`hvc.cli.run_main`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt parameter numbers (glibc's malloc.h)
MMAP_THRESHOLD = 32 << 20  # glibc's largest on 64-bit systems (DEFAULT_MMAP_THRESHOLD_MAX)
TRIM_THRESHOLD = 1 << 30
ENV = "HVC_KEEP_FREED_MEMORY"


def keep_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds as above; True if they were set."""
    if os.environ.get(ENV, "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):  # a C library without mallopt (e.g. musl)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
