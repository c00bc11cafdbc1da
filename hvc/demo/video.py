"""Deterministic synthetic videos with exact labels, all from scikit-image's photos: the demo's two textured objects
moving over a panning photo, in the DAVIS 2017 layout (docs/demo.md), and small clips in the layouts of JHMDB, VIP
and VOST: a walking figure (joints, body parts) and a dough cut in two (docs/tasks.md "Synthetic data")."""

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
    return cv2.fillPoly(np.zeros((size, size), np.uint8), [np.round(pts).astype(np.int32)], 1)


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
    """Write frames (JPEG) and labels (palette PNGs) in the DAVIS layout under ``root``, listed in its val.txt."""
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


# VIP class ids (hvc.metrics.vip.CLASS_NAMES) of the figure's parts
HAIR, UPPER_CLOTHES, PANTS, FACE = 2, 4, 8, 13
RIGHT_ARM, LEFT_ARM, RIGHT_LEG, LEFT_LEG, RIGHT_SHOE, LEFT_SHOE = 14, 15, 16, 17, 18, 19
PART_TEXTURES = {  # part -> photo; neighbouring parts look different, as real clothes do
    HAIR: "hubble_deep_field", FACE: "astronaut", UPPER_CLOTHES: "chelsea", PANTS: "coffee",
    RIGHT_ARM: "immunohistochemistry", LEFT_ARM: "immunohistochemistry", RIGHT_LEG: "motorcycle_left",
    LEFT_LEG: "motorcycle_left", RIGHT_SHOE: "colorwheel", LEFT_SHOE: "colorwheel"}
SUBPIXEL = 4  # cv2 drawing with 4 fractional bits: shapes follow the exact joint positions


def figure_joints(t: int, num_frames: int, height: int, width: int, phase: int = 0) -> np.ndarray:
    """The 15 JHMDB joints of the walking figure at frame t: [15, 2] (x, y) float64 pixels. The belly walks
    from 35 % to 65 % of the width and bobs; ``phase`` starts the walking cycle that many frames later."""
    s = height / 240.0  # the figure is designed for a 240-pixel-high frame
    a = t / max(num_frames - 1, 1)
    phase = 2 * math.pi * (t + phase) / 10.0
    belly = np.array([(0.35 + 0.3 * a) * width, 0.5 * height + 3 * s * math.sin(2 * phase)])
    neck = belly + s * np.array([0.0, -48.0])
    face = neck + s * np.array([2.0 * math.sin(phase), -20.0])
    shoulders = [neck + s * np.array([-side * 21.0, 4.0]) for side in (1, -1)]  # right, left
    hips = [belly + s * np.array([-side * 12.0, 14.0]) for side in (1, -1)]

    def limb(start: np.ndarray, angle: float, length: float) -> np.ndarray:
        """Angle in degrees from straight down, positive towards +x."""
        r = math.radians(angle)
        return start + s * length * np.array([math.sin(r), math.cos(r)])

    swing_arm, swing_leg = 35 * math.sin(phase), 28 * math.sin(phase)
    elbows, wrists, knees, ankles = [], [], [], []
    for side, sign in ((0, 1), (1, -1)):  # right, left
        upper = sign * swing_arm - (1 - 2 * side) * 12  # arms slightly away from the body
        elbows.append(limb(shoulders[side], upper, 30))
        wrists.append(limb(elbows[side], upper + 25 + 15 * math.sin(phase + side * math.pi), 27))
        thigh = -sign * swing_leg
        knees.append(limb(hips[side], thigh, 36))
        ankles.append(limb(knees[side], thigh - 10 - 12 * max(0.0, math.sin(phase + side * math.pi)), 34))
    return np.stack([neck, belly, face, *shoulders, *hips, *elbows, *knees, *wrists, *ankles])


def _pt(p: np.ndarray) -> tuple[int, int]:
    return int(round(p[0] * (1 << SUBPIXEL))), int(round(p[1] * (1 << SUBPIXEL)))


