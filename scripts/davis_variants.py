"""Propagation variants on DAVIS from one encoding of each sequence: first-frame prompts
(full mask, generated scribbles) and context policies, scored with the J&F of eval_metrics.py.

    python scripts/davis_variants.py --config configs/test_davis16.yaml \\
        --checkpoint checkpoints/hvc_bsds_cpu.pth --input-size 240 --output results/variants_240 \\
        --variants mask scribble scribble2 [--sequences a b] [key=value ...]

Each sequence is encoded once, exactly as test.py encodes it (same config, loader and batches,
so the ``mask`` variant reproduces test.py's PNGs), and every variant propagates from those
embeddings into ``<output>/<variant>/<sequence>/``. Variants:

- ``mask``: the first-frame ground truth (the benchmark protocol).
- ``scribble``: scribbles generated from the first-frame ground truth (hvc.scribbles.scribbles_from_mask,
  written to ``<output>/scribbles/<sequence>.png`` and ``.json``), frame 0 filled in from them
  (hvc/scribbles/fill.py), then propagated; ``scribble2``: the same with the two-stage fill.
- ``recent10``, ``quality10`` (and its eviction rules): other context policies, full mask.
- ``bf16``: the full mask, propagated by the local kernel's approximate bf16 mode
  (``prop.precision=bf16``, docs/local_kernel.md); ``bf16-d96``: the same with the search
  on 96 principal axes (``prop.search_dims=96``); ``bf16-d64-c1.5`` and the like: on 64 axes,
  rescoring 1.5 x topk candidates (``prop.candidates=1.5``) instead of twice topk.

Prints a table (J&F, J, F, frame-0 J, propagation ms/frame, context held, and the share of
pixels whose label differs from the ``mask`` variant's when both ran) and writes it to
``<output>/summary.json``. A finished (variant, sequence) is not redone.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from hvc.config.core import load_config
from hvc.config.inference import TestConfig
from hvc.data.sequence import read_label_png
from hvc.data.palette import save_indexed_png
from hvc.data.vos import DatasetError, FrameDataset, VideoSequence, load_sequences, read_label_map
from hvc.fileio import atomic_path, atomic_write_text
from hvc.inference import build_extractor
from hvc.metrics import evaluate, global_table
from hvc.propagation import LabelPropagator
from hvc.scribbles import render, save_davis_json, save_png, scribbles_from_mask
from hvc.scribbles.fill import FillConfig, labels_from_scribbles
from hvc.segmenter import VideoSegmenter


@dataclass
class Variant:
    """How one variant starts (prompt) and which propagator it runs."""

    prompt: str  # "mask" or "scribble"
    make: Callable[[TestConfig], VideoSegmenter]
    fill: FillConfig = field(default_factory=FillConfig)


def _propagator(**changes) -> Callable[[TestConfig], VideoSegmenter]:
    """The config's propagation with ``changes`` to its fields (quality: a dict of QualityConfig changes)."""
    def make(cfg: TestConfig) -> VideoSegmenter:
        fields = dict(changes)
        if "quality" in fields:
            fields["quality"] = dataclasses.replace(cfg.prop.quality, **fields["quality"])
        return VideoSegmenter(dataclasses.replace(cfg.prop, **fields))
    return make


VARIANTS: dict[str, Variant] = {
    "mask": Variant("mask", _propagator()),  # the config's protocol: recent, context 50
    "scribble": Variant("scribble", _propagator()),
    "scribble2": Variant("scribble", _propagator(), FillConfig(reliable=0.95)),
    "recent10": Variant("mask", _propagator(context=10)),
    "quality10": Variant("mask", _propagator(context=10, memory="quality")),
    "quality10-oldest": Variant("mask", _propagator(context=10, memory="quality", quality={"evict": "oldest"})),
    "quality10-worst": Variant("mask", _propagator(context=10, memory="quality", quality={"evict": "worst"})),
    "bf16": Variant("mask", _propagator(precision="bf16")),
    "bf16-d96": Variant("mask", _propagator(precision="bf16", search_dims=96)),
    "bf16-d96-c1": Variant("mask", _propagator(precision="bf16", search_dims=96, candidates=1.0)),
    "bf16-d64-c1.5": Variant("mask", _propagator(precision="bf16", search_dims=64, candidates=1.5)),
    "bf16-d64-c1": Variant("mask", _propagator(precision="bf16", search_dims=64, candidates=1.0)),
}
# Scribbles are drawn 3 pixels wide (a thin pen on a 480p frame), the generator's defaults.
SCRIBBLE_THICKNESS = 3


