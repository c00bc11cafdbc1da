"""Durable records (docs/failure.md; family 5; hvc/fileio.py, hvc/completion.py).

Records and state are fsync'ed (the file, then its folder) before they count; a damaged
record (truncated, empty, garbage, a stray file) costs at most the one sequence it describes,
which a rerun redoes without --overwrite; --overwrite always recovers the folder.
(hvc.segment's damaged progress and state files: tests/test_safety_writers.py.)
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from helpers.fault_support import call, davis_tree, load_entry
from hvc.fileio import atomic_write_text
from test_faults import case, davis_args

test_py = load_entry("test.py")


@pytest.mark.parametrize("durable, syncs", [case("record", True, 2), case("plain output", False, 0)])
def test_durable_writes_fsync_the_file_then_the_folder(tmp_path, monkeypatch, durable, syncs):
    synced = []
    real = os.fsync

    def spy(fd):
        synced.append(os.path.realpath(f"/proc/self/fd/{fd}"))
        real(fd)
    monkeypatch.setattr(os, "fsync", spy)
    atomic_write_text(tmp_path / "done" / "alpha.json", "{}", durable=durable)
    assert len(synced) == syncs
    if syncs:
        assert Path(synced[0]).parent == tmp_path / "done" and Path(synced[0]).name.startswith(".tmp-alpha.json")
        assert synced[1] == str(tmp_path / "done")  # the folder, after the rename
    assert (tmp_path / "done" / "alpha.json").read_text() == "{}"


DAMAGE = [
    # id, file under .hvc, its new bytes, the sequences then redone
    case("0-byte record (power loss)", "done/alpha.json", b"", ["alpha"]),
    case("truncated record", "done/alpha.json", b'{"version": 1, "seq', ["alpha"]),
    case("record of another version", "done/alpha.json", b'{"version": 9}', ["alpha"]),
    case("record that is a list", "done/alpha.json", b"[]", ["alpha"]),
    case("binary garbage record", "done/beta.json", bytes(range(256)), ["beta"]),
    case("stray json in done/", "done/notes.json", b"hello", []),
    case("stray text in done/", "done/README", b"hello", []),
    case("stray file in staging/", "staging/x", b"x", []),
    case("stray file in pending/", "pending/zzz", b"x", []),
]


def _mtimes(out: Path) -> dict[str, int]:
    return {p.relative_to(out).as_posix(): p.stat().st_mtime_ns for p in sorted(out.glob("*/*.png"))}


@pytest.mark.parametrize("file, data, redo", DAMAGE)
def test_a_damaged_record_costs_at_most_its_sequence(tmp_path, capsys, file, data, redo):
    root = davis_tree(tmp_path / "DAVIS", {"alpha": 3, "beta": 2})
    out = tmp_path / "res"
    assert call(test_py.main, davis_args(root, out), capsys)[0] == 0
    before = _mtimes(out)
    (out / ".hvc" / file).parent.mkdir(parents=True, exist_ok=True)
    (out / ".hvc" / file).write_bytes(data)
    code, lines = call(test_py.main, davis_args(root, out), capsys)  # no --overwrite needed
    assert code == 0, lines
    after = _mtimes(out)
    assert sorted(after) == sorted(before)
    changed = sorted({k.split("/")[0] for k in after if after[k] != before[k]})
    assert changed == redo  # the damaged sequence only; the others are kept
    for name in redo:
        assert json.loads((out / ".hvc" / "done" / f"{name}.json").read_text())["sequence"] == name


def test_overwrite_recovers_a_folder_of_any_damage(tmp_path, capsys):
    root = davis_tree(tmp_path / "DAVIS", {"alpha": 3, "beta": 2})
    out = tmp_path / "res"
    assert call(test_py.main, davis_args(root, out), capsys)[0] == 0
    for file, data, _ in (p.values for p in DAMAGE):
        (out / ".hvc" / file).parent.mkdir(parents=True, exist_ok=True)
        (out / ".hvc" / file).write_bytes(data)
    assert call(test_py.main, davis_args(root, out, "prop.topk=5", "--overwrite"), capsys)[0] == 0
    records = {p.stem: json.loads(p.read_text()) for p in (out / ".hvc" / "done").glob("*.json") if p.stem != "notes"}
    assert sorted(records) == ["alpha", "beta"] and len({r["settings"] for r in records.values()}) == 1
