"""hvc: Hybrid Visual Correspondence for self-supervised video object segmentation."""

__version__ = "0.1.0"
