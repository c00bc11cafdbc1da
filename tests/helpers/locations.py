"""Where the tests find their fixtures and data (one place; tests/conftest.py builds on it).

- ``GOLDEN``: the golden fixtures, ``$HVC_GOLDEN_DIR``, default ``tests/golden`` in the repository.
- ``SHARED``: real data, ``$HVC_SHARED_DIR``, default ``shared`` beside the checkout (``../shared``).
- ``IN_CI``: ``$CI`` is true: missing real data fails instead of skipping.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
GOLDEN = Path(os.environ.get("HVC_GOLDEN_DIR", REPO / "tests" / "golden"))
SHARED = Path(os.environ.get("HVC_SHARED_DIR", REPO.parent / "shared"))
IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")
