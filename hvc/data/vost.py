"""VOST (Video Object Segmentation under Transformations): a DAVIS-like layout with sparse annotations
(docs/tasks.md). The later annotations are the ground truth, so predictions are written for them only."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from hvc.data.sequence import DatasetError, VideoSequence, check_no_gaps, missing_dataset_hint
from hvc.names import read_name_list


def vost_sequences(root: str | os.PathLike, split: str = "val", wanted: Sequence[str] = ()) -> list[VideoSequence]:
    """The sequences of ``ImageSets/<split>.txt``: frames from the first annotated one on,
    the first annotation as input, the annotated frames as outputs."""
    root = Path(root)
    listing = root / "ImageSets" / f"{split}.txt"
    if not listing.is_file():
        raise DatasetError(f"sequence list not found: {listing} (is {root} a VOST root? {missing_dataset_hint(root)})")
    names = read_name_list(listing, DatasetError)  # plain folder names (hvc.names)
    missing = [w for w in wanted if w not in names]
    if missing:
        raise DatasetError(f"sequence(s) {', '.join(missing)} not in {listing}")
    sequences = []
    for name in (n for n in names if not wanted or n in wanted):
        image_dir, label_dir = root / "JPEGImages" / name, root / "Annotations" / name
        frames = sorted(image_dir.glob("*.jpg")) if image_dir.is_dir() else []
        if not frames:
            raise DatasetError(f"no .jpg frames in {image_dir}")
        labels = sorted(label_dir.glob("*.png")) if label_dir.is_dir() else []
        if not labels:
            raise DatasetError(f"no annotations in {label_dir}")
        index = {p.stem: t for t, p in enumerate(frames)}
        orphans = [p for p in labels if p.stem not in index]
        if orphans:
            raise DatasetError(f"{orphans[0]}: no frame {orphans[0].stem}.jpg in {image_dir}")
        start = index[labels[0].stem]
        frames, outputs = frames[start:], tuple(index[p.stem] - start for p in labels)
        check_no_gaps(frames, name, max(outputs))  # frames between the annotations are all there
        sequences.append(VideoSequence(name, tuple(frames), {0: labels[0]}, outputs, "palette"))
    return sequences
