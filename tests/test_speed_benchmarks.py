"""The speed benchmarks run end to end on real data at toy sizes and print what they claim to."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _run(script: str, *args: str) -> str:
    done = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def _bench_module(script: str, monkeypatch):
    """bench/<script> loaded as a module, with bench/ on sys.path as when it runs as a script."""
    monkeypatch.syspath_prepend(str(BENCH))
    spec = importlib.util.spec_from_file_location(f"bench_{Path(script).stem}", BENCH / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _row(out: str, name: str) -> list[str]:
    rows = [line.split() for line in out.splitlines() if line.startswith(name + " ")]
    assert rows, f"no row {name!r} in:\n{out}"
    return rows[0]


def test_end_to_end_prints_every_stage_and_the_estimate(davis_root):
    out = _run("end_to_end.py", "--davis-root", str(davis_root), "--sequences", "libby", "--frames", "5",
               "--input-size", "64", "--encoder", "exact", "fused", "exact/bf16", "fused/bf16/16/1.5", "prop.context=2")
    for stage in ("decode", "encoder", "propagation", "upsample+argmax", "png"):
        row = _row(out, stage)
        assert all(float(row[i]) > 0 for i in (1, 4, 7, 10))  # s/frame of each mode
    for mode in ("fused", "exact/bf16", "fused/bf16/16/1.5"):
        assert re.search(mode + r" vs exact: encoder [\d.]+x, frame [\d.]+x faster; labels differ at \d+ of \d+", out)
    assert re.search(r"estimate for the \d+ frames of the \d+ sequences", out)


def test_encoder_speed_prints_speed_up_and_feature_differences(davis_root):
    out = _run("encoder_speed.py", "--davis-root", str(davis_root), "--input-size", "64", "--batch", "1",
               "--rounds", "1", "--only", "fused", "bf16")
    exact, fused, bf16 = (_row(out, name) for name in ("exact", "fused", "bf16"))
    assert float(exact[3]) == 0.0  # the reference against itself
    assert 0 < float(fused[4]) < 1e-5 < float(bf16[4]) < 3e-2  # relative L2 differences


def test_train_throughput_compares_options_and_real_photos(static_root, monkeypatch, capsys):
    """Both comparisons through the script's main(argv), in this process (two interpreter starts fewer)."""
    bench = _bench_module("train_throughput.py", monkeypatch)
    assert bench.main(["--size", "32", "--batch", "2", "--steps", "1", "--warmup", "1",
                       "--options", "paper", "no_layer4"]) == 0
    out = capsys.readouterr().out
    assert float(_row(out, "paper")[1]) > 0 and float(_row(out, "no_layer4")[1]) > 0
    assert bench.main(["--size", "32", "--batch", "2", "--steps", "1", "--rounds", "1", "--workers", "1",
                       "--real", str(static_root / "BSDS500")]) == 0
    out = capsys.readouterr().out
    assert "real, preloaded" in out and "real, DataLoader" in out and float(_row(out, "synthetic")[1]) > 0


def test_train_input_measures_each_piece(static_root):
    out = _run("train_input.py", str(static_root / "BSDS500"), "--images", "4", "--rounds", "1")
    assert re.search(r"decode, torchvision decode_jpeg\s+[\d.]+\s+pixels identical to PIL on \d/4", out)
    assert "whole item StaticImagePairs[i]" in out


def test_propagation_speed_on_real_features(davis_root, monkeypatch, capsys):
    """--davis-sequence: the kernels time real 480p embeddings of the committed checkpoint; the
    approximate modes and their "vs exact local" lines on a small random grid.

    Run in this process, each kernel's worker too (its ``measure``, with the arguments the worker
    process gets): interpreter starts with their torch import fewer. The real worker processes
    and their JSON line run in test_benchmarks.py. The bfloat16 modes stay off the 480p grid: a
    CPU without native bfloat16 emulates it, several times slower than the float32 kernels."""
    bench = _bench_module("propagation_speed.py", monkeypatch)

    def worker_here(args, impl, h, w, frames):  # what bench._run's subprocess prints, parsed the same way
        features = args.features if args.features and (h, w) == tuple(args.size) else ""
        return json.loads(json.dumps(bench.measure(impl, args.channels, h, w, args.context, frames, 20, features)))

    def run(*argv: str) -> str:
        monkeypatch.setattr(sys, "argv", ["propagation_speed.py", "--context", "1", "--frames", "1", "--repeat", "1",
                                          *argv])
        assert bench.main() is None
        return capsys.readouterr().out

    monkeypatch.setattr(bench, "_run", worker_here)
    out = run("--davis-sequence", "libby", "--davis-root", str(davis_root), "--no-bf16")
    assert "features 256x60x107 (real, DAVIS libby at 480p), context 1+1" in out
    for kernel in ("dense", "local"):
        assert float(_row(out, kernel)[1]) > 0

    out = run("--size", "12x20", "--search-dims", "64", "--candidates", "1")
    assert "features 256x12x20 (random), context 1+1" in out
    for kernel in ("dense", "local", "local-bf16", "local-bf16-d64", "local-bf16-d64-c1"):
        assert float(_row(out, kernel)[1]) > 0
    for kernel in ("local-bf16-d64", "local-bf16-d64-c1"):
        assert re.search(kernel + r" vs exact local: [\d.]+x wall", out)


def test_suite_time_reads_pytest_own_summary(monkeypatch):
    """bench/suite_time.py takes pytest's last summary line, one process or xdist, failures or not."""
    bench = _bench_module("suite_time.py", monkeypatch)
    one_process = "....F..\n=== short test summary info ===\nFAILED tests/test_demo.py::test_quick - Assert\n" \
                  "1 failed, 407 passed, 4 warnings in 579.16s (0:09:39)\n"
    assert bench.pytest_summary(one_process) == ("1 failed, 407 passed, 4 warnings", 579.16)
    xdist = "created: 2/2 workers\n2 workers [794 items]\n...\n" \
            "======= 775 passed, 19 skipped, 15 warnings in 474.24s (0:07:54) =======\n"
    assert bench.pytest_summary(xdist) == ("775 passed, 19 skipped, 15 warnings", 474.24)
    with pytest.raises(RuntimeError, match="no pytest summary line"):
        bench.pytest_summary("no tests ran in 6.59s\n")
