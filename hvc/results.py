"""The results folder of ``test.py``: where each sequence goes, which settings made it, and
the checks and bookkeeping around it (completion records: :mod:`hvc.completion`).

:func:`prepare_results` runs before any work, for VOS (:func:`prepare_output`) and for the
JHMDB / VIP tasks (:mod:`hvc.tasks.runners`) alike: a writable folder, no results of other
settings (or, with ``run.overwrite``, those removed first), leftovers of killed runs cleared,
the resolved ``config.yaml`` written, and the list of sequences still to do.
:func:`write_summary` runs after all VOS sequences: ``sequences.csv`` and the YouTube-VOS
``submission.zip``, both made from the completion records.
"""

from __future__ import annotations

import csv
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from hvc.apart import refuse_overlap
from hvc.completion import Outputs, Record, ResultsFolder, file_digest, settings_hash
from hvc.config.core import ConfigError, dump_yaml, load_config, to_dict
from hvc.config.inference import TestConfig
from hvc.data.vos import YTVOS_DATASETS, VideoSequence
from hvc.errors import HvcError, InputError, UsageError
from hvc.fileio import atomic_path, atomic_write_text, writable_dir
from hvc.locks import OutputLock
from hvc.models.encoders import checkpoint_path
from hvc.config.propagation import recorded_settings
from hvc.names import check_name


def result_tag(cfg: TestConfig) -> str:
    """Folder name of a model's results: ``<model>`` or ``<model>+<merge_model>``."""
    return cfg.model.name + (f"+{cfg.model.merge_model}" if cfg.model.merge_model else "")


def output_dir(cfg: TestConfig) -> Path:
    return Path(cfg.run.output_dir or Path(cfg.run.results_root) / result_tag(cfg) / cfg.data.dataset)


def sequence_dir(out: Path, dataset: str, name: str) -> Path:
    """DAVIS: ``<out>/<seq>``; YouTube-VOS: the submission layout ``<out>/Annotations/<video>``."""
    return out / "Annotations" / name if dataset in YTVOS_DATASETS else out / name


def output_files(seq: VideoSequence) -> list[str]:
    """The files a finished sequence holds, in frame order."""
    return [f"{seq.frame_name(t)}.png" for t in seq.outputs]


def sequence_outputs(out: Path, dataset: str, seq: VideoSequence) -> Outputs:
    """Where the PNGs of a VOS sequence go: a folder of its own."""
    return Outputs(sequence_dir(out, dataset, seq.name), tuple(output_files(seq)))


def _protocol(cfg: TestConfig) -> dict:
    """The settings that change the results (not where they go or how fast they come)."""
    d = to_dict(cfg)
    ignored = ("root", "sequences", "video_list", "workers", "batch_size")  # what, where and how fast
    data = {k: v for k, v in d["data"].items() if k not in ignored}
    return {"model": d["model"], "data": data, "prop": recorded_settings(d["prop"])}


def run_settings(cfg: TestConfig) -> str:
    """The settings hash of completion records: the protocol, the autocast precision, the
    encoder mode when it is not the exact one (``fused`` and ``bf16`` move the features, so
    their results never mix with exact ones; left out for ``exact`` so that earlier records
    keep their hash) and the bytes of every checkpoint file (a retrained file at the same path
    is other settings)."""
    m = cfg.model
    digests = {}
    for name, given in ((m.name, m.checkpoint), (m.merge_model, m.merge_checkpoint)):
        if name is not None and name != "random18":
            path = checkpoint_path(name, given)
            digests[name] = file_digest(path) if Path(path).is_file() else None  # missing: load_encoder says so
    settings = {"protocol": _protocol(cfg), "amp": cfg.run.amp, "checkpoints": digests}
    if cfg.run.encoder != "exact":
        settings["encoder"] = cfg.run.encoder
    return settings_hash(settings)


def _legacy_settings_differ(cfg: TestConfig, record: Path) -> bool:
    """A ``config.yaml`` of other settings (folders written before completion records existed)."""
    if not record.is_file():
        return False
    try:
        return _protocol(load_config(TestConfig, record)) != _protocol(cfg)
    except HvcError:
        return True


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