def _part_masks(joints: np.ndarray, height: int, width: int) -> list[tuple[int, np.ndarray]]:
    """(class id, mask) of every part, in painting order (later parts cover earlier ones)."""
    s = height / 240.0
    neck, belly, face, r_sh, l_sh, r_hip, l_hip, r_el, l_el, r_kn, l_kn, r_wr, l_wr, r_an, l_an = joints

    def lines(points: list[tuple[np.ndarray, np.ndarray]], thickness: float) -> np.ndarray:
        mask = np.zeros((height, width), np.uint8)
        for a, b in points:
            cv2.line(mask, _pt(a), _pt(b), 1, max(1, int(round(thickness * s))), cv2.LINE_8, SUBPIXEL)
        return mask

    torso, head, hair = (np.zeros((height, width), np.uint8) for _ in range(3))
    corners = np.array([_pt(r_sh), _pt(l_sh), _pt(l_hip), _pt(r_hip)], np.int32)
    cv2.fillConvexPoly(torso, corners, 1, cv2.LINE_8, SUBPIXEL)
    head_r = int(round(13 * s * (1 << SUBPIXEL)))
    cv2.circle(head, _pt(face), head_r, 1, -1, cv2.LINE_8, SUBPIXEL)
    cv2.ellipse(hair, _pt(face), (head_r, head_r), 0, 180, 360, 1, -1, cv2.LINE_8, SUBPIXEL)
    hair[int(face[1] - 4 * s):] = 0  # only the top of the head
    toe = s * np.array([9.0, 3.0])
    parts = [(RIGHT_SHOE, lines([(r_an, r_an + toe)], 9)), (LEFT_SHOE, lines([(l_an, l_an + toe)], 9)),
             (RIGHT_LEG, lines([(r_kn, r_an)], 11)), (LEFT_LEG, lines([(l_kn, l_an)], 11)),
             (PANTS, lines([(r_hip, r_kn), (l_hip, l_kn), (r_hip, l_hip)], 14)), (UPPER_CLOTHES, torso),
             (RIGHT_ARM, lines([(r_sh, r_el), (r_el, r_wr)], 9)), (LEFT_ARM, lines([(l_sh, l_el), (l_el, l_wr)], 9)),
             (FACE, head), (HAIR, hair)]
    return [(cls, mask.astype(bool)) for cls, mask in parts]


