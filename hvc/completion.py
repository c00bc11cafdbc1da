"""The results folder of ``test.py`` and ``hvc.segment`` (docs/failure.md): completion records, the only proof that
a sequence is finished and with which settings; the checks before any work and the summaries after."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import shutil
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

from hvc.config.core import ConfigError, dump_yaml, to_dict
from hvc.config.inference import TestConfig
from hvc.data.vos import YTVOS_DATASETS
from hvc.errors import InputError, UsageError
from hvc.fileio import OutputLock, atomic_path, atomic_write_text, file_digest, writable_dir
from hvc.models.encoders import checkpoint_path
from hvc.names import check_inside, check_name, name_problem, refuse_overlap

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
    """Where the files of one sequence go: ``folder / file`` for each of ``files``. ``shared``: ``folder`` also holds
    other sequences' files (JHMDB's ``<class>/``), filled and emptied file by file; else it is moved whole."""

    folder: Path
    files: tuple[str, ...]  # file names inside folder, in frame order
    shared: bool = False

    def exist(self) -> bool:
        return any((self.folder / f).exists() for f in self.files) if self.shared else self.folder.is_dir()


def settings_hash(settings: Any) -> str:
    """sha256 (hex) of the JSON form of ``settings`` (keys sorted): equal settings, equal hash."""
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class ResultsFolder:
    """The completion bookkeeping of results folder ``root`` for the settings hash ``settings``."""

    def __init__(self, root: str | os.PathLike, settings: str):
        self.root, self.settings = Path(root), settings
        self.records_dir = self.root / STATE_DIR / "done"
        self.staging_dir = self.root / STATE_DIR / "staging"
        self.pending_dir = self.root / STATE_DIR / "pending"  # commits under way: their files are ours
        self.lock = None  # the writer lock (hvc.fileio.OutputLock) while a run holds the folder

    def record_path(self, name: str) -> Path:
        return self.records_dir / f"{check_name(name, 'sequence name', NAME_PARTS)}.json"

    def staging(self, name: str) -> Path:
        return self.staging_dir / check_name(name, "sequence name", NAME_PARTS)

    def pending_path(self, name: str) -> Path:
        return self.pending_dir / f"{check_name(name, 'sequence name', NAME_PARTS)}.json"

    def owns(self, name: str) -> bool:
        """Whether a record of ``name`` (readable or not) or a commit of it under way says we wrote its outputs."""
        return self.record_path(name).is_file() or self.pending_path(name).is_file()

    def _check_target(self, outputs: Outputs) -> None:
        """An output folder of ours lies inside the results folder; a link there is replaced, not followed."""
        check_inside(self.root, outputs.folder, "an output of this run", follow=False)
        for file in outputs.files:
            check_name(file, f"{outputs.folder}: output file name")

    def records(self) -> dict[str, Optional[Record]]:
        """Every record in the folder; None for one that cannot be read (its sequence is redone)."""
        paths = sorted(self.records_dir.rglob("*.json"))  # names with "/" lie in sub-folders; no folder: none
        return {self._name(path): self._read(path) for path in paths
                if path.is_file() and not path.name.startswith(".tmp-")}  # .tmp-: a killed atomic write's leftover

    def _name(self, path: Path) -> str:
        return path.relative_to(self.records_dir).with_suffix("").as_posix()

    def record(self, name: str) -> Optional[Record]:
        return self._read(self.record_path(name))  # None if missing

    def _read(self, path: Path) -> Optional[Record]:
        """The record at ``path``; None if unreadable or not of the sequence its path names, with plain file names."""
        try:
            data = json.loads(path.read_text())
            if data.pop("version", None) != RECORD_VERSION:
                return None
            record = Record(**{**data, "files": tuple(data["files"])})
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            return None
        plain = record.sequence == self._name(path) and all(name_problem(f) is None for f in record.files)
        return record if plain else None

    def foreign(self) -> list[str]:
        """Sequences whose record names other settings (an unreadable one costs only its sequence, which is redone)."""
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
        """Move the staged files ``record.files`` into ``outputs`` (replacing what was there), then write the record."""
        name = record.sequence
        self._check_target(outputs)
        if outputs.exist() and not self.owns(name):
            raise UsageError(f"{outputs.folder}: exists, but no completion record of {self.root} says this tool wrote "
                             "it; it is left alone: move it away or choose another output folder")
        text = json.dumps({"version": RECORD_VERSION, **asdict(record)}, indent=1) + "\n"
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
        """If :meth:`owns`: remove the record of ``name``, then its files (shared folder: those of ``outputs`` and the
        record, and the folder once empty), under a pending claim (``claimed``: the caller's) that outlives a kill."""
        if not self.owns(name):
            return
        old = self.record(name) if outputs.shared else None
        if not claimed:
            atomic_write_text(self.pending_path(name), "{}\n", durable=True)
        self.record_path(name).unlink(missing_ok=True)
        self._check_target(outputs)
        folder = outputs.folder
        if outputs.shared:
            for file in dict.fromkeys([*outputs.files, *(old.files if old else ())]):  # _read: plain names only
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
        for staging in [self.staging_dir] if names is None else map(self.staging, names):
            shutil.rmtree(staging, ignore_errors=True)


def result_tag(cfg: TestConfig) -> str:
    """Folder name of a model's results: ``<model>`` or ``<model>+<merge_model>``."""
    return cfg.model.name + (f"+{cfg.model.merge_model}" if cfg.model.merge_model else "")


def output_dir(cfg: TestConfig) -> Path:
    return Path(cfg.run.output_dir or Path(cfg.run.results_root) / result_tag(cfg) / cfg.data.dataset)


def run_settings(cfg: TestConfig) -> str:
    """The settings hash of completion records: the settings that change the results, the autocast precision, the
    encoder mode (``fused`` and ``bf16`` move the features) and the bytes of every checkpoint file."""
    d, m = to_dict(cfg), cfg.model
    data = {k: v for k, v in d["data"].items() if k not in ("root", "sequences", "video_list", "workers", "batch_size")}
    protocol = {"model": d["model"], "data": data, "prop": d["prop"]}
    digests = {}
    for name, given in ((m.name, m.checkpoint), (m.merge_model, m.merge_checkpoint)):
        if name is not None and name != "random18":
            path = checkpoint_path(name, given)
            digests[name] = file_digest(path) if Path(path).is_file() else None  # missing: load_encoder says so
    return settings_hash({"protocol": protocol, "amp": cfg.run.amp, "encoder": cfg.run.encoder, "checkpoints": digests})


def check_apart(cfg: TestConfig, out: Path) -> None:
    """Before anything is created: the output folder (and its ``_vis`` sibling) overlaps no input."""
    m = cfg.model
    checkpoints = [checkpoint_path(name, given) for name, given in ((m.name, m.checkpoint),
                   (m.merge_model, m.merge_checkpoint)) if name is not None and (given or name != "random18")]
    inputs = {"data.root": cfg.data.root, "data.video_list": cfg.data.video_list, "model.checkpoint": checkpoints}
    refuse_overlap(out, "run.output_dir", inputs)
    if cfg.run.visualize:
        refuse_overlap(f"{out}_vis", "run.output_dir (visualisations: <output_dir>_vis)", inputs)


def prepare_results(cfg: TestConfig, outputs: dict[str, Outputs], locate: Callable[[str], Outputs],
                    mine: Iterable[str], partial: bool, stale: Iterable[str]) -> tuple[ResultsFolder, list[str]]:
    """Before any work: a writable, locked output folder without results of other settings (``run.overwrite``
    removes them) or outputs no record says we wrote, killed runs' leftovers cleared, ``config.yaml`` written. Returns
    its bookkeeping and the names of ``mine`` not finished, in the order of ``outputs`` (``locate``: where other names'
    files went). ``partial``: a ``--shard`` run; ``stale``: glob patterns of summaries made from earlier results."""
    out = output_dir(cfg)
    check_apart(cfg, out)
    writable_dir(out, "run.output_dir")
    if cfg.run.visualize:
        writable_dir(f"{out}_vis", "run.output_dir (visualisations: <output_dir>_vis)")
    folder = ResultsFolder(out, run_settings(cfg))
    folder.lock = OutputLock(out, "run.output_dir", shared=partial)  # the shards of one job share it
    try:
        if partial:
            folder.lock.claim_settings(folder.settings)
        config_record = out / "config.yaml"
        foreign = folder.foreign()
        if foreign and not cfg.run.overwrite:
            raise ConfigError(f"{out}: holds results made with other settings ({len(foreign)} sequence(s), e.g. "
                              f"{foreign[0]}; see {config_record}); pass --overwrite, or choose another run.output_dir")
        unknown = [name for name, where in outputs.items() if where.exist() and not folder.owns(name)]
        if unknown:
            raise UsageError(f"{outputs[unknown[0]].folder}: exists, but no completion record of {out} says this "
                             f"tool wrote it ({len(unknown)} sequence(s): another program's or an older version's, not "
                             "converted); it is left alone, also with --overwrite: choose another run.output_dir")
        mine = set(mine)
        if cfg.run.overwrite:  # remove first: a rerun then never mixes two settings
            targets = set(foreign) | (mine if partial else {*outputs, *folder.records()})
            for name in sorted(targets):
                folder.forget(name, outputs[name] if name in outputs else locate(name))
        folder.clear_staging(mine if partial else None)  # files of killed runs
        atomic_write_text(config_record, dump_yaml(cfg))
        todo = [name for name, where in outputs.items() if name in mine and not folder.is_finished(name, where)]
        if todo or cfg.run.overwrite:  # summaries and scores of earlier results no longer describe the folder
            for pattern in stale:
                for path in out.glob(pattern):
                    path.unlink()
    except BaseException:
        folder.lock.release()  # a refused or failed preparation leaves the folder free at once
        raise
    return folder, todo


STALE_SUMMARIES = ("sequences.csv", "submission.zip")  # written from complete results (the scores too: hvc.tasks.clips)


def write_summary(cfg: TestConfig, folder: ResultsFolder, clips: list[Any]) -> list[Path]:
    """``sequences.csv`` (a row per clip) and, for YouTube-VOS, ``submission.zip``; InputError if one is unfinished."""
    out = folder.root
    check_apart(cfg, out)  # --merge-shards comes here without prepare_results (nor its lock)
    if folder.lock is None:
        folder.lock = OutputLock(out, "run.output_dir")
    missing = [c.name for c in clips if not folder.is_finished(c.name, c.outputs)]
    if missing:
        raise InputError(f"{out}: {len(missing)} sequence(s) not finished with these settings: "
                         f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''} "
                         f"(run the missing shards, or test.py without --shard)")
    records = [folder.record(c.name) for c in clips]
    header = ["sequence", "frames", "outputs", "seconds", "worker", "settings"]
    rows = [[r.sequence, r.frames, len(r.files), f"{r.seconds:.2f}", r.worker, r.settings[:12]] for r in records]
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows([header, *rows])
    written = [out / "sequences.csv"]
    atomic_write_text(written[0], text.getvalue())
    if cfg.data.dataset not in YTVOS_DATASETS:
        return written
    written.append(out / "submission.zip")  # the upload: Annotations/<video>/<frame>.png of exactly the records' files
    with atomic_path(written[1]) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.comment = f"hvc settings {folder.settings}".encode()
        for record in records:
            for name in record.files:  # entries stay relative and inside the archive's root
                entry = f"Annotations/{check_name(record.sequence, 'sequence name')}/{check_name(name, 'file name')}"
                zf.write(out / entry, entry)
    return written
