"""Training throughput: images/s and peak memory of full HVC training steps on this device.

    python bench/train_throughput.py --size 128 --batch 8            # CPU figure of the README
    python bench/train_throughput.py --size 256 --batch 128 --amp    # the paper's setting, GPU

One image = one sample (its two views both pass through the networks). Inputs are random
tensors with valid crop boxes (data loading is not measured); each step is the engine's
``train_step`` (forward, EMA, loss, backward, Adam). Peak memory: GPU memory allocated by
torch on CUDA, the process's peak resident memory on the CPU.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from hvc.cli import run_main  # noqa: E402
from hvc.config.training import ModelConfig, OptimConfig, RuntimeConfig  # noqa: E402
from hvc.distributed import resolve_device  # noqa: E402
from hvc.fileio import atomic_write_text  # noqa: E402
from hvc.engine import autocast_dtype, build_model, build_optimizer, flush_denormal, make_scaler, train_step  # noqa: E402


def random_batch(batch: int, size: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """Two normalised-looking views [B, 3, S, S] and crop boxes [B, 4] = [x0, y0, x1, y1]."""
    views = [torch.randn(batch, 3, size, size, generator=generator) for _ in range(2)]
    coords = []
    for _ in range(2):
        lo = torch.rand(batch, 2, generator=generator) * 0.5
        hi = lo + 0.1 + torch.rand(batch, 2, generator=generator) * 0.4
        coords.append(torch.cat([lo, hi], dim=1))
    return (*views, *coords)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=128, help="crop side (paper: 256)")
    parser.add_argument("--batch", type=int, default=8, help="batch size (paper: 128)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (cudnn autotuning, allocator)")
    parser.add_argument("--arch", default="resnet18", choices=["resnet18", "resnet50"])
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--amp", action="store_true", help="autocast on CUDA")
    parser.add_argument("--amp-dtype", default="fp16", choices=["fp16", "bf16"])
    parser.add_argument("--no-channels-last", action="store_true", help="keep NCHW on CUDA")
    parser.add_argument("--json", help="also write the result to this JSON file")
    args = parser.parse_args(argv)

    device = resolve_device(args.device)
    runtime = RuntimeConfig(device=args.device, amp=args.amp, amp_dtype=args.amp_dtype,
                            channels_last=not args.no_channels_last)
    channels_last = runtime.channels_last and device.type == "cuda"
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = runtime.cudnn_benchmark
    torch.manual_seed(runtime.seed)
    model = build_model(ModelConfig(arch=args.arch)).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    optimizer = build_optimizer(model, OptimConfig())
    amp_dtype = autocast_dtype(runtime, device)
    scaler = make_scaler(device, amp_dtype)
    batch = random_batch(args.batch, args.size, torch.Generator().manual_seed(0))

    def step() -> float:
        return train_step(model, batch, optimizer, scaler, 0.99, device=device, amp_dtype=amp_dtype,
                          channels_last=channels_last)

    with flush_denormal(runtime.flush_denormal and device.type == "cpu"):
        for _ in range(args.warmup):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        start = time.perf_counter()
        for _ in range(args.steps):
            step()  # returns a Python float: each step ends synchronised
        elapsed = time.perf_counter() - start

    if device.type == "cuda":
        peak_mib = torch.cuda.max_memory_allocated(device) / 2**20
        name = torch.cuda.get_device_name(device)
    else:
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
        name = f"cpu, {torch.get_num_threads()} threads"
    result = dict(device=name, arch=args.arch, size=args.size, batch=args.batch,
                  amp=str(amp_dtype).replace("torch.", "") if amp_dtype else "off", channels_last=channels_last,
                  steps=args.steps, images_per_s=args.batch * args.steps / elapsed,
                  step_s=elapsed / args.steps, peak_memory_mib=peak_mib)
    print(f"{name}: {args.arch} {args.size}x{args.size} batch {args.batch} amp {result['amp']}: "
          f"{result['images_per_s']:.1f} images/s ({result['step_s']:.3f} s/step), "
          f"peak memory {peak_mib:.0f} MiB")
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
