"""What a data folder holds, and which benchmarks will run on it: ``python -m hvc.data.check ROOT [--dataset NAME]``
(ROOT: ``DATA_ROOT`` of ``scripts/run_test.sh``, or a DAVIS folder). What it reports: docs/download.md. Exit code 0
when the requested benchmark (without ``--dataset``: any benchmark) will run, else 3."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from hvc.cli import run_main
from hvc.data.jhmdb import jhmdb_videos, listed_videos
from hvc.data.sequence import (DAVIS_ANNOTATIONS, DAVIS_FRAMES, DAVIS_SPLITS, FOLDERS, MARKERS, VOID_ID, DatasetError,
                               found_datasets, read_label_png)
from hvc.data.vip import IMAGES_DIR, LABELS_DIR, read_class_ids, vip_videos
from hvc.errors import ArgumentParser, InputError, entry_point
from hvc.names import name_problem, short

MAX_LISTED = 8  # sequences and problems shown per benchmark before "... and N more"


@dataclass
class DatasetReport:
    """What one benchmark's folder holds; ``runs`` is the verdict of test.py's own loader."""

    name: str
    folder: Path
    present: bool
    sequences: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    runs: bool = False
    reason: str = ""  # the loader's error when it does not run

    def text(self) -> str:
        if not self.present:
            return f"{self.name}: not found ({self.folder / MARKERS[self.name]} missing)"
        more = f", ... ({len(self.sequences) - MAX_LISTED} more)" if len(self.sequences) > MAX_LISTED else ""
        lines = [f"{self.name}: {self.folder}: {len(self.sequences)} sequences"
                 + (f": {', '.join(self.sequences[:MAX_LISTED])}{more}" if self.sequences else "")]
        lines += [f"  problem: {p}" for p in self.problems[:MAX_LISTED]]
        if len(self.problems) > MAX_LISTED:
            lines.append(f"  ... and {len(self.problems) - MAX_LISTED} more problems")
        verdict = "will run" if self.runs else f"will NOT run ({self.reason})"
        return "\n".join(lines + [f"  bash scripts/run_test.sh <model> {self.name}: {verdict}"])


@dataclass
class RootReport:
    root: Path
    datasets: list[DatasetReport]
    note: str = ""

    def runnable(self) -> list[str]:
        return [d.name for d in self.datasets if d.runs]

    def text(self) -> str:
        head = [f"data root {self.root}"] + ([self.note] if self.note else [])
        found = ", ".join(self.runnable()) or "none"
        return "\n".join(head + [d.text() for d in self.datasets] + [f"runs on this root: {found}"])


def _scan_sequence(name: str, frames_dir: Path, masks_dir: Path, palette: bool, every_frame: bool) -> list[str]:
    """Problems of one DAVIS-like sequence: frames without masks (if ``every_frame`` is annotated), masks without
    frames, palette problems, an id gap in the first mask."""
    frames, masks = sorted(frames_dir.glob("*.jpg")), sorted(masks_dir.glob("*.png"))  # [] for a missing folder
    if not frames:
        return [f"{name}: no frames in {frames_dir}"]
    if not masks:
        return [f"{name}: no masks in {masks_dir}"]
    problems = []
    stems = {p.stem for p in frames}
    orphans = [p.name for p in masks if p.stem not in stems]
    if orphans:
        problems.append(f"{name}: {len(orphans)} masks without a frame ({', '.join(orphans[:3])})")
    if every_frame:
        unmasked = sorted(stems - {p.stem for p in masks})
        if unmasked:
            problems.append(f"{name}: {len(unmasked)} frames without a mask ({', '.join(unmasked[:3])})")
    for t, mask in enumerate(masks):
        try:  # read as the loaders read it; palette: a 'P' PNG of object ids expected
            ids = {int(v) for v in np.unique(read_label_png(mask, InputError, palette))} - {0, VOID_ID}
        except InputError as exc:
            problems.append(str(exc))
            if every_frame:
                continue
            break
        missing = sorted(set(range(1, max(ids) + 1)) - ids) if t == 0 and palette and ids else []
        if missing:
            problems.append(f"{mask}: id gap: ids {sorted(ids)} without {missing}")
    return problems


def _scan_listed(report: DatasetReport, listing: str, frames: str | Path, masks: str | Path, palette: bool = True,
                 every_frame: bool = False) -> None:
    """The sequences of list file ``listing``, each scanned in ``frames/<seq>`` and ``masks/<seq>``."""
    report.sequences = [s.strip() for s in (report.folder / listing).read_text().splitlines() if s.strip()]
    for seq in report.sequences:
        if not _unsafe(report, seq, listing):
            report.problems += _scan_sequence(seq, report.folder / frames / seq, report.folder / masks / seq,
                                              palette, every_frame)


def _unsafe(report: DatasetReport, name: str, source: str) -> bool:
    """A name that is not a plain folder name (``..``, ``/``, ...) is a problem, never a path to look in."""
    problem = name_problem(name)
    if problem is not None:
        report.problems.append(f"{report.folder / source}: name {short(name)} {problem}")
    return problem is not None


def _davis(report: DatasetReport) -> None:
    palette = DAVIS_SPLITS[report.name][2] == "palette"
    _scan_listed(report, MARKERS[report.name], DAVIS_FRAMES, DAVIS_ANNOTATIONS, palette, report.name != "davis17dev")


def _ytvos(report: DatasetReport) -> None:
    try:
        videos = json.loads((report.folder / "valid/meta.json").read_text()).get("videos", {})
    except (OSError, ValueError, AttributeError) as exc:
        report.problems.append(f"{report.folder / 'valid/meta.json'}: unreadable ({exc})")
        return
    report.sequences = sorted(videos)
    for name in report.sequences:
        if not _unsafe(report, name, "valid/meta.json"):
            report.problems += _scan_sequence(name, report.folder / "valid_all_frames/JPEGImages" / name,
                                              report.folder / "valid/Annotations" / name, True, every_frame=False)


def _jhmdb(report: DatasetReport) -> None:
    report.sequences = listed_videos(report.folder)
    for name in report.sequences:
        frames = report.folder / "Rename_Images" / name
        if not any(frames.glob("*.png")):
            report.problems.append(f"{name}: no frames in {frames}")
    if not (report.folder / "splits").is_dir():
        report.problems.append(f"{report.folder / 'splits'}: missing (the default list, split 1 test)")


def _vip(report: DatasetReport) -> None:
    labels, images = report.folder / LABELS_DIR, report.folder / IMAGES_DIR
    report.sequences = sorted(p.name for p in labels.iterdir() if p.is_dir())
    for name in report.sequences:
        for mask in sorted((labels / name).glob("*.png")):
            if not (images / name / f"{mask.stem}.jpg").is_file():
                report.problems.append(f"{name}: mask {mask.name} without a frame in {images / name}")
            try:
                read_class_ids(mask)
            except DatasetError as exc:
                report.problems.append(str(exc))


SCANS: dict[str, Callable[[DatasetReport], None]] = {
    **dict.fromkeys(DAVIS_SPLITS, _davis), "ytvos": _ytvos, "ytvos19": _ytvos, "jhmdb": _jhmdb, "vip": _vip,
    "vost": partial(_scan_listed, listing="ImageSets/val.txt", frames="JPEGImages", masks="Annotations")}


def _loader_verdict(name: str, folder: Path) -> Optional[str]:
    """None if test.py's loader accepts the folder for ``name``, else its error message."""
    from hvc.data.vos import load_sequences  # torch: only when a benchmark is there
    splits = folder / "splits"
    try:
        if name == "jhmdb":
            jhmdb_videos(folder, splits if splits.is_dir() else None)  # test.py's default list (hvc.metrics.pck)
        elif name == "vip":
            vip_videos(folder)
        else:
            load_sequences(name, folder)
    except InputError as exc:  # DatasetError among them
        return str(exc)
    return None


