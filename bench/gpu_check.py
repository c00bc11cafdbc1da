"""The GPU check: CUDA tests, training throughput, a timed training run, test.py, propagation
speed, in one run that fits a short GPU loan (at most 8 minutes of wall time). docs/gpu.md.

    python bench/gpu_check.py --stage gpu_data          # here, with ../shared: copy the data in
    python bench/gpu_check.py --data gpu_data            # on the GPU machine: the check itself
    python bench/gpu_check.py --device cpu --quick --data DIR   # dry run of the script (CI)

A lent machine receives the checkout only, not ``../shared``: ``--stage DIR`` copies what the
check reads into ``DIR`` (an ignored folder of the checkout, ``gpu_data/`` by default) in the
layout of ``$HVC_SHARED_DIR``: 400 BSDS500 photos (``data/Static/JPEGImages/BSDS500``: 400, not
500, so that the checkout and the data stay under the 64 MiB a loan carries; 400 photos still
give 3 batches of 128 per epoch) and three DAVIS 2016 sequences (``data/DAVIS``), then runs
test.py on the CPU with the committed checkpoint on those sequences (``cpu_labels/``), the
labels the GPU's are compared with. ``--quick`` stages a few photos and the first frames only.

The check runs five stages, each with a time budget; a stage that no longer fits in what is
left of ``--budget`` (default 470 s) is skipped and says so:

1. ``tests``: ``pytest -m cuda tests/test_cuda.py`` (CI=true on CUDA: nothing may skip);
2. ``throughput``: configs/train_img.yaml's crops (256) and batch (128), AMP as configured
   there (fp16 + GradScaler on CUDA), channels_last, on batches of the staged photos decoded
   beforehand: images/s, and peak GPU memory, which must stay under 16 GiB;
3. ``train``: train.py with the same settings for the seconds left to it (about 3 minutes),
   stopped at its deadline; the last epoch's checkpoint is exported with layer4 dropped, as the
   committed checkpoint was;
4. ``test.py``: the three sequences at 480p with that checkpoint and with
   checkpoints/hvc_bsds_cpu.pth (plus the latter with the fp16 encoder, ``run.amp=fp16``): J&F
   per sequence, s/frame, and for the committed checkpoint the share of pixels whose label
   differs from the CPU run staged in ``cpu_labels/``;
5. ``propagation``: ms/frame of the dense and local kernels at 480p (60x107 features,
   context 50, random unit-norm embeddings as in bench/propagation_speed.py).

It prints one table and writes one JSON (``--json``, default ``<out>/gpu_check.json``).
Exit status 0 when every stage that ran passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

from hvc.config import load_config  # noqa: E402
from hvc.config.training import TrainConfig  # noqa: E402
from hvc.fileio import atomic_write_text  # noqa: E402

SEQUENCES = ("blackswan", "horsejump-high", "libby")  # 9.6 MB of frames; blackswan: the tests' frame
FULL_PHOTOS = 400
QUICK = {"photos": 8, "frames": 3, "input_size": 64}  # --quick: staged data and test.py size
MEMORY_LIMIT_GIB = 16.0  # the design card's GPU
STAGE_FILE = "stage.json"

# Seconds per stage (full run); the total stays under --budget, itself under the 8-minute loan.
BUDGET = {"tests": 110, "throughput": 35, "train": 180, "test.py": 60, "propagation": 20}
DEFAULT_BUDGET = 470.0  # --budget: all stages, with 10 s of the 8-minute loan to spare


def shared_dir() -> Path:
    return Path(os.environ.get("HVC_SHARED_DIR", REPO.parent / "shared"))


# ---------------------------------------------------------------------------------------------
# Staging (here, with ../shared)
# ---------------------------------------------------------------------------------------------

def stage(dest: Path, quick: bool, cpu_labels: bool = True) -> dict:
    """Copy the check's data into ``dest`` (layout of $HVC_SHARED_DIR) and, unless told not to,
    make the CPU labels of the committed checkpoint; returns what was staged (also in stage.json)."""
    src = shared_dir() / "data"
    photos_src = src / "Static" / "JPEGImages" / "BSDS500"
    davis_src = src / "DAVIS"
    for path in (photos_src, davis_src):
        if not path.is_dir():
            raise SystemExit(f"error: {path} not found (set $HVC_SHARED_DIR to the folder holding data/)")
    data = dest / "data"
    photos_dst = data / "Static" / "JPEGImages" / "BSDS500"
    photos_dst.mkdir(parents=True, exist_ok=True)
    n_photos = QUICK["photos"] if quick else FULL_PHOTOS
    for photo in sorted(photos_src.glob("*.jpg"))[:n_photos]:
        shutil.copyfile(photo, photos_dst / photo.name)
    frames = QUICK["frames"] if quick else None
    for kind in ("JPEGImages", "Annotations"):
        for name in SEQUENCES:
            out = data / "DAVIS" / kind / "480p" / name
            out.mkdir(parents=True, exist_ok=True)
            for f in sorted((davis_src / kind / "480p" / name).iterdir())[:frames]:
                shutil.copyfile(f, out / f.name)
    sets = data / "DAVIS" / "ImageSets" / "2016"
    sets.mkdir(parents=True, exist_ok=True)
    (sets / "val.txt").write_text("".join(f"{n}\n" for n in SEQUENCES))
    info = {"photos": n_photos, "sequences": list(SEQUENCES), "frames": frames, "quick": quick,
            "input_size": QUICK["input_size"] if quick else -1, "cpu_labels": None}
    if cpu_labels:
        start = time.perf_counter()
        done = run_test_py(dest, REPO / "checkpoints" / "hvc_bsds_cpu.pth", dest / "cpu_labels", "cpu",
                           info["input_size"], [], timeout=None)
        if done.returncode != 0:
            raise SystemExit(f"error: test.py on the CPU failed:\n{done.stderr[-2000:]}")
        info["cpu_labels"] = {"seconds": round(time.perf_counter() - start, 1), "torch": torch.__version__,
                              "cpu": platform.processor() or platform.machine()}
    atomic_write_text(dest / STAGE_FILE, json.dumps(info, indent=2) + "\n")
    size = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
    print(f"staged {n_photos} photos and {len(SEQUENCES)} sequences in {dest} ({size / 2**20:.1f} MiB)")
    return info


def run_test_py(data: Path, checkpoint: Path, out: Path, device: str, input_size: int, extra: list[str],
                timeout: Optional[float]) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(REPO / "test.py"), "--config", str(REPO / "configs" / "test_davis16.yaml"),
           "--model", "hvc", "--checkpoint", str(checkpoint), "--device", device, "--output", str(out),
           "--overwrite", "--input-size", str(input_size), f"data.root={data / 'data' / 'DAVIS'}",
           "--sequences", *SEQUENCES, *extra]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout, env=_env())


def _env(**extra: str) -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p),
            **extra}


# ---------------------------------------------------------------------------------------------
# The check
# ---------------------------------------------------------------------------------------------

@dataclass
class Stage:
    name: str
    budget: float
    status: str = "skipped"  # passed | failed | skipped
    summary: str = ""
    seconds: float = 0.0
    result: dict = field(default_factory=dict)


class Clock:
    """The run's deadline; each stage gets min(its budget, what is left)."""

    def __init__(self, budget: float):
        self.start = time.perf_counter()
        self.deadline = self.start + budget

    def left(self) -> float:
        return self.deadline - time.perf_counter()


