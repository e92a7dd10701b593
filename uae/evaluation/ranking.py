"""Evaluate a retriever on a split: rank every counted question's document, score, time the queries."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from uae.core.errors import DataError
from uae.data.records import Split
from uae.evaluation.metrics import retrieval_metrics
from uae.retrieval.base import Retriever, Scope, rank_questions

log = logging.getLogger(__name__)


@dataclass
class EvalResult:
    split: str
    retriever: dict[str, object]
    n_questions: int
    metrics: dict[str, float]
    latency_ms_per_query: float
    index_seconds: float
    question_ids: list[str] = field(repr=False)
    ranked_ids: list[list[str]] = field(repr=False)


def evaluate_retriever(split: Split, retriever: Retriever, *, scope: Scope = "document", top_k: int = 100) -> EvalResult:
    """Metrics over the questions that have aligned gold evidence (the others have nothing to find).

    Latency is the query-time wall clock (encode the question, search, re-rank) divided by the number
    of questions; passage encoding and index building are offline and reported as ``index_seconds``.
    """
    questions = split.evaluable_questions
    if not questions:
        raise DataError(
            f"{split.dataset} {split.name} ({split.source}) has no question with a gold passage, so retrieval "
            "cannot be scored. Use more documents (data.max_documents) or another split."
        )
    ranking = rank_questions(retriever, split, questions, scope=scope, top_k=top_k)
    metrics = retrieval_metrics(ranking.ranked_ids, [q.gold_ids for q in questions])
    return EvalResult(
        split=split.name,
        retriever=retriever.describe(),
        n_questions=len(questions),
        metrics=metrics,
        latency_ms_per_query=1000.0 * ranking.query_seconds / len(questions),
        index_seconds=ranking.index_seconds,
        question_ids=[q.question_id for q in questions],
        ranked_ids=ranking.ranked_ids,
    )
