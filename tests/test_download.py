"""python -m hvc.download, offline: file:// mirrors and a local HTTP server stand in for the
official sources (docs/download.md)."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import tarfile
import threading
import zipfile
from pathlib import Path

import pytest

from hvc import download
from hvc.download import DownloadError, Item, Source, fetch, install, unpack
from hvc.errors import InputError
from helpers.task_fixtures import synthetic_tasks  # noqa: F401 - pytest fixture
from helpers.vos_trees import make_davis17


def _zip_tree(tree: Path, archive: Path, prefix: str) -> Path:
    """``archive``: every file under ``tree`` stored as ``<prefix><relative path>``."""
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(tree.rglob("*")):
            if path.is_file():
                zf.write(path, prefix + path.relative_to(tree).as_posix())
    return archive


@pytest.fixture()
def davis_mirror(tmp_path) -> Path:
    """A folder holding DAVIS-2017-trainval-480p.zip of a small synthetic DAVIS 2017 tree."""
    tree = make_davis17(tmp_path / "tree")
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    _zip_tree(tree, mirror / "DAVIS-2017-trainval-480p.zip", "DAVIS/")
    return mirror


def test_dataset_from_a_file_mirror_is_unpacked_checked_and_recorded(tmp_path, davis_mirror, capsys):
    root = tmp_path / "data"
    with pytest.warns(UserWarning, match="publishes no checksum; recorded sha256"):
        code = download.main(["davis17", "--root", str(root), "--mirror", davis_mirror.as_uri(), "--no-progress"])
    assert code == 0
    out = capsys.readouterr().out
    assert "bash scripts/run_test.sh <model> davis17: will run" in out
    assert sorted(p.name for p in (root / "DAVIS/JPEGImages/480p").iterdir()) == ["alpha", "beta"]
    archive = davis_mirror / "DAVIS-2017-trainval-480p.zip"
    record = json.loads((root / ".downloads/checksums.json").read_text())
    assert record["DAVIS-2017-trainval-480p.zip"]["sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()

    # a rerun verifies against the record and rewrites nothing
    again = install(download.ITEMS["davis17"], root, davis_mirror.as_uri(), progress=False)
    assert again.written == [] and len(again.unchanged) > 0


def test_a_different_archive_than_the_recorded_one_is_refused(tmp_path, davis_mirror):
    root = tmp_path / "data"
    with pytest.warns(UserWarning):
        install(download.ITEMS["davis17"], root, davis_mirror.as_uri(), progress=False)
    cached = root / ".downloads/DAVIS-2017-trainval-480p.zip"
    cached.unlink()
    archive = davis_mirror / "DAVIS-2017-trainval-480p.zip"
    with zipfile.ZipFile(archive, "a") as zf:  # the "source" now serves other bytes
        zf.writestr("DAVIS/extra.txt", "changed")
    with pytest.raises(DownloadError, match="checksum mismatch: sha256 .* recorded in"):
        install(download.ITEMS["davis17"], root, davis_mirror.as_uri(), progress=False)
    assert not cached.exists() and not cached.with_name(cached.name + ".part").exists()


def test_published_checksum_mismatch_is_refused_and_the_bytes_dropped(tmp_path):
    payload = tmp_path / "weights.pth"
    payload.write_bytes(b"not the published weights" * 100)
    source = Source(payload.as_uri(), sha256="0" * 64)
    with pytest.raises(DownloadError, match="checksum mismatch"):
        fetch(source, tmp_path / "cache", progress=False)
    assert list((tmp_path / "cache").iterdir()) == []  # neither the file nor a .part to resume


def test_unpacked_file_with_other_content_is_never_overwritten(tmp_path, davis_mirror):
    root = tmp_path / "data"
    with pytest.warns(UserWarning):
        install(download.ITEMS["davis17"], root, davis_mirror.as_uri(), progress=False)
    mine = root / "DAVIS/ImageSets/2017/val.txt"
    mine.write_text("my own list\n")
    (root / "DAVIS/JPEGImages/480p/beta/00003.jpg").unlink()  # would be restored if not refused
    with pytest.raises(InputError, match="exists with other content.*refusing to overwrite"):
        install(download.ITEMS["davis17"], root, davis_mirror.as_uri(), progress=False)
    assert mine.read_text() == "my own list\n"
    assert not (root / "DAVIS/JPEGImages/480p/beta/00003.jpg").exists()  # the refusal came before any write


def test_file_url_resumes_a_partial_download(tmp_path):
    data = bytes(range(256)) * 4000
    (tmp_path / "src").mkdir()
    src = tmp_path / "src" / "model.pth.tar"
    src.write_bytes(data)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "model.pth.tar.part").write_bytes(data[:300_000])
    got = fetch(Source(src.as_uri(), sha256=hashlib.sha256(data).hexdigest()), cache, progress=False)
    assert (got.resumed_from, got.transferred) == (300_000, len(data) - 300_000)
    assert got.path.read_bytes() == data


class _RangeServer(http.server.BaseHTTPRequestHandler):
    """Serves ``payload``; honours Range; the first full-file response is cut after ``cut`` bytes."""

    payload = b""
    cut = 0
    ranges: list = []

    def do_GET(self):  # noqa: N802 - http.server's hook
        start = 0
        header = self.headers.get("Range")
        type(self).ranges.append(header)
        if header:
            start = int(header.split("=")[1].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(self.payload) - 1}/{len(self.payload)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(self.payload) - start))
        self.end_headers()
        body = self.payload[start:]
        if not header and type(self).cut:
            body, type(self).cut = body[:type(self).cut], 0  # the connection drops mid-file
        self.wfile.write(body)
        self.wfile.flush()

    def log_message(self, *args):
        pass


def test_interrupted_http_download_resumes_with_a_range_request(tmp_path):
    data = hashlib.sha256(b"seed").digest() * 40_000  # 1.28 MB
    handler = type("Handler", (_RangeServer,), {"payload": data, "cut": 500_000, "ranges": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/files/DAVIS-data.zip"
        source = Source(url, md5=hashlib.md5(data).hexdigest())
        with pytest.raises(DownloadError, match="interrupted at 500000 of 1280000 bytes.*resume"):
            fetch(source, tmp_path, progress=False)
        assert (tmp_path / "DAVIS-data.zip.part").stat().st_size == 500_000
        got = fetch(source, tmp_path, progress=False)
    finally:
        server.shutdown()
        server.server_close()
    assert handler.ranges == [None, "bytes=500000-"]
    assert (got.resumed_from, got.transferred) == (500_000, 780_000)
    assert got.path.read_bytes() == data


@pytest.mark.parametrize("name", ["../escape.txt", "DAVIS/../../escape.txt", "/tmp/absolute.txt"])
def test_zip_entries_leaving_the_root_are_refused(tmp_path, name):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("DAVIS/ImageSets/2017/val.txt", "alpha\n")
        zf.writestr(name, "outside")
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(InputError, match="outside .*refusing this archive"):
        unpack(archive, root, lambda n: n, progress=False)
    assert list(root.iterdir()) == [] and not (tmp_path / "escape.txt").exists()


def test_tar_links_are_refused(tmp_path):
    archive = tmp_path / "links.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        info = tarfile.TarInfo("Rename_Images/run/link")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(info)
        body = b"frame"
        info = tarfile.TarInfo("Rename_Images/run/00001.png")
        info.size = len(body)
        tf.addfile(info, io.BytesIO(body))
    with pytest.raises(InputError, match="is a link"):
        unpack(archive, tmp_path / "root", lambda n: n, progress=False)


def test_layout_mapping_flattens_bsds500_and_checks_the_result(tmp_path):
    """The BSDS500 tarball's images/{train,val,test}/*.jpg land in Static/JPEGImages/BSDS500/."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    with tarfile.open(mirror / "BSR_bsds500.tgz", "w:gz") as tf:
        for name in ("BSR/BSDS500/data/images/train/1.jpg", "BSR/BSDS500/data/images/test/2.jpg",
                     "BSR/BSDS500/data/groundTruth/train/1.mat", "BSR/documentation/readme.txt"):
            info = tarfile.TarInfo(name)
            info.size = len(name)
            tf.addfile(info, io.BytesIO(name.encode()))
    root = tmp_path / "data"
    with pytest.warns(UserWarning):
        result = install(download.ITEMS["bsds500"], root, mirror.as_uri(), keep_archive=False, progress=False)
    assert sorted(p.name for p in (root / "Static/JPEGImages/BSDS500").iterdir()) == ["1.jpg", "2.jpg"]
    assert len(result.written) == 2 and not (root / ".downloads/BSR_bsds500.tgz").exists()


