"""``python -m hvc.segment``: label propagation on anyone's video (docs/own_video.md, docs/segment.md)."""

from hvc.segment.prompt import PromptError, PromptSpec, parse_prompt, read_masks, read_scribble
from hvc.segment.run import Options, segment

__all__ = ["Options", "PromptError", "PromptSpec", "parse_prompt", "read_masks", "read_scribble", "segment"]
