"""Training throughput: images/s of full HVC training steps, side by side.

    python bench/train_throughput.py --size 128 --batch 16                  # random inputs
    python bench/train_throughput.py --size 128 --batch 16 --real $HVC_SHARED_DIR/data/Static/JPEGImages/BSDS500
    python bench/train_throughput.py --size 128 --batch 16 --options paper no_layer4 cpu_bf16 cpu_channels_last
    python bench/train_throughput.py --size 256 --batch 128 --amp           # the paper's setting, GPU

One image = one sample (its two views both pass through the networks); each step is the
engine's ``train_step`` (forward, EMA, loss, backward, Adam), under ``flush_denormal`` on the
CPU as in training.

``--real DIR`` times three inputs in blocks of ``--steps`` steps, block after block for
``--rounds`` rounds (a fresh model of the same seed each): ``synthetic`` (one random batch
with valid crop boxes), ``real, preloaded`` (batches of the real photos decoded before the
clock starts: the model's cost on real content) and ``real, DataLoader`` (the training
loader, ``StaticImagePairs`` with ``--workers`` processes, started inside the block as each
epoch starts it). The gap between the first two is the content, between the last two the
loading.

``--options`` times training switches on the random batch, alternating step by step:
``paper`` (the default recipe), ``no_layer4`` (``model.layer4=false``), ``cpu_bf16``
(``runtime.cpu_bf16``), ``cpu_channels_last`` (``runtime.cpu_channels_last``); join
switches with ``+`` (``no_layer4+cpu_bf16``). The loss of each option's first step on the
same batch is printed beside its speed. Peak memory (single run only): GPU memory allocated
by torch on CUDA, the process's peak resident memory on the CPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import resource
import sys
import time
from pathlib import Path
from typing import Callable

import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from _timing import alternate, load_line, median  # noqa: E402

from hvc.cli import run_main  # noqa: E402
from hvc.config.training import DataConfig, ModelConfig, OptimConfig, RuntimeConfig  # noqa: E402
from hvc.data.pairs import RandomResizedCropCoord, StaticImagePairs, collate_pairs  # noqa: E402
from hvc.distributed import resolve_device  # noqa: E402
from hvc.engine import (autocast_dtype, build_model, build_optimizer, flush_denormal, make_scaler,  # noqa: E402
                        train_step, use_channels_last)
from hvc.fileio import atomic_write_text  # noqa: E402

OPTIONS = ("paper", "no_layer4", "cpu_bf16", "cpu_channels_last")
Batch = tuple[torch.Tensor, ...]


def random_batch(batch: int, size: int, generator: torch.Generator) -> Batch:
    """Two normalised-looking views [B, 3, S, S] and crop boxes [B, 4] = [x0, y0, x1, y1]."""
    views = [torch.randn(batch, 3, size, size, generator=generator) for _ in range(2)]
    coords = []
    for _ in range(2):
        lo = torch.rand(batch, 2, generator=generator) * 0.5
        hi = lo + 0.1 + torch.rand(batch, 2, generator=generator) * 0.4
        coords.append(torch.cat([lo, hi], dim=1))
    return (*views, *coords)


def option_configs(option: str, args: argparse.Namespace) -> tuple[ModelConfig, RuntimeConfig]:
    """The model and runtime configs of ``option`` (switches joined by '+') on top of the CLI's."""
    model = ModelConfig(arch=args.arch)
    runtime = RuntimeConfig(device=args.device, amp=args.amp, amp_dtype=args.amp_dtype,
                            channels_last=not args.no_channels_last)
    for switch in option.split("+"):
        if switch not in OPTIONS:
            raise SystemExit(f"unknown option {switch!r}; choose from {OPTIONS}")
        if switch == "no_layer4":
            model = dataclasses.replace(model, layer4=False)
        elif switch in ("cpu_bf16", "cpu_channels_last"):
            runtime = dataclasses.replace(runtime, **{switch: True})
    return model, runtime


class Trainer:
    """One model + optimiser; ``step(batch)`` runs the engine's train_step and returns the loss."""

    def __init__(self, model_cfg: ModelConfig, runtime: RuntimeConfig, device: torch.device):
        torch.manual_seed(runtime.seed)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = runtime.cudnn_benchmark
        self.device = device
        self.channels_last = use_channels_last(runtime, device)
        self.model = build_model(model_cfg).to(device, memory_format=torch.channels_last if self.channels_last
                                               else torch.preserve_format).train()
        self.optimizer = build_optimizer(self.model, OptimConfig())
        self.amp_dtype = autocast_dtype(runtime, device)
        self.scaler = make_scaler(device, self.amp_dtype)

    def step(self, batch: Batch) -> float:
        return train_step(self.model, batch[:4], self.optimizer, self.scaler, 0.99, device=self.device,
                          amp_dtype=self.amp_dtype, channels_last=self.channels_last)


def real_loader(root: str, args: argparse.Namespace, pin: bool) -> DataLoader:
    data = DataConfig(roots=[root], size=args.size, batch_size=args.batch, workers=args.workers)
    dataset = StaticImagePairs(data.roots, RandomResizedCropCoord.from_config(data), seed=0)
    return DataLoader(dataset, batch_size=data.batch_size, shuffle=True, num_workers=data.workers,
                      collate_fn=collate_pairs, pin_memory=pin, drop_last=True,
                      generator=torch.Generator().manual_seed(0))


