"""test.py's pipeline on real DAVIS frames, stage by stage: where the time of a frame goes.

    python bench/end_to_end.py                                   # dog, 60 frames, 480p, exact vs fused
    python bench/end_to_end.py --sequences cows --frames 30 --encoder exact fused bf16
    python bench/end_to_end.py --frames 12 --overlap              # also test.py's own loop, workers 0 / 2
    python bench/end_to_end.py --encoder exact bf16/bf16          # bf16 encoder + bf16 propagation (opt-in)
    python bench/end_to_end.py --encoder exact bf16/bf16 bf16/bf16/96   # ... + search on 96 principal axes
    python bench/end_to_end.py --encoder bf16/bf16/96 bf16/bf16/64/1    # ... 64 axes, topk candidates rescored

The stages are the pipeline's own functions (configs/test_davis16.yaml, the paper's protocol):
decode (``FrameDataset[t]``, plus the first-frame mask), encoder (``FeatureExtractor`` of
``build_extractor``, batches of ``data.batch_size``), propagation (``VideoSegmenter.step_features``),
up-sampling + argmax (``hvc.propagation.upsample_argmax``, the writer's path; the all-channel
``upsample_labels`` it replaced is timed beside it) and PNG writing (``save_indexed_png`` to a
temporary folder). Frames are decoded in the main process here, so stages do not overlap.

Several ``--encoder`` modes run in lockstep on the same decoded batch (each with its own
propagator), so their times are side by side; their written labels are compared pixel by
pixel with the first mode's. A mode is ``run.encoder`` (exact, fused, bf16), optionally
followed by ``/`` and the propagation's ``prop.precision`` (fp32, the default, or bf16), and
optionally by ``/`` and ``prop.search_dims`` (the reduced search, docs/local_kernel.md) and
by ``/`` and ``prop.candidates`` (candidates rescored, in units of topk).

The estimate for all frames of the DAVIS root's sequences (645 for the 10 DAVIS 2016
sequences under $HVC_SHARED_DIR/data/DAVIS)
takes the measured per-frame means of decode, encoder, up-sampling and writing, and for
propagation a least-squares fit ``a + b * n`` on the number ``n`` of distinct context frames
(propagation cost grows with n until the context of 50 frames is full), evaluated at every
frame of every sequence.

``--overlap`` then runs ``hvc.inference.segment_clip`` itself (test.py's loop, with its
DataLoader) on the first frames with ``data.workers`` 0 and 2, alternately: whether the
loader's prefetching hides the decoding behind the compute on this machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from _timing import load_line  # noqa: E402

from hvc.cli import keep_freed_memory  # noqa: E402
from hvc.config.core import load_config  # noqa: E402
from hvc.config.inference import TestConfig  # noqa: E402
from hvc.data.palette import save_indexed_png  # noqa: E402
from hvc.data.vos import FrameDataset, load_sequences, read_label_map  # noqa: E402
from hvc.inference import build_extractor, segment_clip  # noqa: E402
from hvc.propagation import upsample_argmax, upsample_labels  # noqa: E402
from hvc.segmenter import VideoSegmenter  # noqa: E402
from hvc.tasks.clips import VOSClip, vos_outputs  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
STAGES = ("decode", "encoder", "propagation", "upsample+argmax", "png")
OFFICIAL_PROPAGATION_S = 23.3  # the paper's code, per 480p frame on 2 cores (docs/speed.md)


ENCODERS, PRECISIONS = ("exact", "fused", "bf16"), ("fp32", "bf16")


def parse_mode(mode: str) -> tuple[str, str, str, str]:
    """``ENCODER[/PRECISION[/DIMS[/CANDIDATES]]]`` -> (encoder, precision or "", search dims or
    "", candidates or "")."""
    encoder, _, rest = mode.partition("/")
    precision, _, rest = rest.partition("/")
    dims, _, candidates = rest.partition("/")
    return encoder, precision, dims, candidates


def _at_least_one(text: str) -> bool:
    try:
        return float(text) >= 1
    except ValueError:
        return False


def valid_mode(mode: str) -> bool:
    encoder, precision, dims, candidates = parse_mode(mode)
    return (encoder in ENCODERS and precision in PRECISIONS + ("",) and (dims == "" or dims.isdigit())
            and (candidates == "" or _at_least_one(candidates)))


def build_config(args: argparse.Namespace, mode: str, workers: int = 0) -> TestConfig:
    """The config of a mode ``ENCODER[/PRECISION[/DIMS[/CANDIDATES]]]``: run.encoder,
    prop.precision, prop.search_dims and prop.candidates (DIMS may be empty: bf16/bf16//1)."""
    encoder, precision, dims, candidates = parse_mode(mode)
    overrides = [f"data.root={args.davis_root}", f"data.input_size={args.input_size}", f"model.name={args.model}",
                 f"data.workers={workers}", f"data.batch_size={args.batch}"]
    if args.checkpoint:
        overrides.append(f"model.checkpoint={args.checkpoint}")
    mode_keys = ([f"run.encoder={encoder}"] + ([f"prop.precision={precision}"] if precision else [])
                 + ([f"prop.search_dims={dims}"] if dims else [])
                 + ([f"prop.candidates={candidates}"] if candidates else []))
    return load_config(TestConfig, REPO / "configs" / "test_davis16.yaml", overrides + args.overrides + mode_keys)


def make_segmenter(cfg: TestConfig) -> VideoSegmenter:
    return VideoSegmenter(cfg.prop)


def distinct_context(t: int, context: int) -> int:
    """Distinct frames in the context of frame t of a one-reference video (0 at frame 0)."""
    return 0 if t == 0 else len({0} | {max(s, 0) for s in range(t - context, t)})


class Timer:
    """Accumulates wall seconds and process CPU seconds (all threads) per (mode, stage).

    On a loaded machine the wall time of many small multi-threaded operations suffers more
    than that of a few large ones (each parallel region waits for its slowest thread); CPU
    time is less sensitive to the load, so both are reported.
    """

    def __init__(self) -> None:
        self.seconds: dict[tuple[str, str], list[float]] = defaultdict(list)
        self.cpu: dict[tuple[str, str], list[float]] = defaultdict(list)

    def time(self, mode: str, stage: str, fn, *args):
        start, start_cpu = time.perf_counter(), time.process_time()
        out = fn(*args)
        self.seconds[mode, stage].append(time.perf_counter() - start)
        self.cpu[mode, stage].append(time.process_time() - start_cpu)
        return out


def staged_run(args: argparse.Namespace, out: Path) -> tuple[Timer, dict, dict]:
    """The stage-by-stage loop; returns timings, propagation samples (n, s) and label differences per mode."""
    cfgs = {mode: build_config(args, mode) for mode in args.encoder}
    extractors = {mode: build_extractor(cfg) for mode, cfg in cfgs.items()}
    segmenters = {mode: make_segmenter(cfg) for mode, cfg in cfgs.items()}
    first = args.encoder[0]
    cfg = cfgs[first]
    timer = Timer()
    prop_samples: dict[str, list[tuple[int, float, float]]] = defaultdict(list)  # (n, wall s, CPU s)
    differing = {mode: [0, 0] for mode in args.encoder}  # pixels differing from the first mode, pixels compared
    for seq in load_sequences("davis16", cfg.data.root, args.sequences):
        n = min(len(seq.frames), args.frames or len(seq.frames))
        frames = FrameDataset(seq, cfg.data.input_size, cfg.data.mean, cfg.data.std)
        for p in segmenters.values():
            p.reset()
        for start in range(0, n, cfg.data.batch_size):
            ts = range(start, min(start + cfg.data.batch_size, n))
            batch = timer.time("all", "decode", lambda: torch.stack([frames[t] for t in ts]))
            labels0 = None
            if start == 0:
                labels0 = timer.time("all", "decode", lambda: torch.from_numpy(
                    read_label_map(seq.annotations[0], seq.mask_format, frames.size)))
            embs = {mode: timer.time(mode, "encoder", extractors[mode], batch) for mode in args.encoder}
            for i, t in enumerate(ts):
                written = {}
                for mode in args.encoder:
                    soft = timer.time(mode, "propagation", segmenters[mode].step_features, embs[mode][i],
                                      labels0 if t == 0 else None)
                    prop_samples[mode].append((distinct_context(t, cfg.prop.context),
                                               timer.seconds[mode, "propagation"][-1],
                                               timer.cpu[mode, "propagation"][-1]))
                    pred = timer.time(mode, "upsample+argmax", lambda: upsample_argmax(soft, frames.size).cpu().numpy())
                    timer.time(mode, "all-channel upsample_labels",
                               lambda: upsample_labels(soft, frames.size)[0].cpu().numpy())
                    png = out / mode.replace("/", "+") / seq.name / f"{seq.frame_name(t)}.png"
                    timer.time(mode, "png", save_indexed_png, png, pred)
                    written[mode] = pred
                for mode in args.encoder:
                    differing[mode][0] += int(np.count_nonzero(written[mode] != written[first]))
                    differing[mode][1] += written[first].size
            print(f"  {seq.name}: frames {ts.start}-{ts.stop - 1} done", file=sys.stderr, flush=True)
    return timer, prop_samples, differing


def fit_propagation(samples: list[tuple[int, float]]) -> tuple[float, float, float, int]:
    """Least squares ``s = a + b * n`` over frames with a context (n >= 1); mean time of frame 0; max n seen."""
    ctx = [(n, s) for n, s in samples if n > 0]
    first = [s for n, s in samples if n == 0]
    ns = np.array([n for n, _ in ctx], dtype=float)
    ss = np.array([s for _, s in ctx])
    b, a = np.polyfit(ns, ss, 1) if len(set(ns.tolist())) >= 2 else (0.0, 0.0)
    if b <= 0:  # too few or too noisy samples for a slope: a flat mean
        a, b = float(ss.mean()) if len(ss) else 0.0, 0.0
    return float(a), float(b), float(np.mean(first)) if first else 0.0, int(ns.max()) if len(ns) else 0


def report(args: argparse.Namespace, timer: Timer, prop_samples: dict, differing: dict) -> None:
    cfg = build_config(args, args.encoder[0])
    all_seqs = load_sequences("davis16", cfg.data.root)
    lengths = [len(s.frames) for s in all_seqs]
    frames = len(prop_samples[args.encoder[0]])
    per, cpu = {}, {}
    for mode in args.encoder:
        per[mode] = {s: float(np.sum(timer.seconds[mode if s != "decode" else "all", s])) / frames for s in STAGES}
        cpu[mode] = {s: float(np.sum(timer.cpu[mode if s != "decode" else "all", s])) / frames for s in STAGES}
    print(f"\n{frames} frames of {', '.join(args.sequences)} at input size {args.input_size}; "
          f"{torch.get_num_threads()} threads; {load_line()}")
    print("wall seconds per frame (share of the frame) and CPU seconds per frame (all threads), per mode")
    width = max(20, *(len(mode) + 10 for mode in args.encoder))  # each column fits its mode's name
    print(f"{'stage':<18}" + "".join(f"{mode + ' s/frame':>{width}}{'share':>7}{'CPU s':>8}" for mode in args.encoder))
    for stage in STAGES:
        row = f"{stage:<18}"
        for mode in args.encoder:
            total = sum(per[mode].values())
            row += f"{per[mode][stage]:{width}.3f}{100 * per[mode][stage] / total:6.1f}%{cpu[mode][stage]:8.3f}"
        print(row)
    print(f"{'total':<18}" + "".join(f"{sum(per[m].values()):{width}.3f}{'':>7}{sum(cpu[m].values()):8.3f}"
                                     for m in args.encoder))
    for mode in args.encoder:
        old = float(np.sum(timer.seconds[mode, "all-channel upsample_labels"])) / frames
        old_cpu = float(np.sum(timer.cpu[mode, "all-channel upsample_labels"])) / frames
        new, new_cpu = per[mode]["upsample+argmax"], cpu[mode]["upsample+argmax"]
        print(f"{mode}: up-sampling + argmax {new * 1000:.1f} ms/frame ({new_cpu * 1000:.1f} ms CPU) against "
              f"{old * 1000:.1f} ms ({old_cpu * 1000:.1f} ms CPU) for the all-channel upsample_labels "
              f"({old / new:.1f}x wall, {old_cpu / new_cpu:.1f}x CPU)")
    base = args.encoder[0]
    for mode in args.encoder[1:]:
        enc = per[base]["encoder"] / per[mode]["encoder"]
        tot = sum(per[base].values()) / sum(per[mode].values())
        diff, total = differing[mode]
        print(f"{mode} vs {base}: encoder {enc:.2f}x, frame {tot:.2f}x faster; labels differ at {diff} of {total} "
              f"pixels ({100 * diff / total:.4f} %)")
    threads = torch.get_num_threads()
    print(f"\nestimate for the {sum(lengths)} frames of the {len(lengths)} sequences in {cfg.data.root} "
          f"(as measured: wall time; on idle cores: CPU time / {threads} threads, if the threads scaled perfectly):")
    for mode in args.encoder:
        for label, column, seconds, scale in (("as measured", 1, per, 1), ("idle cores", 2, cpu, threads)):
            a, b, first, n_max = fit_propagation([(s[0], s[column]) for s in prop_samples[mode]])
            prop = sum(first if t == 0 else a + b * distinct_context(t, cfg.prop.context)
                       for length in lengths for t in range(length)) / scale
            rest = sum(lengths) * sum(seconds[mode][s] for s in STAGES if s != "propagation") / scale
            note = "" if n_max >= cfg.prop.context + 1 else f"; extrapolated: measured contexts up to {n_max} frames"
            print(f"  {mode}, {label}: {(prop + rest) / 60:.1f} min = propagation {prop / 60:.1f} min "
                  f"({prop / sum(lengths):.2f} s/frame{note}) + the other stages {rest / 60:.1f} min")
    print(f"  (the official code's propagation alone: {OFFICIAL_PROPAGATION_S} s/frame on 2 cores, "
          f"{OFFICIAL_PROPAGATION_S * sum(lengths) / 60:.0f} min)")


def overlap_run(args: argparse.Namespace, out: Path) -> None:
    """test.py's loop (segment_clip) with 0 and 2 loader workers, alternately."""
    mode = args.encoder[0]
    walls: dict[int, list[float]] = defaultdict(list)
    seq = load_sequences("davis16", args.davis_root, args.sequences[:1])[0]
    n = min(len(seq.frames), args.frames or len(seq.frames))
    seq = dataclasses.replace(seq, frames=seq.frames[:n], outputs=tuple(range(n)))
    extractor = build_extractor(build_config(args, mode))
    for _ in range(args.overlap_rounds):
        for workers in (0, 2):
            cfg = build_config(args, mode, workers)
            start = time.perf_counter()
            clip = VOSClip(seq, vos_outputs(out, "davis16", seq), cfg.prop.num_classes)
            segment_clip(clip, VideoSegmenter(cfg.prop, extractor), out / f"overlap{workers}", cfg)
            walls[workers].append(time.perf_counter() - start)
    w0, w2 = (float(np.median(walls[w])) / n for w in (0, 2))
    print(f"\ntest.py's loop on {n} frames of {seq.name} ({mode}; median of {args.overlap_rounds}): "
          f"workers 0 {w0:.3f} s/frame, workers 2 {w2:.3f} s/frame ({w0 / w2:.3f}x); {load_line()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--davis-root", default=str(REPO.parent / "shared" / "data" / "DAVIS"))
    parser.add_argument("--sequences", nargs="+", default=["dog"], help="DAVIS 2016 val sequences")
    parser.add_argument("--frames", type=int, default=60, help="first N frames of each sequence (0 = all)")
    parser.add_argument("--input-size", type=int, default=-1, help="shorter side; -1 = full 480p (the paper's)")
    parser.add_argument("--model", default="hvc")
    parser.add_argument("--checkpoint", default=str(REPO / "checkpoints" / "hvc_bsds_cpu.pth"))
    parser.add_argument("--encoder", nargs="+", default=["exact", "fused"],
                        help="modes ENCODER[/PRECISION[/DIMS[/CANDIDATES]]]: run.encoder (exact, fused, bf16), "
                             "prop.precision (fp32, bf16), prop.search_dims (a number) and prop.candidates "
                             "(at least 1), side by side; the first is the reference")
    parser.add_argument("--batch", type=int, default=4, help="data.batch_size")
    parser.add_argument("--overlap", action="store_true", help="also time test.py's loop with 0 and 2 workers")
    parser.add_argument("--overlap-rounds", type=int, default=2)
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="more TestConfig overrides")
    args = parser.parse_intermixed_args(argv)
    for key in ("sequences", "encoder"):  # list options are greedy: key=value items after them are overrides
        args.overrides += [v for v in getattr(args, key) if "=" in v]
        setattr(args, key, [v for v in getattr(args, key) if "=" not in v])
    bad = [m for m in args.encoder if not valid_mode(m)]
    if bad:
        parser.error(f"--encoder: unknown mode(s) {bad}; choose ENCODER[/PRECISION[/DIMS[/CANDIDATES]]] from "
                     f"{', '.join(ENCODERS)}, {', '.join(PRECISIONS)}, a number and a number >= 1, e.g. "
                     f"fused/bf16, bf16/bf16/96 or bf16/bf16/64/1")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}; {load_line()}")
    with tempfile.TemporaryDirectory() as tmp:
        timer, prop_samples, differing = staged_run(args, Path(tmp))
        report(args, timer, prop_samples, differing)
        if args.overlap:
            overlap_run(args, Path(tmp))
    return 0


if __name__ == "__main__":
    keep_freed_memory()  # as test.py does (hvc.cli.run_main)
    sys.exit(main())