def run_stage(stage_: Stage, clock: Clock, fn: Callable[[float], tuple[bool, str, dict]], minimum: float) -> Stage:
    """Run ``fn(seconds)`` if at least ``minimum`` seconds are left; record its verdict."""
    seconds = min(stage_.budget, clock.left())
    if seconds < minimum:
        stage_.summary = f"not run: {clock.left():.0f} s left of the budget, needs {minimum:.0f}"
        return stage_
    start = time.perf_counter()
    try:
        ok, stage_.summary, stage_.result = fn(seconds)
        stage_.status = "passed" if ok else "failed"
    except subprocess.TimeoutExpired as exc:
        stage_.status, stage_.summary = "failed", f"timed out after {exc.timeout:.0f} s"
    except Exception as exc:  # noqa: BLE001 - one stage's failure is reported, the others still run
        stage_.status, stage_.summary = "failed", f"{type(exc).__name__}: {str(exc).strip()[-300:]}"
    stage_.seconds = time.perf_counter() - start
    return stage_


def stage_tests(args: argparse.Namespace, seconds: float) -> tuple[bool, str, dict]:
    xml = args.out / "cuda_tests.xml"
    env = _env(HVC_SHARED_DIR=str(args.data))
    if args.device == "cuda":
        env["CI"] = "true"  # on the GPU nothing may skip (tests/conftest.py)
    cmd = [sys.executable, "-m", "pytest", "-m", "cuda", "-v", "-p", "no:cacheprovider", f"--junitxml={xml}",
           str(REPO / "tests" / "test_cuda.py")]
    try:
        done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=seconds, env=env)
    except subprocess.TimeoutExpired as exc:  # no JUnit file: count the verbose lines printed so far
        text = "".join(o.decode() if isinstance(o, bytes) else o for o in (exc.stdout, exc.stderr) if o)
        (args.out / "cuda_tests.log").write_text(text)
        lines = text.splitlines()
        counts = {k: sum(f" {k.upper()}" in line for line in lines) for k in ("passed", "failed", "error", "skipped")}
        return False, (f"timed out after {seconds:.0f} s; so far {counts['passed']} passed, "
                       f"{counts['failed'] + counts['error']} failed, {counts['skipped']} skipped"), counts
    (args.out / "cuda_tests.log").write_text(done.stdout + done.stderr)
    suite = ET.parse(xml).getroot()
    suite = suite.find("testsuite") if suite.tag == "testsuites" else suite
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    failed = [c.get("name") for c in suite.iter("testcase") if c.find("failure") is not None or c.find("error") is not None]
    counts["failed_tests"] = failed
    ok = done.returncode in (0, 5) and not failed  # 5: nothing selected (no marked test collected)
    if args.device == "cuda":
        ok = ok and counts["passed"] > 0 and counts["skipped"] == 0
    summary = f"{counts['passed']} passed, {len(failed)} failed, {counts['skipped']} skipped"
    return ok, summary + (f": {', '.join(failed[:3])}" if failed else ""), counts


