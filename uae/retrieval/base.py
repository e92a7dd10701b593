"""What every retriever offers evaluation: a full ranking per question, and how long queries took.

Dense, BM25 and LLM re-ranking all implement :class:`Retriever`, so evaluation, metrics and
results.json never special-case one of them and every row of a results table is measured the same way.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from uae.data.records import Passage, Question, Split

# document: each question ranks its own document's passages (QASPER's evidence selection, SQuAD's
# paragraphs of one article); a question without a document ranks the whole split. corpus: every
# question ranks the whole split.
Scope = Literal["document", "corpus"]


@dataclass
class Ranking:
    """Passage ids best first per question, plus the query-time cost (indexing excluded).

    ``query_seconds`` covers what happens once a question arrives (encoding it, searching, re-ranking);
    passage encoding and index building are offline work and are reported separately.
    """

    ranked_ids: list[list[str]]
    query_seconds: float
    index_seconds: float = 0.0


class Retriever(ABC):
    name: str

    @abstractmethod
    def rank(self, split: Split, questions: Sequence[Question], *, scope: Scope, top_k: int) -> Ranking:
        """Rank passages for each question: all of its document's (scope=document) or the split's top_k.

        Implementations may assume that in scope=document every question has a document:
        :func:`rank_questions` sends the others to scope=corpus."""

    def describe(self) -> dict[str, object]:
        """What results.json records about this retriever."""
        return {"name": self.name}


def rank_questions(retriever: Retriever, split: Split, questions: Sequence[Question], *, scope: Scope, top_k: int) -> Ranking:
    """``retriever.rank`` for a mix of questions: in scope=document those without a document (open
    retrieval, e.g. a BEIR query with no ``metadata.document``) rank the whole split's top_k."""
    open_rows = [i for i, q in enumerate(questions) if q.document_id is None] if scope == "document" else []
    if not open_rows:
        return retriever.rank(split, questions, scope=scope, top_k=top_k)
    bound_rows = [i for i, q in enumerate(questions) if q.document_id is not None]
    ranked: list[list[str]] = [[] for _ in questions]
    query_seconds = index_seconds = 0.0
    parts: tuple[tuple[list[int], Scope], ...] = ((bound_rows, "document"), (open_rows, "corpus"))
    for rows, part_scope in parts:
        if not rows:
            continue
        part = retriever.rank(split, [questions[i] for i in rows], scope=part_scope, top_k=top_k)
        for i, ids in zip(rows, part.ranked_ids):
            ranked[i] = ids
        query_seconds += part.query_seconds
        index_seconds += part.index_seconds
    return Ranking(ranked, query_seconds, index_seconds)


def positions_by_document(document_ids: Sequence[str | None]) -> dict[str | None, list[int]]:
    """Positions grouped by document id, in first-seen order (one index slice or search per document)."""
    groups: dict[str | None, list[int]] = {}
    for i, document_id in enumerate(document_ids):
        groups.setdefault(document_id, []).append(i)
    return groups


def rank_by_scores(scores: np.ndarray, passages: Sequence[Passage]) -> list[str]:
    """Ids by descending score; ties keep document order, so rankings are deterministic."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    return [passages[i].passage_id for i in order]
