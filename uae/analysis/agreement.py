"""Why label-free training comes out as it does: which paragraph each kind of label points to.

    python -m uae.analysis.agreement logs/results/label_free \
        --train-table experiments/qasper/utilities/label_free/train-first120.parquet \
        --dev-table experiments/qasper/utilities/label_free/dev-first40.parquet

Three labels can name a question's paragraph: the teacher's best candidate (the label-free set's
highest utility), the answer-overlap paragraph (:func:`uae.data.label_rules.answer_overlap_positives`)
and the annotated evidence. Per answer type, the first table says how often they agree on the
training questions; the second says which of them each trained retriever's top paragraph is, on
the dev questions the dev table covers (the teacher needs the gold answer, so only there is its
choice known).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from uae.analysis.report import emit
from uae.core.errors import UAEError, cli_main
from uae.data.label_rules import teacher_argmax
from uae.data.loading import load_from
from uae.data.records import Question, Split
from uae.results.read import has_rankings, read_rankings
from uae.stages.labels import answer_overlap_labels
from uae.table.read import read_table, read_table_spec

TYPES = ("extractive", "abstractive", "boolean")


def answer_type(question: Question) -> str:
    """The first answered annotator's type (annotators mostly agree; yes/no is ``boolean``)."""
    return next((a.answer_type for a in question.answers if a.answer_type != "none"), "none")


def labels_per_question(split: Split, table: Path, min_overlap: float, max_positives: int) -> dict[str, dict[str, Any]]:
    """For each question of the table: its type, candidates, teacher's best, overlap paragraphs and evidence."""

    rows = read_table(table, ["question_id", "passage_id", "position", "utility"]).to_pylist()
    sets: dict[str, list[tuple[int, str, float]]] = defaultdict(list)
    for r in rows:
        sets[r["question_id"]].append((r["position"], r["passage_id"], r["utility"]))
    questions = [q for q in split.questions if q.question_id in sets]
    overlaps = answer_overlap_labels(split, questions, min_overlap=min_overlap, max_positives=max_positives)
    out = {}
    for question, overlap in zip(questions, overlaps, strict=True):
        ordered = sorted(sets[question.question_id])
        ids = [pid for _, pid, _ in ordered]
        out[question.question_id] = {
            "type": answer_type(question),
            "candidates": set(ids),
            "teacher": teacher_argmax(ids, [u for _, _, u in ordered]),
            "overlap": set(overlap),
            "evidence": set(question.gold_ids),
        }
    return out


def _share(hits: int, n: int) -> str:
    return f"{hits / n:.1%} ({hits}/{n})" if n else "-"


def agreement_table(labels: dict[str, dict[str, Any]]) -> str:
    lines = [
        (
            "| answer type | questions | evidence in the set | teacher's best is evidence | overlap paragraph found | "
            "overlap paragraph is evidence | teacher's best is the overlap paragraph |"
        ),
        "|---|---|---|---|---|---|---|",
    ]
    for kind in ("all", *TYPES):
        qs = [v for v in labels.values() if kind == "all" or v["type"] == kind]
        in_set = [v for v in qs if v["evidence"] & v["candidates"]]
        found = [v for v in qs if v["overlap"]]
        both = [v for v in found if v["evidence"]]
        lines.append(
            f"| {kind} | {len(qs)} | {_share(len(in_set), sum(bool(v['evidence']) for v in qs))} | "
            f"{_share(sum(v['teacher'] in v['evidence'] for v in in_set), len(in_set))} | {_share(len(found), len(qs))} | "
            f"{_share(sum(bool(v['overlap'] & v['evidence']) for v in both), len(both))} | "
            f"{_share(sum(v['teacher'] in v['overlap'] for v in found), len(found))} |"
        )
    return "\n".join(lines) + "\n"


def following_table(labels: dict[str, dict[str, Any]], runs: dict[str, dict[str, list[str]]]) -> str:
    """Share of questions whose top-ranked paragraph is the teacher's best, the overlap paragraph, the evidence."""
    lines = [
        "| retriever | answer type | questions | top-1 is the teacher's best | top-1 is the overlap paragraph | top-1 is evidence |",
        "|---|---|---|---|---|---|",
    ]
    for name, rankings in runs.items():
        for kind in ("all", *TYPES):
            qs = [(v, rankings[qid][0]) for qid, v in labels.items() if qid in rankings and (kind == "all" or v["type"] == kind)]
            with_overlap = [(v, top) for v, top in qs if v["overlap"]]
            lines.append(
                f"| {name} | {kind} | {len(qs)} | {_share(sum(top == v['teacher'] for v, top in qs), len(qs))} | "
                f"{_share(sum(top in v['overlap'] for v, top in with_overlap), len(with_overlap))} | "
                f"{_share(sum(top in v['evidence'] for v, top in qs), len(qs))} |"
            )
    return "\n".join(lines) + "\n"


def _split_for(table: Path, run: Path) -> Split:
    """The table's split, loaded with a run's data settings (the same files and document limit)."""

    config = json.loads((run / "results.json").read_text(encoding="utf-8"))["config"]
    spec = read_table_spec(table)
    if spec.get("split") is None:
        raise UAEError(f"{table}: not a utility table (no split in its metadata)")
    split = load_from(OmegaConf.create(config["data"]), spec["split"])
    if spec.get("data") != split.fingerprint:
        raise UAEError(f"{table} was made from other data than {split.source}")
    return split


@cli_main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m uae.analysis.agreement",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("folder", type=Path, help="the label-efficiency runs (logs/results/label_free)")
    parser.add_argument("--train-table", type=Path, required=True, help="the label-free train utility table")
    parser.add_argument("--dev-table", type=Path, help="the label-free dev utility table (a teacher report's); "
                        "without it only the training questions' table (e.g. for another teacher's train table)")
    parser.add_argument("--runs", nargs="+", default=["zero_shot", "answer_overlap", "teacher_argmax", "uae", "infonce-f1"])
    parser.add_argument("--min-overlap", type=float, default=0.5)
    parser.add_argument("--max-positives", type=int, default=1)
    parser.add_argument("--into", type=Path, help="a RESULTS.md to write the tables into, between section markers")
    parser.add_argument("--section", default="label-agreement")
    args = parser.parse_args(argv)

    missing = [r for r in args.runs if not has_rankings(args.folder / r)]
    if missing:
        raise UAEError(f"{args.folder}: no rankings (rankings.json, or a record's rankings.json.gz) for {', '.join(missing)}; run `make label-efficiency` first")
    reference = args.folder / args.runs[0]
    train = labels_per_question(_split_for(args.train_table, reference), args.train_table, args.min_overlap, args.max_positives)
    body = f"Training questions (label-free train table, {len(train)} questions):\n\n{agreement_table(train)}"
    if args.dev_table is not None:
        dev = labels_per_question(_split_for(args.dev_table, reference), args.dev_table, args.min_overlap, args.max_positives)
        runs = {r: read_rankings(args.folder / r) for r in args.runs}
        body += (
            f"\nDev questions of the dev table ({len(dev)} questions; the retrievers rank each whole paper):\n\n"
            f"{agreement_table(dev)}\n{following_table(dev, runs)}"
        )
    emit(body, args.into, args.section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
