"""Entry points end quietly when the reader of their output goes away (``... | head -1``)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hvc.cli import PIPE_CLOSED_EXIT, run_main

REPO = Path(__file__).resolve().parents[1]
# every command-line program that prints, and how it is started
ENTRY_POINTS = ["hvc/entry/eval_metrics.py", "hvc/entry/test.py", "hvc/entry/train.py", "hvc/segment/__main__.py",
                "hvc/app/__main__.py",
                "hvc/export.py", "hvc/demo/run.py", "hvc/demo/mp4.py", "bench/metrics_speed.py", "bench/propagation_speed.py",
                "bench/train_throughput.py"]
# the root scripts: thin files over hvc/entry/<job>.py
ROOT_SCRIPTS = ["eval_metrics.py", "test.py", "train.py"]


def _run_with_closed_stdout(args: list[str]) -> subprocess.CompletedProcess:
    """Run ``python args`` with stdout a pipe whose reading end is already closed."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    try:
        return subprocess.run([sys.executable, *args], cwd=REPO, env=env, stdout=write_end,
                              stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write_end)


def test_eval_metrics_into_a_closed_pipe(golden_dir, tmp_path):
    metrics = golden_dir / "metrics"
    done = _run_with_closed_stdout(["eval_metrics.py", "--davis-root", str(metrics / "DAVIS"), "--results",
                                    str(metrics / "results" / "methodA"), "--year", "2017",
                                    "--output", str(tmp_path)])
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr, done.stderr
    assert done.returncode == PIPE_CLOSED_EXIT
    assert (tmp_path / "global_results-val.csv").is_file()  # the work was done before printing


def test_export_into_a_closed_pipe(tmp_path):
    ckpt = tmp_path / "checkpoint.pth"
    torch.save({"model": {"online_encoder.conv1.weight": torch.zeros(64, 3, 7, 7)}, "optimizer": {}, "epoch": 0}, ckpt)
    done = _run_with_closed_stdout(["-m", "hvc.export", str(ckpt), str(tmp_path / "enc.pth")])
    assert done.stderr == "" and done.returncode == PIPE_CLOSED_EXIT
    assert list(torch.load(tmp_path / "enc.pth", weights_only=True)) == ["conv1.weight"]


def test_open_stdout_and_other_broken_pipes_are_not_hidden(capsys):
    assert run_main(lambda: 3) == 3
    assert run_main(print, "hello") == 0 and capsys.readouterr().out == "hello\n"

    def fails_elsewhere():  # e.g. a socket closed by a peer: stdout is fine, so this must surface
        raise BrokenPipeError("socket")

    with pytest.raises(BrokenPipeError, match="socket"):
        run_main(fails_elsewhere)


@pytest.mark.parametrize("script", ENTRY_POINTS)
def test_every_entry_point_runs_through_run_main(script):
    source = (REPO / script).read_text()
    direct = re.search(r'if __name__ == "__main__":\n    sys\.exit\(run_main\(main\b', source)
    # installed commands (pyproject.toml) call command(), which is run_main(main)
    through_command = (re.search(r'\ndef command\(\) -> int:\n    """[^"]*"""\n    return run_main\(main\)\n', source)
                       and 'if __name__ == "__main__":\n    sys.exit(command())' in source)
    assert direct or through_command, script


@pytest.mark.parametrize("script", ROOT_SCRIPTS)
def test_root_scripts_are_thin(script):
    """``python test.py`` runs hvc.entry.test's command and nothing else (docs/design.md)."""
    source = (REPO / script).read_text()
    assert f"from hvc.entry.{script[:-3]} import command\n" in source
    assert source.rstrip().endswith('if __name__ == "__main__":\n    sys.exit(command())')
    assert len(source.splitlines()) < 20


def test_console_scripts_name_existing_commands():
    import importlib

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert set(scripts) == {"hvc-train", "hvc-test", "hvc-eval-metrics", "hvc-segment", "hvc-app"}
    for target in scripts.values():
        module, _, name = target.partition(":")
        assert callable(getattr(importlib.import_module(module), name)), target


def test_demo_video_tool_errors_are_one_line(tmp_path, capsys):
    """python -m hvc.demo.mp4 (the README's first commands): bad input is one line and its exit code."""
    from hvc.demo import mp4

    assert mp4.main([str(tmp_path), "--score", str(tmp_path / "masks")]) == 3  # nothing written there yet
    assert capsys.readouterr().err.splitlines() == [
        f"error: sequence 'truth': 0 annotated frame(s) in {tmp_path / 'truth'}; the semi-supervised protocol "
        "needs at least 3 (first and last are not scored)"]
    assert mp4.main([str(tmp_path), "--frames", "2"]) == 2
    assert capsys.readouterr().err.startswith("error: command line: --frames must be >= 3")
    assert list(tmp_path.iterdir()) == []
