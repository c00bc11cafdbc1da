"""Expected failures and their exit codes (docs/failure.md): an entry point wrapped in :func:`entry_point` prints one
line ``error: <file or key>: <problem>`` for them; anything else is a bug and keeps its traceback (exit code 1)."""

from __future__ import annotations

import argparse
import errno
import functools
import re
import sys
from typing import Callable, Optional, Sequence

EXIT_USAGE, EXIT_INPUT, EXIT_IO, EXIT_DEVICE, EXIT_NON_FINITE, EXIT_BUSY, EXIT_INTERRUPT = 2, 3, 4, 5, 6, 7, 130


class HvcError(Exception):
    """An expected failure; ``str(exc)`` is ``"<file or key>: <problem>"``. A kind names its code in its class line."""

    exit_code = 1

    def __init_subclass__(cls, exit_code: Optional[int] = None, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.exit_code = exit_code or cls.exit_code  # its own, else its parent's


class UsageError(HvcError, exit_code=EXIT_USAGE):
    """Bad command line or configuration."""


class InputError(HvcError, exit_code=EXIT_INPUT):
    """An input file (data, annotation, checkpoint) is missing, malformed or unusable."""


class OutputError(HvcError, exit_code=EXIT_IO):
    """An output cannot be written (not a folder, not writable, disk full)."""


class DeviceError(HvcError, exit_code=EXIT_DEVICE):
    """The requested device does not exist or is not available."""


class NonFiniteError(HvcError, exit_code=EXIT_NON_FINITE):
    """A NaN or infinite value where only finite ones make sense."""


class BusyError(HvcError, exit_code=EXIT_BUSY):
    """Another process holds the writer lock of the output folder (:class:`hvc.fileio.OutputLock`)."""


class ReportedElsewhere(HvcError):
    """Another process of the same job reports this failure; this one exits with its code, silently."""

    def __init__(self, exit_code: int):
        super().__init__("")
        self.exit_code = exit_code


_IO_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EACCES, errno.EPERM,  # reported as I/O errors
              errno.EROFS, errno.EISDIR, errno.ENOTDIR, errno.EEXIST, errno.EIO, errno.ENAMETOOLONG}

# DataLoader re-raises a worker's exception as its type, the message: this line, the traceback, "<type>: <message>"
_WORKER_MESSAGE = re.compile(r"^Caught \w+ in DataLoader worker process \d+\.")
MAX_MESSAGE = 400  # characters of an error line; longer ones are cut


def classify(exc: BaseException) -> Optional[tuple[int, str]]:
    """(exit code, one-line message) of an expected failure or Ctrl-C; None for anything else (a bug)."""
    if isinstance(exc, HvcError):
        message, code = str(exc), exc.exit_code
        if _WORKER_MESSAGE.match(message):  # the original message only
            message = message.rstrip().splitlines()[-1].split(": ", 1)[-1]
    elif isinstance(exc, OSError) and exc.errno in _IO_ERRNOS:
        where = exc.filename if exc.filename is not None else "output"
        message, code = f"{where}: {exc.strerror}", EXIT_IO
    elif isinstance(exc, KeyboardInterrupt):
        message, code = "interrupted (Ctrl-C); finished results are kept, a rerun continues", EXIT_INTERRUPT
    else:
        return None
    line = " ".join(message.split())  # one short line, whatever a file or a name from the data put into it
    return code, line if len(line) <= MAX_MESSAGE else line[:MAX_MESSAGE - 3] + "..."


def entry_point(main: Callable[[Optional[Sequence[str]]], int]) -> Callable[[Optional[Sequence[str]]], int]:
    """Wrap ``main(argv) -> exit code``: expected failures become one stderr line and their code."""
    @functools.wraps(main)
    def run(argv: Optional[Sequence[str]] = None) -> int:
        try:
            return main(argv)
        except ReportedElsewhere as exc:
            return exc.exit_code
        except (Exception, KeyboardInterrupt) as exc:
            kind = classify(exc)
            if kind is None:
                raise  # a bug: keep the traceback
            print(f"error: {kind[1]}", file=sys.stderr, flush=True)
            return kind[0]
    return run


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose usage errors are :class:`UsageError` (one line, exit code 2)."""

    def error(self, message: str):  # noqa: D401 - argparse's hook
        raise UsageError(f"command line: {message} (see {self.prog} --help)")
