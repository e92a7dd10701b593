"""Every relative link of README.md and docs/*.md resolves: the file or folder it names exists (relative to
the page), and a ``#anchor`` into a markdown page names one of that page's headings, by GitHub's rule for
heading anchors. Links inside code (fenced blocks, code spans) are not links and are skipped, and so are
links with a scheme (https:, mailto:). A link that leaves the repository (the team's ../shared/DESIGN.md)
is checked where that folder is checked out beside it. Plain text and regular expressions: no torch.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

from tests.helpers.paths import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 250  # issue 33: a README a newcomer reads in five minutes; the reference is in docs/

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
# [text](target) and ![alt](target), the text allowed one level of brackets, an optional "title"
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*(<[^>]*>|[^\s()]*)(?:\s+(?:\"[^\"]*\"|'[^']*'))?\s*\)")
REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:[ \t]*(<[^>]*>|\S+)", re.MULTILINE)
HTML_ANCHOR = re.compile(r"<a\s[^>]*?(?:name|id)=\"([^\"]+)\"")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def without_code(text: str, spans: bool = True) -> str:
    """The page with fenced blocks (and code spans, unless `spans` is false) blanked out, line numbers kept."""
    lines, fence = [], None
    for line in text.splitlines():
        opened = FENCE.match(line)
        if fence is None and opened:
            fence = opened.group(1)[0] * len(opened.group(1))
            lines.append("")
        elif fence is not None:
            if line.strip().startswith(fence) and not line.strip().strip(fence[0]):
                fence = None
            lines.append("")
        else:
            lines.append(line)
    if not spans:
        return "\n".join(lines)
    paragraphs = "\n".join(lines).split("\n\n")  # a code span may cross lines, never a blank one
    return "\n\n".join(re.sub(r"(`+)[\s\S]*?(?<!`)\1(?!`)", blanked, p) for p in paragraphs)


def blanked(span: re.Match[str]) -> str:
    return re.sub(r"[^\n]", " ", span.group(0))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading (github-slugger): the rendered text lowercased, every character but
    letters, digits, underscores, hyphens and spaces dropped, spaces turned into hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link shows its text
    text = re.sub(r"<[^>]+>", "", text).lower()  # so does HTML; code spans keep theirs, backticks go below
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """The anchors a page offers: its headings' slugs (a repeated one numbered -1, -2, ... as GitHub does)
    and explicit <a name|id="...">."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    for line in without_code(page.read_text(encoding="utf-8"), spans=False).splitlines():
        heading = HEADING.match(line)
        if heading:
            base = slug(heading.group(1))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
        found.update(HTML_ANCHOR.findall(line))
    return found


def links(page: Path) -> list[tuple[int, str]]:
    """(line number, target) of every inline link, image and link reference definition outside code."""
    text = without_code(page.read_text(encoding="utf-8"))
    found = []
    for pattern in (INLINE_LINK, REFERENCE):
        for match in pattern.finditer(text):
            found.append((text.count("\n", 0, match.start()) + 1, match.group(1).strip("<>")))
    return sorted(found)


def broken(page: Path, root: Path = ROOT) -> list[str]:
    """What is wrong with each relative link of `page`, as 'page:line: target: why'."""
    problems = []
    for line, target in links(page):
        if not target or SCHEME.match(target):
            continue
        path, _, anchor = target.partition("#")
        path = unquote(path)
        file = page if not path else (root / path.lstrip("/") if path.startswith("/") else page.parent / path)
        where = f"{page.relative_to(root)}:{line}: {target}"
        resolved = file.resolve()
        if not resolved.is_relative_to(root.resolve()):
            outside = root.resolve().parent / resolved.relative_to(root.resolve().parent).parts[0]
            if not outside.exists():
                continue  # a folder beside the repository that is not checked out here
        if not file.exists():
            problems.append(f"{where}: no such file or folder")
        elif anchor and file.is_file() and file.suffix == ".md" and unquote(anchor).lower() not in anchors(file):
            problems.append(f"{where}: no heading of {file.name} has the anchor #{anchor}")
    return problems


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_every_relative_link_resolves(page: Path) -> None:
    assert broken(page) == []


def test_readme_is_short_and_links_every_docs_page() -> None:
    readme = ROOT / "README.md"
    assert len(readme.read_text(encoding="utf-8").splitlines()) <= README_MAX_LINES, (
        "README.md is for newcomers: move reference sections to a page under docs/ and link it"
    )
    linked = {(readme.parent / target.partition("#")[0]).resolve() for _, target in links(readme)}
    assert [p.name for p in PAGES[1:] if p.resolve() not in linked] == []


def test_the_checker_catches_broken_links_and_skips_code(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "guide.md").write_text(
        "# The guide\n\n## Step one: `make run`\n\n## Step one: `make run`\n\n<a name=\"kept\"></a>\n"
    )
    (tmp_path / "README.md").write_text(
        "# Title\n\n## Using it, quickly\n\n"
        "[ok](docs/guide.md) [ok](docs/guide.md#the-guide) [ok](docs/guide.md#step-one-make-run-1)\n"
        "[ok](#using-it-quickly) ![ok](docs/) [ok](docs/guide.md#kept) [ok](https://example.org/none.md)\n"
        "[ok](mailto:a@b.c) [ok](docs/guide.md \"a title\") [ok]: docs/guide.md\n\n"
        "[missing](docs/nothing.md)\n"
        "[bad anchor](docs/guide.md#step-two)\n"
        "[bad here](#using-it)\n"
        "[missing ref]: docs/other.md\n\n"
        "```bash\n[not a link](nowhere.md)\n# not a heading\n```\n"
        "`[not a link](nowhere.md)` and `a code span\n[across lines](nowhere.md)`\n"
    )
    problems = broken(tmp_path / "README.md", root=tmp_path)
    assert [p.split(": ", 1)[1] for p in problems] == [
        "docs/nothing.md: no such file or folder",
        "docs/guide.md#step-two: no heading of guide.md has the anchor #step-two",
        "#using-it: no heading of README.md has the anchor #using-it",
        "docs/other.md: no such file or folder",
    ], problems
    assert problems[0].startswith("README.md:9: ")
    assert anchors(tmp_path / "README.md") == {"title", "using-it-quickly"}
