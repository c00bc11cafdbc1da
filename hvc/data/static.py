"""Static-image training pairs (the paper's setting): one image = one sample, two crops.

Every image file (``.jpg/.jpeg/.png/.bmp``, any case, searched recursively) under every
root is a sample, e.g. ``data/Static/JPEGImages/COCO``. Item format, randomness and
``set_epoch``: see :mod:`hvc.data.pairs`.
"""

from __future__ import annotations

import os
from typing import Optional, Sequence

from hvc.data.pairs import IMAGE_EXTENSIONS, Pair, PairDataset, collate_pairs, list_images, load_rgb
from hvc.data.transforms import RandomResizedCropCoord

__all__ = ["StaticImagePairs", "collate_pairs"]


class StaticImagePairs(PairDataset):
    """Two independent random resized crops of each image, with their coordinates.

    ``roots``: image folders (or one path), each existing and holding an image, else ValueError
    naming it; ``crop``, ``seed``: :class:`hvc.data.pairs.PairDataset`. ``dataset[i]``: a Pair or None.
    """

    def __init__(self, roots: Sequence[str] | str | os.PathLike, crop: RandomResizedCropCoord, seed: int):
        super().__init__(crop, seed)
        roots = [roots] if isinstance(roots, (str, os.PathLike)) else list(roots)
        if not roots:
            raise ValueError("no training image folder given (roots is empty)")
        self.files: list[str] = []
        for root in roots:
            if not os.path.isdir(root):
                raise ValueError(f"training image folder {root} does not exist or is not a folder")
            found = list_images(root)
            if not found:
                raise ValueError(f"no images ({'/'.join(IMAGE_EXTENSIONS)}) found under training folder {root}")
            self.files += found
        self.roots = [str(r) for r in roots]

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> Optional[Pair]:
        rng = self.rng(index)
        img = load_rgb(self.files[index])
        return None if img is None else self.make_pair(img, img, rng)