def render_figure_clip(num_frames: int, phase: int = 0, height: int = 240,
                       width: int = 320) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The walking figure: frames [T, H, W, 3] uint8 RGB, VIP part ids [T, H, W] uint8 (0 background)
    and JHMDB joints [T, 15, 2] float64 (x, y) 0-based pixels."""
    size = int(round(height * 0.9))
    textures = {cls: texture_patch(photos()[name], size) for cls, name in PART_TEXTURES.items()}
    clip = []
    for t, frame in enumerate(panning_background(photos()["rocket"], num_frames, height, width)):
        pts = figure_joints(t, num_frames, height, width, phase)
        label = np.zeros((height, width), np.uint8)
        # Textures ride with the figure: shift each part's photo so that it is anchored at the belly.
        shift = np.float32([[1, 0, pts[1, 0] - size / 2], [0, 1, pts[1, 1] - size / 2]])
        for cls, mask in _part_masks(pts, height, width):
            tex = cv2.warpAffine(textures[cls], shift, (width, height), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_REFLECT)
            frame[mask] = tex[mask]
            label[mask] = cls
        clip.append((frame, label, pts))
    return tuple(np.stack(a) for a in zip(*clip))


def write_jhmdb_clip(root: str | os.PathLike, video: str = "synthetic_walk_0", num_frames: int = 12,
                     phase: int = 0) -> str:
    """Write one JHMDB-style ``walk`` clip under ``root``, a test video (label 2) of ``splits/walk_test_split1.txt``
    and ``test_list.txt`` (videowalk's ``<frames dir> <joints .mat>`` lines), its joints as JHMDB's ``pos_img``
    [2, 15, T] float64 1-based pixels. Returns ``walk/<video>``."""
    from scipy.io import savemat

    root = Path(root)
    frames, _, joints = render_figure_clip(num_frames, phase)
    for t, frame in enumerate(frames):
        save_image(root / "Rename_Images/walk" / video / f"{t + 1:05d}.png", frame, format="PNG", compress_level=1)
    with atomic_path(root / "joint_positions/walk" / video / "joint_positions.mat") as tmp:
        savemat(tmp, {"pos_img": joints.transpose(2, 1, 0) + 1})  # [T, 15, 2] 0-based -> [2, 15, T] 1-based
    _add_lines(root / "splits/walk_test_split1.txt", [f"{video}.avi 2"])
    _add_lines(root / "test_list.txt", [f"Rename_Images/walk/{video} joint_positions/walk/{video}/joint_positions.mat"])
    return f"walk/{video}"


def _add_lines(path: Path, new: list[str], drop: str | None = None) -> None:
    """Add the ``new`` lines missing from a list file, once the lines holding ``drop`` are taken out."""
    lines = [line for line in (path.read_text().splitlines() if path.is_file() else []) if not drop or drop not in line]
    atomic_write_text(path, "\n".join(lines + [line for line in new if line not in lines]) + "\n")


def write_vip_clip(root: str | os.PathLike, video: str = "videos1", annotated: int = 5, every: int = 5) -> list[str]:
    """Write one VIP-style video under ``root``: frames as ``Images/<video>/%012d.jpg`` (from 1), class ids every
    ``every`` frames as greyscale ``Annotations/Category_ids/<video>/%012d.png``, listed in ``val_vip.txt`` (the
    paper's format). Returns the annotated frame names."""
    root = Path(root)
    frames, parts, _ = render_figure_clip((annotated - 1) * every + 1)
    names = []
    for t, frame in enumerate(frames):
        name = f"{t + 1:012d}"
        save_image(root / "Images" / video / f"{name}.jpg", frame, format="JPEG", quality=95)
        if t % every == 0:
            save_image(root / "Annotations/Category_ids" / video / f"{name}.png", parts[t], format="PNG")
            names.append(name)
    _add_lines(root / "val_vip.txt", [f"1 VIP/Images/{video}/{n}.jpg VIP/Annotations/Category_ids/{video}/{n}.png"
                                      for n in names], drop=f"/{video}/")
    return names


def render_vost_clip(num_frames: int = 31, height: int = 240, width: int = 320) -> tuple[np.ndarray, np.ndarray]:
    """A dough (id 1) that stretches, is cut by a blade (id 2) and splits in two: frames [T, H, W, 3] uint8
    and labels [T, H, W] uint8."""
    dough_tex = cv2.resize(texture_patch(photos()["coffee"], height), (width, height))
    blade_tex = cv2.resize(texture_patch(photos()["motorcycle_right"], height), (width, height))
    clip = []
    cut_at, cx, cy = num_frames // 3, 0.5 * width, 0.6 * height
    for t, frame in enumerate(panning_background(photos()["hubble_deep_field"], num_frames, height, width)):
        a = t / max(num_frames - 1, 1)
        # Stretches sideways and flattens, then splits at the centre; the halves drift apart.
        rx, ry = (0.18 + 0.12 * a) * width, (0.22 - 0.08 * a) * height
        gap = 0.0 if t < cut_at else (t - cut_at) / max(num_frames - 1 - cut_at, 1) * 0.22 * width
        dough = np.zeros((height, width), np.uint8)
        cv2.ellipse(dough, _pt((cx, cy)), _pt((rx, ry)), 8 * math.sin(3 * a), 0, 360, 1, -1, cv2.LINE_8, SUBPIXEL)
        tex = dough_tex
        if t >= cut_at:  # each half carries its own texture as it drifts away
            shift, centre = int(round(gap / 2)), int(cx)
            left, right = dough.copy(), dough.copy()
            left[:, centre - shift:] = 0  # the blade's kerf widens with the gap
            right[:, :centre + shift] = 0
            left, right = np.roll(left, -shift, axis=1), np.roll(right, shift, axis=1)
            dough = left | right
            tex = np.where(left[..., None] > 0, np.roll(dough_tex, -shift, axis=1), np.roll(dough_tex, shift, axis=1))
        # the blade comes down until the cut, then rises again
        depth = min(t / max(cut_at, 1), 1.0) if t <= cut_at else max(0.0, 1 - (t - cut_at) / max(cut_at, 1))
        blade = np.zeros((height, width), np.uint8)
        bottom = cy - ry - 0.05 * height + depth * (2 * ry + 0.05 * height)
        cv2.rectangle(blade, _pt((cx - 4, bottom - 0.45 * height)), _pt((cx + 4, bottom)), 1, -1, cv2.LINE_8, SUBPIXEL)
        label = np.zeros((height, width), np.uint8)
        for obj, (shape, texture) in enumerate(((dough, tex), (blade, blade_tex)), start=1):  # the blade on top
            mask = shape.astype(bool)
            frame[mask] = texture[mask]
            label[mask] = obj
        clip.append((frame, label))
    return tuple(np.stack(a) for a in zip(*clip))


def write_vost_clip(root: str | os.PathLike, name: str = "cut_dough", num_frames: int = 31,
                    every: int = 5) -> list[str]:
    """Write one VOST-style sequence under ``root``: frames as ``JPEGImages/<name>/%05d.jpg``, palette annotations
    every ``every`` frames and the last, listed in ``ImageSets/val.txt``. Returns the annotated frame names."""
    root = Path(root)
    frames, labels = render_vost_clip(num_frames)
    names = []
    for t in range(num_frames):
        save_image(root / "JPEGImages" / name / f"{t:05d}.jpg", frames[t], format="JPEG", quality=95)
        if t % every == 0 or t == num_frames - 1:
            save_indexed_png(root / "Annotations" / name / f"{t:05d}.png", labels[t])
            names.append(f"{t:05d}")
    _add_lines(root / "ImageSets/val.txt", [name])
    return names
