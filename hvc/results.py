"""The results folder of ``test.py``: where each sequence goes, which settings made it, the checks
before any work (:func:`prepare_results`) and the summaries after (:func:`write_summary`); its
completion records: :mod:`hvc.completion`, docs/failure.md.
"""

from __future__ import annotations

import csv
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from hvc.apart import refuse_overlap
from hvc.completion import Outputs, Record, ResultsFolder, settings_hash
from hvc.config.core import ConfigError, dump_yaml, to_dict
from hvc.config.inference import TestConfig
from hvc.data.vos import YTVOS_DATASETS
from hvc.errors import InputError, UsageError
from hvc.fileio import atomic_path, atomic_write_text, file_digest, writable_dir
from hvc.locks import OutputLock
from hvc.models.encoders import checkpoint_path
from hvc.names import check_name


def result_tag(cfg: TestConfig) -> str:
    """Folder name of a model's results: ``<model>`` or ``<model>+<merge_model>``."""
    return cfg.model.name + (f"+{cfg.model.merge_model}" if cfg.model.merge_model else "")


def output_dir(cfg: TestConfig) -> Path:
    return Path(cfg.run.output_dir or Path(cfg.run.results_root) / result_tag(cfg) / cfg.data.dataset)


def _protocol(cfg: TestConfig) -> dict:
    """The settings that change the results (not where they go or how fast they come)."""
    d = to_dict(cfg)
    ignored = ("root", "sequences", "video_list", "workers", "batch_size")  # what, where and how fast
    data = {k: v for k, v in d["data"].items() if k not in ignored}
    return {"model": d["model"], "data": data, "prop": d["prop"]}


def run_settings(cfg: TestConfig) -> str:
    """The settings hash of completion records: the protocol, the autocast precision, the
    encoder mode (``fused`` and ``bf16`` move the features, so their results never mix with
    exact ones) and the bytes of every checkpoint file (a retrained file at the same path is
    other settings)."""
    m = cfg.model
    digests = {}
    for name, given in ((m.name, m.checkpoint), (m.merge_model, m.merge_checkpoint)):
        if name is not None and name != "random18":
            path = checkpoint_path(name, given)
            digests[name] = file_digest(path) if Path(path).is_file() else None  # missing: load_encoder says so
    return settings_hash({"protocol": _protocol(cfg), "amp": cfg.run.amp, "encoder": cfg.run.encoder,
                          "checkpoints": digests})


def check_apart(cfg: TestConfig, out: Path) -> None:
    """The output folder (and its ``_vis`` sibling) overlaps no input: data root, list file,
    checkpoints (:mod:`hvc.apart`). Called before anything is created."""
    m = cfg.model
    checkpoints = [checkpoint_path(name, given) for name, given in ((m.name, m.checkpoint),
                   (m.merge_model, m.merge_checkpoint)) if name is not None and (given or name != "random18")]
    inputs = {"data.root": cfg.data.root, "data.video_list": cfg.data.video_list, "model.checkpoint": checkpoints}
    refuse_overlap(out, "run.output_dir", inputs)
    if cfg.run.visualize:
        refuse_overlap(f"{out}_vis", "run.output_dir (visualisations: <output_dir>_vis)", inputs)


@dataclass
class Plan:
    """What this run does in its output folder."""

    out: Path
    folder: ResultsFolder
    clips: list[Any]  # every clip (hvc.tasks.clips.Clip) of the benchmark selection, in list order
    todo: list[str]  # names to segment (not finished with these settings), in list order


