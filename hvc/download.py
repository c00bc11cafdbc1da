"""Weights and datasets from their official sources, one command each: ``python -m hvc.download NAME [--root DIR]
[--mirror URL] [--delete-archive]``, or ``--list``. Items, resuming, checksums, what is never overwritten, safe
unpacking and exit codes: docs/download.md."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import stat
import sys
import tarfile
import urllib.error
import urllib.parse
import urllib.request
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Callable, Iterator, Optional

from tqdm import tqdm

from hvc.cli import project_folder, run_main
from hvc.errors import ArgumentParser, InputError, UsageError, entry_point
from hvc.fileio import atomic_path, atomic_write_text, file_digest, stream_digest

CHUNK = 1 << 20
CACHE = ".downloads"
RECORD = "checksums.json"


class DownloadError(InputError):
    """A transfer failed, was cut short or delivered other bytes than expected."""


@dataclass(frozen=True)
class Source:
    """One file of an item: its official URL and what is known of its content."""

    url: str  # sizes are not known in advance: a transfer must deliver the server's Content-Length
    sha256: Optional[str] = None
    md5: Optional[str] = None  # for sources that publish only an md5

    @property
    def filename(self) -> str:
        return PurePosixPath(urllib.parse.urlparse(self.url).path).name


# archive entry name -> path under the root, or None to leave it out
Placement = Callable[[str], Optional[str]]


def _rules(*rules: tuple[str, str]) -> Placement:
    """The first ``(regex, into)`` whose regex matches the whole entry name places it at ``into`` + group 1."""
    compiled = [(re.compile(regex), into) for regex, into in rules]
    return lambda name: next((into + m.group(1) for regex, into in compiled if (m := regex.fullmatch(name))), None)


@dataclass(frozen=True)
class Item:
    name: str
    title: str
    kind: str  # "weights" or "data"
    page: str  # the official page that names the sources
    sources: tuple[Source, ...] = ()
    place: Optional[Placement] = None  # None: the file itself is the result (no archive)
    expect: tuple[str, ...] = ()  # paths under the root that must exist afterwards
    by_hand: str = ""  # for items without a direct public download: where to get them


HVC_RELEASE = ("https://github.com/PGSmall/HVC#model-zoo-and-results",
               (Source("https://github.com/PGSmall/HVC/releases/download/v0.1/releases_models.zip"),),
               _rules((r"(?:.*/)?(hvc_\w+\.pth)", "")))  # page, sources, placement of both HVC encoders
ITEMS: dict[str, Item] = {item.name: item for item in (
    Item("hvc_coco", "HVC encoder trained on COCO (the paper's main model; the release zip holds all four)",
         "weights", *HVC_RELEASE, expect=("hvc_coco.pth",)),
    Item("hvc_ytb", "HVC encoder trained on YouTube-VOS 2018 (from the same release zip)",
         "weights", *HVC_RELEASE, expect=("hvc_ytb.pth",)),
    Item("moco_v1", "MoCo v1 ResNet-50, 200 epochs (--model mocov1, --merge-model mocov1)",
         "weights", "https://github.com/facebookresearch/moco",
         (Source("https://dl.fbaipublicfiles.com/moco/moco_checkpoints/moco_v1_200ep/"
                 "moco_v1_200ep_pretrain.pth.tar"),), expect=("moco_v1_200ep_pretrain.pth.tar",)),
    Item("davis17", "DAVIS 2017 train+val, 480p (also holds the DAVIS 2016 lists)",
         "data", "https://davischallenge.org/davis2017/code.html",
         (Source("https://data.vision.ee.ethz.ch/csergi/share/davis/DAVIS-2017-trainval-480p.zip"),),
         _rules((r"DAVIS/(.+)", "DAVIS/")), expect=("DAVIS/ImageSets/2017/val.txt",)),
    Item("davis16", "DAVIS 2016, 480p", "data", "https://davischallenge.org/davis2016/code.html",
         (Source("https://graphics.ethz.ch/Downloads/Data/Davis/DAVIS-data.zip"),),
         _rules((r"DAVIS/((?:JPEGImages/480p|Annotations/480p|ImageSets)/.+)", "DAVIS/")),  # not the 1080p frames
         expect=("DAVIS/ImageSets/2016/val.txt",)),
    Item("jhmdb", "JHMDB frames, joint positions and splits (pose tracking)", "data", "http://jhmdb.is.tue.mpg.de/",
         (Source("http://files.is.tue.mpg.de/jhmdb/Rename_Images.tar.gz"),
          Source("http://files.is.tue.mpg.de/jhmdb/joint_positions.zip"),
          Source("http://files.is.tue.mpg.de/jhmdb/splits.zip")),
         _rules((r"((?:Rename_Images|joint_positions|splits)/.+)", "JHMDB/"),
                (r"([^/]+_split[123]\.txt)", "JHMDB/splits/")),
         expect=("JHMDB/Rename_Images", "JHMDB/joint_positions", "JHMDB/splits")),
    Item("coco", "COCO 2017 train images (the paper's training set, about 118k images)", "data",
         "https://cocodataset.org/#download", (Source("http://images.cocodataset.org/zips/train2017.zip"),),
         _rules((r"train2017/([^/]+\.jpg)", "Static/JPEGImages/COCO/")), expect=("Static/JPEGImages/COCO",)),
    Item("bsds500", "BSDS500 photos (500 images; the committed checkpoint's training set)", "data",
         "https://www2.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/resources.html",
         (Source("http://www.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/BSR/BSR_bsds500.tgz"),),
         _rules((r"BSR/BSDS500/data/images/(?:train|val|test)/([^/]+\.jpg)", "Static/JPEGImages/BSDS500/")),
         expect=("Static/JPEGImages/BSDS500",)),
    Item("ytvos18", "YouTube-VOS 2018", "data", "https://youtube-vos.org/dataset/vos/",
         by_hand="register at https://youtube-vos.org/dataset/vos/, download from its Google Drive folder into "
                 "<root>/YTB/2018/ (data/README.md), then run python -m hvc.data.check <root> --dataset ytvos"),
    Item("vip", "VIP (Video Instance-level Parsing)", "data", "https://sysu-hcp.net/lip/",
         by_hand="download VIP from https://sysu-hcp.net/lip/ (Google Drive or Baidu) into <root>/VIP/ "
                 "(data/README.md), then run python -m hvc.data.check <root> --dataset vip"),
)}


@dataclass(frozen=True)
class Fetched:
    """One downloaded file: where it is, its sha256 and how the transfer went."""

    path: Path
    sha256: str
    resumed_from: int = 0  # bytes already present in the .part file when this run started
    transferred: int = 0  # bytes this run read from the source


@dataclass
class Installed:
    """The result of :func:`install`: the files written and those already present."""

    written: list[Path] = field(default_factory=list)
    unchanged: list[Path] = field(default_factory=list)


def _records(cache: Path) -> dict[str, dict]:
    path = cache / RECORD
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: unreadable checksum record ({exc}); fix or remove it") from None


def _check(source: Source, path: Path, cache: Path) -> tuple[str, Optional[str], bool]:
    """(sha256 of ``path``, how it differs from the published or recorded checksum or None, whether one is known)."""
    sha = file_digest(path)
    if source.md5 and file_digest(path, "md5") != source.md5:
        return sha, f"md5 is not the published {source.md5}", True
    expected = source.sha256 or _records(cache).get(source.filename, {}).get("sha256")
    if expected and sha != expected:
        where = "published" if source.sha256 else f"recorded in {cache / RECORD}"
        return sha, f"sha256 {sha} is not the {where} {expected}", True
    return sha, None, bool(expected or source.md5)


def _open(url: str, offset: int) -> tuple[BinaryIO, Optional[int], bool]:
    """(stream, total size or None, whether the stream starts at ``offset``)."""
    scheme = urllib.parse.urlparse(url).scheme
    if scheme not in ("http", "https", "file"):
        raise UsageError(f"{url}: only http, https and file URLs are supported")
    request = urllib.request.Request(url, headers={"User-Agent": "hvc.download"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")  # a file URL ignores it: seeked below
    try:
        response = urllib.request.urlopen(request, timeout=60)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # the range starts at the end: nothing left to read
            total = exc.headers.get("Content-Range", "").rpartition("/")[2]
            return io.BytesIO(), int(total) if total.isdigit() else offset, True
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except OSError as exc:  # URLError among them
        raise DownloadError(f"{url}: cannot open ({getattr(exc, 'reason', exc)}); offline? use --mirror") from None
    length = response.headers.get("Content-Length")
    size = int(length) if length and length.isdigit() else None
    if scheme == "file":
        response.seek(min(offset, size))
        return response, size, True
    resumed = response.status == 206
    return response, None if size is None else (offset if resumed else 0) + size, resumed


def fetch(source: Source, cache: Path, mirror: Optional[str] = None, progress: bool = True) -> Fetched:
    """``cache/<filename>``, downloaded (or resumed from ``cache/<filename>.part``) and verified; an
    existing one is verified, not downloaded again, and never overwritten (DownloadError if it differs)."""
    cache.mkdir(parents=True, exist_ok=True)
    final = cache / source.filename
    if final.is_file():
        sha, differs, _ = _check(source, final, cache)
        if differs:
            raise DownloadError(f"{final}: exists with other content (sha256 {sha}); move it away to download again")
        return Fetched(final, sha)
    part = final.with_name(final.name + ".part")
    offset = part.stat().st_size if part.is_file() else 0
    url = mirror.rstrip("/") + "/" + source.filename if mirror else source.url
    stream, total, resumed = _open(url, offset)
    offset = offset if resumed else 0  # the server sent the whole file: start the partial file again
    try:
        with open(part, "ab" if offset else "wb") as out, \
                tqdm.wrapattr(out, "write", total=total, bytes=False, initial=offset, unit="B", unit_scale=True,
                              desc=source.filename, disable=not progress, leave=False) as counted:
            shutil.copyfileobj(stream, counted, CHUNK)
    except OSError as exc:  # URLError and ConnectionError among them
        if exc.filename is not None:
            raise  # our own file (disk full, permission): reported as an I/O error
        raise DownloadError(f"{url}: interrupted at {part.stat().st_size} bytes ({exc}); rerun to resume") from None
    finally:
        stream.close()
    done = part.stat().st_size  # the file is closed: every byte written is in it
    if total is not None and done != total:
        raise DownloadError(f"{url}: interrupted at {done} of {total} bytes; rerun to resume from {part}")
    sha, differs, known = _check(source, part, cache)
    if differs:
        part.unlink()  # wrong bytes: a rerun must start from scratch, not resume them
        raise DownloadError(f"{source.url}: checksum mismatch: {differs}")
    if not known:
        records = _records(cache)
        records[source.filename] = {"sha256": sha, "size": done, "url": source.url}
        atomic_write_text(cache / RECORD, json.dumps(records, indent=1, sort_keys=True) + "\n")
        warnings.warn(f"{source.filename}: the source publishes no checksum; recorded sha256 {sha} in "
                      f"{cache / RECORD}", stacklevel=2)
    os.replace(part, final)
    return Fetched(final, sha, resumed_from=offset, transferred=done - offset)


def safe_member_name(name: str) -> bool:
    """Whether an archive entry name stays inside the folder it is unpacked into."""
    if not name or name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return False
    return ".." not in re.split(r"[/\\]+", name)


def _entries(archive: Path) -> Iterator[tuple[str, Optional[Callable[[], BinaryIO]], bool]]:
    """(name, opener or None for folders, is a link) of every archive entry."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                link = stat.S_ISLNK(info.external_attr >> 16)
                yield info.filename, None if info.is_dir() else (lambda i=info: zf.open(i)), link
        return
    try:
        tf = tarfile.open(archive, "r:*")
    except tarfile.TarError as exc:
        raise InputError(f"{archive}: neither a zip nor a tar archive ({exc})") from None
    with tf:
        for member in tf.getmembers():
            link = member.issym() or member.islnk() or not (member.isfile() or member.isdir())
            yield member.name, (lambda m=member: tf.extractfile(m)) if member.isfile() else None, link


