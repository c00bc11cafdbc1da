"""Paths safe with user data (docs/failure.md, "What is refused"): names from dataset files are never paths, outputs
never overlap inputs. Standard library only (hvc.metrics runs without torch)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Mapping, Optional

from hvc.errors import InputError, UsageError

MAX_NAME_CHARS = 255  # a longer part cannot be a file name on common file systems


def name_problem(name: object, parts: int = 1) -> Optional[str]:
    """Why ``name`` cannot be used as a (``parts``-part) name under a folder; None if it can."""
    if not isinstance(name, str):
        return f"is a {type(name).__name__}, not a text name"
    pieces = name.split("/")
    allowed = "no '/'" if parts == 1 else f"at most {parts} parts separated by '/'"
    rules = {  # problem: whether name has it; the first one found is reported
        "is empty or has leading or trailing spaces": not name or name != name.strip(),
        "holds control characters": any(ord(c) < 32 or ord(c) == 127 for c in name),
        "holds a backslash (names are not paths)": "\\" in name,
        "is an absolute path (names are not paths)": name.startswith("/") or name[1:2] == ":" and name[0].isalpha(),
        "holds '..', '.' or an empty part (names are not paths)": any(p in ("", ".", "..") for p in pieces),
        f"has {len(pieces)} parts separated by '/' (the layout allows {allowed})": len(pieces) > parts,
        f"has a part longer than {MAX_NAME_CHARS} characters": any(len(p) > MAX_NAME_CHARS for p in pieces),
    }
    return next((problem for problem, found in rules.items() if found), None)


def short(name: object, limit: int = 80) -> str:
    """``repr(name)``, cut to ``limit`` characters: error lines stay short whatever the data holds."""
    text = repr(name)
    return text if len(text) <= limit else text[:limit - 4] + "...'"


def check_name(name: object, where: str, parts: int = 1, error: type[Exception] = InputError) -> str:
    """``name`` if safe, of at most ``parts`` parts; else ``error`` naming ``where`` (the file and line or key)."""
    problem = name_problem(name, parts)
    if problem is not None:
        raise error(f"{where}: name {short(name)} {problem}")
    return name  # type: ignore[return-value]


def read_name_list(path: Path, error: type[Exception] = InputError) -> list[str]:
    """The names of a list file, one a line (blank lines skipped), each checked; in file order."""
    numbered = enumerate(Path(path).read_text().splitlines(), start=1)
    return [check_name(line.strip(), f"{path}, line {number}", error=error) for number, line in numbered
            if line.strip()]


def inside(root: str | os.PathLike, path: str | os.PathLike, follow: bool = True) -> bool:
    """Whether ``path`` resolves (symlinks followed; ``follow=False``: all but its last part) to ``root`` or below."""
    base, path = os.path.realpath(root), os.path.abspath(path)
    target = os.path.realpath(path) if follow else os.path.join(os.path.realpath(os.path.dirname(path)),
                                                                 os.path.basename(path))
    return target == base or target.startswith(base.rstrip(os.sep) + os.sep)


def check_inside(root: str | os.PathLike, path: str | os.PathLike, what: str, follow: bool = True) -> None:
    """Refuse (InputError) ``path`` if it resolves outside ``root`` (``what`` names the writer)."""
    if not inside(root, path, follow):
        raise InputError(f"{path}: {what} would leave {root}; refused")


def overlap(output: str | os.PathLike, given: str | os.PathLike) -> Optional[str]:
    """How folder ``output`` overlaps input ``given`` ("is", "lies inside", "contains"); None if apart."""
    if inside(given, output):
        return "is" if os.path.realpath(output) == os.path.realpath(given) else "lies inside"
    return "contains" if inside(output, given) else None


def refuse_overlap(output: str | os.PathLike, what: str,
                   inputs: Mapping[str, str | os.PathLike | Iterable[str | os.PathLike] | None]) -> None:
    """UsageError if folder ``output`` (setting ``what``) overlaps any of ``inputs`` (setting: path(s) or None)."""
    for key, value in inputs.items():
        for path in [] if value is None else [value] if isinstance(value, (str, os.PathLike)) else value:
            if (relation := overlap(output, path)) is not None:
                raise UsageError(f"{output}: {what} {relation} the input {key} ({path}); inputs are read-only, "
                                 "choose an output folder apart from them")
