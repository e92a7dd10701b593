"""LLM re-ranking: the top-k is reordered by the scorer's log p(question | passage), the rest kept."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from uae.core.errors import UAEError
from uae.data.qasper import load_qasper
from uae.retrieval.base import Ranking, Retriever
from uae.retrieval.rerank import LLMReranker


class ReversedBase(Retriever):
    """A base retriever that ranks each paper's passages last-to-first."""

    name = "reversed"

    def rank(self, split, questions, *, scope, top_k):
        return Ranking([[p.passage_id for p in reversed(split.passages(q.document_id))] for q in questions], 0.5, 0.0)


class OverlapTargetScorer:
    """Scores a target by how many of its words the prompt holds; records what it was asked."""

    model_id = "fake-llm"

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []

    def score_targets(self, prompts, targets, *, contexts=None):
        self.seen += list(zip(prompts, targets, contexts))
        return np.array([len(set(t.lower().split()) & set(p.lower().split())) for p, t in zip(prompts, targets)], float)


def test_reranks_top_k_only(tiny_raw_dir: Path) -> None:
    split = load_qasper("dev", tiny_raw_dir, allow_hub=False)
    q4 = next(q for q in split.questions if q.question_id == "q4")  # "How long did training take?"
    scorer = OverlapTargetScorer()
    reranker = LLMReranker(ReversedBase(), scorer, k=2, prompt="Passage: {passage} Question:")
    ranking = reranker.rank(split, [q4], scope="document", top_k=10)
    # base order p2/2, p2/1, p2/0; the top-2 are rescored: p2/1 ("Training took ...") shares "training".
    assert ranking.ranked_ids == [["p2/1", "p2/2", "p2/0"]]
    assert [s[2] for s in scorer.seen] == [split.passages("p2")[2].text, split.passages("p2")[1].text]
    assert all(prompt.startswith("Passage: ") and target == " How long did training take?" for prompt, target, _ in scorer.seen)
    assert ranking.query_seconds >= 0.5  # the base retriever's query time is included
    assert reranker.describe()["base"] == {"name": "reversed"} and reranker.name == "llm_rerank@2"


def test_bad_settings() -> None:
    with pytest.raises(UAEError, match="rerank.k=0"):
        LLMReranker(ReversedBase(), OverlapTargetScorer(), k=0)
    with pytest.raises(UAEError, match="rerank.prompt"):
        LLMReranker(ReversedBase(), OverlapTargetScorer(), prompt="no slot")
