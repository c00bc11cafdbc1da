"""``python -m hvc.app`` without a browser: its HTTP API on a real server (port 0, a thread), on
the demo video (docs/app.md). The page in a real browser: tests/test_app_browser.py."""

from __future__ import annotations

import http.client
import io
import json
import os
import subprocess
import sys
import threading
import time
import zipfile

import numpy as np
import pytest
from PIL import Image

import hvc.app.server as server_module
from hvc.app.__main__ import main as app_main, parse_args
from hvc.app.server import Workspace, make_server
from hvc.demo.video import render_video
from hvc.errors import EXIT_BUSY, EXIT_USAGE
from hvc.exports import Mp4Writer
from hvc.segment.__main__ import main as segment_main
from hvc.segment.prompt import PromptSpec
from helpers.locations import REPO

FRAMES, H, W = 8, 96, 160


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """demo.mp4 (10 frames, 96x160, H.264), its frames and ground-truth ids."""
    folder = tmp_path_factory.mktemp("clip")
    frames, labels = render_video(num_frames=FRAMES, height=H, width=W)
    with Mp4Writer(folder / "demo.mp4", 12) as video:
        for f in frames:
            video.write(f)
    return folder / "demo.mp4", frames, labels


class Client:
    """One server of one workspace, and requests to it."""

    def __init__(self, workspace: Workspace):
        self.workspace = workspace
        self.server = make_server(workspace, "127.0.0.1", 0)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def request(self, method: str, path: str, body: bytes = None, headers: dict = None) -> tuple[int, dict, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()

    def json(self, method: str, path: str, body: bytes = None, headers: dict = None) -> tuple[int, dict]:
        status, _, data = self.request(method, path, body, headers)
        return status, json.loads(data)

    def wait(self, timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            progress = self.json("GET", "/api/progress")[1]
            if progress["state"] != "running":
                return progress
            time.sleep(0.1)
        raise AssertionError("the run did not end")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.workspace.lock.release()


@pytest.fixture
def client(clip, tmp_path):
    workspace = Workspace(tmp_path / "app", parse_args([])[1], max_upload=1 << 20)
    workspace.open_path(clip[0])
    c = Client(workspace)
    yield c
    c.close()


def test_state_and_frames(client, clip):
    _, frames, _ = clip
    status, state = client.json("GET", "/api/state")
    assert status == 200
    assert state["video"]["frames"] == FRAMES and (state["video"]["height"], state["video"]["width"]) == (H, W)
    assert state["progress"]["state"] == "idle" and "mp4" in state["formats"] and "forward" in state["directions"]
    status, headers, jpeg = client.request("GET", "/api/frame/3")
    assert status == 200 and headers["Content-Type"] == "image/jpeg"
    shown = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB")).astype(int)
    assert shown.shape == (H, W, 3)
    assert np.abs(shown - frames[3].astype(int)).mean() < 12  # frame 3 (after H.264 and JPEG), not another
    assert np.abs(shown - frames[-1].astype(int)).mean() > np.abs(shown - frames[3].astype(int)).mean()
    status, error = client.json("GET", f"/api/frame/{FRAMES}")
    assert status == 404 and error["error"] == f"frame {FRAMES}: the video has frames 0..{FRAMES - 1}"
    status, headers, page = client.request("GET", "/")
    assert status == 200 and b"<canvas" in page and headers["Content-Type"].startswith("text/html")


@pytest.mark.parametrize("path", ["/../../etc/passwd", "/api/frame/../../../etc/passwd", "/api/%2e%2e/%2e%2e/etc/passwd",
                                  "/api/frame/..%2f..%2fsecret", "/api/results.zip/..\\..\\x", "//etc/passwd"])
def test_path_traversal_is_refused(client, path):
    status, error = client.json("GET", path)
    assert status in (400, 404) and set(error) == {"error"}
    assert b"root:" not in json.dumps(error).encode()


def test_unknown_pages_methods_and_hosts_are_refused(client):
    assert client.json("GET", "/api/nothing")[0] == 404
    assert client.json("DELETE", "/api/state")[0] == 405
    status, error = client.json("GET", "/api/state", headers={"Host": "evil.example:8765"})
    assert status == 403 and "127.0.0.1" in error["error"]


def test_a_prompt_is_saved_as_an_id_png_and_read_back(client, clip):
    _, _, labels = clip
    status, state = client.json("PUT", "/api/prompt/0?kind=mask", labels[0].tobytes())
    assert status == 200 and state["video"]["prompts"] == {"0": "mask"}
    saved = client.workspace.video.prompts[0]
    assert saved == PromptSpec(0, "mask", client.workspace.video.folder / "prompts" / "0.png")
    with Image.open(saved.path) as im:
        assert im.mode == "P" and np.array_equal(np.asarray(im), labels[0])
    status, _, ids = client.request("GET", "/api/prompt/0")
    assert status == 200 and ids == labels[0].tobytes()
    assert client.json("DELETE", "/api/prompt/0")[1]["video"]["prompts"] == {}
    assert client.json("GET", "/api/prompt/0")[0] == 404


@pytest.mark.parametrize("query, body, message", [
    ("kind=mask", b"\x01" * 10, "prompt of frame 0: 10 bytes, expected 96x160"),
    ("kind=mask", b"\xff" * (H * W), "mask of frame 0: ids go up to 254"),
    ("kind=mask", b"\x00" * (H * W), "prompt of frame 0 is empty"),
    ("kind=box", b"\x01" * (H * W), "kind=box: must be one of mask, scribble"),
])
def test_bad_prompts_are_refused_with_one_line(client, query, body, message):
    status, error = client.json("PUT", f"/api/prompt/0?{query}", body)
    assert status == 400 and error["error"].startswith(message)
    assert client.workspace.video.prompts == {} and not any((client.workspace.video.folder / "prompts").iterdir())


def test_bad_uploads_are_refused(client, tmp_path):
    before = client.workspace.video
    # refused on its Content-Length, before any of it is read (here only its first bytes are sent)
    status, error = client.json("POST", "/api/video", b"x" * 1000, {"X-File-Name": "big.mp4",
                                                                  "Content-Length": str((1 << 20) + 1)})
    assert status == 413 and "over the limit" in error["error"]
    status, error = client.json("POST", "/api/video", b"not a video at all", {"X-File-Name": "../../evil.mp4"})
    assert status == 400 and "cannot decode a frame" in error["error"]
    assert "video-2/upload.mp4" in error["error"] and "evil" not in error["error"]  # stored under our name
    assert client.workspace.video is before  # the open video stays
    # the name was data: nothing was written outside the tool's folder, under a name of ours
    assert not (tmp_path / "evil.mp4").exists() and not (tmp_path.parent / "evil.mp4").exists()
    assert sorted(p.name for p in (tmp_path / "app").iterdir()) == [".hvc", "video-1"]  # the failed one removed


def test_a_folder_of_frames_opens_read_in_place(clip, tmp_path):
    _, frames, _ = clip
    folder = tmp_path / "frames"
    folder.mkdir()
    for t, name in enumerate(["a", "b", "c"]):
        Image.fromarray(frames[t]).save(folder / f"{name}.png")
    workspace = Workspace(tmp_path / "app", {}, max_upload=1 << 20)
    video = workspace.open_path(folder)
    assert (video.count, video.size, video.names, video.path) == (3, (H, W), ["a", "b", "c"], folder)
    shown = np.asarray(Image.open(video.frame(1)).convert("RGB")).astype(int)
    assert np.abs(shown - frames[1].astype(int)).mean() < 8
    assert sorted(p.name for p in folder.iterdir()) == ["a.png", "b.png", "c.png"]  # nothing written there
    workspace.lock.release()


def test_an_upload_opens_a_new_video(client, clip):
    status, state = client.json("POST", "/api/video", clip[0].read_bytes(), {"X-File-Name": "my%20clip.MP4"})
    assert status == 200 and state["video"]["label"] == "my clip.MP4" and state["video"]["frames"] == FRAMES
    assert client.workspace.video.path == client.workspace.root / "video-2" / "upload.mp4"


def test_propagation_gives_the_masks_of_hvc_segment(client, clip, tmp_path):
    """The tool's run is hvc.segment's: the same masks, byte for byte, as the command line's
    for the prompt the tool saved; progress, overlay (with ranges) and the zip of the exports."""
    video_path, _, labels = clip
    blob = np.zeros((H, W), np.uint8)
    blob[30:60, 40:80] = labels[0][30:60, 40:80]  # part of the objects, as a user paints it
    assert client.json("PUT", "/api/prompt/0?kind=mask", blob.tobytes())[0] == 200
    status, progress = client.json("POST", "/api/run", json.dumps({"save": ["rle", "mp4"]}).encode())
    assert status == 200 and progress["state"] == "running"
    assert client.json("POST", "/api/run", b"{}")[0] == 409  # one run at a time
    assert client.json("PUT", "/api/prompt/3?kind=mask", blob.tobytes())[0] == 409  # no edits while it runs
    progress = client.wait()
    assert progress == {"state": "done", "done": FRAMES, "total": FRAMES, "message": ""}
    reference = tmp_path / "reference"
    assert segment_main([str(video_path), "--mask", str(client.workspace.video.prompts[0].path),
                         "--output", str(reference)]) == 0
    for t in range(FRAMES):
        status, _, ids = client.request("GET", f"/api/mask/{t}")
        assert status == 200 and ids == np.asarray(Image.open(reference / "masks" / f"{t:05d}.png")).tobytes()
    status, headers, zipped = client.request("GET", "/api/results.zip")
    assert status == 200 and headers["Content-Disposition"] == 'attachment; filename="hvc_results.zip"'
    with zipfile.ZipFile(io.BytesIO(zipped)) as z:
        names = set(z.namelist())
        assert {f"masks/{t:05d}.png" for t in range(FRAMES)} | {"rle.json", "overlay.mp4", "summary.json"} == names
        for t in range(FRAMES):
            assert z.read(f"masks/{t:05d}.png") == (reference / "masks" / f"{t:05d}.png").read_bytes()
    overlay = (client.workspace.video.results / "overlay.mp4").read_bytes()
    status, headers, part = client.request("GET", "/api/overlay.mp4", headers={"Range": "bytes=100-199"})
    assert status == 206 and part == overlay[100:200] and headers["Content-Range"] == f"bytes 100-199/{len(overlay)}"


def _fake_segment(calls: list):
    def segment(opts, on_frame=None):
        calls.append(opts)
        for t in range(3):
            on_frame(t)
        return {"frames": 3, "masks": str(opts.output / "masks"), "exports": {"palette": str(opts.output / "masks")}}
    return segment


def test_a_correction_sends_every_prompt_to_hvc_segment(client, clip, monkeypatch):
    """Prompts on any frame go to hvc.segment as PromptSpecs, in frame order, with the kinds
    painted; the results folder and the settings are the same run after run."""
    _, _, labels = clip
    calls: list = []
    monkeypatch.setattr(server_module, "segment", _fake_segment(calls))
    scribble = np.zeros((H, W), np.uint8)
    scribble[10:12, 10:60], scribble[80:82, 10:150] = 1, 255
    assert client.json("PUT", "/api/prompt/0?kind=mask", labels[0].tobytes())[0] == 200
    assert client.json("POST", "/api/run", b'{"save": ["binary"]}')[0] == 200
    assert client.wait()["state"] == "done"
    assert client.json("PUT", "/api/prompt/6?kind=scribble", scribble.tobytes())[0] == 200
    assert client.json("POST", "/api/run", b"{}")[0] == 200
    assert client.wait()["state"] == "done"
    first, second = calls
    prompts = client.workspace.video.folder / "prompts"
    assert first.prompts == (PromptSpec(0, "mask", prompts / "0.png"),)
    assert second.prompts == (PromptSpec(0, "mask", prompts / "0.png"), PromptSpec(6, "scribble", prompts / "6.png"))
    assert np.array_equal(np.asarray(Image.open(prompts / "6.png")), scribble)  # 255: background strokes, kept
    assert first.output == second.output == client.workspace.video.results and second.overwrite
    assert first.save == ("palette", "binary") and second.save == ("palette", "mp4")
    assert (first.model, first.context, first.video) == ("hvc", 50, client.workspace.video.path)


def test_the_direction_is_passed_where_hvc_segment_has_one(client, clip, monkeypatch):
    _, _, labels = clip
    calls: list = []
    monkeypatch.setattr(server_module, "segment", _fake_segment(calls))
    assert client.json("PUT", "/api/prompt/0?kind=mask", labels[0].tobytes())[0] == 200
    assert client.json("GET", "/api/state")[1]["directions"] == ["forward", "backward", "both"]
    assert client.json("POST", "/api/run", b'{"direction": "both"}')[0] == 200
    assert client.wait()["state"] == "done" and calls[0].direction == "both"
    assert client.json("POST", "/api/run", b'{"direction": "sideways"}')[0] == 400


def test_a_correction_on_a_later_frame_with_the_engine(client, clip):
    """The real engine on prompts on frames 0 and 5: frame 5's mask is the correction."""
    _, _, labels = clip
    assert client.json("PUT", "/api/prompt/0?kind=mask", labels[0].tobytes())[0] == 200
    assert client.json("PUT", "/api/prompt/5?kind=mask", labels[5].tobytes())[0] == 200
    assert client.json("POST", "/api/run", b'{"save": []}')[0] == 200
    progress = client.wait()
    assert progress["state"] == "done", progress
    assert client.request("GET", "/api/mask/5")[2] == labels[5].tobytes()


def test_a_failed_run_reports_one_line(client, clip, tmp_path):
    bad = np.zeros((H, W), np.uint8)
    bad[:, :] = 1  # one object covering everything: fine for the engine; the checkpoint is not
    client.workspace.options = {**client.workspace.options, "checkpoint": str(tmp_path / "missing.pth")}
    assert client.json("PUT", "/api/prompt/0?kind=mask", bad.tobytes())[0] == 200
    assert client.json("POST", "/api/run", b"{}")[0] == 200
    progress = client.wait()
    assert progress["state"] == "error" and "missing.pth" in progress["message"] and "\n" not in progress["message"]
    assert client.json("GET", "/api/results.zip")[0] == 404


def test_one_tool_per_folder(client):
    done = subprocess.run([sys.executable, "-m", "hvc.app", "--output", str(client.workspace.root), "--port", "0"],
                          cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == EXIT_BUSY and done.stderr.startswith("error: ") and "--output" in done.stderr


def test_usage_errors_write_nothing(clip, tmp_path, capsys):
    assert app_main(["--port", "70000", "--output", str(tmp_path / "a")]) == EXIT_USAGE
    assert "--port must lie in" in capsys.readouterr().err
    assert app_main([str(clip[0]), "--output", str(clip[0].parent)]) == EXIT_USAGE  # the video's own folder
    assert "--output contains the input VIDEO" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (clip[0].parent / ".hvc").exists()
