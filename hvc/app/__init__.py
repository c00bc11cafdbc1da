"""``python -m hvc.app``: segment a video in the browser, with ``hvc.segment``'s own run (docs/app.md)."""
