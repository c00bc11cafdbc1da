"""The browser tool's server (standard library HTTP, the page ``page.html`` beside this file): the open video,
its prompts, runs of ``hvc.segment``, the results. Its routes and its folder: docs/app.md."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import threading
import traceback
import zipfile
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Iterator, Optional
from urllib.parse import parse_qs, unquote, urlsplit

import cv2
import numpy as np

from hvc.data.sequence import read_label_png
from hvc.data.frames import open_frames
from hvc.data.palette import save_indexed_png
from hvc.errors import EXIT_BUSY, EXIT_INPUT, EXIT_USAGE, InputError, UsageError, classify
from hvc.exports import FORMATS
from hvc.fileio import OutputLock, atomic_path
from hvc.names import refuse_overlap
from hvc.segment.prompt import KINDS, MAX_OBJECTS, PromptSpec
from hvc.segment.run import DIRECTIONS, Options, segment

PAGE = Path(__file__).with_name("page.html")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")
# the HTTP status of an expected failure, by its exit code (docs/failure.md); others: 500
STATUS = {EXIT_USAGE: HTTPStatus.BAD_REQUEST, EXIT_INPUT: HTTPStatus.BAD_REQUEST, EXIT_BUSY: HTTPStatus.CONFLICT}


class RequestError(UsageError):
    """A request the tool refuses with a status other than 400 (a UsageError's): the status and one line."""

    def __init__(self, status: HTTPStatus, message: str):
        super().__init__(message)
        self.status = status


def one_line(exc: Exception) -> tuple[Optional[int], str]:
    """(exit code, one line) of an expected failure (hvc/errors.py); of a bug, (None, its type), traceback printed."""
    kind = classify(exc)
    if kind is None:
        traceback.print_exc()
        return None, f"internal error ({type(exc).__name__}); see the terminal"
    return kind


def copy_bytes(read: Callable[[int], bytes], write: Callable[[bytes], object], length: int) -> int:
    """Copy ``length`` bytes from ``read`` to ``write`` in blocks of 1 MiB; returns how many ``read`` ended short of."""
    while length and (block := read(min(length, 1 << 20))):
        write(block)
        length -= len(block)
    return length


class Video:
    """One opened video (``path``, read only): its frames decoded once into JPEGs, prompts and results in ``folder``."""

    def __init__(self, folder: Path, path: Path, label: str):
        self.folder, self.path, self.label = folder, path, label
        source = open_frames(path)
        self.size, self.fps = tuple(source.size), source.fps  # size: (H, W)
        self.names: list[str] = []  # the file stem of each frame's mask (FrameSource.name)
        frames = folder / "frames"
        frames.mkdir()
        for t, rgb in source:  # the page scrubs any frame at once: each is decoded here, once
            _, jpeg = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
            (frames / f"{t}.jpg").write_bytes(jpeg.tobytes())
            self.names.append(source.name(t))
        self.count = len(self.names)
        self.prompts: dict[int, PromptSpec] = {}
        self.results = folder / "results"  # Options.output: hvc.segment's own folder layout
        self.summary: Optional[dict] = None

    def frame(self, t: int) -> Path:
        return self.folder / "frames" / f"{self._index(t)}.jpg"

    def _index(self, t: int) -> int:
        if not 0 <= t < self.count:
            raise RequestError(HTTPStatus.NOT_FOUND, f"frame {t}: the video has frames 0..{self.count - 1}")
        return t

    def set_prompt(self, t: int, kind: str, body: bytes) -> None:
        """Save ``body`` (H*W ids) as frame t's prompt PNG (docs/scribbles.md for the scribble ids)."""
        self._index(t)
        if kind not in KINDS:
            raise UsageError(f"kind={kind}: must be one of {', '.join(KINDS)}")
        h, w = self.size
        if len(body) != h * w:
            raise UsageError(f"prompt of frame {t}: {len(body)} bytes, expected {h}x{w}")
        ids = np.frombuffer(body, dtype=np.uint8).reshape(h, w)
        if kind == "mask" and ids.max() > MAX_OBJECTS:
            raise UsageError(f"mask of frame {t}: ids go up to {MAX_OBJECTS} (255 is background only in scribbles)")
        if not ids.any():
            raise UsageError(f"prompt of frame {t} is empty: paint an object, or delete it")
        path = self.folder / "prompts" / f"{t}.png"
        save_indexed_png(path, ids.copy())
        self.prompts[t] = PromptSpec(t, kind, path)

    def prompt_ids(self, t: int) -> bytes:
        if self._index(t) not in self.prompts:
            raise RequestError(HTTPStatus.NOT_FOUND, f"frame {t} has no prompt")
        return read_label_png(self.prompts[t].path, InputError).tobytes()

    def _summary(self) -> dict:
        if self.summary is None:
            raise RequestError(HTTPStatus.NOT_FOUND, "no results yet: propagate first")
        return self.summary

    def mask_ids(self, t: int) -> bytes:
        path = Path(self._summary()["masks"]) / f"{self.names[self._index(t)]}.png"
        return read_label_png(path, InputError).tobytes()

    def results_zip(self) -> Path:
        """The exports the last run wrote, and its summary.json, zipped (made once per run)."""
        exports = self._summary()["exports"].values()
        target = self.folder / "results.zip"
        if not target.is_file():
            with atomic_path(target) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
                for path in [*map(Path, exports), self.results / "summary.json"]:
                    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
                    for f in files:
                        z.write(f, f.relative_to(self.results).as_posix())
        return target

    def state(self) -> dict:
        return {"label": self.label, "frames": self.count, "height": self.size[0], "width": self.size[1],
                "fps": self.fps, "prompts": {t: p.kind for t, p in sorted(self.prompts.items())},
                "overlay": bool(self.summary and "mp4" in self.summary["exports"])}


class Workspace:
    """The tool's folder (``--output``, locked), the open video, one run at a time with the Options ``options``."""

    def __init__(self, root: Path, options: dict, max_upload: int):
        self.root, self.options, self.max_upload = root, options, max_upload
        self.lock = OutputLock(root, "--output")
        self.video: Optional[Video] = None
        self.progress = {"state": "idle", "done": 0, "total": 0, "message": ""}
        self.guard = threading.Lock()

    def _new_folder(self) -> Path:
        n = 1 + max([int(p.name[6:]) for p in self.root.glob("video-*") if p.name[6:].isdigit()], default=0)
        folder = self.root / f"video-{n}"
        folder.mkdir()  # never an existing folder: what is in it was not written by this run
        (folder / "prompts").mkdir()
        return folder

    @contextlib.contextmanager
    def _idle(self) -> Iterator[None]:
        """The guard, held while no run is going: nothing is edited while a run writes."""
        with self.guard:
            if self.progress["state"] == "running":
                raise RequestError(HTTPStatus.CONFLICT, "a propagation is running; wait for it to end")
            yield

    def open_path(self, path: Path) -> Video:
        """Open a video file or frame folder given on the command line (read in place)."""
        refuse_overlap(self.root, "--output", {"VIDEO": path})
        with self._idle():
            return self._open(self._new_folder(), path, path.name)

    def open_upload(self, read: Callable[[int], bytes], length: int, name: str) -> Video:
        """Store an upload (size checked by the handler) under our own name (``name`` picks the suffix); open it."""
        suffix = Path(name).suffix.lower()
        with self._idle():
            folder = self._new_folder()
            path = folder / ("upload" + (suffix if suffix in VIDEO_SUFFIXES else ".mp4"))
            try:
                with open(path, "wb") as f:
                    if copy_bytes(read, f.write, length):
                        raise UsageError(f"{name}: the upload ended early")
                return self._open(folder, path, name)
            except BaseException:
                shutil.rmtree(folder)  # created empty just above: all in it is ours
                raise

    def _open(self, folder: Path, path: Path, label: str) -> Video:
        self.video = Video(folder, path, label)
        self.progress = {"state": "idle", "done": 0, "total": self.video.count, "message": ""}
        return self.video

    def current(self) -> Video:
        if self.video is None:
            raise RequestError(HTTPStatus.NOT_FOUND, "no video open: open one first")
        return self.video

    def set_prompt(self, t: int, kind: str, body: bytes) -> None:
        with self._idle():
            self.current().set_prompt(t, kind, body)

    def delete_prompt(self, t: int) -> None:
        with self._idle():
            self.current().prompts.pop(t, None)  # the PNG stays: hvc.segment may have recorded it

    def start(self, direction: str, save: tuple[str, ...]) -> None:
        """Start ``hvc.segment`` on the prompts, in a background thread."""
        with self._idle():
            video = self.current()
            if not video.prompts:
                raise UsageError("no prompt: paint a mask or scribbles on a frame first")
            # overwrite: the results folder lies in a folder this tool created, so all in it is ours
            opts = Options(video=video.path, output=video.results, overwrite=True, save=save, direction=direction,
                           prompts=tuple(video.prompts[t] for t in sorted(video.prompts)), **self.options)
            video.summary = None
            (video.folder / "results.zip").unlink(missing_ok=True)  # ours, of the previous run
            self.progress = {"state": "running", "done": 0, "total": video.count, "message": ""}
            threading.Thread(target=self._run, args=(video, opts), daemon=True).start()

    def _run(self, video: Video, opts: Options) -> None:
        try:
            video.summary = segment(opts, on_frame=lambda t: self.progress.update(done=self.progress["done"] + 1))
            self.progress = {**self.progress, "state": "done", "done": video.summary["frames"]}
        except Exception as exc:  # shown in the page as one line
            self.progress = {**self.progress, "state": "error", "message": one_line(exc)[1]}

    def state(self) -> dict:
        return {"video": self.video.state() if self.video else None, "directions": list(DIRECTIONS),
                "formats": list(FORMATS), "progress": self.progress, "max_upload": self.max_upload}


ROUTES: list[tuple[str, re.Pattern, str]] = [(m, re.compile(p), h) for m, p, h in [
    ("GET", r"/", "page"), ("GET", r"/api/state", "state"), ("GET", r"/api/progress", "progress"),
    ("GET", r"/api/frame/(\d{1,9})", "frame"), ("GET", r"/api/prompt/(\d{1,9})", "get_prompt"),
    ("PUT", r"/api/prompt/(\d{1,9})", "put_prompt"), ("DELETE", r"/api/prompt/(\d{1,9})", "delete_prompt"),
    ("GET", r"/api/mask/(\d{1,9})", "mask"), ("POST", r"/api/video", "upload"), ("POST", r"/api/run", "run"),
    ("GET", r"/api/overlay\.mp4", "overlay"), ("GET", r"/api/results\.zip", "results")]]
MAX_BODY = 64 << 20  # any body but an upload: a prompt of 8K frames is 33 MB


class Handler(BaseHTTPRequestHandler):
    """Routes requests to the workspace; every failure is one JSON line ``{"error": ...}`` with its status."""

    workspace: Workspace  # set by make_server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args) -> None:  # the page polls: no line per request
        pass

    def _dispatch(self) -> None:
        try:
            url = urlsplit(self.path)
            path = unquote(url.path)
            if ".." in path.split("/") or "\\" in path or "\x00" in path or "//" in path:
                raise UsageError("bad path")
            # bound to the loopback: refuse another site's page reaching us through a name resolving to 127.0.0.1
            if self.server.server_address[0] in LOOPBACK:
                host = (self.headers.get("Host") or "").rsplit(":", 1)[0]
                if host not in LOOPBACK:
                    raise RequestError(HTTPStatus.FORBIDDEN, f"Host {host}: this tool answers only at 127.0.0.1")
            for m, pattern, name in ROUTES:
                found = pattern.fullmatch(path)
                if found and m == self.command:
                    self.query = {k: v[-1] for k, v in parse_qs(url.query).items()}
                    return getattr(self, "do_" + name)(*map(int, found.groups()))
            allowed = any(p.fullmatch(path) for _, p, _ in ROUTES)
            raise RequestError(HTTPStatus.METHOD_NOT_ALLOWED if allowed else HTTPStatus.NOT_FOUND,
                               f"{self.command} {path}: " + ("method not allowed" if allowed else "no such page"))
        except (BrokenPipeError, ConnectionResetError):  # the browser went away (a video player seeking, a reload)
            self.close_connection = True
        except Exception as exc:
            code, message = one_line(exc)
            status = exc.status if isinstance(exc, RequestError) else STATUS.get(code, HTTPStatus.INTERNAL_SERVER_ERROR)
            self.close_connection = True  # an unread body must not be taken for the next request
            self._send(status, json.dumps({"error": message}).encode(), "application/json")

    do_GET = do_PUT = do_POST = do_DELETE = _dispatch  # the method is self.command

    def _head(self, status: int, kind: str, length: int, headers: dict) -> None:
        self.send_response(status)
        for k, v in {"Content-Type": kind, "Content-Length": str(length), "Cache-Control": "no-store",
                     **headers}.items():
            self.send_header(k, v)
        self.end_headers()

    def _send(self, status: int, body: bytes, kind: str) -> None:
        self._head(status, kind, len(body), {})
        self.wfile.write(body)

    def _json(self, value) -> None:
        self._send(HTTPStatus.OK, json.dumps(value).encode(), "application/json")

    def _length(self, limit: int) -> int:
        text = self.headers.get("Content-Length")
        if text is None or not text.isdigit():
            raise RequestError(HTTPStatus.LENGTH_REQUIRED, "the request needs a Content-Length")
        length = int(text)
        if length > limit:
            raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body of {length} bytes, over the limit {limit}")
        return length

    def _body(self) -> bytes:
        return self.rfile.read(self._length(MAX_BODY))

    def _file(self, path: Path, kind: str, headers: Optional[dict] = None) -> None:
        """Send a file, or the one byte range asked for (``Range: bytes=a-b``; video players seek with it)."""
        size = path.stat().st_size
        start, end, status = 0, size - 1, HTTPStatus.OK
        headers = {"Accept-Ranges": "bytes", **(headers or {})}
        found = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", ""))
        if found and size and (found.group(1) or found.group(2)):
            a, b = found.groups()
            start, end = (int(a), min(int(b or size - 1), size - 1)) if a else (max(size - int(b), 0), size - 1)
            if start > end:
                raise RequestError(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE,
                                   f"Range {a}-{b}: the file has {size} bytes")
            status, headers["Content-Range"] = HTTPStatus.PARTIAL_CONTENT, f"bytes {start}-{end}/{size}"
        self._head(status, kind, end - start + 1, headers)
        with open(path, "rb") as f:
            f.seek(start)
            copy_bytes(f.read, self.wfile.write, end - start + 1)

    def do_page(self) -> None:
        self._send(HTTPStatus.OK, PAGE.read_bytes(), "text/html; charset=utf-8")

    def do_state(self) -> None:
        self._json(self.workspace.state())

    def do_progress(self) -> None:
        self._json(self.workspace.progress)

    def do_frame(self, t: int) -> None:
        self._send(HTTPStatus.OK, self.workspace.current().frame(t).read_bytes(), "image/jpeg")

    def do_get_prompt(self, t: int) -> None:
        self._send(HTTPStatus.OK, self.workspace.current().prompt_ids(t), "application/octet-stream")

    def do_put_prompt(self, t: int) -> None:
        self.workspace.set_prompt(t, self.query.get("kind", "mask"), self._body())
        self._json(self.workspace.state())

    def do_delete_prompt(self, t: int) -> None:
        self.workspace.delete_prompt(t)
        self._json(self.workspace.state())

    def do_mask(self, t: int) -> None:
        self._send(HTTPStatus.OK, self.workspace.current().mask_ids(t), "application/octet-stream")

    def do_upload(self) -> None:
        length = self._length(self.workspace.max_upload)
        name = unquote(self.headers.get("X-File-Name", "video.mp4"))  # data: only its suffix is looked at
        self.workspace.open_upload(self.rfile.read, length, name)
        self._json(self.workspace.state())

    def do_run(self) -> None:
        try:
            request = json.loads(self._body() or b"{}")
            direction, save = request.get("direction", "forward"), tuple(request.get("save", ("palette", "mp4")))
        except (ValueError, AttributeError, TypeError):
            raise UsageError('run: expected {"direction": ..., "save": [...]}') from None
        self.workspace.start(str(direction), tuple(map(str, save)))
        self._json(self.workspace.progress)

    def do_overlay(self) -> None:
        video = self.workspace.current()
        if not video.summary or "mp4" not in video.summary["exports"]:
            raise RequestError(HTTPStatus.NOT_FOUND, "no overlay yet: propagate with the mp4 format")
        self._file(Path(video.summary["exports"]["mp4"]), "video/mp4")

    def do_results(self) -> None:
        self._file(self.workspace.current().results_zip(), "application/zip",
                   {"Content-Disposition": 'attachment; filename="hvc_results.zip"'})


def make_server(workspace: Workspace, host: str = "127.0.0.1", port: int = 8765) -> ThreadingHTTPServer:
    """The HTTP server of ``workspace`` (not started: ``serve_forever``); port 0 picks a free one."""
    handler = type("WorkspaceHandler", (Handler,), {"workspace": workspace})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server
