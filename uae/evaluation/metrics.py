"""Retrieval metrics over paragraph rankings, and the official QASPER answer/evidence F1 scores.

Retrieval metrics are computed with torchmetrics' functional retrieval metrics so the numbers match
what the rest of the PyTorch ecosystem reports, with two corrections that torchmetrics cannot make on
its own (see :func:`per_query_retrieval_metrics`). The answer metrics are a line-for-line port of
``qasper_evaluator.py`` from the QASPER release so that our scores are comparable with published ones.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Collection, Sequence

import torch
from torchmetrics.functional.retrieval import (
    retrieval_average_precision,
    retrieval_hit_rate,
    retrieval_normalized_dcg,
    retrieval_recall,
    retrieval_reciprocal_rank,
)

from uae.data.text import normalize_answer
from uae.evaluation.names import RETRIEVAL_METRICS

__all__ = [
    "RETRIEVAL_METRICS",
    "answer_f1",
    "evidence_f1",
    "normalize_answer",
    "paragraph_f1",
    "per_query_retrieval_metrics",
    "recall_at",
    "retrieval_metrics",
    "token_f1",
]

_NDCG_K = 10


def _ideal_dcg(num_relevant: int, k: int = _NDCG_K) -> float:
    """Binary-gain DCG of a perfect ranking, so the nDCG denominator can count gold the ranking lacks."""
    return sum(1.0 / math.log2(rank + 1) for rank in range(1, min(num_relevant, k) + 1))


def per_query_retrieval_metrics(ranked_ids: Sequence[str], gold_ids: Collection[str]) -> dict[str, float]:
    """Score one question's ranking against its gold paragraphs.

    The ranking becomes preds ``n, n-1, ..., 1``: strictly decreasing so torchmetrics never averages
    ties, and strictly positive because ``retrieval_average_precision``, ``retrieval_recall`` and
    ``retrieval_reciprocal_rank`` silently treat any item with ``preds <= 0`` as non-relevant.

    Gold ids that are absent from the ranking must still count against the question, but torchmetrics
    only knows the relevant items inside ``target``: its recall divides by ``target.sum()``, its AP
    averages over the relevant items it retrieved, and its nDCG builds the ideal ranking from
    ``target``. Padding ``target`` with the missing gold does not work (zero-pred padding is ignored by
    AP and scored as retrieved by nDCG when the ranking is shorter than 10), so torchmetrics is run on
    the ranking alone and recall/AP are rescaled by ``found / |gold|`` and nDCG by
    ``IDCG(found) / IDCG(|gold|)``. Hit@1 and MRR need no correction. An empty ranking scores 0
    everywhere (torchmetrics rejects empty input).

    Raises:
        ValueError: if ``gold_ids`` is empty or ``ranked_ids`` repeats an id.
    """
    gold = set(gold_ids)
    if not gold:
        raise ValueError("gold_ids is empty: every question needs at least one gold paragraph to be scored")
    if len(set(ranked_ids)) != len(ranked_ids):
        duplicates = sorted({pid for pid, count in Counter(ranked_ids).items() if count > 1})
        raise ValueError(f"ranked_ids repeats passage ids {duplicates[:5]}: a ranking must list each passage once")

    n = len(ranked_ids)
    found = sum(1 for pid in ranked_ids if pid in gold)
    if found == 0:
        return dict.fromkeys(RETRIEVAL_METRICS, 0.0)

    preds = torch.arange(n, 0, -1, dtype=torch.float32)
    target = torch.tensor([pid in gold for pid in ranked_ids], dtype=torch.bool)
    coverage = found / len(gold)
    ndcg_scale = _ideal_dcg(found) / _ideal_dcg(len(gold))
    return {
        "hit@1": float(retrieval_hit_rate(preds, target, top_k=1)),
        "recall@1": float(retrieval_recall(preds, target, top_k=1)) * coverage,
        "recall@5": float(retrieval_recall(preds, target, top_k=5)) * coverage,
        "map": float(retrieval_average_precision(preds, target)) * coverage,
        "mrr": float(retrieval_reciprocal_rank(preds, target)),
        "ndcg@10": float(retrieval_normalized_dcg(preds, target, top_k=_NDCG_K)) * ndcg_scale,
    }


def recall_at(ranked_ids: Sequence[str], gold_ids: Collection[str], k: int) -> float:
    """Share of the gold passages in the top ``k`` (gold the ranking lacks counts as missed): what an
    approximate index costs shows at the depth a re-ranker or reader reads, not at rank 1 alone."""
    gold = set(gold_ids)
    if not gold:
        raise ValueError("gold_ids is empty: every question needs at least one gold paragraph to be scored")
    return len(gold.intersection(ranked_ids[:k])) / len(gold)


def retrieval_metrics(rankings: Sequence[Sequence[str]], golds: Sequence[Collection[str]]) -> dict[str, float]:
    """Macro-average over questions, so a question with many gold paragraphs weighs as much as one with one.

    Raises:
        ValueError: if the two sequences differ in length, are empty, or any question is invalid
            (see :func:`per_query_retrieval_metrics`).
    """
    if len(rankings) != len(golds):
        raise ValueError(f"got {len(rankings)} rankings but {len(golds)} gold sets: pass one gold set per ranking")
    if not rankings:
        raise ValueError("no questions to score: rankings and golds are empty")
    totals = dict.fromkeys(RETRIEVAL_METRICS, 0.0)
    for ranked_ids, gold_ids in zip(rankings, golds):
        for name, value in per_query_retrieval_metrics(ranked_ids, gold_ids).items():
            totals[name] += value
    return {name: total / len(rankings) for name, total in totals.items()}


def token_f1(prediction: str, reference: str) -> float:
    """QASPER's ``token_f1_score``: bag-of-tokens F1 after normalisation.

    As in the official code, no shared token means 0, even when both sides normalise to nothing
    (e.g. an empty prediction against the reference ``"the"``).
    """
    prediction_tokens = normalize_answer(prediction).split()
    reference_tokens = normalize_answer(reference).split()
    common = Counter(prediction_tokens) & Counter(reference_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(prediction_tokens)
    recall = num_same / len(reference_tokens)
    return (2 * precision * recall) / (precision + recall)


def answer_f1(prediction: str, references: Sequence[str]) -> float:
    """QASPER scores an answer against its best-matching annotator, not their average.

    Raises:
        ValueError: if ``references`` is empty (the official ``max`` would fail the same way).
    """
    if not references:
        raise ValueError("references is empty: a question needs at least one annotator answer")
    return max(token_f1(prediction, reference) for reference in references)


def paragraph_f1(predicted: Collection[str], gold: Collection[str]) -> float:
    """QASPER's ``paragraph_f1_score``.

    Both sides empty is a perfect score (an unanswerable question with no evidence predicted). The
    overlap is counted on sets but, as in the official code, precision and recall divide by the
    lengths of the collections as given, so a prediction that repeats a paragraph loses precision.
    """
    if not gold and not predicted:
        return 1.0
    num_same = len(set(gold) & set(predicted))
    if num_same == 0:
        return 0.0
    precision = num_same / len(predicted)
    recall = num_same / len(gold)
    return (2 * precision * recall) / (precision + recall)


def evidence_f1(predicted: Collection[str], references: Sequence[Collection[str]]) -> float:
    """QASPER scores evidence against its best-matching annotator, not their average.

    Raises:
        ValueError: if ``references`` is empty (the official ``max`` would fail the same way).
    """
    if not references:
        raise ValueError("references is empty: a question needs at least one annotator's evidence")
    return max(paragraph_f1(predicted, reference) for reference in references)
