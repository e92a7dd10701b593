"""LLM re-ranking at query time (UPR-style): the quality and latency reference UAE must approach.

At query time no answer is known, so the LLM scores each of the base retriever's top-k passages by
the mean log-likelihood of the *question* given the passage (Sachan et al., 2022, "Improving Passage
Retrieval with Zero-Shot Question Generation"). The passages below the top-k keep the base order.
Its latency is the base retriever's query time plus the LLM's, measured the same way as every other
retriever, so the speed-up of UAE over it is read off one table.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from uae.core.errors import UAEError
from uae.data.records import Question, Split
from uae.llm.scorer import AnswerScorer
from uae.retrieval.base import Ranking, Retriever, Scope

DEFAULT_PROMPT = "Passage: {passage}\n\nPlease write a question based on this passage.\nQuestion:"


class LLMReranker(Retriever):
    """Re-rank ``base``'s top ``k`` by log p_LLM(question | passage)."""

    def __init__(self, base: Retriever, scorer: AnswerScorer, *, k: int = 20, prompt: str = DEFAULT_PROMPT) -> None:
        if k < 1:
            raise UAEError(f"rerank.k={k}: re-ranking needs at least the top 1 passage; use k >= 1.")
        if "{passage}" not in prompt:
            raise UAEError(f"rerank.prompt={prompt!r} has no {{passage}} slot for the passage text; add one.")
        self.base, self.scorer, self.k, self.prompt = base, scorer, k, prompt
        self.name = f"llm_rerank@{k}"

    def describe(self) -> dict[str, object]:
        return {
            "name": self.name,
            "base": self.base.describe(),
            "llm": self.scorer.model_id,
            "k": self.k,
            "prompt": self.prompt,
        }

    def rank(self, split: Split, questions: Sequence[Question], *, scope: Scope, top_k: int) -> Ranking:
        first = self.base.rank(split, questions, scope=scope, top_k=max(top_k, self.k))
        texts = {p.passage_id: p.text for p in split.all_passages}
        start = time.perf_counter()
        prompts, targets, contexts, owners = [], [], [], []
        for i, (question, ranked) in enumerate(zip(questions, first.ranked_ids)):
            for pid in ranked[: self.k]:
                prompts.append(self.prompt.format(passage=texts[pid]))
                targets.append(" " + question.text.strip())
                contexts.append(texts[pid])
                owners.append(i)
        scores = self.scorer.score_targets(prompts, targets, contexts=contexts)
        reranked = []
        offset = 0
        for ranked in first.ranked_ids:
            head = ranked[: self.k]
            block = scores[offset : offset + len(head)]
            offset += len(head)
            order = sorted(range(len(head)), key=lambda j: (-block[j], j))
            reranked.append([head[j] for j in order] + list(ranked[self.k :]))
        llm_seconds = time.perf_counter() - start
        return Ranking(reranked, first.query_seconds + llm_seconds, first.index_seconds)