def check_dataset(data_root: Path, name: str, folder: Optional[Path] = None) -> DatasetReport:
    """The report of benchmark ``name`` in ``folder`` (default: its folder under ``data_root``)."""
    folder = folder or Path(data_root) / FOLDERS[name]
    report = DatasetReport(name, folder, (folder / MARKERS[name]).exists(), reason="not found")
    if report.present:
        SCANS[name](report)
        reason = _loader_verdict(name, folder)
        report.runs, report.reason = reason is None, reason or ""
    return report


def check_root(root: Path, dataset: Optional[str] = None) -> RootReport:
    """The report of ``root``, a data root or a DAVIS folder, for ``dataset`` (every benchmark when None)."""
    root, davis = Path(root), None
    if (root / "JPEGImages" / "480p").is_dir() and not (root / "DAVIS").exists():
        root, davis = root.parent, root
    note = f"{davis} is a DAVIS folder; checked as such (DATA_ROOT is the folder holding DAVIS/)" if davis else ""
    names = [dataset] if dataset else list(FOLDERS)
    return RootReport(root, [check_dataset(root, n, davis if FOLDERS[n] == "DAVIS" else None) for n in names], note)


@entry_point
def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m hvc.data.check", description=__doc__.split(":")[0])
    parser.add_argument("root", type=Path, help="data root (DATA_ROOT of scripts/run_test.sh) or a DAVIS folder")
    parser.add_argument("--dataset", choices=list(FOLDERS), help="check only this benchmark")
    args = parser.parse_args(argv)
    if not args.root.is_dir():
        raise InputError(f"{args.root}: not a folder")
    report = check_root(args.root, args.dataset)
    print(report.text(), flush=True)
    if args.dataset and not report.datasets[0].runs:
        found = ", ".join(found_datasets(report.root)) or "no benchmark"
        raise InputError(f"{args.root}: {args.dataset} will not run: {report.datasets[0].reason} "
                         f"(found under {report.root}: {found})")
    if not report.runnable():
        raise InputError(f"{args.root}: no benchmark will run on this folder (layouts: data/README.md)")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
