"""VOST J / J_last against the benchmark's evaluation/evaluation_method.py (golden README section 8).

Methods are discovered from <golden>/vost_metrics/results/, so any fixture set in the
documented format is checked: raw statistics to 1e-9 and both CSVs character for
character, through the library and through eval_metrics.py --task vost.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

from hvc.metrics.report import csv_files
from hvc.metrics.vost import TruncatedIdsWarning, evaluate, raw_results
from helpers.metrics_helpers import load_eval_metrics

EXACT = 1e-9
CSVS = ("global_results-val.csv", "per-sequence_results-val.csv")


def _methods(root: Path) -> list[str]:
    methods = sorted(p.name for p in (root / "results").iterdir() if p.is_dir()) if (root / "results").is_dir() else []
    assert methods, f"no method folders under {root / 'results'}"
    return methods


def test_golden_raw_statistics_and_csvs(golden_dir: Path):
    root = golden_dir / "vost_metrics"
    for method in _methods(root):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", TruncatedIdsWarning)  # some fixtures hold extra ids on purpose
            objects = evaluate(root, root / "results" / method, "val", progress=False)
        expected = json.loads((root / "expected" / method / "raw.json").read_text())
        ours = raw_results(objects)
        for measure in ("J", "J_last"):
            assert list(ours[measure]["M_per_object"]) == list(expected[measure]["M_per_object"]), (method, measure)
            for key in ("M", "R", "D"):
                np.testing.assert_allclose(ours[measure][key], expected[measure][key], rtol=0, atol=EXACT,
                                           err_msg=f"{method} {measure} {key}")
            for name, value in expected[measure]["M_per_object"].items():
                assert abs(ours[measure]["M_per_object"][name] - value) <= EXACT, (method, measure, name)
        for name, text in zip(CSVS, csv_files(objects, ".", "val").values()):
            assert text == (root / "expected" / method / name).read_text(), f"{method}/{name}"


def test_golden_csvs_through_eval_metrics(golden_dir: Path, tmp_path: Path, capsys):
    root = golden_dir / "vost_metrics"
    main = load_eval_metrics().main
    for method in _methods(root):
        out = tmp_path / method
        argv = ["--task", "vost", "--root", str(root), "--results", str(root / "results" / method),
                "--output", str(out), "--workers", "2"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", TruncatedIdsWarning)
            assert main(argv) == 0
        for name in CSVS:
            assert (out / name).read_text() == (root / "expected" / method / name).read_text(), f"{method}/{name}"
        assert (out / "raw-val.json").is_file() and (out / "per-frame_J-val.png").is_file()
    capsys.readouterr()
