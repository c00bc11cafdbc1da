"""Completion records: which sequences of a results folder are finished, and with which settings.

A sequence counts as finished only through its record ``<out>/.hvc/done/<sequence>.json``;
its files are staged in ``.hvc/staging/<sequence>/`` and moved into place before the record is
written; only what the bookkeeping says we wrote is ever removed (docs/failure.md, "Reruns, `--resume`,
`--overwrite`" and "What is refused").
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Optional

from hvc.errors import InputError, UsageError
from hvc.fileio import atomic_write_text
from hvc.names import check_inside, check_name, name_problem

STATE_DIR = ".hvc"  # everything the bookkeeping owns, inside the results folder
RECORD_VERSION = 1
NAME_PARTS = 2  # a sequence name: "<sequence>" (VOS, VIP) or "<class>/<video>" (JHMDB)


@dataclass(frozen=True)
class Record:
    """What a completion record says about one finished sequence."""

    sequence: str
    settings: str  # settings hash (settings_hash) the frames were made with
    files: tuple[str, ...]  # output file names, in frame order
    frames: int  # frames processed (outputs may be fewer: YouTube-VOS writes listed frames only)
    seconds: float  # wall time of the sequence
    worker: str  # who made it: "single", "rank 1/4", "shard 2/8"


@dataclass(frozen=True)
class Outputs:
    """Where the files of one sequence go: ``folder / file`` for each of ``files``. ``shared``: ``folder``
    also holds other sequences' files (JHMDB's ``<class>/``), so it is filled and emptied file by file;
    otherwise it is the sequence's own folder (VOS, VIP), moved and removed whole."""

    folder: Path
    files: tuple[str, ...]  # file names inside folder, in frame order
    shared: bool = False

    def exist(self) -> bool:
        """Whether anything of it is on disk."""
        if self.shared:
            return any((self.folder / file).exists() for file in self.files)
        return self.folder.is_dir()


