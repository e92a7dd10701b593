"""Tables from run folders: ``python -m uae.analysis.report RUN_DIR [RUN_DIR ...] [--into FILE.md --section NAME] [--csv FILE]``.

``--insert TABLE.md`` puts a table a stage wrote (the teacher report, say) into a section instead.

results.json is the source of truth that tables, notebooks and RESULTS.md are made from, so a table
can always be regenerated from the runs that produced it. ``--into`` rewrites only the part of a
markdown file between ``<!-- NAME:begin -->`` and ``<!-- NAME:end -->``, leaving the prose around it.
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
from pathlib import Path
from typing import Any

from uae.core.errors import UAEError
from uae.results.read import COLUMNS, add_speedup, gains_line, load_results, markdown_table
from uae.storage.atomic import atomic_path


def replace_section(document: str, section: str, body: str) -> str:
    """Swap the text between the section's markers; refuse a document that lacks them."""
    pattern = re.compile(rf"(<!-- {re.escape(section)}:begin -->\n).*?(<!-- {re.escape(section)}:end -->)", re.DOTALL)
    if not pattern.search(document):
        raise UAEError(f"no '<!-- {section}:begin -->' ... '<!-- {section}:end -->' markers to write between.")
    return pattern.sub(lambda m: m.group(1) + body + m.group(2), document)


def write_section(path: Path, section: str, body: str) -> None:
    """Replace one marked section of a markdown file, atomically (a failed write leaves it as it was)."""
    document = replace_section(path.read_text(encoding="utf-8"), section, body)
    with atomic_path(path) as tmp:
        tmp.write_text(document, encoding="utf-8")


def emit(table: str, into: Path | None, section: str) -> None:
    """Print a table; with ``into``, also write it into that markdown file's section."""
    print(table, end="")
    if into:
        write_section(into, section, table)


def section_body(text: str) -> str:
    """A file's text as a section's body: its own ``# title`` line (a sweep summary has one) would be
    a second document title inside RESULTS.md, so it goes; blank edges are trimmed to one newline."""
    lines = text.strip("\n").splitlines()
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
    return "\n".join(lines).strip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="*", type=Path, help="run folders holding results.json")
    parser.add_argument("--insert", type=Path, help="a markdown file a stage wrote (e.g. teacher_dev.md), instead of runs")
    parser.add_argument("--into", type=Path, help="markdown file whose --section is replaced by the table")
    parser.add_argument("--section", default="results", help="marker name of the section to replace")
    parser.add_argument("--csv", type=Path, help="write the rows as CSV here")
    parser.add_argument("--speedup-against", metavar="RETRIEVER", help="add a column: that retriever's ms/query over each row's")
    parser.add_argument("--gains", metavar="RETRIEVER:BASE", help="add the relative gains of RETRIEVER over BASE, next to the paper's")
    args = parser.parse_args(argv)
    if bool(args.runs) == bool(args.insert):
        parser.error("give run folders or --insert FILE (one of the two)")
    rows: list[dict[str, Any]] = []
    try:
        if args.insert:
            table = section_body(args.insert.read_text(encoding="utf-8"))
        else:
            rows = load_results(args.runs)
            if args.speedup_against:
                add_speedup(rows, args.speedup_against)
            table = markdown_table(rows)
            if args.gains:
                table += gains_line(rows, args.gains)
        emit(table, args.into, args.section)
    except (UAEError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.csv and rows:
        with atomic_path(args.csv) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
