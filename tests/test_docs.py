"""Code points at docs/ pages, not at README section titles (which move when the README is
reorganised), and every docs/ page the code names exists."""

from __future__ import annotations

import re

from helpers.locations import REPO

SOURCES = sorted([*REPO.glob("hvc/**/*.py"), *REPO.glob("*.py"), *REPO.glob("scripts/*.py"), *REPO.glob("bench/*.py")])
# README followed by a quoted or starred section title: README "Speed", (README, "Failure behaviour"), README, section *Speed*
README_SECTION = re.compile(r"""README\W{0,3}(?:section\s+)?["*]""")
DOCS_PAGE = re.compile(r"docs/([\w-]+\.md)")


def test_sources_are_found():
    assert len(SOURCES) > 50 and REPO / "hvc" / "errors.py" in SOURCES


def test_no_comment_cites_a_readme_section():
    cited = [f"{path.relative_to(REPO)}:{n}" for path in SOURCES
             for n, line in enumerate(path.read_text().splitlines(), 1) if README_SECTION.search(line)]
    assert cited == []
    assert README_SECTION.search('(README, "Failure behaviour")') and README_SECTION.search("README, section *Speed*")


def test_named_docs_pages_exist():
    named = {page for path in SOURCES for page in DOCS_PAGE.findall(path.read_text())}
    assert {"failure.md", "speed.md", "own_video.md", "design.md"} <= named
    assert sorted(page for page in named if not (REPO / "docs" / page).is_file()) == []
