"""Support code shared by the tests (tests/README.md, "Where things come from"): not tests
themselves. pytest puts ``tests/`` on ``sys.path`` (it has no ``__init__.py``: rootdir-based
"prepend" import mode), so test modules import these as ``helpers.<module>``."""
