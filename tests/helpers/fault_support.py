"""Helpers of the fault tests: the entry points' modules, tiny synthetic data sets, and
running a CLI in-process or as a subprocess with its exit code and stderr lines."""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from PIL import Image

from hvc.data.palette import save_indexed_png

from .locations import REPO  # noqa: F401 - also imported from here by the tests



def load_entry(filename: str) -> ModuleType:
    """The module behind a root script (test.py -> hvc.entry.test), or a file of scripts/ (not a
    package) loaded from its path."""
    if "/" not in filename:
        return importlib.import_module(f"hvc.entry.{Path(filename).stem}")
    spec = importlib.util.spec_from_file_location(f"hvc_script_{Path(filename).stem}", REPO / filename)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def call(main, argv: list[str], capsys) -> tuple[int, list[str]]:
    """Run ``main(argv)`` in-process: (exit code, non-empty stderr lines)."""
    capsys.readouterr()
    code = main([str(a) for a in argv])
    return code, [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]), **extra}


def script(args: list, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    """``python args...`` (``bash args...`` if args[0] is bash) from the repository root."""
    cmd = [str(a) for a in args] if args[0] == "bash" else [sys.executable, *map(str, args)]
    return subprocess.run(cmd, cwd=REPO, env=_env(**env), capture_output=True, text=True, timeout=timeout)


def _default_sigint() -> None:
    # A process started in the background of a non-interactive shell (nohup ... &, some CI
    # runners) inherits SIGINT ignored, and Python then leaves it ignored in its children. A user
    # pressing Ctrl-C in a terminal has it delivered: give the child that disposition.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(args: list) -> subprocess.Popen:
    """``python args...`` in the background (stderr piped, text), SIGINT deliverable as in a terminal."""
    return subprocess.Popen([sys.executable, *map(str, args)], cwd=REPO, env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint)


def blocking_frame(path: Path) -> bytes:
    """Replace a frame file by a named pipe: a reader blocks on it, so a run stops at a known
    frame until the test kills or interrupts it. Returns the frame's bytes (see restore)."""
    data = path.read_bytes()
    path.unlink()
    os.mkfifo(path)
    return data


def restore(path: Path, data: bytes) -> None:
    path.unlink()
    path.write_bytes(data)


def wait_for(condition, proc: subprocess.Popen, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"the process ended before {what}: {proc.stderr.read()[-2000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout} s")
        time.sleep(0.01)


def error_lines(stderr: str) -> list[str]:
    """The ``error:`` lines of a stderr text (tqdm bars and log lines filtered out)."""
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def scene(t: int, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Frame t (uint8 [H, W, 3]) with two boxes moving right, and its id map (uint8 [H, W])."""
    h, w = size
    rng = np.random.default_rng(0)
    frame = (rng.random((h, w, 3)) * 60 + 40).astype(np.uint8)
    ids = np.zeros((h, w), dtype=np.uint8)
    for obj, (top, left), colour in ((1, (h // 8, w // 16), (200, 60, 60)), (2, (h // 2, w // 3), (60, 60, 220))):
        x = left + 2 * t
        bh, bw = max(1, h // 4), max(1, w // 5)
        frame[top:top + bh, x:x + bw] = colour
        ids[top:top + bh, x:x + bw] = obj
    return frame, ids


def davis_tree(root: Path, sequences: dict[str, int], size: tuple[int, int] = (48, 80)) -> Path:
    """DAVIS-2017 layout: ``{name: number of frames}``, frames ``size`` (H, W), two objects."""
    (root / "ImageSets" / "2017").mkdir(parents=True, exist_ok=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("".join(f"{n}\n" for n in sequences))
    for name, count in sequences.items():
        for t in range(count):
            frame, ids = scene(t, size)
            path = root / "JPEGImages" / "480p" / name / f"{t:05d}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(frame).save(path, quality=95)
            if t == 0:
                save_indexed_png(root / "Annotations" / "480p" / name / f"{t:05d}.png", ids)
    return root


def photo_folder(root: Path, count: int = 4, size: tuple[int, int] = (40, 56)) -> Path:
    """``count`` small synthetic photos (smooth colour ramps plus noise) for training."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    h, w = size
    for i in range(count):
        ramp = np.linspace(0, 1, w)[None, :, None] * rng.random(3) + np.linspace(0, 1, h)[:, None, None] * rng.random(3)
        img = np.clip(ramp * 120 + rng.random((h, w, 3)) * 80, 0, 255).astype(np.uint8)
        Image.fromarray(img).save(root / f"photo{i}.jpg", quality=92)
    return root


def train_args(out: Path, photos: Path, *extra: str) -> list[str]:
    """train.py arguments of a tiny CPU run: 32 px crops, batch 2, at most 1 step."""
    return ["--config", str(REPO / "configs" / "train_img.yaml"), f"data.roots=[{photos}]", "data.size=32",
            "data.batch_size=2", "data.workers=0", "optim.max_steps=1", "model.init_forward_size=32",
            "runtime.device=cpu", f"output.dir={out}", "output.log_every=1", *extra]


class CodeExecutingPickle:
    """Unpickling this runs ``touch <marker>``: what a poisoned checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def poisoned_checkpoint(path: Path, marker: Path) -> Path:
    torch.save({"model": {"x": CodeExecutingPickle(marker)}, "optimizer": {}, "epoch": 0}, path)
    return path


def write_meta(root: Path, meta) -> None:
    """A YouTube-VOS ``valid/meta.json`` with any content (text is written as is)."""
    path = root / "valid" / "meta.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(meta if isinstance(meta, str) else json.dumps(meta))


def png_bytes(folder: Path) -> dict[str, bytes]:
    """``{relative path: bytes}`` of every PNG under ``folder`` (hidden bookkeeping excluded)."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*.png"))
            if not any(part.startswith(".") for part in p.relative_to(folder).parts)}
