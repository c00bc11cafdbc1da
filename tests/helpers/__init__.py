"""Support code shared by the tests (tests/README.md, "Where things come from"): not tests
themselves. pyproject.toml puts ``tests/`` on ``sys.path`` for pytest (``pythonpath``), so test
modules import these as ``helpers.<module>`` from the repository root, from ``tests/`` and under
``make test``."""
