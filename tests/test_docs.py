"""The design reference lives in the repository and every citation of it resolves.

Two rules over the tracked files:

* nothing outside ``docs/`` cites the old out-of-repository design file (a clone would not have
  it; the pattern is the file's name, or its name followed by a section number);
* every ``docs/design.md, section N`` citation names a section number that is a heading of
  ``docs/design.md``.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parent.parent
DESIGN_PAGE = "docs/design.md"
EXTERNAL_REFERENCE = re.compile(r"\bDESIGN(?:\.md\b|\s+\d)")
"""The retired reference: its file name, or the short form "<NAME> 3.1" used in tables."""
CITATION = re.compile(r"docs/design\.md,\s+section\s+(\d+(?:\.\d+)*)")
HEADING = re.compile(r"^#{1,6}\s+(\d+(?:\.\d+)*)\.?\s", re.MULTILINE)


def section_numbers(markdown: str) -> set[str]:
    """The section numbers of a page's headings (``## 3. Mechanisms`` -> ``3``)."""
    return set(HEADING.findall(markdown))


def cited_sections(text: str) -> list[str]:
    """Section numbers cited as ``docs/design.md, section N`` in a text, in order."""
    return CITATION.findall(text)


def tracked_text_files() -> dict[str, str]:
    """Path -> text of every tracked file that is text (files with a NUL byte are skipped)."""
    try:
        listing = subprocess.run(
            ["git", "ls-files", "-z"],
            cwd=REPOSITORY,
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: the tracked files are unknown")
    texts = {}
    for name in listing.decode("utf-8").split("\0"):
        path = REPOSITORY / name
        if not name or not path.is_file():
            continue  # deleted in the working tree, or a submodule
        data = path.read_bytes()
        if b"\0" not in data:
            texts[name] = data.decode("utf-8", errors="replace")
    return texts


def test_parsers_find_headings_and_citations():
    page = "# Title\n\n## 3. Mechanisms\n\n### 3.1 Token auction\n\n#### 3.1.4 Closed form\n"
    assert section_numbers(page) == {"3", "3.1", "3.1.4"}
    page_name = "docs/design.md,"  # split so that this file cites no section itself
    text = f"see {page_name} section 3.1 Token auction and {page_name} section 12."
    assert cited_sections(text) == ["3.1", "12"]
    assert EXTERNAL_REFERENCE.search("(see ../shared/DESIGN" + ".md)")
    assert EXTERNAL_REFERENCE.search("token auction (DESIGN" + " 3.1)")
    assert not EXTERNAL_REFERENCE.search("docs/design.md, section 3.1; DESIGNER notes")


def test_the_design_page_has_numbered_sections():
    page = (REPOSITORY / DESIGN_PAGE).read_text(encoding="utf-8")
    numbers = section_numbers(page)
    # the sections the code cites most: every mechanism, the regret estimator, the results
    assert {"2.2", "3.1", "3.2", "3.3", "3.4", "3.5", "5", "7"} <= numbers


def test_no_tracked_file_outside_docs_cites_the_external_design_file():
    offenders = [
        f"{name}:{line_number}: {line.strip()}"
        for name, text in tracked_text_files().items()
        if not name.startswith("docs/")
        for line_number, line in enumerate(text.splitlines(), start=1)
        if EXTERNAL_REFERENCE.search(line)
    ]
    assert not offenders, "cite docs/design.md instead:\n" + "\n".join(offenders)


def test_every_citation_of_the_design_page_names_an_existing_section():
    numbers = section_numbers((REPOSITORY / DESIGN_PAGE).read_text(encoding="utf-8"))
    dangling = [
        f"{name}: section {number}"
        for name, text in tracked_text_files().items()
        for number in cited_sections(text)
        if number not in numbers
    ]
    assert not dangling, f"{DESIGN_PAGE} has no such section:\n" + "\n".join(dangling)
