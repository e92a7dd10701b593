"""How often annotated evidence lands in label-free candidate sets, per set size (no LLM needed).

    python -m uae.analysis.coverage +experiment=qasper_label_free --splits train dev --sizes 8 16

A label-free set (``candidates.gold=false``) holds the retrievers' top paragraphs and random fill;
the teacher can only prefer the evidence if the set contains it. Each size is counted without and with
the answer-overlap paragraph first (``candidates.answer_overlap``: found from the answer, not the
annotation). This counts, over the questions
with annotated evidence, the share whose set holds at least one evidence paragraph and the mean
share of their evidence it holds, at each size (the retrievers' shares scaled with the size, as
configured at ``candidates.size``). The LLM's cost grows linearly with the size; this says what a
larger set buys. The annotation is read here only to count, never to build a set.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from uae.analysis.report import emit
from uae.core.build import to_dict
from uae.core.config import compose
from uae.core.errors import UAEError, cli_main
from uae.data.candidates import CandidateSet, build_candidates
from uae.data.loading import load_split
from uae.data.records import Question
from uae.stages.tables import (
    answer_overlap_leads,
    document_rankings,
    hard_negative_retrievers,
    utility_questions,
)

log = logging.getLogger("uae.analysis.coverage")


def evidence_coverage(sets: Sequence[CandidateSet], questions: Sequence[Question]) -> dict[str, float]:
    """Over questions with evidence: share of sets holding any of it, mean share of it held."""
    gold = {q.question_id: q.gold_ids for q in questions}
    counted = [s for s in sets if gold[s.question_id]]
    if not counted:
        raise UAEError("no question with annotated evidence among these candidate sets: nothing to count")
    held = [len(gold[s.question_id] & set(s.passage_ids)) / len(gold[s.question_id]) for s in counted]
    return {
        "questions": len(counted),
        "any": sum(h > 0 for h in held) / len(held),
        "recall": sum(held) / len(held),
        "mean_size": sum(len(s.passage_ids) for s in counted) / len(counted),
    }


def scaled_shares(n_hard: dict[str, int], size: int, configured: int) -> dict[str, int]:
    """The retrievers' shares of a set of ``size``, in the configured proportion (4+4 of 8 -> 8+8 of 16)."""
    return {name: round(n * size / configured) for name, n in n_hard.items()}


def markdown(rows: list[dict[str, object]]) -> str:
    lines = [
        (
            "| split | size | answer-overlap paragraph first | bm25 + dense slots | questions with evidence "
            "| sets holding evidence | evidence held (mean share) |"
        ),
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['split']} | {r['size']} | {'yes' if r['answer_overlap'] else 'no'} | {r['slots']} | {r['questions']} "
            f"| {r['any']:.1%} | {r['recall']:.1%} |"
        )
    return "\n".join(lines)


@cli_main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m uae.analysis.coverage",
        description="Share of questions whose label-free candidate set holds annotated evidence, per set size.",
    )
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. +experiment=qasper_label_free")
    parser.add_argument("--splits", nargs="+", default=None, help="splits to count (default: data.train_split)")
    parser.add_argument("--sizes", nargs="+", type=int, default=[8, 16], help="candidate set sizes")
    parser.add_argument("--into", type=Path, help="a RESULTS.md to write the table into (between section markers)")
    parser.add_argument("--section", default="coverage", help="the section name in --into")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg = compose(args.overrides)
    retrievers = hard_negative_retrievers(cfg)
    n_hard = to_dict(cfg.candidates.hard_negatives)
    rows: list[dict[str, object]] = []
    for name in args.splits or [cfg.data.train_split]:
        split = load_split(cfg, name)
        questions = utility_questions(split)
        rankings = document_rankings(split, questions, retrievers)
        overlap = answer_overlap_leads(cfg, split, questions, rankings)
        for size in args.sizes:
            shares = scaled_shares(n_hard, size, int(cfg.candidates.size))
            for leading in (None, overlap):
                sets = build_candidates(
                    split, questions, size=size, hard_rankings=rankings, n_hard=shares, seed=cfg.candidates.seed,
                    gold=False, leading=leading,
                )
                row = {
                    "split": name, "size": size, "answer_overlap": leading is not None,
                    "slots": " + ".join(str(shares.get(s, 0)) for s in ("bm25", "dense")),
                }
                rows.append(row | evidence_coverage(sets, questions))
    emit(markdown(rows) + "\n", args.into, args.section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
