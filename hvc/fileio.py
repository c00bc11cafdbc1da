"""Atomic file writes (docs/failure.md, "Durable records"): a reader never sees a half-written file; a failed write
is an OutputError naming the file. ``durable=True`` also fsyncs file and folder, so a power loss keeps it whole."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import tempfile
from typing import Any, BinaryIO, Iterator

from hvc.errors import OutputError


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
        # mkstemp creates 0600 files; give the result the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
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
