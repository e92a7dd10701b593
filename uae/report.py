"""Tables from run folders: ``python -m uae.report RUN_DIR [RUN_DIR ...] [--out FILE.md] [--csv FILE]``.

results.json is the source of truth that tables, notebooks and RESULTS.md are made from, so a table
can always be regenerated from the runs that produced it.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any

from uae.cache import atomic_path
from uae.evaluation.metrics import RETRIEVAL_METRICS
from uae.errors import UAEError

COLUMNS = ("retriever", "split", "n_questions", *RETRIEVAL_METRICS, "ms_per_query")


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
                "retriever": result["retriever"],
                "split": result["split"],
                "n_questions": result["n_questions"],
                **{m: result["metrics"][m] for m in RETRIEVAL_METRICS},
                "ms_per_query": result["latency_ms_per_query"],
            }
        )
    return rows


def markdown_table(rows: list[dict[str, Any]]) -> str:
    def cell(value: Any) -> str:
        return f"{value:.4f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cell(row[c]) for c in COLUMNS) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="run folders holding results.json")
    parser.add_argument("--out", type=Path, help="write the markdown table here too")
    parser.add_argument("--csv", type=Path, help="write the rows as CSV here")
    args = parser.parse_args(argv)
    try:
        rows = load_results(args.runs)
    except UAEError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    table = markdown_table(rows)
    print(table, end="")
    if args.out:
        with atomic_path(args.out) as tmp:
            tmp.write_text(table, encoding="utf-8")
    if args.csv:
        with atomic_path(args.csv) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
