"""``python -m hvc.app``: segment a video in the browser, with ``hvc.segment`` (the same function the command
line calls) on the prompts painted in a page the standard library's HTTP server serves (docs/app.md)."""
