"""Where each benchmark's folder lies under a data root, and how it is recognised without reading
it. Torch-free and import-free, so that every dataset reader's error can say what was found
(``missing_dataset_hint``) and ``python -m hvc.data.check`` can report on a root."""

from __future__ import annotations

from pathlib import Path

# benchmark name of scripts/run_test.sh -> its folder under the data root (as in that script)
FOLDERS: dict[str, str] = {
    "davis16": "DAVIS", "davis17": "DAVIS", "davis17dev": "DAVIS",
    "ytvos": "YTB/2018", "ytvos19": "YTB/2019",
    "jhmdb": "JHMDB", "vip": "VIP", "vost": "VOST",
}
# how the folder of each benchmark is recognised without reading it
MARKERS: dict[str, str] = {
    "davis16": "ImageSets/2016/val.txt", "davis17": "ImageSets/2017/val.txt",
    "davis17dev": "ImageSets/2017/test-dev.txt", "ytvos": "valid/meta.json", "ytvos19": "valid/meta.json",
    "jhmdb": "joint_positions", "vip": "Annotations/Category_ids", "vost": "ImageSets/val.txt",
}


def found_datasets(data_root: Path) -> list[str]:
    """Benchmarks whose folder is present under ``data_root`` (existence checks only, cheap):
    what error messages suggest when the requested one is missing."""
    return [name for name, sub in FOLDERS.items() if (Path(data_root) / sub / MARKERS[name]).exists()]


def missing_dataset_hint(folder: str | Path) -> str:
    """For an error about a missing dataset folder ``folder`` (a ``data.root``): the benchmarks found
    beside it (under its parent, or one level up for YouTube-VOS's ``YTB/<year>``)."""
    folder = Path(folder)
    for root in (folder.parent, folder.parent.parent):
        found = found_datasets(root)
        if found:
            return f"found under {root}: {', '.join(found)} (python -m hvc.data.check {root})"
    return (f"no benchmark found under {folder.parent}; python -m hvc.download davis17 fetches DAVIS 2017 "
            f"(docs/download.md)")
