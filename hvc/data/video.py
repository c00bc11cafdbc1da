"""Video training pairs: crops of two nearby frames of the same video.

``root`` holds one folder of frames per video (``<root>/<video>/<frame>.jpg``: the
YouTube-VOS ``train_all_frames/JPEGImages`` layout, DAVIS ``JPEGImages/480p``, or any such
tree). Frames are ordered by file name.

One sample per **video** (an epoch visits each video once, as static training visits each
image once): item i draws a frame t1 of video i uniformly, then t2 != t1 uniformly among
the frames at most ``max_gap`` away (t2 = t1 for a one-frame video), and crops each frame
independently. Item format, randomness and ``set_epoch``: see :mod:`hvc.data.pairs`.
"""

from __future__ import annotations

import os
import random
import warnings
from typing import Optional

from hvc.data.pairs import Pair, PairDataset, collate_pairs, list_images, load_rgb
from hvc.data.transforms import RandomResizedCropCoord

__all__ = ["VideoFramePairs", "collate_pairs", "pick_frame_pair"]


def pick_frame_pair(num_frames: int, max_gap: int, rng: random.Random) -> tuple[int, int]:
    """(t1, t2): t1 uniform, t2 != t1 uniform within ``max_gap`` of t1 (t1 if there is none)."""
    t1 = rng.randrange(num_frames)
    near = [t for t in range(max(0, t1 - max_gap), min(num_frames, t1 + max_gap + 1)) if t != t1]
    return t1, (rng.choice(near) if near else t1)


class VideoFramePairs(PairDataset):
    """Two frames of one video, at most ``max_gap`` (>= 1) apart, each with its own random crop.

    ``root``: folder of frame folders, holding at least one with frames, else ValueError naming
    it (sub-folders without frames are ignored, one warning); ``crop``, ``seed``:
    :class:`hvc.data.pairs.PairDataset`. ``dataset[i]``: a Pair, or None if a frame is unreadable.
    """

    def __init__(self, root: str | os.PathLike, crop: RandomResizedCropCoord, max_gap: int, seed: int):
        super().__init__(crop, seed)
        if max_gap < 1:
            raise ValueError(f"max_gap must be at least 1, got {max_gap}")
        if not os.path.isdir(root):
            raise ValueError(f"video frame folder {root} does not exist or is not a folder")
        self.root = str(root)
        self.max_gap = max_gap
        self.videos: list[tuple[str, list[str]]] = []
        empty = []
        for entry in sorted(os.scandir(root), key=lambda e: e.name):
            if entry.is_dir():
                frames = list_images(entry.path, recursive=False)
                if frames:
                    self.videos.append((entry.name, frames))
                else:
                    empty.append(entry.name)
        if not self.videos:
            raise ValueError(f"no <video>/<frame> image folders found under video frame folder {root}")
        if empty:
            warnings.warn(f"{len(empty)} folder(s) without frames under {root} ignored, e.g. {empty[0]}",
                          RuntimeWarning, stacklevel=2)

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, index: int) -> Optional[Pair]:
        rng = self.rng(index)
        frames = self.videos[index][1]
        t1, t2 = pick_frame_pair(len(frames), self.max_gap, rng)
        img1 = load_rgb(frames[t1])
        img2 = load_rgb(frames[t2]) if img1 is not None else None
        return None if img2 is None else self.make_pair(img1, img2, rng)
