"""What every command-line entry point shares: :func:`run_main` (freed memory kept in the process, a closed output
pipe ends the run quietly) and where the project's ``checkpoints/`` and ``configs/`` are (:func:`project_folder`)."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import select
import signal
import sys
from pathlib import Path
from typing import Callable, Optional

PIPE_CLOSED_EXIT = 128 + int(signal.SIGPIPE)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt parameter numbers (glibc's malloc.h)
# freed blocks reused, not unmapped: mmap only from glibc's 64-bit ceiling (DEFAULT_MMAP_THRESHOLD_MAX), trim from 1 GiB
MMAP_THRESHOLD, TRIM_THRESHOLD = 32 << 20, 1 << 30  # results do not change


def keep_freed_memory() -> bool:
    """Keep freed memory in the process, as steps reallocate tensors of the same sizes that glibc would unmap and
    page-fault on (docs/local_kernel.md, "Cost"); ``HVC_KEEP_FREED_MEMORY=0`` turns it off. True if it was set."""
    if os.environ.get("HVC_KEEP_FREED_MEMORY", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):  # a C library without mallopt (e.g. musl)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1


def stdout_closed() -> bool:
    """Whether stdout is a pipe (or socket) whose reading end has gone away."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, ValueError, OSError):
        return False
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return any(events & select.POLLERR for _, events in poller.poll(0))


def run_main(main: Callable[..., Optional[int]], *args) -> int:
    """``main(*args)`` after :func:`keep_freed_memory`; a closed stdout pipe (``| head -1``) ends it quietly: 141."""
    keep_freed_memory()
    try:
        code = main(*args)
        sys.stdout.flush()  # fail here, not in the interpreter's final flush
        return code or 0
    except BrokenPipeError:
        if not stdout_closed():
            raise
        # Later writes (and the final flush at exit) go to /dev/null instead of failing again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return PIPE_CLOSED_EXIT


def source_checkout() -> Optional[Path]:
    """The root of the source checkout this package is imported from; None for an installed package."""
    root = Path(__file__).resolve().parent.parent
    try:  # a checkout's pyproject.toml names this distribution
        return root if 'name = "hvc-vos"' in (root / "pyproject.toml").read_text() else None
    except OSError:
        return None


def project_folder(name: str) -> Path:
    """Absolute ``./name`` if that folder exists or there is no checkout, else the checkout's ``name``."""
    here, checkout = Path(name).resolve(), source_checkout()
    return here if here.is_dir() or checkout is None else checkout / name
