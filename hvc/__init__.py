"""hvc: Hybrid Visual Correspondence for self-supervised video object segmentation. ``hvc.VideoSegmenter`` is the
per-frame API (docs/api.md), imported on first use so that ``import hvc`` alone does not import torch."""

import importlib

__version__ = "0.1.0"

_LAZY = {"VideoSegmenter": "hvc.segmenter", "Segmentation": "hvc.segmenter", "SegmenterState": "hvc.segmenter"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hvc' has no attribute {name!r}")
