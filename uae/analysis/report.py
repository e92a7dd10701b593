"""Tables from run folders: ``python -m uae.analysis.report RUN_DIR [RUN_DIR ...] [--into FILE.md --section NAME] [--csv FILE]``.

``--insert TABLE.md`` puts a table a stage wrote (the teacher report, say) into a section instead.

results.json is the source of truth that tables, notebooks and RESULTS.md are made from, so a table
can always be regenerated from the runs that produced it. ``--into`` rewrites only the part of a
markdown file between ``<!-- NAME:begin -->`` and ``<!-- NAME:end -->``, leaving the prose around it.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from pathlib import Path
from typing import Any

from uae.cache import atomic_path
from uae.errors import UAEError
from uae.evaluation.metrics import RETRIEVAL_METRICS
from uae.machine import label as machine_label

# The machine-readable table (experiments/*/results.csv): one row per retriever and split.
COLUMNS = ("retriever", "split", "n_questions", *RETRIEVAL_METRICS, "token_f1", "ms_per_query")


def load_results(run_dirs: list[Path]) -> list[dict[str, Any]]:
    """One row per run folder (a folder, or a results.json path), in the order given."""
    rows = []
    for run_dir in run_dirs:
        path = run_dir if run_dir.name == "results.json" else run_dir / "results.json"
        try:
            result = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise UAEError(f"{path}: no readable results.json ({exc}). Did that run finish?") from exc
        rows.append(
            {
                "date": result.get("date", ""),
                "machine": machine_label(result.get("machine", {})),
                "retriever": result["retriever"],
                "split": result["split"],
                "n_questions": result["n_questions"],
                **{m: result["metrics"][m] for m in RETRIEVAL_METRICS},
                "token_f1": result["metrics"].get("token_f1", ""),
                "ms_per_query": result["latency_ms_per_query"],
                "train_minutes": result["train_seconds"] / 60 if result.get("train_seconds") else "",
                "device": result.get("machine", {}).get("gpu") or "CPU",
            }
        )
    return rows


# Relative gains of UAE over the zero-shot base encoder that the paper reports (BGE-Base on QASPER).
PAPER_GAINS = {"recall@1": 30.59, "map": 30.16, "token_f1": 17.3}


def add_speedup(rows: list[dict[str, Any]], reference: str) -> None:
    """A ``speedup`` column: the reference retriever's ms/query over each row's (how many times faster).

    Only rows timed on the reference's device get one: a GPU row's milliseconds against a CPU
    re-ranker's would be a ratio of machines, not of methods.
    """
    ref = next((r for r in rows if r["retriever"] == reference), None)
    if ref is None:
        raise UAEError(f"--speedup-against {reference}: no such retriever among {[r['retriever'] for r in rows]}")
    for row in rows:
        same_device = row.get("device") == ref.get("device")
        row["speedup"] = ref["ms_per_query"] / row["ms_per_query"] if row["ms_per_query"] and same_device else ""


def gains_line(rows: list[dict[str, Any]], pair: str) -> str:
    """``minilm+uae over minilm: recall@1 +x% (paper +30.59%), ...``."""
    name, _, base_name = pair.partition(":")
    by_name = {r["retriever"]: r for r in rows}
    if name not in by_name or base_name not in by_name:
        raise UAEError(f"--gains {pair}: both retrievers must be in the table ({sorted(by_name)})")
    row, base = by_name[name], by_name[base_name]
    parts = []
    for metric, paper in PAPER_GAINS.items():
        if isinstance(row.get(metric), float) and isinstance(base.get(metric), float) and base[metric] > 0:
            parts.append(f"{metric} {100 * (row[metric] / base[metric] - 1):+.2f}% (paper {paper:+.2f}%)")
    return f"\nRelative gains of {name} over {base_name}: " + ", ".join(parts) + ".\n"


def markdown_table(rows: list[dict[str, Any]]) -> str:
    def cell(value: Any) -> str:
        if isinstance(value, float) and value >= 100:
            return f"{value:.0f}"
        return f"{value:.4f}" if isinstance(value, float) else str(value)

    columns = [c for c in COLUMNS if any(row.get(c, "") != "" for row in rows)]
    if any(row.get("speedup") for row in rows):
        columns.append("speedup")
    if any(row.get("train_minutes") for row in rows):
        columns.append("train_minutes")
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c, "")) for c in columns) + " |" for row in rows]
    made = sorted({f"{row['date'][:10]} on {row['machine']}" for row in rows})
    note = ""
    devices = {row.get("device", "CPU") for row in rows}
    if len(devices) > 1:  # ms_per_query and train_minutes of different devices are not comparable
        by_device = {d: ", ".join(r["retriever"] for r in rows if r.get("device", "CPU") == d) for d in sorted(devices)}
        note = " Timed on different devices, so ms_per_query and train_minutes compare only within one: " + "; ".join(
            f"{device}: {names}" for device, names in by_device.items()
        ) + "."
    return "\n".join(lines) + f"\n\nRuns made {'; '.join(made)}.{note}\n"


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
