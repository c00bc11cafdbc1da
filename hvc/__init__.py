"""hvc: Hybrid Visual Correspondence for self-supervised video object segmentation.

``hvc.VideoSegmenter`` is the per-frame segmentation API (docs/api.md); it is imported on
first use, so ``import hvc`` alone does not import torch.
"""

__version__ = "0.1.0"

_LAZY = {"VideoSegmenter": "hvc.segmenter", "Segmentation": "hvc.segmenter", "SegmenterState": "hvc.segmenter"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hvc' has no attribute {name!r}")
