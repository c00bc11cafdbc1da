"""The README as a landing page: short, its numbers generated from docs/results.csv, its links
alive, no project-internal words, and its "Use it" block runs on a fresh clone."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
# pages written on other branches of the same release, linked before they land here
PAGES_OF_OTHER_BRANCHES = {"docs/api.md", "docs/failure.md", "docs/segment.md", "docs/gpu.md"}


def _results_table():
    spec = importlib.util.spec_from_file_location("results_table", REPO / "scripts" / "results_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _block(heading: str) -> list[str]:
    """The lines of the first ```bash block after ``heading``."""
    section = README.split(f"\n## {heading}\n", 1)[1]
    body = section.split("```bash\n", 1)[1].split("```", 1)[0]
    return [line for line in body.splitlines() if line.strip()]


def test_readme_is_a_short_landing_page():
    assert len(README.splitlines()) <= 300
    headings = re.findall(r"^## (.+)$", README, flags=re.M)
    for wanted in ("Use it", "Data", "Train", "Score", "Model zoo and results", "Tests", "Documentation", "Citation",
                   "Acknowledgements"):
        assert wanted in headings
    assert "https://arxiv.org/abs/2404.13505" in README and "https://github.com/PGSmall/HVC" in README
    assert "@article{pei2024dynamic" in README


def test_results_table_is_the_rendering_of_docs_results_csv():
    module = _results_table()
    assert module.readme_table(README) == module.render(module.read_rows())


def test_a_new_measurement_replaces_its_row_in_place(tmp_path):
    module = _results_table()
    scores = tmp_path / "global_results-val.csv"
    scores.write_text("J&F-Mean,J-Mean,J-Recall,J-Decay,F-Mean,F-Recall,F-Decay\n"
                      "0.612,0.634,0.700,0.050,0.590,0.650,0.040\n")  # the layout eval_metrics.py writes
    assert module.scores_of(scores) == ("61.2", "63.4", "59.0")
    rows = module.read_rows()
    ours = next(i for i, r in enumerate(rows) if r["source"] == "ours")
    new = dict(rows[ours], score="61.2", j="63.4", f="59.0", date="2027-01-01")
    updated = module.with_row(rows, new)
    assert len(updated) == len(rows) and updated[ours] == new
    assert "| 61.2 | 63.4 | 59.0 | ours, 2027-01-01," in module.render(updated)


def test_no_number_outside_the_generated_table():
    """Measured numbers live in docs/ (dated) or in docs/results.csv; the README only renders them."""
    module = _results_table()
    outside = README.split(module.BEGIN)[0] + README.split(module.END)[1]
    outside = re.sub(r"\(https?://[^)]*\)", "", outside).replace("2404.13505", "")  # the arXiv id
    outside = outside.replace("Python 3.9", "")  # a version, not a measurement
    assert re.findall(r"\d+\.\d+", outside) == []
    assert not re.search(r"\b\d+(\.\d+)? ?(s|min|GB|MB|MiB|GiB|img/s)\b", outside)


def test_no_project_internal_language():
    for phrase in ("$HVC_SHARED_DIR", "the issue", "the goal", "HVC_SHARED_DIR"):
        assert phrase not in README
    assert not re.search(r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{7,40}\b", README)  # commit hashes


def test_relative_links_resolve():
    for target in re.findall(r"\]\(([^)#\s]+)[^)]*\)", README):
        if target.startswith(("http://", "https://")) or target in PAGES_OF_OTHER_BRANCHES:
            continue
        assert (REPO / target).exists(), target


def test_every_docs_page_is_indexed():
    index = (REPO / "docs" / "README.md").read_text()
    for page in sorted((REPO / "docs").glob("*.md")):
        if page.name != "README.md":
            assert f"]({page.name})" in index, page.name
    assert "](results.csv)" in index


def test_tests_section_keeps_the_ci_command():
    assert "```bash\nmake test\n```" in README
    tests = README.split("\n## Tests\n", 1)[1].split("\n## ", 1)[0]
    assert "`.ci/run`" in tests
    assert (REPO / ".ci" / "run").read_text().strip().endswith("make test")


def test_quick_demo_beside_make_demo_and_timings_with_their_machine():
    lines = README.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("make demo"))
    assert "python -m hvc.demo.run --quick" in lines[at + 1]
    demo = (REPO / "docs" / "demo.md").read_text()
    assert "AMD EPYC" in demo and re.search(r"20\d\d-\d\d-\d\d", demo)


def _fresh_clone(dest: Path) -> Path:
    """The files a clone of this working tree holds (tracked and not ignored), copied."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, check=True,
                            capture_output=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


def test_use_it_block_runs_on_a_fresh_clone(tmp_path):
    """Every command of "Use it", in order, in a copy of the clone. `make install` cannot reach the
    package index here, so it is run as `make -n` (its commands are printed and checked) and this
    interpreter's environment stands for the .venv it creates; the rest runs for real, offline."""
    commands = [line.split("  #")[0].strip() for line in _block("Use it")]
    assert len(commands) == 5
    assert commands[0] == "make install" and commands[1] == "source .venv/bin/activate"
    clone = _fresh_clone(tmp_path / "hvc")
    dry = subprocess.run(["make", "-n", "install"], cwd=clone, capture_output=True, text=True, timeout=60)
    assert dry.returncode == 0 and "pip install" in dry.stdout, dry.stderr
    if not (Path(sys.prefix) / "bin" / "activate").is_file():
        pytest.skip(f"{sys.prefix} is not a virtual environment: nothing to stand for .venv")
    (clone / ".venv").symlink_to(sys.prefix, target_is_directory=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    script = "\n".join(["set -e", *commands[1:]])
    done = subprocess.run(["bash", "-c", script], cwd=clone, env=env, capture_output=True, text=True, timeout=900)
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(list((clone / "own" / "seg" / "masks").glob("*.png"))) == len(list((clone / "own" / "truth").glob("*.png")))
    assert "J&F" in done.stdout