def context_mib(prop: LabelPropagator) -> float:
    """What the propagator holds for its context, in MiB: soft masks, keys (embeddings) and,
    for the local kernel, its blocks of key tiles."""
    held = sum(m.nbytes for m in prop.store.values())
    for f in prop.memory:
        form = prop.memory[f]
        held += getattr(form, "flat", form).nbytes
    held += sum(b.nbytes for b in getattr(prop.memory, "blocks", {}).values())
    return held / 2**20


def scribbles_for(seq: VideoSequence, size: tuple[int, int], folder: Path) -> np.ndarray:
    gt = read_label_map(seq.annotations[0], seq.mask_format, size)
    strokes = scribbles_from_mask(gt.astype(np.uint8))
    scribbles = render(strokes, size, SCRIBBLE_THICKNESS)
    save_png(folder / f"{seq.name}.png", scribbles)
    save_davis_json(folder / f"{seq.name}.json", strokes, size, len(seq.frames), seq.name)
    return scribbles


def differing_pixels(out: Path, variant: str, sequences: list[VideoSequence]) -> float:
    """Share of the pixels of frames 1.. whose label differs between ``variant``'s PNGs and the
    ``mask`` variant's."""
    differ = total = 0
    for seq in sequences:
        for t in range(1, len(seq.frames)):
            name = f"{seq.frame_name(t)}.png"
            a, b = (read_label_png(out / v / seq.name / name, DatasetError) for v in (variant, "mask"))
            differ += int(np.count_nonzero(a != b))
            total += a.size
    return differ / total


