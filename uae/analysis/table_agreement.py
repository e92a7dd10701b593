"""How far two utility tables of the same candidate sets agree: another engine, precision or teacher.

    python -m uae.analysis.table_agreement experiments/qasper/utilities/label_free/train-first120.parquet \
        experiments/qasper/utilities/label_free_int8/train-first120.parquet

A retriever distilled from a table learns each question's softmax over its candidates, so besides the
correlation of the utilities over all rows it matters whether each question's order survives: the
share of questions whose best candidate is the same, and the mean per-question Spearman rho. Rows are
matched by (question_id, passage_id); tables that do not hold the same rows describe different sets
and are refused, not compared on their intersection. Two teachers count answer tokens with their own
tokenizers, so for them only the correlations and orders compare, not the differences in nats.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
from scipy.stats import pearsonr, spearmanr

from uae.analysis.report import emit
from uae.core.errors import UAEError, cli_main
from uae.table.read import read_table

_KEY = ("question_id", "passage_id")


def _utilities(path: Path) -> dict[tuple[str, str], float]:
    table: pa.Table = read_table(path, columns=[*_KEY, "utility"])
    rows = table.to_pydict()
    keyed = {(q, p): u for q, p, u in zip(rows["question_id"], rows["passage_id"], rows["utility"], strict=True)}
    if len(keyed) != table.num_rows:
        raise UAEError(f"{path}: {table.num_rows - len(keyed)} repeated (question_id, passage_id) rows; not a utility table.")
    return keyed


def agreement(path_a: Path, path_b: Path) -> dict[str, float]:
    """Row-level and per-question agreement of table B with table A (the reference)."""
    a, b = _utilities(path_a), _utilities(path_b)
    if a.keys() != b.keys():
        raise UAEError(
            f"{path_a} and {path_b} do not hold the same candidates ({len(a.keys() - b.keys())} rows only in the "
            f"first, {len(b.keys() - a.keys())} only in the second): score the same sets into both."
        )
    keys = sorted(a)
    ua, ub = np.array([a[k] for k in keys]), np.array([b[k] for k in keys])
    by_question: dict[str, list[int]] = {}
    for i, (qid, _) in enumerate(keys):
        by_question.setdefault(qid, []).append(i)
    same_best, rhos = 0, []
    for rows in by_question.values():
        same_best += int(ua[rows][int(np.argmax(ub[rows]))] == ua[rows].max())  # B's best is one of A's (ties)
        if len(rows) > 1 and np.ptp(ua[rows]) > 0 and np.ptp(ub[rows]) > 0:  # rho of a constant is undefined
            rhos.append(spearmanr(ua[rows], ub[rows]).statistic)
    return {
        "rows": len(keys),
        "questions": len(by_question),
        "max_abs_difference": float(np.abs(ua - ub).max()),
        "mean_abs_difference": float(np.abs(ua - ub).mean()),
        "pearson": float(pearsonr(ua, ub).statistic),
        "spearman": float(spearmanr(ua, ub).statistic),
        "same_best": same_best / len(by_question),
        "mean_question_spearman": float(np.mean(rhos)) if rhos else float("nan"),
        "rho_questions": len(rhos),
    }


def markdown(path_a: Path, path_b: Path, got: dict[str, float]) -> str:
    return (
        f"A = `{path_a}`, B = `{path_b}`: {got['rows']:.0f} candidates of {got['questions']:.0f} questions "
        "(utility in nats per answer token)\n\n"
        "| max abs difference | mean abs difference | Pearson r | Spearman rho | same best candidate | "
        f"mean per-question Spearman rho ({got['rho_questions']:.0f} questions with unequal utilities) |\n"
        "|---|---|---|---|---|---|\n"
        f"| {got['max_abs_difference']:.3f} | {got['mean_abs_difference']:.3f} | {got['pearson']:.4f} | "
        f"{got['spearman']:.4f} | {got['same_best']:.1%} | {got['mean_question_spearman']:.4f} |\n"
    )


@cli_main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("table_a", type=Path, help="the reference utility table (parquet)")
    parser.add_argument("table_b", type=Path, help="the table compared with it: the same candidates, scored otherwise")
    parser.add_argument("--into", type=Path, help="markdown file whose --section is replaced by the table")
    parser.add_argument("--section", help="marker name of that section")
    args = parser.parse_args(argv)
    if bool(args.into) != bool(args.section):
        parser.error("--into and --section go together")
    for path in (args.table_a, args.table_b):
        if not path.is_file():
            raise UAEError(f"{path}: no such table. Score it first (python -m uae.run ... stages=[utility]).")
    emit(markdown(args.table_a, args.table_b, agreement(args.table_a, args.table_b)), args.into, args.section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
