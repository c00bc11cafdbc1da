"""Synthetic JHMDB, VIP and VOST trees (hvc.demo.video), written once per test session.

Import the fixture into a test module: ``from helpers.task_fixtures import synthetic_tasks``. Each
importing module registers its own copy of the fixture, so the trees are cached here to be
written only once. Tests must not modify them (copy a tree before damaging it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from hvc.demo.video import write_jhmdb_clip, write_vip_clip, write_vost_clip


@dataclass(frozen=True)
class SyntheticTasks:
    jhmdb: Path  # JHMDB root: Rename_Images/, joint_positions/, splits/, test_list.txt
    jhmdb_videos: tuple[str, ...]  # "<class>/<video>"
    vip: Path  # VIP root: Images/, Annotations/Category_ids/, val_vip.txt
    vip_video: str
    vip_frames: tuple[str, ...]  # annotated frame names
    vost: Path  # VOST root: JPEGImages/, Annotations/, ImageSets/val.txt
    vost_sequence: str
    vost_frames: tuple[str, ...]  # annotated frame names


_CACHE: dict[str, SyntheticTasks] = {}


@pytest.fixture(scope="session")
def synthetic_tasks(tmp_path_factory) -> SyntheticTasks:
    if "trees" not in _CACHE:
        _CACHE["trees"] = _write(tmp_path_factory.mktemp("tasks"))
    return _CACHE["trees"]


def _write(root: Path) -> SyntheticTasks:
    videos = (write_jhmdb_clip(root / "JHMDB", num_frames=10),
              write_jhmdb_clip(root / "JHMDB", video="synthetic_walk_1", num_frames=8, phase=3))
    vip_frames = write_vip_clip(root / "VIP", video="videos7", annotated=4, every=5)
    vost_frames = write_vost_clip(root / "VOST", name="cut_dough", num_frames=26, every=5)
    return SyntheticTasks(root / "JHMDB", videos, root / "VIP", "videos7", tuple(vip_frames),
                          root / "VOST", "cut_dough", tuple(vost_frames))
