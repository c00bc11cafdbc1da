"""The traps a newcomer fell into, each closed: the scripts find the project's .venv, one data-root
variable, running from the clone's parent folder, --steps, the CPU preset, the CPU-only install."""

from __future__ import annotations

import json

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from hvc.config import load_config
from hvc.config.training import TrainConfig, validate

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = ("_env.sh", "_train.sh", "run_test.sh", "run_metrics", "run_train_img.sh")


def _fake_clone(tmp_path: Path, with_venv: bool) -> tuple[Path, Path]:
    """(clone, log): the scripts in a folder whose Python (.venv or python3 on PATH) only logs its arguments."""
    clone = tmp_path / "clone"
    (clone / "scripts").mkdir(parents=True)
    for name in SCRIPTS:
        shutil.copy(REPO / "scripts" / name, clone / "scripts" / name)
    log = tmp_path / "calls.log"
    fake = f'#!/bin/sh\necho "$0 $*" >> {log}\n'
    where = clone / ".venv" / "bin" / "python" if with_venv else tmp_path / "bin" / "python3"
    where.parent.mkdir(parents=True)
    where.write_text(fake)
    where.chmod(where.stat().st_mode | stat.S_IEXEC)
    return clone, log


def _run(clone: Path, tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in ("PYTHON", "DATA_ROOT", "DAVIS_ROOT", "VIRTUAL_ENV")}
    base["PATH"] = f"{tmp_path / 'bin'}:{base.get('PATH', '')}"
    return subprocess.run(["bash", *args], cwd=tmp_path, env={**base, **env}, capture_output=True, text=True,
                          timeout=60)


@pytest.mark.parametrize("script", ["scripts/run_test.sh", "scripts/run_metrics", "scripts/run_train_img.sh"])
def test_scripts_use_the_project_venv_without_activation(tmp_path, script):
    clone, log = _fake_clone(tmp_path, with_venv=True)
    args = [] if "train" in script else ["random18", "davis16"]
    done = _run(clone, tmp_path, str(clone / script), *args)
    assert done.returncode == 0, done.stderr
    assert log.read_text().split()[0] in (".venv/bin/python", str(clone / ".venv/bin/python"))


def test_scripts_fall_back_to_python3_without_a_venv(tmp_path):
    clone, log = _fake_clone(tmp_path, with_venv=False)
    done = _run(clone, tmp_path, str(clone / "scripts/run_test.sh"), "random18", "davis16")
    assert done.returncode == 0, done.stderr
    assert log.read_text().split()[0] == str(tmp_path / "bin" / "python3")


def test_torchrun_runs_under_the_same_python(tmp_path):
    clone, log = _fake_clone(tmp_path, with_venv=True)
    done = _run(clone, tmp_path, str(clone / "scripts/run_train_img.sh"), NPROC="2")
    assert done.returncode == 0, done.stderr
    first, rest = log.read_text().split(" ", 1)
    assert first in (".venv/bin/python", str(clone / ".venv/bin/python"))
    assert rest.startswith("-m torch.distributed.run --standalone --nproc_per_node 2 train.py")


def test_one_data_root_for_propagation_and_scoring(tmp_path):
    clone, log = _fake_clone(tmp_path, with_venv=True)
    for script in ("scripts/run_test.sh", "scripts/run_metrics"):
        assert _run(clone, tmp_path, str(clone / script), "hvc", "davis17", DATA_ROOT="/d").returncode == 0
    test_call, metrics_call = log.read_text().splitlines()
    assert "data.root=/d/DAVIS" in test_call.split()
    assert "--davis-root /d/DAVIS" in metrics_call


def test_old_davis_root_variable_still_works_with_a_warning(tmp_path):
    clone, log = _fake_clone(tmp_path, with_venv=True)
    done = _run(clone, tmp_path, str(clone / "scripts/run_metrics"), "hvc", "davis16", DAVIS_ROOT="/d/DAVIS")
    assert done.returncode == 0
    assert done.stderr.strip() == ("warning: DAVIS_ROOT is deprecated: set DATA_ROOT to the folder holding DAVIS/ "
                                   "(here DATA_ROOT=/d)")
    assert "--davis-root /d/DAVIS" in log.read_text()


def test_python_m_hvc_from_the_folder_holding_a_clone_named_hvc(tmp_path):
    """From the clone's parent, `hvc` is the clone's folder: the root __init__.py leads the import
    to the package inside it instead of failing on a namespace package."""
    (tmp_path / "hvc").symlink_to(REPO, target_is_directory=True)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-m", "hvc.segment", "--help"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "--mask" in done.stdout
    where = subprocess.run([sys.executable, "-c", "import hvc.data.palette as p; print(p.__file__)"], cwd=tmp_path,
                           env=env, capture_output=True, text=True, timeout=120)
    assert where.stdout.strip() == str(tmp_path / "hvc" / "hvc" / "data" / "palette.py")


def test_steps_flag_is_max_steps(tmp_path):
    """train.py --steps N: a short CPU run of the CPU preset on a few photos stops after N steps."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(4):
        Image.effect_mandelbrot((160, 120), (-2.0 + i * 0.1, -1.2, 1.0, 1.2), 60).convert("RGB").save(photos / f"{i}.jpg")
    from hvc.entry import train

    out = tmp_path / "run"
    code = train.main(["--config", "configs/train_img_cpu.yaml", "--steps", "2", f"data.roots=[{photos}]",
                       "data.batch_size=2", "data.workers=0", f"output.dir={out}",
                       "data.size=64", "model.init_forward_size=64"])  # small crops keep the test short
    assert code == 0
    steps = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert max(r.get("step", 0) for r in steps) == 2
    assert load_config(TrainConfig, out / "config.yaml").optim.max_steps == 2


def test_cpu_preset_is_a_cpu_recipe():
    cfg = validate(load_config(TrainConfig, REPO / "configs" / "train_img_cpu.yaml"))
    assert cfg.runtime.device == "cpu" and cfg.data.size < 256 and cfg.data.batch_size < 128
    assert cfg.data.roots == ["data/Static/JPEGImages/BSDS500"]  # where python -m hvc.download bsds500 puts them


def test_make_install_cpu_takes_torch_from_the_cpu_index(tmp_path):
    venv = tmp_path / "venv"
    cpu = subprocess.run(["make", "-n", "install", "CPU=1", f"VENV={venv}"], cwd=REPO, capture_output=True, text=True)
    default = subprocess.run(["make", "-n", "install", f"VENV={venv}"], cwd=REPO, capture_output=True, text=True)
    assert cpu.returncode == 0 and default.returncode == 0
    torch_line = next(line for line in cpu.stdout.splitlines() if "--index-url" in line)
    assert "https://download.pytorch.org/whl/cpu" in torch_line and '"torch>=' in torch_line
    assert "torchvision" in torch_line
    lines = cpu.stdout.splitlines()
    assert lines.index(torch_line) < next(i for i, l in enumerate(lines) if "-r requirements.txt" in l)
    assert "--index-url" not in default.stdout  # the default path is unchanged
