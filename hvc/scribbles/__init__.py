"""Scribble prompts: file formats, a generator from masks, and the first-frame fill."""

from hvc.scribbles.format import (BACKGROUND_PNG, UNLABELLED, ScribbleError, Stroke, read_davis_json, read_png,
                                  read_scribbles, render, save_davis_json, save_png)
from hvc.scribbles.generate import scribbles_from_mask

__all__ = ["BACKGROUND_PNG", "UNLABELLED", "ScribbleError", "Stroke", "read_davis_json", "read_png",
           "read_scribbles", "render", "save_davis_json", "save_png", "scribbles_from_mask"]
