"""Speed and peak memory of the two label-propagation kernels, side by side.

Each (kernel, feature size) runs in its own subprocess so that its peak resident memory
(getrusage maxrss, which sees torch's allocations) can be measured: the figure reported is the
growth of the peak over the state after the context store is built (51 distinct frames), i.e.
what one propagation step needs on top of the stored frames. Time is per propagated frame
(the top-k kernel plus the weighted sum of context masks; wall clock and process CPU time, the
latter less sensitive to other load on the machine; fastest frame of all runs) in the steady state: a long-term
frame plus ``--context`` distinct previous frames, random unit-norm embeddings, or with
``--davis-sequence NAME`` the real embeddings of that DAVIS sequence's first frames (480p, the
committed checkpoint; the masks stay random).

It also prints the matmul work of each kernel and the least work any exact kernel needs (every
query against every key of the long-term frame plus its in-radius keys of the other frames),
with this machine's float32 matmul rate: what skipping work alone buys. The dense kernel also
masks and sorts its whole [hw, 51·hw] affinity, so the measured speed-up can exceed that ratio.

``local-bf16`` is the local kernel's opt-in approximate mode (``prop.precision=bf16``:
candidates scored and chosen in bfloat16, weights from float32 scores of the chosen ones); the
benchmark prints its speed-up over the exact local kernel and on how many query positions
their predictions' argmax differs on these random inputs (real-video label differences and
J&F: scripts/davis_variants.py, variant ``bf16``). ``local-bf16-d96`` adds the reduced search
(``prop.search_dims=96``: candidates scored on 96 principal axes of the first frame's keys;
``--search-dims``). On random inputs, whose variance is spread evenly over the channels, that
search is poor by design, so its argmax differences here say nothing about real videos (on
real features a few dozen axes hold nearly all of the variance; variant ``bf16-d96``).
``--candidates 1`` adds that search rescoring only topk candidates instead of twice as many
(``prop.candidates=1``, ``local-bf16-d96-c1``). ``--no-bf16`` leaves the approximate modes out.

    python bench/propagation_speed.py                       # 256x60x107, context 50, both kernels + bf16
    python bench/propagation_speed.py --growth 15x27,30x54,60x107,120x214 --json out.json
    python bench/propagation_speed.py --davis-sequence dog   # real features (committed checkpoint)
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from tqdm import tqdm

from hvc.cli import run_main
from hvc.config.core import load_config
from hvc.config.inference import TestConfig
from hvc.data.vos import FrameDataset, load_sequences
from hvc.fileio import atomic_write_text
from hvc.inference import build_extractor
from hvc.propagation import embed
from hvc.propagation.propagator import KERNELS, predict

REPO = Path(__file__).resolve().parents[1]


def _maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


# What the worker runs: kernel name and, for the local kernel, its precision (and search dims,
# "local-bf16-dD": the reduced search on D principal axes).
IMPLS = {"dense": ("dense", {}), "local": ("local", {}), "local-bf16": ("local", {"precision": "bf16"})}


def impl_options(impl: str) -> tuple[str, dict]:
    """A kernel name of IMPLS, or local-bf16-dD[-cX]: bf16, search_dims D, candidates X."""
    if impl.startswith("local-bf16-d"):
        dims, _, candidates = impl[len("local-bf16-d"):].partition("-c")
        return "local", {"precision": "bf16", "search_dims": int(dims), **(
            {"candidates": float(candidates)} if candidates else {})}
    return IMPLS[impl]


def measure(impl: str, channels: int, h: int, w: int, context: int, frames: int, classes: int,
            features: str = "") -> dict:
    """Time ``frames`` steady-state steps of one kernel; peak memory growth over the store.
    features: a .pt file of real embeddings [T, C, h, w] (stored frames first, then the
    queries) instead of random ones."""
    torch.manual_seed(0)
    name, options = impl_options(impl)
    kernel = KERNELS[name](12.0, 0.1, 15, **options)
    real = torch.load(features, map_location="cpu", weights_only=True) if features else None
    frame = (lambda t: embed(real[t].float()[None])[0]) if real is not None else (
        lambda t: embed(torch.randn(channels, h, w)))
    memory, masks = kernel.memory(), {}
    for f in range(context + 1):  # one at a time: no large temporaries before the baseline
        memory.add(f, frame(f))
        masks[f] = torch.softmax(torch.randn(classes, h * w), dim=0)
    queries = [frame(context + 1 + i) for i in range(frames)]
    entries = list(range(context + 1))  # entry 0 long-term, then `context` distinct frames
    base = _maxrss_mib()
    seconds, cpu = [], []
    with torch.no_grad():
        for q in queries:
            start, start_cpu = time.perf_counter(), time.process_time()
            soft = predict(kernel, q, memory, masks, entries)
            seconds.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
    return {"impl": impl, "size": f"{channels}x{h}x{w}", "positions": h * w, "context": context,
            "threads": torch.get_num_threads(), "seconds_per_frame": min(seconds), "seconds_all": seconds,
            "cpu_seconds_per_frame": min(cpu), "cpu_seconds_all": cpu,
            "peak_extra_mib": _maxrss_mib() - base, "labels": soft.argmax(dim=0).tolist()}


def in_radius_pairs(h: int, w: int, radius: float) -> int:
    """Number of (query, key) position pairs of an h x w grid at distance < radius."""
    reach = math.ceil(radius) - 1
    return sum((h - abs(dy)) * (w - abs(dx)) for dy in range(-reach, reach + 1) for dx in range(-reach, reach + 1)
               if dy * dy + dx * dx < radius * radius and abs(dy) < h and abs(dx) < w)


def matmul_work(channels: int, h: int, w: int, context: int, radius: float) -> dict[str, float]:
    """Multiply-add work per frame, in GFLOP: dense kernel, local kernel, least for an exact kernel."""
    hw, gflop = h * w, 2 * channels / 1e9
    tables = KERNELS["local"](radius, 0.1, 15).tables(h, w, torch.device("cpu"))
    return {"dense": gflop * (context + 1) * hw * hw,
            "local": gflop * (hw * hw + context * tables.frame_elements),
            "least": gflop * (hw * hw + context * in_radius_pairs(h, w, radius))}


def matmul_rate(channels: int, hw: int) -> float:
    """Float32 GFLOP/s of one [hw, C] x [C, hw] matmul on this machine (best of 3)."""
    a, b = torch.randn(hw, channels), torch.randn(channels, hw)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(3))
    return 2 * channels * hw * hw / best / 1e9


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _run(args: argparse.Namespace, impl: str, h: int, w: int, frames: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", impl, "--size", f"{h}x{w}", "--channels", str(args.channels),
           "--context", str(args.context), "--frames", str(frames)] + (
        ["--features", args.features] if args.features and (h, w) == tuple(args.size) else [])
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{impl} at {h}x{w} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 60x107, got {text!r}") from None
    return h, w


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=_size, default=(60, 107), help="feature grid h x w (480p at stride 8: 60x107)")
    ap.add_argument("--channels", type=int, default=256)
    ap.add_argument("--context", type=int, default=50)
    ap.add_argument("--frames", type=int, default=2, help="timed frames per kernel run (the fastest is reported)")
    ap.add_argument("--repeat", type=int, default=2,
                    help="runs of each kernel, alternating dense/local so both see the same machine load")
    ap.add_argument("--growth", type=str, default="",
                    help="comma-separated sizes for the memory-growth table (local kernel, and dense up to --size)")
    ap.add_argument("--json", type=str, default="", help="also write all results to this JSON file")
    ap.add_argument("--no-bf16", action="store_true", help="leave out the local kernel's approximate modes")
    ap.add_argument("--search-dims", type=int, default=96,
                    help="the reduced-search mode's principal axes (local-bf16-dD; 0 leaves it out)")
    ap.add_argument("--candidates", type=float, nargs="*", default=[],
                    help="also the reduced search rescoring X x topk candidates instead of 2 (local-bf16-dD-cX), "
                         "for each X given")
    ap.add_argument("--davis-sequence", default="",
                    help="use real features: this DAVIS 2016 sequence's first frames at 480p through the "
                         "committed checkpoint (its feature size replaces --size and --channels)")
    ap.add_argument("--davis-root", default=str(REPO.parent / "shared" / "data" / "DAVIS"))
    ap.add_argument("--features", default="", help=argparse.SUPPRESS)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        h, w = args.size
        print(json.dumps(measure(args.worker, args.channels, h, w, args.context, args.frames, 20, args.features)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        if args.davis_sequence:
            args.features = str(Path(tmp) / "features.pt")
            feats = davis_features(args.davis_root, args.davis_sequence, args.context + 1 + args.frames)
            torch.save(feats, args.features)
            args.channels, args.size = feats.shape[1], tuple(feats.shape[2:])
        report(args)


def davis_features(root: str, name: str, count: int) -> torch.Tensor:
    """[count, C, h, w] float16 embeddings of a DAVIS 2016 sequence's first frames: 480p, the
    committed checkpoint, configs/test_davis16.yaml (the frames are reused if it has fewer)."""
    cfg = load_config(TestConfig, REPO / "configs" / "test_davis16.yaml",
                      [f"data.root={root}", f"model.checkpoint={REPO / 'checkpoints' / 'hvc_bsds_cpu.pth'}"])
    extractor = build_extractor(cfg)
    seq = load_sequences("davis16", cfg.data.root, [name])[0]
    frames = FrameDataset(seq, cfg.data.input_size, cfg.data.mean, cfg.data.std)
    with torch.no_grad():
        out = [extractor(frames[t % len(seq.frames)][None])[0].half() for t in tqdm(range(count), desc=f"encoding {name}")]
    return torch.stack(out)


def report(args: argparse.Namespace) -> None:
    h, w = args.size

    kernels = ("dense", "local") if args.no_bf16 else ("dense", "local", "local-bf16") + (
        (f"local-bf16-d{args.search_dims}",) if args.search_dims else ()) + tuple(
        f"local-bf16-d{args.search_dims}-c{x:g}" for x in (args.candidates if args.search_dims else []))
    runs = [(impl, h, w, args.frames) for _ in range(args.repeat) for impl in kernels]
    for gh, gw in (_size(s) for s in args.growth.split(",") if s):
        if (gh, gw) != (h, w):
            runs += [("local", gh, gw, 1)] + ([("dense", gh, gw, 1)] if gh * gw < h * w else [])
    done = [_run(args, *r) for r in tqdm(runs, desc="benchmark runs")]
    results = []  # one entry per (kernel, size): fastest frame, largest peak
    for r in done:
        same = [x for x in results if (x["impl"], x["size"]) == (r["impl"], r["size"])]
        if same:
            same[0]["seconds_all"] += r["seconds_all"]
            same[0]["cpu_seconds_all"] += r["cpu_seconds_all"]
            same[0]["seconds_per_frame"] = min(same[0]["seconds_all"])
            same[0]["cpu_seconds_per_frame"] = min(same[0]["cpu_seconds_all"])
            same[0]["peak_extra_mib"] = max(same[0]["peak_extra_mib"], r["peak_extra_mib"])
        else:
            results.append(r)

    dense, local = results[0], results[1]
    main_size = results[:len(kernels)]
    source = f"real, DAVIS {args.davis_sequence} at 480p" if args.davis_sequence else "random"
    print(f"\nlabel propagation, features {dense['size']} ({source}), context {args.context}+1, "
          f"{dense['threads']} threads, {torch.__version__}")
    print(f"{'kernel':<15}{'s/frame':>10}{'CPU s/frame':>13}{'peak extra MiB':>16}")
    for r in main_size:
        print(f"{r['impl']:<15}{r['seconds_per_frame']:>10.3f}{r['cpu_seconds_per_frame']:>13.3f}"
              f"{r['peak_extra_mib']:>16.0f}")
    print(f"speed-up local vs dense: {dense['seconds_per_frame'] / local['seconds_per_frame']:.1f}x wall, "
          f"{dense['cpu_seconds_per_frame'] / local['cpu_seconds_per_frame']:.1f}x CPU; "
          f"peak memory ratio: {dense['peak_extra_mib'] / max(local['peak_extra_mib'], 1):.1f}x")
    for low in main_size[2:]:
        differ = sum(a != b for a, b in zip(local["labels"], low["labels"])) / len(local["labels"])
        if args.davis_sequence:  # real features but random masks: the argmax says nothing about labels
            labels = "labels on real videos: scripts/davis_variants.py"
        elif "-d" not in low["impl"]:
            labels = (f"argmax differs at {100 * differ:.2f}% of the query positions (random inputs; real videos: "
                      f"scripts/davis_variants.py)")
        else:
            labels = ("labels: see --davis-sequence or scripts/davis_variants.py (random inputs spread their "
                      "variance over all channels, so a search on a few principal axes is meaningless on them)")
        print(f"{low['impl']} vs exact local: {local['seconds_per_frame'] / low['seconds_per_frame']:.2f}x wall, "
              f"{local['cpu_seconds_per_frame'] / low['cpu_seconds_per_frame']:.2f}x CPU; {labels}")
    work, rate = matmul_work(args.channels, h, w, args.context, 12.0), matmul_rate(args.channels, h * w)
    print(f"matmul work per frame: dense {work['dense']:.0f} GFLOP, local {work['local']:.0f} GFLOP, least for "
          f"an exact kernel {work['least']:.0f} GFLOP; float32 matmul here: {rate:.0f} GFLOP/s "
          f"({work['dense'] / rate:.1f} s dense, {work['least'] / rate:.2f} s least); "
          f"matmul work ratio dense / least: {work['dense'] / work['least']:.1f}x")
    if len(results) > len(kernels):
        print(f"\n{'kernel':<15}{'size':>14}{'positions':>11}{'s/frame':>10}{'peak extra MiB':>16}{'MiB / 1k pos':>14}")
        for r in sorted(results, key=lambda r: (r["impl"], r["positions"])):
            print(f"{r['impl']:<15}{r['size']:>14}{r['positions']:>11}{r['seconds_per_frame']:>10.3f}"
                  f"{r['peak_extra_mib']:>16.0f}{1000 * r['peak_extra_mib'] / r['positions']:>14.1f}")
    if args.json:
        atomic_write_text(args.json, json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(run_main(main))
