"""Safe writes (docs/failure.md): atomic files (a reader never sees a half-written one; ``durable=True`` also fsyncs
it and its folder) and one writer per output folder (:class:`OutputLock`, a ``flock`` the kernel releases at exit)."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Iterator, Optional

from hvc.errors import BusyError, OutputError


def fsync_path(path: str | os.PathLike) -> None:
    """Flush a file's (or a folder's entries') writes to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, durable: bool = False) -> Iterator[str]:
    """A temporary path in the target's folder, renamed onto ``path`` on success, removed on an exception."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        name, suffix = os.path.basename(path), os.path.splitext(path)[1]  # the extension: some writers infer the format
        fd, tmp = tempfile.mkstemp(prefix=f".tmp-{name}-", suffix=suffix, dir=folder)
        os.close(fd)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write ({exc.strerror})") from exc
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files: the permissions a plain open() would give
        if durable:
            fsync_path(tmp)
        os.replace(tmp, path)
        if durable:
            fsync_path(folder)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        if isinstance(exc, OSError):
            raise OutputError(f"{path}: cannot write ({exc.strerror or exc})") from exc
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes | memoryview, durable: bool = False) -> None:
    with atomic_path(path, durable) as tmp, open(tmp, "wb") as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str, durable: bool = False) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), durable)


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` atomically and durably; in memory first, as torch's zip writer hides a full disk's OSError."""
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getbuffer(), durable=True)


def writable_dir(path: str | os.PathLike, what: str) -> None:
    """Create folder ``path`` and check, before hours of work, that files can be made in it; else OutputError."""
    path = os.fspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise OutputError(f"{path}: {what} is a file, not a folder")
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path) as probe:  # gone when closed, even if this process is killed
            probe.write(b"probe")
    except OSError as exc:
        raise OutputError(f"{path}: {what} is not writable ({exc.strerror or exc})") from exc


def stream_digest(stream: BinaryIO, algorithm: str = "sha256") -> str:
    """Hex digest of what is left in ``stream``, read in 1 MiB blocks (``hashlib.file_digest`` needs Python 3.11)."""
    digest = hashlib.new(algorithm)
    for block in iter(lambda: stream.read(1 << 20), b""):
        digest.update(block)
    return digest.hexdigest()


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes (sha256 unless told): a checkpoint rewritten at the same path is new settings."""
    with open(path, "rb") as f:
        return stream_digest(f, algorithm)


LOCK_FILE = Path(".hvc") / "lock"  # it stays: a new one could be locked beside one still held


@dataclass
class _Held:
    """One flock of this process: its descriptor, mode and the number of OutputLock objects using it."""

    fd: int
    shared: bool
    users: int


# Locks this process holds, by lock file: re-entrant, so runs called one after another never refuse each other.
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
    """The writer lock of ``folder`` (BusyError if held) until :meth:`release` or exit; ``shared``: one job's shards."""

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
                         "wait for it to end, or choose another folder")
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
        with contextlib.suppress(Exception):  # at interpreter exit os may be gone; the kernel releases the lock anyway
            self.release()
