"""The propagation settings' one check (hvc/config/propagation.py): bad values stop every front
end with exit code 2 and one line naming the key, before anything is written."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import pytest

from hvc.config import ConfigError, load_config
from hvc.config.inference import TestConfig
from hvc.config.propagation import PropagationConfig, QualityConfig
from hvc.propagation import LabelPropagator
from helpers.locations import REPO

# (override items, the key the error names, what the error says about it)
BAD_SETTINGS = [
    (["prop.candidates=0.5"], "prop.candidates", "must be >= 1"),
    (["prop.candidates=nan"], "prop.candidates", "must be >= 1"),
    (["prop.search_dims=0"], "prop.search_dims", "must be >= 1"),
    (["prop.impl=dense", "prop.precision=bf16"], "prop.precision", "mode of the local kernel"),
    (["prop.impl=dense", "prop.search_dims=64"], "prop.search_dims", "mode of the local kernel"),
    (["prop.radius=nan"], "prop.radius", "finite number > 0"),
    (["prop.temperature=0"], "prop.temperature", "finite number > 0"),
    (["prop.topk=0"], "prop.topk", "must be >= 1"),
    (["prop.context=0"], "prop.context", "must be >= 1"),
    (["prop.num_classes=257"], "prop.num_classes", "must be <= 256"),
    (["prop.quality.threshold=nan"], "prop.quality.threshold", "must be >= 0"),
    (["prop.quality.gap=0"], "prop.quality.gap", "must be >= 1"),
    (["prop.memory=quality", "prop.context=2"], "prop.quality.recent", "must be <= prop.context (2)"),
]


@pytest.mark.parametrize("overrides, key, problem", BAD_SETTINGS, ids=[" ".join(c[0]) for c in BAD_SETTINGS])
def test_the_schema_names_the_key(overrides, key, problem):
    with pytest.raises(ConfigError) as caught:
        load_config(TestConfig, None, overrides)
    message = str(caught.value)
    assert message.startswith(f"{key}: ") and problem in message, message


def test_limits_themselves_are_accepted():
    cfg = load_config(TestConfig, None, ["prop.candidates=1", "prop.search_dims=1", "prop.num_classes=256",
                                         "prop.memory=quality", "prop.context=3", "prop.quality.recent=3",
                                         "prop.precision=bf16"])
    assert (cfg.prop.candidates, cfg.prop.search_dims, cfg.prop.quality.recent) == (1.0, 1, 3)
    # the quality policy's combination only binds under memory=quality
    assert load_config(TestConfig, None, ["prop.context=2"]).prop.quality.recent == 3


def test_configs_built_in_code_get_the_same_check():
    """LabelPropagator(**changes) skips the file/override parser, not the schema's check."""
    with pytest.raises(ConfigError, match=r"^prop\.impl: 'fast' is not one of"):
        LabelPropagator(impl="fast")
    with pytest.raises(ConfigError, match=r"^prop\.topk: expected an integer"):
        LabelPropagator(topk=2.5)
    with pytest.raises(ConfigError, match=r"^prop\.quality\.evict: 'newest' is not one of"):
        LabelPropagator(memory="quality", quality=QualityConfig(evict="newest"))
    with pytest.raises(ConfigError, match=r"^--context: must be >= 1"):
        PropagationConfig(context=0).validate(lambda name: f"--{name}")
    assert LabelPropagator(precision="bf16", candidates=1.5).kernel.candidates == 1.5


def _run(args: list[str], cwd) -> tuple[int, str]:
    """``python args...`` in a subprocess: (exit code, stderr)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    return done.returncode, done.stderr


def _call(main, argv: list[str], cwd, capsys, monkeypatch) -> tuple[int, str]:
    """The entry point's ``main(argv)`` in this process, from ``cwd``: (exit code, stderr). The first
    case of each table below runs the real command in a subprocess; the others call ``main`` here,
    which is the same code without a second interpreter and torch import (~2-4 s each)."""
    monkeypatch.chdir(cwd)
    capsys.readouterr()
    code = main(argv)
    return code, capsys.readouterr().err


COMMANDS = {
    "test.py prop.candidates=0.5": (["prop.candidates=0.5"], "prop.candidates"),
    "test.py prop.search_dims=0": (["prop.search_dims=0"], "prop.search_dims"),
    "test.py prop.impl=dense prop.precision=bf16": (["prop.impl=dense", "prop.precision=bf16"], "prop.precision"),
}


@pytest.mark.parametrize("name", COMMANDS)
def test_test_py_exits_2_before_writing(name, tmp_path, capsys, monkeypatch):
    overrides, key = COMMANDS[name]
    argv = ["--config", str(REPO / "configs" / "test_davis16.yaml"), f"data.root={tmp_path / 'DAVIS'}",
            f"run.results_root={tmp_path / 'results'}", *overrides]
    if name == next(iter(COMMANDS)):  # the real command line once
        code, stderr = _run([str(REPO / "test.py"), *argv], tmp_path)
    else:
        from hvc.entry.test import main

        code, stderr = _call(main, argv, tmp_path, capsys, monkeypatch)
    assert code == 2, stderr
    assert stderr.startswith(f"error: {key}: ") and stderr.count("\n") == 1, stderr
    assert list(tmp_path.iterdir()) == []  # not even config.yaml


SEGMENT_FLAGS = [(["--context", "0"], "--context"), (["--candidates", "0.5"], "--candidates"),
                 (["--search-dims", "0"], "--search-dims")]


@pytest.mark.parametrize("flags, key", SEGMENT_FLAGS)
def test_segment_exits_2_before_writing(flags, key, tmp_path, capsys, monkeypatch):
    argv = [str(tmp_path / "clip.mp4"), "--mask", str(tmp_path / "first.png"), *flags]
    if (flags, key) == SEGMENT_FLAGS[0]:  # the real command line once
        code, stderr = _run(["-m", "hvc.segment", *argv], tmp_path)
    else:
        from hvc.segment.__main__ import main

        code, stderr = _call(main, argv, tmp_path, capsys, monkeypatch)
    assert code == 2, stderr
    assert stderr.startswith(f"error: {key}: ") and stderr.count("\n") == 1, stderr
    assert list(tmp_path.iterdir()) == []


def test_every_field_is_checked_by_type():
    """A field added to the schema is type-checked without touching validate()."""
    names = {f.name for f in dataclasses.fields(PropagationConfig)}
    for name in names - {"quality"}:
        bad = dataclasses.replace(PropagationConfig(), **{name: object()})
        with pytest.raises(ConfigError, match=rf"^prop\.{name}: "):
            bad.validate()