def _train_config(args: argparse.Namespace, *extra: str) -> TrainConfig:
    photos = args.data / "data" / "Static" / "JPEGImages" / "BSDS500"
    overrides = [f"data.roots=[{photos}]", f"runtime.device={args.device}", *extra]
    if args.quick:
        overrides += ["data.size=64", "data.batch_size=4", "data.workers=0", "model.layer4=false",
                      "model.init_forward_size=64"]
    else:
        overrides += [f"data.workers={min(8, os.cpu_count() or 1)}"]
    return load_config(TrainConfig, REPO / "configs" / "train_img.yaml", overrides)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def stage_throughput(args: argparse.Namespace, seconds: float) -> tuple[bool, str, dict]:
    from torch.utils.data import DataLoader

    from hvc.data.pairs import collate_pairs
    from hvc.distributed import resolve_device
    from hvc.engine import (autocast_dtype, build_dataset, build_model, build_optimizer, flush_denormal, make_scaler,
                            train_step, use_channels_last)

    cfg = _train_config(args)
    device = resolve_device(cfg.runtime.device)
    steps, warmup = (2, 1) if args.quick else (10, 3)
    dataset = build_dataset(cfg.data, cfg.runtime.seed)
    loader = DataLoader(dataset, batch_size=cfg.data.batch_size, shuffle=True, num_workers=cfg.data.workers,
                        collate_fn=collate_pairs, drop_last=True, pin_memory=device.type == "cuda")
    batches = [tuple(b[:4]) for b in itertools.islice(loader, 3)]  # real photos, decoded before the clock
    torch.manual_seed(cfg.runtime.seed)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = cfg.runtime.cudnn_benchmark
    channels_last = use_channels_last(cfg.runtime, device)
    model = build_model(cfg.model).to(device, memory_format=torch.channels_last if channels_last
                                      else torch.preserve_format).train()
    optimizer = build_optimizer(model, cfg.optim)
    amp_dtype = autocast_dtype(cfg.runtime, device)
    scaler = make_scaler(device, amp_dtype)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    losses, warmup_peak = [], None

    def step(i: int) -> None:
        losses.append(train_step(model, batches[i % len(batches)], optimizer, scaler, cfg.model.momentum,
                                 device=device, amp_dtype=amp_dtype, channels_last=channels_last))

    with flush_denormal(device.type == "cpu"):
        for i in range(warmup):
            step(i)
        _sync(device)
        if device.type == "cuda":  # cuDNN's autotuning tries workspaces in the first steps: kept apart
            warmup_peak = torch.cuda.max_memory_allocated(device) / 2**30
            torch.cuda.reset_peak_memory_stats(device)
        start = time.perf_counter()
        for i in range(steps):
            step(i)  # returns a Python float: each step ends synchronised
        elapsed = time.perf_counter() - start
    images_per_s = cfg.data.batch_size * steps / elapsed
    result = {"size": cfg.data.size, "batch": cfg.data.batch_size, "amp": str(amp_dtype).replace("torch.", "")
              if amp_dtype else "off", "channels_last": channels_last, "steps": steps, "images_per_s": images_per_s,
              "step_s": elapsed / steps, "losses_finite": bool(np.isfinite(losses).all())}
    ok = result["losses_finite"]
    summary = f"{images_per_s:.3g} img/s at {cfg.data.size}px batch {cfg.data.batch_size}, amp {result['amp']}"
    if device.type == "cuda":
        # the steady state's peak must fit a 16 GiB card; the allocator's reserve and the
        # autotuning steps' peak are reported beside it
        result["peak_allocated_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
        result["peak_reserved_gib"] = torch.cuda.max_memory_reserved(device) / 2**30
        result["warmup_peak_allocated_gib"] = warmup_peak
        ok = ok and result["peak_allocated_gib"] < MEMORY_LIMIT_GIB
        summary += (f"; peak {result['peak_allocated_gib']:.1f} GiB allocated ({result['peak_reserved_gib']:.1f} "
                    f"reserved, {warmup_peak:.1f} while autotuning)")
    del model, optimizer, batches
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return ok, summary, result


def stage_train(args: argparse.Namespace, seconds: float, throughput: dict) -> tuple[bool, str, dict]:
    """train.py for ``seconds`` at most: a timed run. It is stopped at the deadline (SIGTERM to its
    process group) and the checkpoint of its last finished epoch is exported; the step cap and
    so the momentum schedule's span come from the measured throughput. 400 photos make 3 steps
    an epoch, and each epoch starts the loader's workers and writes a checkpoint, so the run
    is slower than the throughput stage's figure: its log's img/s says by how much."""
    cfg = _train_config(args)
    rate = throughput.get("images_per_s")
    per_epoch = 2 if args.quick else 3  # quick: 8 photos / batch 4; full: 400 photos / batch 128
    steps = 2 if args.quick else max(30, int(seconds * rate / cfg.data.batch_size)) if rate else 3000
    run = args.out / "train"
    overrides = [f"data.roots=[{cfg.data.roots[0]}]", f"runtime.device={args.device}", f"optim.max_steps={steps}",
                 f"optim.epochs={-(-steps // per_epoch)}", "output.save_every_steps=0", f"output.dir={run}",
                 "output.log_every=1", *_quick_overrides(args, cfg)]
    cmd = [sys.executable, str(REPO / "train.py"), "--config", str(REPO / "configs" / "train_img.yaml"), *overrides]
    shutil.rmtree(run, ignore_errors=True)
    start = time.perf_counter()
    stopped = False
    with open(args.out / "train.log", "w") as log_file:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=log_file, stderr=subprocess.STDOUT, env=_env(),
                                start_new_session=True)  # its own process group: the loader workers too
        try:
            proc.wait(timeout=max(1.0, seconds - 10))  # 10 s for the stop and the export
        except subprocess.TimeoutExpired:
            stopped = True
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    wall = time.perf_counter() - start
    if not stopped and proc.returncode != 0:
        tail = (args.out / "train.log").read_text().strip().splitlines()[-1:]
        return False, f"train.py exited {proc.returncode}: {tail}", {}
    if not (run / "checkpoint.pth").is_file():
        return False, f"stopped after {wall:.0f} s before its first epoch ended: no checkpoint", {}
    from hvc.checkpoint import load_checkpoint
    from hvc.export import export

    done_steps = int(load_checkpoint(run / "checkpoint.pth")["global_step"])
    export(run / "checkpoint.pth", args.out / "hvc_gpu_check.pth", drop_layer4=True, half=True)
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line.strip()]
    step_logs = [r for r in log if r["event"] == "step" and r["step"] <= done_steps]
    rates = [r["images_per_s"] for r in step_logs if r.get("images_per_s")]
    result = {"steps_cap": steps, "steps": done_steps, "stopped_at_deadline": stopped, "wall_s": wall,
              "first_loss": step_logs[0]["loss"], "last_loss": step_logs[-1]["loss"],
              "images_per_s_median": statistics.median(rates) if rates else None,
              "checkpoint": str(args.out / "hvc_gpu_check.pth")}
    ok = bool(step_logs) and all(np.isfinite([r["loss"] for r in step_logs]))
    return ok, (f"{done_steps} steps in {wall:.0f} s{' (stopped at the deadline)' if stopped else ''}, loss "
                f"{result['first_loss']:.3f} -> {result['last_loss']:.3f}, "
                f"{result['images_per_s_median'] or 0:.0f} img/s with the loader"), result