def unpack(archive: Path, root: Path, place: Placement, result: Optional[Installed] = None,
           progress: bool = True) -> Installed:
    """Unpack the entries ``place`` maps into ``root``, keeping identical files. Refused before anything is written
    (InputError): an entry with an absolute path, a ``..`` component or a link; a file there with other content."""
    result, matched = result or Installed(), False
    new: dict[str, Path] = {}  # entry name -> its file under the root, absent so far
    for name, opener, link in _entries(archive):
        if not safe_member_name(name):
            raise InputError(f"{archive}: entry {name!r} would be written outside {root}; refusing this archive")
        if link:
            raise InputError(f"{archive}: entry {name!r} is a link or device; refusing this archive")
        target = None if opener is None else place(name.replace("\\", "/"))  # a folder: nothing to write
        if target is None:
            continue
        if not safe_member_name(target):
            raise InputError(f"{archive}: entry {name!r} maps outside {root}; refusing this archive")
        path, matched = root / target, True
        if not path.exists():
            new[name] = path
            continue
        with opener() as stream:  # compared in this first pass, so that a conflict stops before any write
            if not path.is_file() or stream_digest(stream) != file_digest(path):
                raise InputError(f"{path}: exists with other content than {archive.name}:{name}; refusing to "
                                 f"overwrite it (move it away, or choose another --root)")
        result.unchanged.append(path)
    if not matched:
        raise InputError(f"{archive}: none of its entries belongs to the expected layout; is it the right file?")
    with tqdm(total=len(new), unit="file", desc=f"unpack {archive.name}", disable=not progress, leave=False) as bar:
        for name, opener, _ in _entries(archive):
            path = new.get(name)
            if path is not None and not path.exists():  # not there: not written by an earlier entry of that name
                path.parent.mkdir(parents=True, exist_ok=True)
                with opener() as stream, atomic_path(path) as tmp, open(tmp, "wb") as out:
                    shutil.copyfileobj(stream, out, CHUNK)
                result.written.append(path)
                bar.update(1)
    return result


