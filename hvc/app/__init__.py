"""``python -m hvc.app``: segment a video in the browser (docs/app.md).

A small page served by the standard library's HTTP server: open a video, scrub its frames,
paint a mask or scribbles, propagate with ``hvc.segment`` (the same function the command line
calls), watch the overlay, correct a frame and propagate again, download the exports.
"""