def _quick_overrides(args: argparse.Namespace, cfg: TrainConfig) -> list[str]:
    if not args.quick:
        return [f"data.workers={cfg.data.workers}"]
    return ["data.size=64", "data.batch_size=4", "data.workers=0", "model.layer4=false", "model.init_forward_size=64"]


def _jf(davis: Path, results: Path) -> dict[str, float]:
    from hvc.metrics import evaluate

    objects = evaluate(davis, results, 2016, sequences=list(SEQUENCES), progress=False)
    per: dict[str, list[float]] = {}
    for o in objects:
        per.setdefault(o.sequence, []).append((float(np.mean(o.J)) + float(np.mean(o.F))) / 2)
    return {name: float(np.mean(v)) for name, v in per.items()}


def _seconds_per_frame(results: Path) -> float:
    records = [json.loads(p.read_text()) for p in (results / ".hvc" / "done").glob("*.json")]
    return sum(r["seconds"] for r in records) / sum(r["frames"] for r in records)


def _label_difference(a: Path, b: Path) -> float:
    """Share of pixels whose label differs between two folders of <seq>/<frame>.png."""
    differ = total = 0
    for name in SEQUENCES:
        for png in sorted((a / name).glob("*.png")):
            x, y = np.asarray(Image.open(png)), np.asarray(Image.open(b / name / png.name))
            differ += int((x != y).sum())
            total += x.size
    if not total:
        raise RuntimeError(f"no label PNG to compare in {a}")
    return differ / total


