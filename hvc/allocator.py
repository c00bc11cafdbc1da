"""Keep freed memory in the process instead of handing it back to the system at every step: steps allocate and
free tensors of the same few sizes (several MiB), which glibc's defaults unmap on free and page-fault on at the next
step (measured: docs/local_kernel.md, "Cost"). Linux (glibc's ``mallopt``) only; ``HVC_KEEP_FREED_MEMORY=0`` turns
it off. Every entry point calls it (:func:`hvc.cli.run_main`)."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt parameter numbers (glibc's malloc.h)
# freed blocks are reused, not unmapped: mmap only from glibc's ceiling on 64-bit systems (DEFAULT_MMAP_THRESHOLD_MAX),
# the heap top trimmed above 1 GiB only; results do not change
MMAP_THRESHOLD = 32 << 20
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
