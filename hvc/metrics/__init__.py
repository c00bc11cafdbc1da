"""Evaluation identical to each benchmark's reference code (docs/metrics.md): DAVIS J&F (this package's top level),
JHMDB PCK (``pck``), VIP mIoU (``vip``) and VOST J / J_last (``vost``). It imports no torch (docs/design.md)."""

from hvc.metrics.davis import MetricsError, ObjectScores, evaluate, evaluate_sequence, read_sequence_list
from hvc.metrics.measures import Statistics, db_statistics, jf_scores
from hvc.metrics.report import format_tables, global_table, sequence_table, write_csvs

__all__ = ["MetricsError", "ObjectScores", "Statistics", "db_statistics", "evaluate", "evaluate_sequence",
           "format_tables", "global_table", "jf_scores", "read_sequence_list", "sequence_table", "write_csvs"]