def install(item: Item, root: Path, mirror: Optional[str] = None, keep_archive: bool = True,
            progress: bool = True) -> Installed:
    """Fetch every source of ``item`` into ``root/.downloads``, unpack it into ``root``, check the expected paths."""
    if item.by_hand:
        raise UsageError(f"{item.name}: no direct public download; {item.by_hand}")
    root.mkdir(parents=True, exist_ok=True)
    cache = root / CACHE
    result, archives = Installed(), []
    for source in item.sources:
        got = fetch(source, cache, mirror, progress)
        archives.append(got.path)
        target = root / source.filename
        if item.place is not None:
            unpack(got.path, root, item.place, result, progress)
        elif target.exists():  # a plain file: it is its own result
            if file_digest(target) != got.sha256:
                raise InputError(f"{target}: exists with other content than {source.url}; refusing to overwrite it")
            result.unchanged.append(target)
        else:
            shutil.copyfile(got.path, target) if keep_archive else os.replace(got.path, target)
            result.written.append(target)
    if item.name == "davis16":
        _derive_davis16_lists(root)
    missing = [p for p in item.expect if not (root / p).exists()]
    if missing:
        raise InputError(f"{root}: missing {', '.join(missing)} after unpacking {item.name}: not the expected layout")
    if not keep_archive:
        for archive in archives:
            archive.unlink(missing_ok=True)
    return result


