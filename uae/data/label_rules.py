"""Where a training question's hard labels come from, when it has any.

Label-free and label-efficient training (issue 15) compare retrievers that see different amounts of
human annotation on the same questions. Three rules live here, apart from the fit stage:

- :func:`labelled_questions`: which questions keep their evidence labels at a label fraction ``f``.
  The order is a seeded hash of the question id, so the subsets are nested (the 10% are inside the
  25%) and every method, run and machine draws the same ones.
- :func:`answer_overlap_positives`: the DPR-style pseudo-label a practitioner without evidence labels
  uses: the paragraph that holds the gold answer. Exact containment is the answer's whole token set
  found, so one token-overlap score covers extractive and abstractive answers; ties (an answer found
  in two paragraphs) go to the paragraph BM25 ranks higher for the question, as DPR picks its
  positive. Yes/no and unanswerable answers hold no text to find and give no positive.
- :func:`teacher_argmax`: the teacher's best candidate as a hard label.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping, Sequence

from bm25s.stopwords import STOPWORDS_EN

from uae.data.records import Question, Split
from uae.data.text import normalize_answer

# Tokens that say nothing about where an answer is: the normaliser removes articles, BM25's English
# list removes the rest ("of", "and", "in"...), which otherwise match every paragraph.
_STOPWORDS = frozenset(STOPWORDS_EN)


def labelled_questions(question_ids: Sequence[str], fraction: float, seed: int) -> frozenset[str]:
    """The ``round(fraction * n)`` questions that keep their labels: the first in a seeded hash order."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"label fraction must be in [0, 1], got {fraction}")
    order = sorted(question_ids, key=lambda qid: hashlib.sha256(f"{seed}:{qid}".encode()).hexdigest())
    return frozenset(order[: round(fraction * len(order))])


def content_tokens(text: str) -> frozenset[str]:
    """The answer-bearing tokens of a text: normalised as QASPER's evaluator does, stopwords dropped."""
    return frozenset(t for t in normalize_answer(text).split() if t not in _STOPWORDS)


def overlap(answer: frozenset[str], passage: frozenset[str]) -> float:
    """Share of the answer's content tokens that the passage holds (1.0: the passage contains them all)."""
    return len(answer & passage) / len(answer) if answer else 0.0


def passage_tokens(passages: Mapping[str, str]) -> dict[str, frozenset[str]]:
    """:func:`content_tokens` of each passage: computed once per document, shared by its questions."""
    return {pid: content_tokens(text) for pid, text in passages.items()}


def answer_overlap_positives(
    question: Question,
    tokens: Mapping[str, frozenset[str]],
    bm25_ranking: Sequence[str],
    *,
    min_overlap: float = 0.5,
    max_positives: int = 1,
) -> tuple[str, ...]:
    """The document's paragraphs that best hold the question's gold answers, best first; () when none does.

    ``tokens``: :func:`passage_tokens` of the document's paragraphs.

    Per answer (annotators answer separately): the paragraphs with the highest :func:`overlap`, kept
    when it reaches ``min_overlap``, ties broken by ``bm25_ranking`` (the question's BM25 ranking of
    the document), at most ``max_positives``. The union over answers, in that order. Boolean and
    unanswerable answers are skipped: "Yes" is not evidence of anything in the text.
    """
    if max_positives < 1:
        raise ValueError(f"max_positives must be >= 1, got {max_positives}")
    rank = {pid: i for i, pid in enumerate(bm25_ranking)}
    chosen: dict[str, None] = {}
    for answer in question.answers:
        if answer.answer_type in ("boolean", "none"):
            continue
        wanted = content_tokens(answer.text)
        if not wanted:
            continue
        scores = {pid: overlap(wanted, toks) for pid, toks in tokens.items()}
        best = max(scores.values(), default=0.0)
        if best < min_overlap or best == 0.0:
            continue
        tied = sorted((pid for pid, s in scores.items() if s == best), key=lambda pid: rank.get(pid, len(rank)))
        chosen.update(dict.fromkeys(tied[:max_positives]))
    return tuple(chosen)


def answer_overlap_labels(
    split: Split,
    questions: Sequence[Question],
    bm25_rankings: Sequence[Sequence[str]],
    *,
    min_overlap: float,
    max_positives: int,
) -> list[tuple[str, ...]]:
    """:func:`answer_overlap_positives` of each question (``bm25_rankings[i]`` ranks question i's
    document); each document is tokenised once, however many questions it has.

    A question without a document (open retrieval) looks only at its BM25 ranking's passages, as DPR
    picks its positive among BM25's top 100: in a corpus of thousands of documents a short answer ("1990")
    is held by paragraphs that have nothing to do with the question.
    """
    if len(bm25_rankings) != len(questions):
        raise ValueError(f"{len(bm25_rankings)} BM25 rankings for {len(questions)} questions")
    tokens: dict[str | None, dict[str, frozenset[str]]] = {}
    texts: dict[str, str] | None = None
    opened: dict[str, frozenset[str]] = {}  # open questions: each passage tokenised once, when first ranked
    labels = []
    for question, ranking in zip(questions, bm25_rankings, strict=True):
        if question.document_id is None:
            texts = texts if texts is not None else {p.passage_id: p.text for p in split.all_passages}
            for pid in ranking:
                if pid not in opened:
                    opened[pid] = content_tokens(texts[pid])
            known = {pid: opened[pid] for pid in ranking}
        else:
            if question.document_id not in tokens:
                tokens[question.document_id] = passage_tokens({p.passage_id: p.text for p in split.passages(question.document_id)})
            known = tokens[question.document_id]
        labels.append(
            answer_overlap_positives(question, known, ranking, min_overlap=min_overlap, max_positives=max_positives)
        )
    return labels


def teacher_argmax(passage_ids: Sequence[str], utility: Sequence[float]) -> str:
    """The candidate with the highest utility (the first of equals, in candidate order)."""
    if not passage_ids:
        raise ValueError("an empty candidate set has no best candidate")
    return passage_ids[max(range(len(utility)), key=lambda i: (utility[i], -i))]


def positives_mask(passage_ids: Sequence[str], positives: Collection[str]) -> tuple[bool, ...]:
    return tuple(pid in positives for pid in passage_ids)