def prepare_results(cfg: TestConfig, outputs: dict[str, Outputs], locate: Callable[[str], Outputs],
                    mine: Iterable[str], partial: bool, stale: Iterable[str]) -> tuple[ResultsFolder, list[str]]:
    """Check and prepare the output folder before any work: a writable folder, its lock, no results of
    other settings (with ``run.overwrite``: removed), no outputs that no record says we wrote, leftovers
    of killed runs cleared, ``config.yaml`` written. Returns its bookkeeping and the names of ``mine``
    not finished with these settings, in the order of ``outputs``.

    ``outputs``: every sequence of the selection and where its files go; ``locate``: where the files of
    any other name (a record of an earlier selection) went; ``mine``: this process's sequences;
    ``partial``: a ``--shard`` run, which removes (with --overwrite) only its own sequences and other
    settings' results; ``stale``: glob patterns of summaries and scores made from earlier results.
    """
    out = output_dir(cfg)
    check_apart(cfg, out)
    writable_dir(out, "run.output_dir")
    if cfg.run.visualize:
        writable_dir(f"{out}_vis", "run.output_dir (visualisations: <output_dir>_vis)")
    folder = ResultsFolder(out, run_settings(cfg))
    # One writer (the shards of one job share it); held while the caller holds the folder.
    folder.lock = OutputLock(out, "run.output_dir", shared=partial)
    try:
        if partial:
            folder.lock.claim_settings(folder.settings)
        config_record = out / "config.yaml"
        foreign = folder.foreign()
        if foreign and not cfg.run.overwrite:
            raise ConfigError(f"{out}: holds results made with other settings ({len(foreign)} sequence(s), e.g. "
                              f"{foreign[0]}; see {config_record}); pass --overwrite to replace them, or choose "
                              f"another run.output_dir")
        # Outputs no record of ours describes: someone else's, or an older version's (not converted).
        unknown = [name for name, where in outputs.items() if where.exist() and not folder.owns(name)]
        if unknown:
            raise UsageError(f"{outputs[unknown[0]].folder}: exists, but no completion record of {out} says this "
                             f"tool wrote it ({len(unknown)} sequence(s), e.g. {unknown[0]}: another program's, or "
                             f"an older version's, not converted); it is left alone, also with --overwrite: move it "
                             f"away or choose another run.output_dir")
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


SUMMARY_NAME = "sequences.csv"
ZIP_NAME = "submission.zip"
STALE_SUMMARIES = (SUMMARY_NAME, ZIP_NAME)  # written from complete results (the scores too: hvc.tasks.clips)


def write_summary(cfg: TestConfig, plan: Plan) -> list[Path]:
    """``sequences.csv`` (one row a sequence) and, for YouTube-VOS, ``submission.zip``, from the
    records; an InputError naming the unfinished sequences if any is not finished."""
    check_apart(cfg, plan.out)  # --merge-shards comes here without prepare_results (nor its lock)
    if plan.folder.lock is None:
        plan.folder.lock = OutputLock(plan.out, "run.output_dir")
    missing = [c.name for c in plan.clips if not plan.folder.is_finished(c.name, c.outputs)]
    if missing:
        raise InputError(f"{plan.out}: {len(missing)} sequence(s) not finished with these settings: "
                         f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''} "
                         f"(run the missing shards, or test.py without --shard)")
    records = [plan.folder.record(c.name) for c in plan.clips]
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["sequence", "frames", "outputs", "seconds", "worker", "settings"])
    for r in records:
        writer.writerow([r.sequence, r.frames, len(r.files), f"{r.seconds:.2f}", r.worker, r.settings[:12]])
    atomic_write_text(plan.out / SUMMARY_NAME, text.getvalue())
    written = [plan.out / SUMMARY_NAME]
    if cfg.data.dataset in YTVOS_DATASETS:
        written.append(zip_submission(plan.out, records, plan.folder.settings))
    return written


def zip_submission(out: Path, records: list[Record], settings: str) -> Path:
    """``<out>/submission.zip`` holding ``Annotations/<video>/<frame>.png`` (YouTube-VOS upload):
    exactly the files of the completion records; the zip comment names the settings hash."""
    target = out / ZIP_NAME
    with atomic_path(target) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.comment = f"hvc settings {settings}".encode()
        for record in records:
            for name in record.files:  # entries stay relative and inside the archive's root
                entry = f"Annotations/{check_name(record.sequence, 'sequence name')}/{check_name(name, 'file name')}"
                zf.write(out / entry, entry)
    return target
