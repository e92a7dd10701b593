"""BM25 (bm25s) behind the same interface as the dense retriever: the lexical baseline."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import bm25s
import numpy as np

from uae.data.records import Question, Split
from uae.retrieval.base import Ranking, Retriever, Scope, positions_by_document, rank_by_scores

# bm25s sets its own logger to DEBUG on import and logs every index build.
logging.getLogger("bm25s").setLevel(logging.WARNING)


class BM25Retriever(Retriever):
    """Okapi BM25 with bm25s' Lucene variant; one index per document, or one over the split."""

    def __init__(self, k1: float = 1.5, b: float = 0.75, method: str = "lucene", stopwords: str | None = "en") -> None:
        self.k1, self.b, self.method, self.stopwords = k1, b, method, stopwords
        self.name = "bm25"

    def describe(self) -> dict[str, object]:
        return {"name": self.name, "k1": self.k1, "b": self.b, "method": self.method, "stopwords": self.stopwords}

    def _index(self, texts: list[str]) -> bm25s.BM25:
        model = bm25s.BM25(k1=self.k1, b=self.b, method=self.method)
        model.index(self._tokenize(texts), show_progress=False)
        return model

    def _tokenize(self, texts: list[str]) -> list[list[str]]:
        return bm25s.tokenize(texts, stopwords=self.stopwords, return_ids=False, show_progress=False)

    def rank(self, split: Split, questions: Sequence[Question], *, scope: Scope, top_k: int) -> Ranking:
        ranked: list[list[str]] = [[] for _ in questions]
        index_seconds = query_seconds = 0.0
        if scope == "corpus":
            passages = split.all_passages
            start = time.perf_counter()
            model = self._index([p.text for p in passages])
            index_seconds = time.perf_counter() - start
            start = time.perf_counter()
            for i, question in enumerate(questions):
                scores = model.get_scores(self._tokenize([question.text])[0])
                ranked[i] = rank_by_scores(scores, passages)[:top_k]
            return Ranking(ranked, time.perf_counter() - start, index_seconds)
        for document_id, positions in positions_by_document([q.document_id for q in questions]).items():
            passages = split.passages(document_id)
            start = time.perf_counter()
            model = self._index([p.text for p in passages])
            index_seconds += time.perf_counter() - start
            start = time.perf_counter()
            for i in positions:
                scores = np.asarray(model.get_scores(self._tokenize([questions[i].text])[0]))
                ranked[i] = rank_by_scores(scores, passages)
            query_seconds += time.perf_counter() - start
        return Ranking(ranked, query_seconds, index_seconds)
