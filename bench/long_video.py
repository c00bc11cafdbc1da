"""An hour-long video through the propagator: time per frame and resident memory stay flat.

Streams a synthetic video (default 10,000 frames at 480p feature size, 256x60x107) through
the propagator (``hvc.VideoSegmenter.step_features``) under a capped memory policy and prints, at frames 100, 1,000 and 10,000
(those reached), the mean time per frame over the frames since the previous report (wall
clock, and process CPU time, which other load on the machine disturbs less) and the process's
resident memory (RSS) right then, plus the peak RSS. Features are random but
temporally smooth, so the propagation does real work: a low-resolution Gaussian field that
drifts as an AR(1) process, up-sampled to the feature grid, plus a little per-frame noise,
L2-normalised; frame 0 gives an elliptic object. Frames are made one at a time and dropped
after their step (a real video is read lazily the same way, see hvc/data/frames.py), so
nothing but the propagator's context grows with the video, and the context is capped.

    python bench/long_video.py                                  # 10,000 frames, 256x60x107, quality memory, cap 10
    python bench/long_video.py --frames 1000 --memory recent    # the paper's window, 10 frames
    python bench/long_video.py --frames 10000 --size 30x54      # 240p feature size
"""

from __future__ import annotations

import argparse
import math
import resource
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from hvc.propagation import PropagationConfig, embed, upsample_labels
from hvc.segmenter import VideoSegmenter


def rss_mib() -> float:
    """Resident memory of this process now (Linux /proc), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


class SmoothFeatures:
    """Frame after frame: [C, h, w] unit-norm features of a slowly drifting random field."""

    def __init__(self, channels: int, h: int, w: int, rho: float = 0.98, seed: int = 0):
        self.gen = torch.Generator().manual_seed(seed)
        self.size, self.rho = (h, w), rho
        self.coarse = torch.randn(1, channels, max(2, h // 8), max(2, w // 8), generator=self.gen)

    def next(self) -> torch.Tensor:
        noise = torch.randn(self.coarse.shape, generator=self.gen)
        self.coarse = self.rho * self.coarse + math.sqrt(1 - self.rho**2) * noise
        field = F.interpolate(self.coarse, size=self.size, mode="bilinear", align_corners=True)[0]
        return embed(field + 0.3 * torch.randn(field.shape, generator=self.gen))


def first_labels(h: int, w: int, scale: int = 8) -> torch.Tensor:
    """An ellipse (id 1) on background at full resolution, [scale*h, scale*w] int64."""
    ys, xs = torch.meshgrid(torch.arange(scale * h), torch.arange(scale * w), indexing="ij")
    inside = ((ys - 0.5 * scale * h) / (0.25 * scale * h)) ** 2 + ((xs - 0.4 * scale * w) / (0.2 * scale * w)) ** 2 < 1
    return inside.long()


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=10_000)
    ap.add_argument("--size", default="60x107", help="feature grid h x w (480p at stride 8: 60x107)")
    ap.add_argument("--channels", type=int, default=256)
    ap.add_argument("--memory", choices=("recent", "quality"), default="quality", help="memory policy")
    ap.add_argument("--context", type=int, default=10, help="the cap: context frames besides the reference")
    ap.add_argument("--report", default="100,1000,10000", help="frames at which to print a row")
    ap.add_argument("--upsample", action="store_true", help="also up-sample each soft mask to full size and argmax")
    args = ap.parse_args(argv)
    h, w = (int(v) for v in args.size.lower().split("x"))
    reports = sorted({int(r) for r in args.report.split(",") if int(r) <= args.frames} | {args.frames})

    features = SmoothFeatures(args.channels, h, w)
    seg = VideoSegmenter(PropagationConfig(context=args.context, memory=args.memory, num_classes=2))
    prop = seg.propagator  # read only: its store
    labels = first_labels(h, w)
    print(f"{args.frames} frames, features {args.channels}x{h}x{w}, memory {args.memory}, cap {args.context}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}", flush=True)
    print(f"{'frame':>7}{'ms/frame':>10}{'CPU ms/frame':>14}{'RSS MiB':>9}{'held':>6}   "
          f"(per frame: mean since the previous row; held: frames in the context store)", flush=True)
    since, elapsed, cpu, stored_max = 0, 0.0, 0.0, 0
    with torch.no_grad():
        for t in range(args.frames):
            emb = features.next()
            start, start_cpu = time.perf_counter(), time.process_time()
            soft = seg.step_features(emb, labels if t == 0 else None)
            if args.upsample:
                upsample_labels(soft, (8 * h, 8 * w))
            elapsed += time.perf_counter() - start
            cpu += time.process_time() - start_cpu
            since += 1
            stored_max = max(stored_max, len(prop.store))
            if t + 1 in reports:
                print(f"{t + 1:>7}{1000 * elapsed / since:>10.0f}{1000 * cpu / since:>14.0f}{rss_mib():>9.0f}"
                      f"{len(prop.store):>6}", flush=True)
                since, elapsed, cpu = 0, 0.0, 0.0
    object_share = float((soft.argmax(dim=0) == 1).float().mean())
    print(f"peak RSS {peak_rss_mib():.0f} MiB; at most {stored_max} frames held; the object covers "
          f"{100 * object_share:.1f}% of the last frame (frame 0: "
          f"{100 * float((labels == 1).float().mean()):.1f}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