def _derive_davis16_lists(root: Path) -> None:
    """``ImageSets/2016/<split>.txt`` (the sequence names the configs read), if absent, from DAVIS 2016's
    ``ImageSets/480p/<split>.txt`` (lines "/JPEGImages/480p/<seq>/<frame>.jpg ...")."""
    for split in ("train", "val"):
        src, dst = root / "DAVIS/ImageSets/480p" / f"{split}.txt", root / "DAVIS/ImageSets/2016" / f"{split}.txt"
        if src.is_file() and not dst.exists():
            lines = (line.split() for line in src.read_text().split("\n"))
            names = [n for n in dict.fromkeys(PurePosixPath(p[0]).parent.name for p in lines if p) if n]
            dst.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(dst, "".join(f"{n}\n" for n in names))


@entry_point
def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m hvc.download", description=__doc__.split(":")[0])
    parser.add_argument("name", nargs="?", help=" | ".join(ITEMS))
    parser.add_argument("--root", type=Path, help="default: checkpoints/ (weights), $DATA_ROOT or data (datasets)")
    parser.add_argument("--mirror", help="a folder URL holding the same files (file:///DIR, https://host/dir)")
    parser.add_argument("--delete-archive", action="store_true", help="remove the downloaded archives after unpacking")
    parser.add_argument("--list", action="store_true", help="show every item, its sources and checksums")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.list:  # every item, its sources and what checks them
        for item in ITEMS.values():
            print(f"{item.name}: {item.title} ({item.kind}; {item.page})")
            if item.by_hand:
                print(f"    by hand: {item.by_hand}")
            for s in item.sources:
                known = f"sha256 {s.sha256}" if s.sha256 else f"md5 {s.md5}" if s.md5 else "sha256 recorded on download"
                print(f"    {s.url}  [{known}]")
        return 0
    if args.name not in ITEMS:
        raise UsageError(f"command line: name {args.name!r}: choose one of {', '.join(ITEMS)} (or --list)")
    item = ITEMS[args.name]
    default = project_folder("checkpoints") if item.kind == "weights" else Path(os.environ.get("DATA_ROOT") or "data")
    root = args.root or default
    result = install(item, root, args.mirror, keep_archive=not args.delete_archive, progress=not args.no_progress)
    print(f"{item.name}: {len(result.written)} files written, {len(result.unchanged)} already there, under {root}")
    from hvc.data.check import FOLDERS, check_root
    if item.name in FOLDERS:  # a benchmark: is it complete?
        print(check_root(root, item.name).text())
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
