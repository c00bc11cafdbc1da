"""``python -m hvc.segment``: label propagation on anyone's video (docs/own_video.md)."""

from hvc.segment.prompt import PromptError, read_mask, read_scribble
from hvc.segment.run import Options, segment

__all__ = ["Options", "PromptError", "read_mask", "read_scribble", "segment"]
