"""``python -m hvc.segment``: label propagation on anyone's video (README, "Your own video")."""

from hvc.segment.prompt import PromptError, read_mask, read_scribble
from hvc.segment.run import Options, segment

__all__ = ["Options", "PromptError", "read_mask", "read_scribble", "segment"]
