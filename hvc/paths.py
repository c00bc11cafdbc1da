"""Where ``checkpoints/`` and ``configs/`` are: the working directory's, else those of the source
checkout the package is imported from (docs/design.md, "Entry points")."""

from __future__ import annotations

from pathlib import Path
from typing import Optional


def source_checkout() -> Optional[Path]:
    """The root of the source checkout this package is imported from; None for an installed package."""
    root = Path(__file__).resolve().parent.parent
    try:  # a checkout's pyproject.toml names this distribution
        return root if 'name = "hvc-vos"' in (root / "pyproject.toml").read_text() else None
    except OSError:
        return None


def project_folder(name: str) -> Path:
    """Absolute ``./name`` if that folder exists or there is no checkout, else the checkout's ``name``."""
    here, checkout = Path(name).resolve(), source_checkout()
    return here if here.is_dir() or checkout is None else checkout / name