def check_unknown(folder: ResultsFolder, outputs: dict[str, Outputs], config_record: Path) -> None:
    """Refuse outputs on disk that no record of ours describes: they are someone else's, and a
    run removes only what it wrote. A folder of an older version (a ``config.yaml`` of ours and
    no records at all) is adopted whole, as those versions wrote no records."""
    unknown = [name for name, where in outputs.items() if where.exist() and not folder.owns(name)]
    if not unknown:
        return
    if not folder.records() and _written_by_us(config_record):
        folder.adopted.update(unknown)
        return
    where = outputs[unknown[0]]
    raise UsageError(f"{where.folder}: exists, but no completion record of {folder.root} says this tool wrote it "
                     f"({len(unknown)} sequence(s), e.g. {unknown[0]}); it is left alone: move it away or choose "
                     f"another run.output_dir")


def _written_by_us(config_record: Path) -> bool:
    """Whether ``config.yaml`` is there and a test config of ours (test.py writes one a run)."""
    if not config_record.is_file():
        return False
    try:
        load_config(TestConfig, config_record)
    except HvcError:
        return False
    return True


@dataclass
class Plan:
    """What this run does in its output folder."""

    out: Path
    folder: ResultsFolder
    sequences: list[VideoSequence]  # every sequence of the benchmark selection, in list order
    todo: list[str]  # names to segment (not finished with these settings), in list order


def prepare_results(cfg: TestConfig, outputs: dict[str, Outputs], locate: Callable[[str], Outputs],
                    mine: Iterable[str], partial: bool, stale: Iterable[str]) -> tuple[ResultsFolder, list[str]]:
    """Check and prepare the output folder before any work (see :mod:`hvc.completion`); returns
    its bookkeeping and the names of ``mine`` not finished with these settings, in the order of
    ``outputs``.

    ``outputs``: every sequence of the selection and where its files go; ``locate``: where the
    files of any other name (a record of an earlier selection) went; ``mine``: the sequences
    this process is responsible for; ``partial``: a ``--shard`` run, which removes (with
    --overwrite) only its own sequences and other settings' results; ``stale``: glob patterns
    of summaries and scores made from earlier results, removed once they no longer describe
    the folder.
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
        legacy = (not folder.records() and _legacy_settings_differ(cfg, config_record)
                  and any(o.exist() for o in outputs.values()))
        if (foreign or legacy) and not cfg.run.overwrite:
            what = f"{len(foreign)} sequence(s), e.g. {foreign[0]}" if foreign else "outputs without completion records"
            raise ConfigError(f"{out}: holds results made with other settings ({what}; see {config_record}); "
                              f"pass --overwrite to replace them, or choose another run.output_dir")
        check_unknown(folder, outputs, config_record)
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


def prepare_output(cfg: TestConfig, sequences: list[VideoSequence], mine: list[str], partial: bool) -> Plan:
    """:func:`prepare_results` for the VOS sequences ``sequences``; ``mine`` and ``partial`` as there."""
    out, dataset = output_dir(cfg), cfg.data.dataset
    outputs = {s.name: sequence_outputs(out, dataset, s) for s in sequences}
    folder, todo = prepare_results(cfg, outputs, lambda name: Outputs(sequence_dir(out, dataset, name), ()),
                                   mine, partial, STALE_SUMMARIES)
    return Plan(out, folder, sequences, todo)


SUMMARY_NAME = "sequences.csv"
ZIP_NAME = "submission.zip"
# Written from complete results: ours, and eval_metrics.py's CSVs (scripts/run_metrics puts them here).
STALE_SUMMARIES = (SUMMARY_NAME, ZIP_NAME, "global_results-*.csv", "per-sequence_results-*.csv",
                   "per-sequence_results-*.png")


def finished_records(cfg: TestConfig, plan: Plan) -> list[Record]:
    """Every sequence's record; an InputError naming the unfinished ones if any is not finished."""
    missing = [s.name for s in plan.sequences
               if not plan.folder.is_finished(s.name, sequence_outputs(plan.out, cfg.data.dataset, s))]
    if missing:
        raise InputError(f"{plan.out}: {len(missing)} sequence(s) not finished with these settings: "
                         f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''} "
                         f"(run the missing shards, or test.py without --shard)")
    return [plan.folder.record(s.name) for s in plan.sequences]


def write_summary(cfg: TestConfig, plan: Plan) -> list[Path]:
    """``sequences.csv`` (one row a sequence) and, for YouTube-VOS, ``submission.zip``."""
    check_apart(cfg, plan.out)  # --merge-shards comes here without prepare_results (nor its lock)
    if plan.folder.lock is None:
        plan.folder.lock = OutputLock(plan.out, "run.output_dir")
    records = finished_records(cfg, plan)
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