def compare_real(args: argparse.Namespace, device: torch.device, runtime: RuntimeConfig) -> dict:
    """Synthetic, real preloaded and real through the DataLoader, in blocks of args.steps steps."""
    model_cfg, runtime = option_configs(args.options[0], args)
    synthetic = random_batch(args.batch, args.size, torch.Generator().manual_seed(0))
    preloaded = list(itertools.islice(iter(real_loader(args.real, args, False)), args.steps))
    trainers = {name: Trainer(model_cfg, runtime, device) for name in ("synthetic", "real, preloaded",
                                                                         "real, DataLoader")}
    startup: list[float] = []

    def block(name: str) -> float:
        trainer = trainers[name]
        start = time.perf_counter()
        if name == "synthetic":
            for _ in range(args.steps):
                trainer.step(synthetic)
        elif name == "real, preloaded":
            for batch in preloaded:
                trainer.step(batch)
        else:
            batches = iter(real_loader(args.real, args, device.type == "cuda"))
            for i, batch in enumerate(itertools.islice(batches, args.steps)):
                if i == 0:
                    startup.append(time.perf_counter() - start)
                trainer.step(batch)
            del batches  # its workers stop here, not during the next block
        return time.perf_counter() - start

    for name in trainers:  # warm-up: one step each, outside the clock
        trainers[name].step(synthetic if name == "synthetic" else preloaded[0])
    seconds: dict[str, list[float]] = {name: [] for name in trainers}
    for _ in range(args.rounds):
        for name in trainers:
            seconds[name].append(block(name))
    rates = {name: args.batch * args.steps / median(s) for name, s in seconds.items()}
    print(f"{'input':<18} {'images/s':>9} {'s/step':>7} {'vs synthetic':>13}")
    for name, rate in rates.items():
        print(f"{name:<18} {rate:9.2f} {args.batch / rate:7.3f} {rate / rates['synthetic']:12.1%}")
    print(f"DataLoader start to first batch: {median(startup):.2f} s ({args.workers} workers, "
          f"once per block of {args.steps} steps; training starts it once per epoch)")
    return {"real_root": args.real, "workers": args.workers, "images_per_s": rates, "startup_s": median(startup)}


def compare_options(args: argparse.Namespace, device: torch.device) -> dict:
    """Training switches on the same random batch, alternating step by step."""
    batch = random_batch(args.batch, args.size, torch.Generator().manual_seed(0))
    trainers = {opt: Trainer(*option_configs(opt, args), device) for opt in args.options}
    first_loss = {opt: t.step(batch) for opt, t in trainers.items()}  # also the warm-up step
    steps: dict[str, Callable[[], float]] = {opt: (lambda t=t: t.step(batch)) for opt, t in trainers.items()}
    times = alternate(steps, args.steps, warmup=args.warmup - 1 if args.warmup > 1 else 0)
    base = median(times[args.options[0]])
    print(f"{'option':<30} {'images/s':>9} {'s/step':>7} {'speed-up':>9} {'first-step loss':>16}")
    result = {}
    for opt in args.options:
        t = median(times[opt])
        print(f"{opt:<30} {args.batch / t:9.2f} {t:7.3f} {base / t:8.2f}x {first_loss[opt]:16.6f}")
        result[opt] = {"images_per_s": args.batch / t, "step_s": t, "first_loss": first_loss[opt]}
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=128, help="crop side (paper: 256)")
    parser.add_argument("--batch", type=int, default=16, help="batch size (paper: 128; CPU recipe: 16)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps (per block with --real)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (cudnn autotuning, allocator)")
    parser.add_argument("--rounds", type=int, default=2, help="--real: rounds of blocks")
    parser.add_argument("--arch", default="resnet18", choices=["resnet18", "resnet50"])
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--amp", action="store_true", help="autocast on CUDA")
    parser.add_argument("--amp-dtype", default="fp16", choices=["fp16", "bf16"])
    parser.add_argument("--no-channels-last", action="store_true", help="keep NCHW on CUDA")
    parser.add_argument("--real", metavar="DIR", help="also train on the photos under DIR, side by side")
    parser.add_argument("--workers", type=int, default=2, help="--real: DataLoader workers (CPU recipe: 2)")
    parser.add_argument("--options", nargs="+", default=["paper"], help=f"training switches: {', '.join(OPTIONS)}")
    parser.add_argument("--json", help="also write the result to this JSON file")
    args = parser.parse_args(argv)

    device = resolve_device(args.device)
    runtime = RuntimeConfig(device=args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(f"{name}: {args.arch} {args.size}x{args.size} batch {args.batch}; {load_line()}")
    result: dict = dict(device=name, arch=args.arch, size=args.size, batch=args.batch)
    with flush_denormal(runtime.flush_denormal and device.type == "cpu"):
        if args.real:
            result["real"] = compare_real(args, device, runtime)
        elif len(args.options) > 1:
            result["options"] = compare_options(args, device)
        else:
            trainer = Trainer(*option_configs(args.options[0], args), device)
            batch = random_batch(args.batch, args.size, torch.Generator().manual_seed(0))
            for _ in range(args.warmup):
                trainer.step(batch)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
                torch.cuda.reset_peak_memory_stats(device)
            start = time.perf_counter()
            for _ in range(args.steps):
                trainer.step(batch)  # returns a Python float: each step ends synchronised
            elapsed = time.perf_counter() - start
            peak_mib = (torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda"
                        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)  # Linux: KiB
            amp = str(trainer.amp_dtype).replace("torch.", "") if trainer.amp_dtype else "off"
            result.update(option=args.options[0], amp=amp, channels_last=trainer.channels_last, steps=args.steps,
                          images_per_s=args.batch * args.steps / elapsed, step_s=elapsed / args.steps,
                          peak_memory_mib=peak_mib)
            print(f"{args.options[0]}, amp {amp}: {result['images_per_s']:.1f} images/s "
                  f"({result['step_s']:.3f} s/step), peak memory {peak_mib:.0f} MiB")
    print(f"after: {load_line()}")
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
