"""Exact inner-product search within one document (a matrix product) or over a whole split (FAISS).

Within-document retrieval (QASPER's evidence selection, SQuAD's paragraphs of one article) ranks only
the question's own document, so the index keeps each document's rows contiguous and scores that slice
with one matrix product: a document has at most a few hundred passages, so nothing is gained from an
index there, and runs in this scope do not need
FAISS installed. The corpus-wide mode searches every row with a FAISS flat index (imported only
then), on the GPU when faiss-gpu and a GPU are present, or with the approximate index the caller built
(``retrieval.index``, :mod:`uae.retrieval.ann`). Inner product on L2-normalised embeddings
is cosine similarity; every path orders equal scores by row and sums each exact score on its own, so rankings
are deterministic, and the same on any number of threads.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from uae.core.errors import DataError
from uae.retrieval.ann import IndexSpec, search
from uae.retrieval.base import positions_by_document

if TYPE_CHECKING:
    import faiss

log = logging.getLogger(__name__)

RESCORE_MARGIN = 16  # rows past k that exact corpus search re-scores, so that swaps by rounding across rank k stay inside
TIE_TOLERANCE = 1e-4  # above float32's worst rounding of a 384-to-1024-d unit inner product (d x 2^-24 < 6.2e-5)


def _gpu_available() -> bool:
    import faiss  # deferred: start-up speed

    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


class PassageIndex:
    """Passages of a split (grouped by document) and their embeddings, searchable per document or globally."""

    def __init__(
        self,
        embeddings: torch.Tensor | np.ndarray,
        passage_ids: Sequence[str],
        document_ids: Sequence[str],
        *,
        use_gpu: bool | None = None,
        spec: IndexSpec | None = None,
        corpus_index: faiss.Index | None = None,
    ) -> None:
        """``corpus_index``: an index over these rows built elsewhere (an approximate one, :func:`uae.retrieval.ann.cached_index`),
        searched as ``spec`` says; without it the corpus is searched exactly."""
        vectors = np.ascontiguousarray(np.asarray(embeddings, dtype=np.float32))
        if vectors.ndim != 2 or len(vectors) != len(passage_ids) or len(passage_ids) != len(document_ids):
            raise ValueError("embeddings, passage_ids and document_ids must have the same length")
        self.vectors = vectors
        self.passage_ids = list(passage_ids)
        self.spans: dict[str, tuple[int, int]] = {}
        for row, document_id in enumerate(document_ids):
            start, end = self.spans.get(document_id, (row, row))
            if end != row:
                raise ValueError(f"passages of document {document_id} are not contiguous")
            self.spans[document_id] = (start, row + 1)
        self.use_gpu = use_gpu
        self.spec = spec or IndexSpec()
        self._corpus_index: faiss.Index | None = corpus_index

    def _flat_index(self, vectors: np.ndarray, *, gpu: bool = False) -> faiss.Index:
        import faiss  # deferred: start-up speed

        index: faiss.Index = faiss.IndexFlatIP(vectors.shape[1])
        if gpu:
            self._gpu_resources = getattr(self, "_gpu_resources", None) or faiss.StandardGpuResources()
            index = faiss.index_cpu_to_gpu(self._gpu_resources, 0, index)
        index.add(vectors)
        return index

    def search_document(self, queries: torch.Tensor | np.ndarray, document_id: str | None) -> tuple[np.ndarray, list[list[str]]]:
        """Rank every passage of ``document_id`` (None: of the whole index) for each query: scores and ids, best first."""
        if document_id is not None and document_id not in self.spans:
            raise DataError(
                f"Document {document_id} has no paragraphs in the index, so its questions cannot be ranked. "
                "Its full text is empty in the data file; drop its questions or repair the file."
            )
        start, end = self.spans[document_id] if document_id is not None else (0, len(self.passage_ids))
        q = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        if q.ndim != 2 or q.shape[1] != self.vectors.shape[1]:
            raise ValueError(f"queries of shape {q.shape} for passages of dimension {self.vectors.shape[1]}")
        # An exact CPU scan of one document's slice costs microseconds, less than a host-device round trip.
        scores, rows = self._scan(q, start, end)
        ids = [[self.passage_ids[start + r] for r in row] for row in rows]
        return scores, ids

    def _scan(self, q: np.ndarray, start: int, end: int) -> tuple[np.ndarray, np.ndarray]:
        """Every row of ``start:end`` scored and ordered, rows counted from ``start``. einsum sums each score on
        its own (a BLAS product blocks the sums, so a repeated paragraph scores a few ulp apart from its copies,
        and by how many queries or threads share the call): equal vectors get equal scores, and the tie rule
        orders them."""
        scores = np.einsum("qd,pd->qp", q, self.vectors[start:end])
        return _ties_in_document_order(scores, np.broadcast_to(np.arange(end - start), scores.shape))

    def rank_documents(self, queries: torch.Tensor | np.ndarray, document_ids: Sequence[str | None]) -> list[list[str]]:
        """Each query's full ranking of its own document (``document_ids[i]``; None: every passage), one
        search per document."""
        q = np.asarray(queries, dtype=np.float32)
        ranked: list[list[str]] = [[] for _ in document_ids]
        for document_id, rows in positions_by_document(document_ids).items():
            for i, ids in zip(rows, self.search_document(q[rows], document_id)[1]):
                ranked[i] = ids
        return ranked

    def search_corpus(self, queries: torch.Tensor | np.ndarray, k: int) -> tuple[np.ndarray, list[list[str]]]:
        """Top ``k`` passages of the whole split for each query."""
        if self._corpus_index is not None and not self.spec.exact:
            scores, rows = search(self._corpus_index, self.vectors, np.asarray(queries, dtype=np.float32), k, self.spec)
            return scores, [[self.passage_ids[r] for r in row if r >= 0] for row in rows]
        if self._corpus_index is None:
            gpu = _gpu_available() if self.use_gpu is None else self.use_gpu
            self._corpus_index = self._flat_index(self.vectors, gpu=gpu)
        q = np.ascontiguousarray(np.asarray(queries, dtype=np.float32))
        k = min(k, len(self.passage_ids))
        # FAISS's flat scan blocks its sums by thread and by batch, so near-equal passages swap places with the
        # machine's cores, and so would hard negatives mined from a rank range (and the teacher tables keyed by
        # them). So the scan only finds the top k + RESCORE_MARGIN, each found score is summed again on its own, as
        # _scan sums them, and the list is cut to k. Which copies of a repeated paragraph the scan keeps is its heap's
        # choice: a query whose k-th score is within TIE_TOLERANCE of the last found one is scanned whole (on the
        # open corpus, 1 of 1,057 queries at k=100: a paragraph 13 times over straddled the cut).
        depth = min(k + RESCORE_MARGIN, len(self.passage_ids))
        _, rows = self._corpus_index.search(q, depth)
        scores, rows = _ties_in_document_order(self._rescored(q, rows), rows)
        if depth > k:
            for i in np.flatnonzero(scores[:, k - 1] - scores[:, -1] <= TIE_TOLERANCE):
                whole_scores, whole_rows = self._scan(q[i : i + 1], 0, len(self.passage_ids))
                scores[i], rows[i] = whole_scores[0, :depth], whole_rows[0, :depth]
        return scores[:, :k], [[self.passage_ids[r] for r in row[:k] if r >= 0] for row in rows]

    def _rescored(self, q: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Each (query, found row) score summed on its own; -inf where FAISS found none."""
        scores = np.empty(rows.shape, dtype=np.float32)
        for start in range(0, len(q), 256):  # 256 queries x (k + margin) vectors at a time
            block = slice(start, start + 256)
            scores[block] = np.einsum("qd,qkd->qk", q[block], self.vectors[np.maximum(rows[block], 0)])
        return np.where(rows >= 0, scores, np.float32(-np.inf))


def _ties_in_document_order(scores: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Equal scores in row order: FAISS leaves them in arbitrary order, and QASPER papers repeat paragraphs
    (such as "DISPLAYFORM0"), so this keeps rankings deterministic and the same as BM25's rule."""
    order = np.lexsort((rows, -scores), axis=1)
    return np.take_along_axis(scores, order, axis=1), np.take_along_axis(rows, order, axis=1)
