"""Behaviour shared by every command-line entry point: ``sys.exit(run_main(main, *args))`` ends
quietly (exit status 141, as a shell reports SIGPIPE) when its output is closed early, as in
``python eval_metrics.py ... | head -1``, instead of with a BrokenPipeError traceback."""

from __future__ import annotations

import os
import select
import signal
import sys
from typing import Callable, Optional

from hvc.allocator import keep_freed_memory

PIPE_CLOSED_EXIT = 128 + int(signal.SIGPIPE)


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
    """``main(*args)`` after :func:`hvc.allocator.keep_freed_memory`; a closed stdout pipe gives PIPE_CLOSED_EXIT."""
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