def settings_hash(settings: Any) -> str:
    """sha256 (hex) of the JSON form of ``settings`` (keys sorted): equal settings, equal hash."""
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class ResultsFolder:
    """The completion bookkeeping of results folder ``root`` for the settings hash ``settings``; where
    each sequence's files go is the caller's :class:`Outputs` (the layout is the benchmark's)."""

    def __init__(self, root: str | os.PathLike, settings: str):
        self.root = Path(root)
        self.settings = settings
        self.records_dir = self.root / STATE_DIR / "done"
        self.staging_dir = self.root / STATE_DIR / "staging"
        self.pending_dir = self.root / STATE_DIR / "pending"  # commits under way: their files are ours
        self.lock = None  # the writer lock (hvc.locks.OutputLock) while a run holds the folder

    def record_path(self, name: str) -> Path:
        return self.records_dir / f"{check_name(name, 'sequence name', NAME_PARTS)}.json"

    def staging(self, name: str) -> Path:
        return self.staging_dir / check_name(name, "sequence name", NAME_PARTS)

    def pending_path(self, name: str) -> Path:
        return self.pending_dir / f"{check_name(name, 'sequence name', NAME_PARTS)}.json"

    def owns(self, name: str) -> bool:
        """Whether our bookkeeping says we wrote the outputs of ``name``: its record (readable or
        not) or a commit of it under way. Nothing else is ever removed."""
        return self.record_path(name).is_file() or self.pending_path(name).is_file()

    def _check_target(self, outputs: Outputs) -> None:
        """An output folder of ours lies inside the results folder (a name is data, not a path).
        The folder itself may be a link (it is then replaced, not followed): its parent is checked."""
        check_inside(self.root, outputs.folder, "an output of this run", follow=False)
        for file in outputs.files:
            check_name(file, f"{outputs.folder}: output file name", error=InputError)

    def records(self) -> dict[str, Optional[Record]]:
        """Every record in the folder; None for one that cannot be read (its sequence is redone)."""
        paths = sorted(self.records_dir.rglob("*.json"))  # names with "/" lie in sub-folders; no folder: none
        return {self._name(path): self._read(path) for path in paths
                if path.is_file() and not path.name.startswith(".tmp-")}  # .tmp-: a killed atomic write's leftover

    def _name(self, path: Path) -> str:
        return path.relative_to(self.records_dir).with_suffix("").as_posix()

    def record(self, name: str) -> Optional[Record]:
        path = self.record_path(name)
        return self._read(path) if path.is_file() else None

    def _read(self, path: Path) -> Optional[Record]:
        """The record at ``path``; None if it cannot be read or does not describe the sequence
        its path names with plain file names (a damaged or foreign record is never trusted)."""
        try:
            data = json.loads(path.read_text())
            if data.pop("version", None) != RECORD_VERSION:
                return None
            data["files"] = tuple(data["files"])
            record = Record(**data)
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            return None
        if record.sequence != self._name(path) or any(name_problem(f) is not None for f in record.files):
            return None
        return record

    def foreign(self) -> list[str]:
        """Sequences whose record names other settings. A record that cannot be read (truncated,
        empty, damaged) is not counted: it costs only its own sequence, which is redone."""
        return sorted(n for n, r in self.records().items() if r is not None and r.settings != self.settings)

    def is_finished(self, name: str, outputs: Outputs) -> bool:
        """Record of the current settings for exactly ``outputs.files``, each present and non-empty."""
        record = self.record(name)
        if record is None or record.settings != self.settings or record.files != outputs.files:
            return False
        try:
            return all((outputs.folder / file).stat().st_size > 0 for file in outputs.files)
        except OSError:
            return False

    def start(self, name: str) -> Path:
        """An empty staging folder for the files of ``name`` (leftovers of a killed run removed)."""
        staging = self.staging(name)
        check_inside(self.staging_dir.parent, staging, "a staging folder")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        return staging

    def commit(self, record: Record, outputs: Outputs) -> None:
        """Move the staged files ``record.files`` into ``outputs`` (replacing what was there), then
        write the record. Its own folder is renamed whole; into a shared folder, file by file."""
        name = record.sequence
        self._check_target(outputs)
        if outputs.exist() and not self.owns(name):
            raise UsageError(f"{outputs.folder}: exists, but no completion record of {self.root} says this tool "
                             f"wrote it; it is left alone: move it away or choose another output folder")
        text = json.dumps({"version": RECORD_VERSION, **asdict(record), "files": list(record.files)}, indent=1) + "\n"
        atomic_write_text(self.pending_path(name), text, durable=True)  # from here on, what lies at outputs is ours
        self.forget(name, outputs, claimed=True)
        staged = self.staging(name)
        if outputs.shared:
            outputs.folder.mkdir(parents=True, exist_ok=True)
            for file in record.files:
                os.replace(staged / file, outputs.folder / file)
            shutil.rmtree(staged)
        else:
            outputs.folder.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged, outputs.folder)
        atomic_write_text(self.record_path(name), text, durable=True)
        self.pending_path(name).unlink()

    def forget(self, name: str, outputs: Outputs, claimed: bool = False) -> None:
        """Remove the record of ``name`` first (so nothing half-removed counts), then its files (in a
        shared folder those of ``outputs`` and of its record, and the folder once empty), if :meth:`owns`.
        A pending claim is held meanwhile, so a removal killed half-way is still ours on the next
        run; ``claimed``: the caller (a commit) holds it and keeps it."""
        if not self.owns(name):
            return
        old = self.record(name) if outputs.shared else None
        if not claimed:
            atomic_write_text(self.pending_path(name), "{}\n", durable=True)
        self.record_path(name).unlink(missing_ok=True)
        self._check_target(outputs)
        folder = outputs.folder
        if outputs.shared:
            listed = [f for f in old.files if Path(f).name == f] if old else []  # plain names only: stay in folder
            for file in dict.fromkeys([*outputs.files, *listed]):
                (folder / file).unlink(missing_ok=True)
            with contextlib.suppress(OSError):  # not empty: other sequences' files (or the user's) stay
                folder.rmdir()
        elif folder.is_symlink():
            folder.unlink()
        elif folder.is_dir():
            shutil.rmtree(folder)
        if not claimed:
            self.pending_path(name).unlink()

    def clear_staging(self, names: Optional[Iterable[str]] = None) -> None:
        """Remove leftovers of killed runs: the staging folders of ``names`` (None = all)."""
        if names is None:
            shutil.rmtree(self.staging_dir, ignore_errors=True)
        else:
            for name in names:
                shutil.rmtree(self.staging(name), ignore_errors=True)
