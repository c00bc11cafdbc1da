"""One writer per output folder (docs/failure.md): a ``flock`` on ``<folder>/.hvc/lock``, released by the kernel when
the process dies; a second writer gets a BusyError. The lock file stays (a new one could be locked beside it)."""

from __future__ import annotations

import fcntl
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from hvc.errors import BusyError, OutputError
from hvc.fileio import atomic_write_text

LOCK_FILE = Path(".hvc") / "lock"


@dataclass
class _Held:
    """One flock of this process: its descriptor, mode and the number of OutputLock objects using it."""

    fd: int
    shared: bool
    users: int


# Locks this process holds, by lock file: re-entrant within the process, so runs called one after another (tests,
# notebooks) never refuse each other, whatever an earlier failed run's traceback still holds.
_HELD: dict[str, _Held] = {}
SHARD_PATIENCE_S = 2.0  # seconds a shard waits for another shard's settings check (which takes milliseconds)


def _flock(fd: int, shared: bool) -> bool:
    """Take the flock without waiting (True if taken); a shard retries briefly (another one's settings check)."""
    deadline = time.monotonic() + (SHARD_PATIENCE_S if shared else 0.0)
    while True:
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
            return True
        except OSError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)


class OutputLock:
    """The writer lock of ``folder``, held until :meth:`release`, the end of a ``with`` block, garbage collection or
    process exit; ``shared``: the ``--shard i/n`` processes of one job. ``what``: the folder's setting, for errors."""

    def __init__(self, folder: str | os.PathLike, what: str, shared: bool = False):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_FILE
        self._key: Optional[str] = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            key = os.path.realpath(self.path)
            held = _HELD.get(key)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666) if held is None else -1
        except OSError as exc:
            raise OutputError(f"{self.path}: cannot create the lock file of {what} ({exc.strerror or exc})") from exc
        busy = BusyError(f"{self.folder}: {what} is being written by another run (it holds {self.path}); "
                         f"wait for it to end, or choose another folder")
        if held is None:
            if not _flock(fd, shared):
                os.close(fd)
                raise busy
            held = _HELD[key] = _Held(fd, shared, 0)
        elif held.shared and not shared:  # a shard's lock made exclusive (e.g. --merge-shards after it)
            if not _flock(held.fd, shared=False):
                raise busy
            held.shared = False
        held.users += 1
        self._key = key

    def claim_settings(self, settings: str) -> None:
        """Shards only: BusyError if other shards in this folder write results of other settings. The first shard
        records its settings in ``.hvc/shards.json``, the others compare, under an exclusive ``.hvc/claim.lock``."""
        held = _HELD[self._key]
        claim_fd = os.open(self.path.with_name("claim.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        record = self.path.with_name("shards.json")
        try:
            fcntl.flock(claim_fd, fcntl.LOCK_EX)  # held for a few milliseconds by each shard
            if not held.shared or _flock(held.fd, shared=False):
                try:
                    atomic_write_text(record, json.dumps({"settings": settings}) + "\n", durable=True)
                finally:
                    if held.shared:  # shared again, for the next shards
                        fcntl.flock(held.fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                return  # this process holds the folder exclusively, or is its first shard
            try:  # other shards hold it: compare with theirs
                theirs = json.loads(record.read_text()).get("settings")
            except (OSError, ValueError, AttributeError):
                theirs = None
            if theirs is not None and theirs != settings:
                raise BusyError(f"{self.folder}: other shards are writing results of other settings here "
                                f"(see {record}); wait for them to end, or choose another folder")
        finally:
            os.close(claim_fd)

    def release(self) -> None:
        key, self._key = self._key, None
        held = _HELD.get(key)
        if held is not None:
            held.users -= 1
            if held.users == 0:
                del _HELD[key]
                os.close(held.fd)  # closing the descriptor releases the flock

    def __enter__(self) -> "OutputLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def __del__(self) -> None:
        try:
            self.release()
        except Exception:  # at interpreter exit os may be gone; the kernel releases the lock anyway
            pass