def run_variant(name: str, variant: Variant, cfg: TestConfig, seq: VideoSequence, embs: list[torch.Tensor],
                size: tuple[int, int], out: Path, scribbles: np.ndarray) -> dict:
    """Propagate one sequence; write its PNGs; return timing and frame-0 agreement."""
    seg = variant.make(cfg)
    prop = seg.propagator  # read only: what it holds, its policy's scores
    gt = torch.from_numpy(read_label_map(seq.annotations[0], seq.mask_format, size))
    if variant.prompt == "mask":
        first = gt
    else:
        first = labels_from_scribbles(embs[0], scribbles, prop.num_classes, variant.fill)
    objects = [i for i in gt.unique().tolist() if i > 0]
    j0 = float(np.mean([((first == i) & (gt == i)).sum().item() / ((first == i) | (gt == i)).sum().item()
                        for i in objects]))
    folder = out / name / seq.name
    seconds, held = [], 0.0
    for t, emb in enumerate(embs):
        start = time.perf_counter()
        soft = seg.step_features(emb, first if t == 0 else None)
        seconds.append(time.perf_counter() - start)
        held = max(held, context_mib(prop))
        save_indexed_png(folder / f"{seq.frame_name(t)}.png", seg.ids(soft, size))
    record = {"frames": len(embs), "frame0_J": j0, "propagation_s": sum(seconds[1:]),
              "context_mib_peak": held, "scores": getattr(prop.policy, "scores", None),
              "long_term": getattr(prop.policy, "long_term", None)}
    atomic_write_text(folder / "done.json", json.dumps(record))
    return record


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--checkpoint")
    parser.add_argument("--model")
    parser.add_argument("--input-size", type=int)
    parser.add_argument("--output", required=True)
    parser.add_argument("--variants", nargs="+", default=["mask", "scribble"], help=f"of {sorted(VARIANTS)}")
    parser.add_argument("--sequences", nargs="+")
    parser.add_argument("--cache", help="folder to keep each sequence's embeddings in (reused by later runs)")
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_intermixed_args(argv)
    # --variants / --sequences are greedy: key=value items after them are overrides
    extra = [s for s in [*args.variants, *(args.sequences or [])] if "=" in s]
    args.variants = [s for s in args.variants if "=" not in s]
    args.sequences = [s for s in args.sequences or [] if "=" not in s]
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; choose from {sorted(VARIANTS)}")
    overrides = list(args.overrides) + extra
    for flag, key in (("checkpoint", "model.checkpoint"), ("model", "model.name"), ("input_size", "data.input_size")):
        if getattr(args, flag) is not None:
            overrides.append(f"{key}={getattr(args, flag)}")
    cfg = load_config(TestConfig, args.config, overrides)
    out = Path(args.output)
    sequences = load_sequences(cfg.data.dataset, cfg.data.root, args.sequences or cfg.data.sequences)
    extractor = None
    records: dict[str, dict[str, dict]] = {v: {} for v in args.variants}
    for seq in tqdm(sequences, desc="sequences", unit="seq"):
        todo = []
        for v in args.variants:
            done = out / v / seq.name / "done.json"
            if done.is_file():
                records[v][seq.name] = json.loads(done.read_text())
            else:
                todo.append(v)
        if not todo:
            continue
        frames = FrameDataset(seq, cfg.data.input_size, cfg.data.mean, cfg.data.std)
        tag = f"{cfg.model.name}-{Path(cfg.model.checkpoint or 'default').stem}-{cfg.data.input_size}"
        cached = Path(args.cache) / f"{seq.name}_{tag}.pt" if args.cache else None
        start = time.perf_counter()
        if cached is not None and cached.is_file():
            embs = list(torch.load(cached, map_location="cpu", weights_only=True))  # tensors only: no code runs
        else:
            extractor = extractor or build_extractor(cfg)
            loader = DataLoader(frames, batch_size=cfg.data.batch_size, num_workers=0)
            embs = [e for batch in loader for e in extractor(batch)]
            if cached is not None:
                with atomic_path(cached) as tmp:
                    torch.save(torch.stack(embs), tmp)
        encode_s = time.perf_counter() - start
        scribbles = scribbles_for(seq, frames.size, out / "scribbles")
        for v in todo:
            records[v][seq.name] = run_variant(v, VARIANTS[v], cfg, seq, embs, frames.size, out, scribbles)
            records[v][seq.name]["encode_s"] = encode_s
    year = {"davis16": 2016, "davis17": 2017}[cfg.data.dataset]
    rows = {}
    names = [s.name for s in sequences]
    for v in args.variants:
        objects = evaluate(cfg.data.root, out / v, year, "val", names, progress=False)
        g = global_table(objects).iloc[0]
        recs = records[v].values()
        frames = sum(r["frames"] - 1 for r in recs)
        rows[v] = {"J&F": float(g["J&F-Mean"]), "J": float(g["J-Mean"]), "F": float(g["F-Mean"]),
                   "frame0_J": float(np.mean([r["frame0_J"] for r in recs])),
                   "propagation_ms_per_frame": 1000 * sum(r["propagation_s"] for r in recs) / frames,
                   "context_mib_peak": max(r["context_mib_peak"] for r in recs),
                   "differ_from_mask": differing_pixels(out, v, sequences) if "mask" in args.variants else None}
    print(f"\n{'variant':<12} {'J&F':>6} {'J':>6} {'F':>6} {'frame-0 J':>9} {'prop ms/frame':>13} {'context MiB':>11}"
          f" {'px != mask':>10}")
    for v, r in rows.items():
        differ = "" if r["differ_from_mask"] is None else f"{100 * r['differ_from_mask']:.3f}%"
        print(f"{v:<12} {r['J&F']:>6.3f} {r['J']:>6.3f} {r['F']:>6.3f} {r['frame0_J']:>9.3f} "
              f"{r['propagation_ms_per_frame']:>13.0f} {r['context_mib_peak']:>11.1f} {differ:>10}")
    atomic_write_text(out / "summary.json", json.dumps({"config": args.config, "overrides": overrides, "variants": rows},
                                                         indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
