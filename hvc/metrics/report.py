"""The official result tables (global and per object) and their CSV files."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from hvc.fileio import atomic_write_bytes
from hvc.metrics.davis import ObjectScores
from hvc.metrics.statistics import Statistics

GLOBAL_COLUMNS = ["J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay"]
SEQUENCE_COLUMNS = ["Sequence", "J-Mean", "F-Mean"]
FLOAT_FORMAT = "%.3f"  # the official CSV precision (printf rounding of the float64 value)


def global_table(objects: Sequence[ObjectScores]) -> pd.DataFrame:
    """One row: every statistic averaged over objects (not sequences), np.mean over Python lists in
    table order as officially: the printed 3rd decimal depends on the summation order at exact halves."""
    j, f = mean_statistics([o.j_stats for o in objects]), mean_statistics([o.f_stats for o in objects])
    return pd.DataFrame([[(j[0] + f[0]) / 2.0, *j, *f]], columns=GLOBAL_COLUMNS)


def mean_statistics(stats: Sequence[Statistics]) -> list[float]:
    """[Mean, Recall, Decay], each averaged over the objects' ``stats``."""
    return [np.mean([getattr(s, field) for s in stats]) for field in Statistics._fields]


def sequence_table(objects: Sequence[ObjectScores]) -> pd.DataFrame:
    """One row per object, ``<sequence>_<id>``, with its J-Mean and F-Mean."""
    return pd.DataFrame([(o.name, o.j_stats.mean, o.f_stats.mean) for o in objects], columns=SEQUENCE_COLUMNS)


def csv_paths(output: Path, split: str) -> tuple[Path, Path]:
    """The official file names: global_results-<split>.csv, per-sequence_results-<split>.csv."""
    return output / f"global_results-{split}.csv", output / f"per-sequence_results-{split}.csv"


def csv_text(table: pd.DataFrame) -> str:
    """A table as the official evaluations write it: no index, 3 decimals."""
    return table.to_csv(index=False, float_format=FLOAT_FORMAT)


def table_text(table: pd.DataFrame) -> str:
    """A table as printed at the end of an evaluation (3 decimals)."""
    return table.to_string(index=False, float_format=lambda v: FLOAT_FORMAT % v)


def write_files(files: dict[Path, str | bytes]) -> list[Path]:
    """Write each of ``files`` (path -> text or bytes) atomically, in order; returns the paths."""
    for path, content in files.items():
        atomic_write_bytes(path, content.encode("utf-8") if isinstance(content, str) else content)
    return list(files)


def write_csvs(objects: Sequence[ObjectScores], output: str | Path, split: str) -> tuple[Path, Path]:
    """Write both tables as the official evaluation does; each file appears atomically."""
    global_path, sequence_path = csv_paths(Path(output), split)
    write_files({global_path: csv_text(global_table(objects)), sequence_path: csv_text(sequence_table(objects))})
    return global_path, sequence_path


def format_tables(objects: Sequence[ObjectScores], split: str) -> str:
    """The global and per-sequence tables as printed at the end of an evaluation."""
    return results_text(global_table(objects), sequence_table(objects), split)


def results_text(global_results: pd.DataFrame, per_sequence: pd.DataFrame, split: str) -> str:
    """The two tables under the official headings."""
    return "\n".join([f"--------------------------- Global results for {split} ---------------------------",
                      table_text(global_results), "",
                      f"---------- Per sequence results for {split} ----------", table_text(per_sequence)])
