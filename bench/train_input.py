"""Cost of the training input pipeline's pieces, per photo, against a training step.

    python bench/train_input.py $HVC_SHARED_DIR/data/Static/JPEGImages/BSDS500 --size 128

On the first ``--images`` photos of DIR (one thread, CPU time of this thread, median over
``--rounds`` passes; the DataLoader workers run single-threaded too):

* decode: PIL (``hvc.data.pairs.load_rgb``, the pipeline's) against torchvision's
  ``decode_jpeg``, and whether their pixels agree;
* reduced-size decoding: PIL ``draft()`` asks libjpeg for the image at 1/2, 1/4 or 1/8 scale.
  Allowed for a sample when both of its crop boxes keep at least ``size`` pixels per side at
  that scale; the crop boxes (and so the crop coordinates) are drawn on the full-size
  header as always, and cut from the reduced image at the scaled (fractional) box, so the
  views' pixels change: the table gives the share of samples that could use it, its time
  and the pixel difference of the views;
* crops: cut and resize in uint8 with PIL, then convert (the pipeline's order), against
  converting the whole photo to float first and resizing with torch (antialiased bilinear);
* a whole item (``StaticImagePairs[i]``: decode, two crops, two views);
* pinned memory: only CUDA copies use it (the engine pins only there), measured when a GPU
  is present.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from _timing import load_line  # noqa: E402

from hvc.data.pairs import StaticImagePairs, collate_pairs, item_rng, load_rgb  # noqa: E402
from hvc.config.training import DataConfig  # noqa: E402
from hvc.data.pairs import RandomResizedCropCoord, resized_crop, sample_crop_box, to_normalized_tensor  # noqa: E402

TRAIN_MEAN, TRAIN_STD = DataConfig().mean, DataConfig().std  # the paper's training statistics


def cpu_ms(fn: Callable[[int], object], n: int, rounds: int) -> float:
    """Median over rounds of the thread CPU time per call, in ms."""
    per = []
    for _ in range(rounds):
        start = time.thread_time()
        for i in range(n):
            fn(i)
        per.append((time.thread_time() - start) / n * 1000)
    return statistics.median(per)


def draft_factor(boxes: list[tuple[int, int, int, int]], size: int) -> int:
    """Largest JPEG scale denominator (1, 2, 4, 8) leaving every box >= size pixels per side."""
    side = min(min(h, w) for _, _, h, w in boxes)
    return max([1] + [r for r in (2, 4, 8) if side / r >= size])


def draft_views(path: str, boxes: list[tuple[int, int, int, int]], size: int) -> tuple[list[Image.Image], int]:
    """The views of ``boxes`` (full-size pixel boxes) cut from a reduced-size decode."""
    with Image.open(path) as im:
        width, height = im.size
        r = draft_factor(boxes, size)
        if r > 1:
            im.draft("RGB", (width // r, height // r))
        img = im.convert("RGB")
    sx, sy = width / img.width, height / img.height
    return [img.resize((size, size), Image.BILINEAR, box=(j / sx, i / sy, (j + w) / sx, (i + h) / sy))
            for i, j, h, w in boxes], r


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", help="folder of training photos")
    parser.add_argument("--size", type=int, default=128, help="crop side (CPU recipe: 128, paper: 256)")
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=16, help="for the per-batch figure")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # as in a DataLoader worker

    dataset = StaticImagePairs(args.root, RandomResizedCropCoord.from_config(DataConfig(size=args.size)), seed=0)
    files = dataset.files[:args.images]
    n = len(files)
    print(f"{n} photos of {args.root}, crops {args.size}; 1 thread; {load_line()}")
    boxes = []
    for i, path in enumerate(files):
        with Image.open(path) as im:
            rng = item_rng(dataset.seed, 0, i)
            boxes.append([sample_crop_box(*im.size, dataset.crop.scale, dataset.crop.ratio, rng) for _ in range(2)])
    decoded = [load_rgb(p) for p in files]

    rows: list[tuple[str, float, str]] = []
    import torchvision.io as tio
    same = sum(np.array_equal(np.asarray(decoded[i]), tio.decode_jpeg(tio.read_file(p)).permute(1, 2, 0).numpy())
               for i, p in enumerate(files))
    rows.append(("decode, PIL (pipeline)", cpu_ms(lambda i: load_rgb(files[i]), n, args.rounds), ""))
    rows.append(("decode, torchvision decode_jpeg", cpu_ms(lambda i: tio.decode_jpeg(tio.read_file(files[i])), n,
                                                           args.rounds),
                 f"pixels identical to PIL on {same}/{n} photos"))

    factors = [draft_factor(b, args.size) for b in boxes]
    reduced = [i for i, r in enumerate(factors) if r > 1]
    diffs = []
    for i in reduced:
        full = [np.asarray(resized_crop(decoded[i], b, args.size), dtype=np.int16) for b in boxes[i]]
        small, _ = draft_views(files[i], boxes[i], args.size)
        diffs += [np.abs(np.asarray(s, dtype=np.int16) - f) for s, f in zip(small, full)]
    note = (f"{len(reduced)}/{n} samples can use it (factors {sorted(set(factors))}); views differ by "
            f"{np.mean([d.mean() for d in diffs]):.2f} grey levels on average, {max(d.max() for d in diffs)} at most"
            if reduced else f"no sample of {n} has both crops >= 2x{args.size} pixels per side")
    rows.append(("decode + 2 crops, PIL draft (opt-in)", cpu_ms(lambda i: draft_views(files[i], boxes[i], args.size),
                                                                 n, args.rounds), note))
    rows.append(("decode + 2 crops, full decode", cpu_ms(
        lambda i: [resized_crop(load_rgb(files[i]), b, args.size) for b in boxes[i]], n, args.rounds), ""))

    def uint8_first(i: int) -> list[torch.Tensor]:
        return [to_normalized_tensor(resized_crop(decoded[i], b, args.size), TRAIN_MEAN, TRAIN_STD) for b in boxes[i]]

    def float_first(i: int) -> list[torch.Tensor]:
        x = torch.from_numpy(np.asarray(decoded[i]).copy()).permute(2, 0, 1).float().div(255)
        return [F.interpolate(x[None, :, a:a + h, b:b + w], size=(args.size, args.size), mode="bilinear",
                              antialias=True, align_corners=False)[0] for a, b, h, w in boxes[i]]

    rows.append(("2 views: uint8 crop, then float (pipeline)", cpu_ms(uint8_first, n, args.rounds), ""))
    rows.append(("2 views: float photo, then crop", cpu_ms(float_first, n, args.rounds), "(not pixel-identical)"))
    item = cpu_ms(lambda i: dataset[i], n, args.rounds)
    rows.append(("whole item StaticImagePairs[i]", item, f"{item * args.batch:.0f} ms CPU per batch of {args.batch}"))
    if torch.cuda.is_available():
        batch = collate_pairs([dataset[i] for i in range(args.batch)])[:4]
        rows.append(("pin_memory of one batch", cpu_ms(lambda i: [t.pin_memory() for t in batch], 5, args.rounds), ""))
    else:
        rows.append(("pin_memory of one batch", float("nan"), "no CUDA here: pinning only speeds host-to-GPU copies"))

    print(f"{'piece':<44} {'ms/photo':>9}  note")
    for name, ms, note in rows:
        print(f"{name:<44} {ms:9.2f}  {note}")
    print(f"after: {load_line()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
