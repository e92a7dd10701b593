"""Where the teacher rates a candidate above the gold paragraph: does that candidate hold an answer?

    python -m uae.analysis.teacher_misses experiments/squad/utilities/open/train-first2.parquet \
        +experiment=squad_open

Hard negatives mined from a whole corpus include paragraphs that answer the question as well as the
gold one (false negatives); InfoNCE would push them away, so ``loss.denoise_margin=0`` leaves out of
its softmax every candidate the teacher rates above the positive. This counts how many of those hold an
answer string (SQuAD's normalisation, whole words: the check open-domain QA uses for extractive answers)
beside the same share among all the other negatives. A paragraph may hold the string in another sense,
and one may answer in other words, so the share says how far the teacher's preferences point at answers,
not how many candidates truly answer.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

from uae.analysis.report import emit
from uae.core.config import compose
from uae.core.errors import UAEError, cli_main
from uae.data.loading import load_split
from uae.data.records import Split
from uae.data.text import normalize_answer
from uae.table.read import read_table


def holds_answer(passage: str, answers: Iterable[str]) -> bool:
    """Whether any answer's normalised words occur, as whole words, in the normalised passage."""
    text = f" {normalize_answer(passage)} "
    return any(a and f" {a} " in text for a in (normalize_answer(x) for x in answers))


def teacher_misses(rows: Iterable[tuple[str, str, bool, float]], split: Split) -> dict[str, int]:
    """Counts over (question_id, passage_id, is_gold, utility) rows of one table: the questions, those
    whose teacher rates a negative above the gold, those negatives, how many hold an answer, the same for
    the questions' best-rated negatives, and all the negatives with how many hold an answer."""
    texts = {p.passage_id: p.text for d in split.documents.values() for p in d.passages}
    answers = {q.question_id: [a.text for a in q.answers if not a.unanswerable] for q in split.questions}
    groups: dict[str, list[tuple[str, bool, float]]] = defaultdict(list)
    for question_id, passage_id, is_gold, utility in rows:
        if question_id not in answers or passage_id not in texts:
            missing = "question" if question_id not in answers else "passage"
            raise UAEError(
                f"the table's {missing} {question_id if missing == 'question' else passage_id!r} is not in "
                f"{split.dataset} {split.name} as configured: give the overrides the table was built with "
                "(its experiment and data.max_documents)."
            )
        groups[question_id].append((passage_id, bool(is_gold), float(utility)))
    counts = dict.fromkeys(("questions", "missed", "above", "above_answer", "top_answer", "negatives", "negatives_answer"), 0)
    for question_id, group in groups.items():
        golds = [u for _, g, u in group if g]
        if not golds:
            continue  # a label-free set: no gold to be rated above
        counts["questions"] += 1
        negatives = [(p, u) for p, g, u in group if not g]
        has = {p: holds_answer(texts[p], answers[question_id]) for p, _ in negatives}
        counts["negatives"] += len(negatives)
        counts["negatives_answer"] += sum(has.values())
        above = [(p, u) for p, u in negatives if u > max(golds)]
        if above:
            counts["missed"] += 1
            counts["above"] += len(above)
            counts["above_answer"] += sum(has[p] for p, _ in above)
            counts["top_answer"] += has[max(above, key=lambda pu: pu[1])[0]]
    return counts


def markdown(counts: dict[str, int]) -> str:
    def share(part: int, whole: int) -> str:
        return f"{part} ({part / whole:.1%})" if whole else "0"

    header = (
        "| questions | teacher rates a negative above the gold | negatives above the gold | of them holding an answer "
        "| best-rated negative holds an answer | all negatives holding an answer |"
    )
    row = (
        f"| {counts['questions']} | {share(counts['missed'], counts['questions'])} | {counts['above']} "
        f"| {share(counts['above_answer'], counts['above'])} | {share(counts['top_answer'], counts['missed'])} "
        f"| {share(counts['negatives_answer'], counts['negatives'])} of {counts['negatives']} |"
    )
    return f"{header}\n|---|---|---|---|---|---|\n{row}\n"


@cli_main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m uae.analysis.teacher_misses",
        description="Of the candidates a utility table rates above the gold paragraph, the share holding an answer string.",
    )
    parser.add_argument("table", type=Path, help="a utility table (parquet) of candidate sets with their gold paragraph")
    parser.add_argument("overrides", nargs="*", help="the config the table was built with, e.g. +experiment=squad_open")
    parser.add_argument("--split", default=None, help="the split the table's questions are from (default: data.train_split)")
    parser.add_argument("--into", type=Path, help="a RESULTS.md to write the table into (between section markers)")
    parser.add_argument("--section", default="teacher-misses", help="the section name in --into")
    args = parser.parse_args(argv)
    cfg = compose(args.overrides)
    split = load_split(cfg, args.split or cfg.data.train_split)
    table = read_table(args.table, columns=["question_id", "passage_id", "is_gold", "utility"])
    rows = zip(*(table.column(c).to_pylist() for c in ("question_id", "passage_id", "is_gold", "utility")), strict=True)
    counts = teacher_misses(rows, split)
    if not counts["questions"]:
        raise UAEError(f"{args.table}: no candidate set holds a gold paragraph (a label-free table?): nothing to count.")
    emit(markdown(counts), args.into, args.section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
