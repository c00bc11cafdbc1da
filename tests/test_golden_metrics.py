"""DAVIS J&F against the official davis2017-evaluation (docs/fixtures.md, docs/metrics.md).

Every method under <golden>/metrics/results/ is evaluated on <golden>/metrics/DAVIS
(2017 val) and compared with expected/<method>/; methods and objects are discovered from
the folders, so any fixture set in the documented format is checked.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hvc.metrics import evaluate, global_table
from helpers.metrics_helpers import load_eval_metrics

EXACT = 1e-9  # the achievable tolerance docs/tests.md states
STATS = ("mean", "recall", "decay")


def _methods(golden_dir: Path) -> list[str]:
    root = golden_dir / "metrics" / "results"
    methods = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    assert methods, f"no method folders under {root}"
    return methods


def test_golden_per_frame_scores_and_statistics(golden_dir: Path):
    metrics = golden_dir / "metrics"
    for method in _methods(golden_dir):
        expected = json.loads((metrics / "expected" / method / "per_frame.json").read_text())
        objects = evaluate(metrics / "DAVIS", metrics / "results" / method, 2017, "val", progress=False)
        assert objects and {o.name for o in objects} == set(expected["per_object"]), method
        for obj in objects:
            exp = expected["per_object"][obj.name]
            where = f"{method} {obj.name}"
            assert list(obj.frames) == exp["evaluated_frames"], where
            np.testing.assert_allclose(obj.J, exp["J"], rtol=0, atol=EXACT, err_msg=where)
            np.testing.assert_allclose(obj.F, exp["F"], rtol=0, atol=EXACT, err_msg=where)
            for measure, stats in (("J", obj.j_stats), ("F", obj.f_stats)):
                for stat in STATS:
                    assert getattr(stats, stat) == pytest.approx(exp[f"{measure}_{stat}"], abs=EXACT), (where, stat)
        table = global_table(objects)
        for column, value in expected["global_full_precision"].items():
            assert table[column].iloc[0] == pytest.approx(value, abs=EXACT), (method, column)


def test_golden_csvs_match_character_for_character(golden_dir: Path, tmp_path: Path, capsys):
    metrics = golden_dir / "metrics"
    main = load_eval_metrics().main
    for method in _methods(golden_dir):
        out = tmp_path / method
        argv = ["--davis-root", str(metrics / "DAVIS"), "--results", str(metrics / "results" / method),
                "--year", "2017", "--set", "val", "--output", str(out), "--workers", "2"]
        assert main(argv) == 0
        for name in ("global_results-val.csv", "per-sequence_results-val.csv"):
            expected = (metrics / "expected" / method / name).read_text()
            assert (out / name).read_text() == expected, f"{method}/{name}"
        printed = capsys.readouterr().out
        global_csv = (metrics / "expected" / method / "global_results-val.csv").read_text().splitlines()
        assert printed.splitlines()[2].split() == global_csv[1].split(","), "the printed global row"
