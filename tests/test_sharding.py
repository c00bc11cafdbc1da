"""Sharded inference: torchrun with 2 CPU processes (gloo) and --shard i/n + --merge-shards
write the same PNGs, byte for byte, as one process; the shards are balanced by frame count."""

from __future__ import annotations

import csv
import json
import zipfile

import pytest

from helpers.fault_support import REPO, call, davis_tree, error_lines, load_entry, png_bytes, script
from hvc.distributed import balanced_shards, parse_shard
from helpers.vos_trees import make_ytvos

test_py = load_entry("test.py")
SEQUENCES = {"long": 9, "mid": 6, "short": 4, "tiny": 3}  # frames: greedy split 9+3 / 6+4


def _args(root, out, *extra) -> list:
    return ["--config", REPO / "configs" / "test_davis17.yaml", "--model", "random18", f"data.root={root}",
            "--output", out, "data.workers=0", "data.batch_size=2", *extra]


@pytest.mark.parametrize("sizes, n, expected", [
    ([9, 6, 4, 3], 2, [[0, 3], [1, 2]]),  # 9 -> 0, 6 -> 1, 4 -> 1 (6 < 9), 3 -> 0 (9 < 10)
    ([5, 3, 8, 1, 4], 2, [[1, 2], [0, 3, 4]]),  # by size: 8, 5, 4, 3, 1
    ([2, 2, 2], 3, [[0], [1], [2]]),  # ties: the lower index first, to the lower shard
    ([7], 3, [[0], [], []]),  # more shards than sequences: some are empty
])
def test_balanced_shards_are_greedy_longest_first(sizes, n, expected):
    assert balanced_shards(sizes, n) == expected


def test_torchrun_two_cpu_processes_match_one_process(tmp_path, capsys):
    root = davis_tree(tmp_path / "DAVIS", SEQUENCES)
    one, two = tmp_path / "one", tmp_path / "two"
    assert call(test_py.main, _args(root, one), capsys)[0] == 0
    torchrun = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "test.py"]
    run = script([*torchrun, *_args(root, two)], timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert png_bytes(two) == png_bytes(one) and len(png_bytes(one)) == sum(SEQUENCES.values())
    with open(two / "sequences.csv", newline="") as f:
        workers = {row["sequence"]: row["worker"] for row in csv.DictReader(f)}
    assert workers == {"long": "rank 0/2", "tiny": "rank 0/2", "mid": "rank 1/2", "short": "rank 1/2"}

    # a bad frame on rank 1's share: every process stops, one error line names the frame
    (root / "JPEGImages" / "480p" / "short" / "00002.jpg").write_bytes(b"\xff\xd8 broken")
    run = script([*torchrun, *_args(root, tmp_path / "bad")], timeout=300)
    lines = error_lines(run.stderr)
    assert run.returncode != 0 and len(lines) == 1, run.stderr[-3000:]
    assert lines[0].startswith(f"error: {root}/JPEGImages/480p/short/00002.jpg: unreadable frame"), lines
    assert not (tmp_path / "bad" / "sequences.csv").exists()


def test_shards_and_merge_match_one_process(tmp_path, capsys):
    root = make_ytvos(tmp_path / "2018")
    one, sharded = tmp_path / "one", tmp_path / "sharded"
    args = ["--config", REPO / "configs" / "test_ytvos.yaml", "--model", "random18", f"data.root={root}",
            "data.workers=0", "--output"]
    assert call(test_py.main, [*args, one], capsys)[0] == 0
    assert call(test_py.main, [*args, sharded, "--shard", "1/2"], capsys)[0] == 0
    code, lines = call(test_py.main, [*args, sharded, "--merge-shards"], capsys)
    assert code == 3 and lines[-1] == f"error: {sharded}: 1 sequence(s) not finished with these settings: vid_a " \
                                      "(run the missing shards, or test.py without --shard)"
    assert call(test_py.main, [*args, sharded, "--shard", "0/2"], capsys)[0] == 0
    assert not (sharded / "submission.zip").exists()  # shards leave the summary to the merge
    assert call(test_py.main, [*args, sharded, "--merge-shards"], capsys)[0] == 0
    assert png_bytes(sharded) == png_bytes(one)
    with zipfile.ZipFile(sharded / "submission.zip") as a, zipfile.ZipFile(one / "submission.zip") as b:
        assert sorted(a.namelist()) == sorted(b.namelist()) and a.comment == b.comment
        assert all(a.read(name) == b.read(name) for name in a.namelist())
    records = {p.stem: json.loads(p.read_text())["worker"] for p in (sharded / ".hvc" / "done").glob("*.json")}
    assert records == {"vid_a": "shard 0/2", "vid_b": "shard 1/2"}


@pytest.mark.parametrize("text", ["2/2", "1", "-1/2", "a/b"])
def test_bad_shard_specs_are_usage_errors(text):
    with pytest.raises(Exception, match="--shard: expected i/n") as err:
        parse_shard(text)
    assert err.value.exit_code == 2
