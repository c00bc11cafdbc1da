"""Segment a video in the browser: a page served on this machine (docs/app.md).

Open the address printed, paint a mask or scribbles on a frame, propagate, correct, download the
exports. Runs are ``python -m hvc.segment``'s, with its defaults. Exit codes: docs/failure.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

from hvc.app.server import Workspace, make_server
from hvc.cli import run_main
from hvc.errors import ArgumentParser, UsageError, entry_point
from hvc.names import refuse_overlap
from hvc.segment.__main__ import add_run_flags, parse_run_flags


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, dict]:
    """The command line, and the hvc.segment Options fields every run shares (hvc.segment's defaults)."""
    parser = ArgumentParser(prog="python -m hvc.app", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("video", type=Path, nargs="?", help="video file or folder of frames to open at start")
    parser.add_argument("--output", type=Path, default=Path("hvc_app_output"), help="folder (default ./hvc_app_output)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    parser.add_argument("--port", type=int, default=8765, help="port (default 8765; 0: any free one)")
    add_run_flags(parser)
    parser.add_argument("--max-upload-mib", type=int, default=2048, help="largest video upload accepted (default 2048)")
    a, _, options = parse_run_flags(parser, argv)
    if not 0 <= a.port <= 65535:
        parser.error("--port must lie in [0, 65535]")
    if a.max_upload_mib < 1:
        parser.error("--max-upload-mib must be >= 1")
    return a, options


@entry_point
def main(argv: Optional[list[str]] = None) -> int:
    """Serve until Ctrl-C."""
    a, options = parse_args(sys.argv[1:] if argv is None else list(argv))
    refuse_overlap(a.output, "--output", {"VIDEO": a.video})  # before the lock writes into --output
    workspace = Workspace(a.output, options, a.max_upload_mib << 20)
    if a.video is not None:
        workspace.open_path(a.video)
    try:
        server = make_server(workspace, a.host, a.port)
    except OSError as exc:
        raise UsageError(f"--host {a.host} --port {a.port}: cannot listen there ({exc.strerror or exc})") from None
    host, port = server.server_address[:2]
    print(options["speed_note"], flush=True)
    print(f"hvc.app: open http://{'127.0.0.1' if host == '0.0.0.0' else host}:{port}/ (Ctrl-C to stop); "
          f"files in {a.output}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
    return 0


def command() -> int:
    """``hvc-app`` and ``python -m hvc.app``: ``main`` on sys.argv."""
    return run_main(main)


if __name__ == "__main__":
    sys.exit(command())
