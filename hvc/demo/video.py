"""The demo's deterministic synthetic video with exact masks (docs/demo.md): two textured objects moving over a
panning photo, all from scikit-image's photos, written in the DAVIS 2017 layout."""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
from PIL import Image

from hvc.data.palette import save_indexed_png
from hvc.fileio import atomic_path, atomic_write_text


@functools.lru_cache(maxsize=1)
def photos() -> dict[str, np.ndarray]:
    """The colour photographs shipped inside scikit-image (no download), as RGB uint8 (cached: read only)."""
    from skimage import data

    names = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina",
             "colorwheel", "cat")
    out = {name: np.ascontiguousarray(getattr(data, name)()[..., :3]) for name in names}
    out["motorcycle_left"], out["motorcycle_right"], _ = data.stereo_motorcycle()
    return out


# Each object: its texture, base radius (fraction of the frame height), then (first frame, last frame)
# values of its centre x and y (fractions of the width / height), scale and rotation (degrees).
TRACKS = (("chelsea", 0.24, (0.28, 0.62), (0.45, 0.55), (1.0, 1.25), (0.0, 12.0)),
          ("astronaut", 0.18, (0.78, 0.40), (0.62, 0.38), (1.1, 0.85), (0.0, -10.0)))


def _blob_mask(size: int, rng: np.random.RandomState) -> np.ndarray:
    """A smooth closed random outline filling most of a size x size square: uint8 {0, 1}."""
    angles = np.linspace(0, 2 * math.pi, 64, endpoint=False)
    radius = np.ones_like(angles)
    for freq in (2, 3, 5):  # a few low-frequency harmonics give an organic, non-convex shape
        radius += rng.uniform(0.05, 0.15) * np.cos(freq * angles + rng.uniform(0, 2 * math.pi))
    radius *= 0.45 * size / radius.max()
    pts = np.stack([size / 2 + radius * np.cos(angles), size / 2 + radius * np.sin(angles)], 1)
    mask = np.zeros((size, size), np.uint8)
    cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 1)
    return mask


def texture_patch(photo: np.ndarray, size: int) -> np.ndarray:
    """The central square of a photo resized to size x size (RGB uint8)."""
    h, w = photo.shape[:2]
    s = min(h, w)
    y0, x0 = (h - s) // 2, (w - s) // 2
    return cv2.resize(photo[y0:y0 + s, x0:x0 + s], (size, size), interpolation=cv2.INTER_AREA)


def panning_background(photo: np.ndarray, num_frames: int, height: int, width: int) -> Iterator[np.ndarray]:
    """num_frames x [H, W, 3] uint8: a window panning left to right over ``photo`` resized to a quarter more
    than the frame's width."""
    scale = max(height / photo.shape[0], round(1.25 * width) / photo.shape[1])
    big = cv2.resize(photo, (math.ceil(photo.shape[1] * scale), math.ceil(photo.shape[0] * scale)),
                     interpolation=cv2.INTER_AREA)
    y0 = (big.shape[0] - height) // 2
    for t in range(num_frames):
        x0 = int(round(t / max(num_frames - 1, 1) * (big.shape[1] - width)))
        yield big[y0:y0 + height, x0:x0 + width].copy()


def render_video(num_frames: int = 40, height: int = 240, width: int = 432, seed: int = 0,
                 background: str = "rocket") -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The demo video: frames, num_frames x [H, W, 3] uint8 RGB, and labels, num_frames x [H, W] uint8 ids 0-2."""
    pics = photos()
    rng = np.random.RandomState(seed)
    sides = [int(round(2 * radius * height)) for _, radius, *_ in TRACKS]
    sprites = [(texture_patch(pics[name], side), _blob_mask(side, rng)) for (name, *_), side in zip(TRACKS, sides)]
    frames, labels = [], []
    for t, frame in enumerate(panning_background(pics[background], num_frames, height, width)):
        a = t / max(num_frames - 1, 1)
        label = np.zeros((height, width), np.uint8)
        for obj_id, ((_, _, *ranges), (tex, mask)) in enumerate(zip(TRACKS, sprites), start=1):
            x, y, s, r = (first + a * (last - first) for first, last in ranges)
            side = tex.shape[0]
            m = cv2.getRotationMatrix2D((side / 2, side / 2), r, s)
            m[:, 2] += (x * width - side / 2, y * height - side / 2)
            warped_tex = cv2.warpAffine(tex, m, (width, height), flags=cv2.INTER_LINEAR)
            # Nearest-neighbour for the mask: the painted pixels are exactly the ground truth.
            warped_mask = cv2.warpAffine(mask, m, (width, height), flags=cv2.INTER_NEAREST).astype(bool)
            frame[warped_mask] = warped_tex[warped_mask]
            label[warped_mask] = obj_id
        frames.append(frame)
        labels.append(label)
    return frames, labels


def save_image(path: str | os.PathLike, image: np.ndarray, **kwargs) -> None:
    """Write ``image`` (uint8 [H, W] or [H, W, 3]) atomically; ``kwargs``: PIL's ``save`` options."""
    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(image)).save(tmp, **kwargs)


def write_davis_sequence(root: str, name: str, frames: list[np.ndarray], labels: list[np.ndarray]) -> None:
    """Write frames (JPEG) and labels (palette PNGs) in the DAVIS layout under ``root``, listed in
    ``ImageSets/2017/val.txt``."""
    root = Path(root)
    for t, (frame, label) in enumerate(zip(frames, labels)):
        save_image(root / "JPEGImages" / "480p" / name / f"{t:05d}.jpg", frame, format="JPEG", quality=95)
        save_indexed_png(root / "Annotations" / "480p" / name / f"{t:05d}.png", label)
    atomic_write_text(root / "ImageSets" / "2017" / "val.txt", name + "\n")


def write_training_photos(folder: str, size: int = 320, tile: int = 160) -> list[str]:
    """Save the photos (shorter side ``size``) and their ``tile`` x ``tile`` grid tiles as training JPEGs; returns
    the paths. The tiles make the ~10 photos several batches an epoch (a checkpoint is written at each end)."""
    paths = []
    for name, pic in sorted(photos().items()):
        h, w = pic.shape[:2]
        s = size / min(h, w)
        pic = cv2.resize(pic, (int(round(w * s)), int(round(h * s))), interpolation=cv2.INTER_AREA)
        tiles = [(f"{name}_tile{y:03d}_{x:03d}", pic[y:y + tile, x:x + tile])
                 for y in range(0, pic.shape[0] - tile + 1, tile) for x in range(0, pic.shape[1] - tile + 1, tile)]
        for stem, image in [(name, pic), *tiles]:
            paths.append(os.path.join(folder, f"{stem}.jpg"))
            save_image(paths[-1], image, format="JPEG", quality=95)
    return paths