def test_items_without_a_public_download_say_where_to_get_them(capsys):
    assert download.main(["vip"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: vip: no direct public download") and "\n" not in err


def test_missing_expected_file_after_unpacking_is_an_error(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    with zipfile.ZipFile(mirror / "releases_models.zip", "w") as zf:
        zf.writestr("releases_models/hvc_voc.pth", b"weights")  # not the hvc_coco.pth asked for
    item: Item = download.ITEMS["hvc_coco"]
    with pytest.warns(UserWarning), pytest.raises(InputError, match="missing hvc_coco.pth"):
        install(item, tmp_path / "ckpt", mirror.as_uri(), progress=False)


def test_jhmdb_from_its_three_archives(tmp_path, synthetic_tasks):  # noqa: F811
    """Rename_Images.tar.gz, joint_positions.zip and splits.zip unpack side by side into JHMDB/,
    and the result is a JHMDB root test.py accepts."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    jhmdb = synthetic_tasks.jhmdb
    with tarfile.open(mirror / "Rename_Images.tar.gz", "w:gz") as tf:
        tf.add(jhmdb / "Rename_Images", "Rename_Images")
    _zip_tree(jhmdb / "joint_positions", mirror / "joint_positions.zip", "joint_positions/")
    _zip_tree(jhmdb / "splits", mirror / "splits.zip", "splits/")
    root = tmp_path / "data"
    with pytest.warns(UserWarning):
        code = download.main(["jhmdb", "--root", str(root), "--mirror", mirror.as_uri(), "--no-progress"])
    assert code == 0
    from hvc.data.check import check_dataset
    report = check_dataset(root, "jhmdb")
    assert report.runs and report.sequences == sorted(synthetic_tasks.jhmdb_videos)


@pytest.mark.parametrize("args", [["-m", "hvc.download", "--list"], ["-m", "hvc.data.check", "tests"]])
def test_listing_into_a_closed_pipe_ends_quietly(args):
    """`python -m hvc.download --list | head -1`: no BrokenPipeError traceback (hvc.cli.run_main)."""
    import os
    import subprocess
    import sys
    read_end, write_end = os.pipe()
    os.close(read_end)
    repo = Path(__file__).resolve().parents[1]
    try:
        done = subprocess.run([sys.executable, *args], cwd=repo, stdout=write_end, stderr=subprocess.PIPE, text=True,
                              timeout=120)
    finally:
        os.close(write_end)
    assert "Traceback" not in done.stderr, done.stderr
