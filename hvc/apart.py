"""Inputs are read-only to us: :func:`refuse_overlap` refuses, before anything is written, an output folder that is,
contains or lies inside an input (docs/failure.md, "What is refused")."""

from __future__ import annotations

import os
from typing import Iterable, Mapping, Optional

from hvc.errors import UsageError
from hvc.names import inside

def overlap(output: str | os.PathLike, given: str | os.PathLike) -> Optional[str]:
    """How folder ``output`` overlaps input ``given`` ("is", "lies inside", "contains"); None if apart."""
    if inside(given, output):
        return "is" if os.path.realpath(output) == os.path.realpath(given) else "lies inside"
    return "contains" if inside(output, given) else None


def refuse_overlap(output: str | os.PathLike, what: str,
                   inputs: Mapping[str, str | os.PathLike | Iterable[str | os.PathLike] | None]) -> None:
    """Raise UsageError if output folder ``output`` (the setting ``what``) overlaps any of ``inputs``
    (``{setting: path, list of paths or None}``)."""
    for key, value in inputs.items():
        if value is None:
            continue
        paths = [value] if isinstance(value, (str, os.PathLike)) else list(value)
        for path in paths:
            relation = overlap(output, path)
            if relation is not None:
                raise UsageError(f"{output}: {what} {relation} the input {key} ({path}); inputs are read-only, "
                                 f"choose an output folder apart from them")