def stage_test_py(args: argparse.Namespace, seconds: float, staged: dict, trained: dict) -> tuple[bool, str, dict]:
    runs = {"hvc_bsds_cpu": (REPO / "checkpoints" / "hvc_bsds_cpu.pth", [])}
    if args.device == "cuda":
        runs["hvc_bsds_cpu, fp16 encoder"] = (REPO / "checkpoints" / "hvc_bsds_cpu.pth", ["run.amp=fp16"])
    if trained.get("checkpoint"):
        runs["this run's training"] = (Path(trained["checkpoint"]), [])
    davis = args.data / "data" / "DAVIS"
    cpu_labels = args.data / "cpu_labels"
    result, ok, parts = {}, True, []
    deadline = time.perf_counter() + seconds
    for name, (ckpt, extra) in runs.items():
        left = deadline - time.perf_counter()
        if left < 5:
            result[name] = {"status": "not run: out of time"}
            ok = False
            continue
        out = args.out / "test_py" / name.replace(" ", "_").replace(",", "")
        done = run_test_py(args.data, ckpt, out, args.device, staged["input_size"], extra, timeout=left)
        if done.returncode != 0:
            result[name] = {"status": f"exit {done.returncode}", "stderr": done.stderr[-1000:]}
            ok = False
            continue
        jf = _jf(davis, out)
        entry = {"jf": jf, "jf_mean": float(np.mean(list(jf.values()))), "s_per_frame": _seconds_per_frame(out)}
        if ckpt.name == "hvc_bsds_cpu.pth" and cpu_labels.is_dir():
            entry["labels_differing_from_cpu"] = _label_difference(out, cpu_labels)
        result[name] = entry
        diff = entry.get("labels_differing_from_cpu")
        parts.append(f"{name}: J&F {entry['jf_mean']:.3f}, {entry['s_per_frame'] * 1000:.0f} ms/frame"
                     + (f", {diff:.2%} px differ from CPU" if diff is not None else ""))
    return ok, "; ".join(parts) or "no run finished", result


