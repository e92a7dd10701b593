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

from uae.data.records import Passage, QasperSplit, Question

Scope = Literal["paper", "corpus"]


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
    def rank(self, split: QasperSplit, questions: Sequence[Question], *, scope: Scope, top_k: int) -> Ranking:
        """Rank passages for each question: all of its paper's (scope=paper) or the split's top_k."""

    def describe(self) -> dict[str, object]:
        """What results.json records about this retriever."""
        return {"name": self.name}


def positions_by_paper(paper_ids: Sequence[str]) -> dict[str, list[int]]:
    """Positions grouped by paper id, in first-seen order (one index slice or search per paper)."""
    groups: dict[str, list[int]] = {}
    for i, paper_id in enumerate(paper_ids):
        groups.setdefault(paper_id, []).append(i)
    return groups


def split_passages(split: QasperSplit) -> list[Passage]:
    """All passages of a split, each paper's contiguous, in file order."""
    return [p for paper in split.papers.values() for p in paper.passages]


def rank_by_scores(scores: np.ndarray, passages: Sequence[Passage]) -> list[str]:
    """Ids by descending score; ties keep document order, so rankings are deterministic."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    return [passages[i].passage_id for i in order]
