"""Candidate sets C(q): the passages whose utility the LLM scores and the student learns to rank.

Each set holds the question's gold evidence, hard negatives (top paragraphs of the same document by BM25
and by the base encoder) and random passages of the document, deduplicated and capped at ``size``.
With ``gold=False`` (label-free, ``candidates.gold=false``) the set is built without reading any
evidence annotation: only the retrievers' top paragraphs and random fill, which is all a user with
question-answer pairs alone can build; annotated evidence is then in the set only when a retriever
(or the draw) put it there. ``leading`` passages go first, before the retrievers': with
``candidates.answer_overlap=true`` they are the paragraphs that hold the gold answer
(:func:`uae.data.label_rules.answer_overlap_positives`), which needs the answer and no annotation, so
the teacher scores the pseudo-positive that label-free objectives combine with its utilities.
Hard negatives make the utility targets informative (an easy random set teaches little); random ones
keep the student calibrated on ordinary paragraphs. With ``rank_range=(lo, hi)`` (``candidates.rank_range``)
each source's hard negatives are drawn at random from its ranks lo..hi-1 instead of its top, as
FlagEmbedding's negative mining does (``range_for_sampling``): in an open corpus the very top holds the
other paragraphs that answer the question, which a set must not teach as negatives. Everything is fixed by the seed and the question
id, so a question's set does not change when other questions are added or removed.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from uae.core.errors import DataError
from uae.data.records import Question, Split

SOURCES = ("gold", "answer_overlap", "bm25", "dense", "random")


@dataclass(frozen=True)
class CandidateSet:
    question_id: str
    document_id: str | None  # None: an open-retrieval question, whose candidates come from the whole split
    passage_ids: tuple[str, ...]
    sources: tuple[str, ...]  # where each candidate came from, one of SOURCES

    def __post_init__(self) -> None:
        if len(self.passage_ids) != len(self.sources):
            raise ValueError("passage_ids and sources must have the same length")


def build_candidate_set(
    question: Question,
    document_passage_ids: Sequence[str],
    *,
    size: int,
    hard_rankings: Mapping[str, Sequence[str]],
    n_hard: Mapping[str, int],
    seed: int,
    gold: bool = True,
    leading: Sequence[str] = (),
    rank_range: tuple[int, int] | None = None,
) -> CandidateSet:
    """One question's set: gold first (unless ``gold`` is False), then ``leading`` (the answer-overlap
    paragraphs), then each hard-negative source in turn, then random fill.

    ``hard_rankings`` maps a source name (``bm25``, ``dense``) to that retriever's ranking of the
    document for this question; ``n_hard`` says how many of its top paragraphs not yet in the set to take
    (with ``rank_range``: how many to draw from its ranks ``lo..hi-1``, 0-based).
    """
    if size < 1:
        raise DataError(f"candidates.size={size}: a candidate set needs at least one passage.")
    if not document_passage_ids:
        raise DataError(
            f"Question {question.question_id}: its document {question.document_id} has no passages, so it has "
            "no candidates. Leave it out (it has no evidence either) or repair the data file."
        )
    chosen: dict[str, str] = {}
    if gold:
        for pid in document_passage_ids:  # gold in document order, so the set does not depend on set iteration
            if pid in question.gold_ids and len(chosen) < size:
                chosen[pid] = "gold"
    known = set(document_passage_ids)
    for pid in leading:
        if pid not in known:
            raise DataError(f"Question {question.question_id}: leading candidate {pid} is not a passage of {question.document_id}.")
        if pid not in chosen and len(chosen) < size:
            chosen[pid] = "answer_overlap"
    for source, ranking in hard_rankings.items():
        wanted = min(n_hard.get(source, 0), size - len(chosen))
        if rank_range is not None:
            pool = [pid for pid in ranking[rank_range[0] : rank_range[1]] if pid not in chosen]
            draw = random.Random(f"{seed}:{question.question_id}:{source}")
            picked = draw.sample(pool, min(len(pool), wanted))
        else:
            picked = [pid for pid in ranking if pid not in chosen][:wanted]
        chosen.update(dict.fromkeys(picked, source))
    rest = [pid for pid in document_passage_ids if pid not in chosen]
    rng = random.Random(f"{seed}:{question.question_id}")
    for pid in rng.sample(rest, min(len(rest), size - len(chosen))):
        chosen[pid] = "random"
    return CandidateSet(question.question_id, question.document_id, tuple(chosen), tuple(chosen.values()))


def build_candidates(
    split: Split,
    questions: Sequence[Question],
    *,
    size: int = 8,
    hard_rankings: Mapping[str, Sequence[Sequence[str]]] | None = None,
    n_hard: Mapping[str, int] | None = None,
    seed: int = 0,
    gold: bool = True,
    leading: Sequence[Sequence[str]] | None = None,
    rank_range: tuple[int, int] | None = None,
) -> list[CandidateSet]:
    """Candidate sets for ``questions``; ``hard_rankings[source][i]`` ranks question i's document and
    ``leading[i]`` are the passages question i's set starts with (after gold)."""
    hard_rankings = hard_rankings or {}
    if leading is not None and len(leading) != len(questions):
        raise ValueError(f"leading: {len(leading)} lists for {len(questions)} questions")
    for source, rankings in hard_rankings.items():
        if len(rankings) != len(questions):
            raise ValueError(f"{source}: {len(rankings)} rankings for {len(questions)} questions")
    sets = []
    for i, question in enumerate(questions):
        ids = [p.passage_id for p in split.passages(question.document_id)]
        sets.append(
            build_candidate_set(
                question,
                ids,
                size=size,
                hard_rankings={source: rankings[i] for source, rankings in hard_rankings.items()},
                n_hard=n_hard or {},
                seed=seed,
                gold=gold,
                leading=leading[i] if leading is not None else (),
                rank_range=rank_range,
            )
        )
    return sets