def stage_propagation(args: argparse.Namespace, seconds: float) -> tuple[bool, str, dict]:
    from hvc.propagation import embed
    from hvc.propagation.propagator import KERNELS, predict

    device = torch.device(args.device)
    channels, (h, w), context = (64, (15, 27), 5) if args.quick else (256, (60, 107), 50)
    frames = 2 if args.quick else 10
    result = {"size": f"{channels}x{h}x{w}", "context": context}
    for impl in ("dense", "local"):
        torch.manual_seed(0)
        kernel = KERNELS[impl](12.0, 0.1, 15)
        memory, masks = kernel.memory(), {}
        for f in range(context + 1):
            memory.add(f, embed(torch.randn(channels, h, w, device=device)[None])[0])
            masks[f] = torch.softmax(torch.randn(2, h * w, device=device), dim=0)
        queries = [embed(torch.randn(channels, h, w, device=device)[None])[0] for _ in range(frames + 1)]
        entries = list(range(context + 1))
        times = []
        with torch.no_grad():
            for i, q in enumerate(queries):
                _sync(device)
                start = time.perf_counter()
                predict(kernel, q, memory, masks, entries)
                _sync(device)
                if i:  # the first one builds the kernel's tables
                    times.append(time.perf_counter() - start)
        result[impl] = {"ms_per_frame": 1000 * statistics.median(times), "ms_all": [1000 * t for t in times]}
    summary = f"dense {result['dense']['ms_per_frame']:.1f} ms/frame, local {result['local']['ms_per_frame']:.1f} ms/frame"
    return True, summary + f" ({result['size']}, context {context})", result


def environment(device: str) -> dict:
    env = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           "python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
           "device": device, "cpus": os.cpu_count()}
    if device == "cuda" and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        env.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                   cudnn=torch.backends.cudnn.version(), nccl=".".join(map(str, torch.cuda.nccl.version())))
    return env


def check(args: argparse.Namespace) -> int:
    clock = Clock(args.budget)
    staged_file = args.data / STAGE_FILE
    if not staged_file.is_file():
        raise SystemExit(f"error: {staged_file} not found: stage the data first (python bench/gpu_check.py --stage "
                         f"{args.data}{' --quick' if args.quick else ''})")
    staged = json.loads(staged_file.read_text())
    if staged["quick"] != args.quick:
        raise SystemExit(f"error: {args.data} was staged {'with' if staged['quick'] else 'without'} --quick")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda, but torch sees no CUDA device (use --device cpu for the dry run)")
    args.out.mkdir(parents=True, exist_ok=True)
    # the dry run does seconds of work per stage (a minute or two on a loaded 2-core machine):
    # its budgets are only a guard
    stages = {name: Stage(name, 150 if args.quick else budget) for name, budget in BUDGET.items()}
    # later stages keep their share: the earlier ones may not eat into it
    run_stage(stages["tests"], clock, lambda s: stage_tests(args, s), minimum=10)
    run_stage(stages["throughput"], clock, lambda s: stage_throughput(args, s), minimum=10)
    reserve = stages["test.py"].budget + stages["propagation"].budget

    train_minimum = 5 if args.quick else 30

    def train_fn(s: float) -> tuple[bool, str, dict]:
        seconds = min(s, clock.left() - reserve)
        if seconds < train_minimum:
            return False, f"not run: {seconds:.0f} s left once test.py and propagation keep theirs", {}
        return stage_train(args, seconds, stages["throughput"].result)

    run_stage(stages["train"], clock, train_fn, minimum=train_minimum)
    run_stage(stages["test.py"], clock, lambda s: stage_test_py(args, s, staged, stages["train"].result), minimum=10)
    run_stage(stages["propagation"], clock, lambda s: stage_propagation(args, s), minimum=5)

    total = time.perf_counter() - clock.start
    report = {"environment": environment(args.device), "quick": args.quick, "budget_s": args.budget,
              "total_s": total, "staged": staged,
              "stages": {s.name: {"status": s.status, "summary": s.summary, "seconds": round(s.seconds, 1),
                                  "budget_s": s.budget, "result": s.result} for s in stages.values()}}
    atomic_write_text(args.json or args.out / "gpu_check.json", json.dumps(report, indent=2) + "\n")
    env = report["environment"]
    print(f"GPU check, {env.get('gpu', env['device'])}, torch {env['torch']} (CUDA {env['cuda']}), {env['date']}")
    print(f"{'stage':<12} {'status':<8} {'s':>5} {'budget':>6}  result")
    for s in stages.values():
        print(f"{s.name:<12} {s.status:<8} {s.seconds:5.0f} {s.budget:6.0f}  {s.summary}")
    print(f"{'total':<12} {'':<8} {total:5.0f} {args.budget:6.0f}  JSON: {args.json or args.out / 'gpu_check.json'}")
    return 0 if all(s.status != "failed" for s in stages.values()) else 1


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", type=Path, metavar="DIR", help="copy the data into DIR (with ../shared) and stop")
    parser.add_argument("--no-cpu-labels", action="store_true", help="--stage: skip the CPU test.py run")
    parser.add_argument("--data", type=Path, default=REPO / "gpu_data", help="the staged folder (default gpu_data)")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: the CPU dry run of the script")
    parser.add_argument("--budget", type=float, default=DEFAULT_BUDGET, help="seconds for all stages (a loan: 8 min)")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "gpu_check", help="outputs (default runs/gpu_check)")
    parser.add_argument("--json", type=Path, help="the JSON report (default <out>/gpu_check.json)")
    args = parser.parse_args(argv)
    if args.stage:
        stage(args.stage.resolve(), args.quick, cpu_labels=not args.no_cpu_labels)
        return 0
    args.data, args.out = args.data.resolve(), args.out.resolve()
    return check(args)


if __name__ == "__main__":
    sys.exit(main())
