"""Candidate sets: gold first, hard negatives per source, random fill, deduplicated, capped, seeded."""

from __future__ import annotations

from pathlib import Path

import pytest

from uae.core.errors import DataError
from uae.data.candidates import build_candidate_set, build_candidates
from uae.data.qasper import load_qasper
from uae.data.records import Answer, Question

IDS = [f"p/{i}" for i in range(10)]


def _question(gold: tuple[str, ...], qid: str = "q") -> Question:
    return Question(qid, "p", "why?", (Answer("because", "abstractive", (), gold),))


def test_gold_then_hard_then_random() -> None:
    q = _question(("p/7", "p/2"))
    s = build_candidate_set(
        q, IDS, size=8, seed=0,
        hard_rankings={"bm25": ["p/7", "p/5", "p/4", "p/3"], "dense": ["p/5", "p/9", "p/1"]},
        n_hard={"bm25": 2, "dense": 2},
    )
    # gold in document order; bm25 skips gold p/7 and takes p/5, p/4; dense skips p/5 (taken) -> p/9, p/1.
    assert s.passage_ids[:6] == ("p/2", "p/7", "p/5", "p/4", "p/9", "p/1")
    assert s.sources[:6] == ("gold", "gold", "bm25", "bm25", "dense", "dense")
    assert len(s.passage_ids) == 8 == len(set(s.passage_ids))
    assert s.sources[6:] == ("random", "random")
    assert set(s.passage_ids[6:]) <= {"p/0", "p/3", "p/6", "p/8"}


def test_seeded_per_question_and_capped() -> None:
    q = _question(("p/1",))
    a = build_candidate_set(q, IDS, size=5, seed=3, hard_rankings={}, n_hard={})
    b = build_candidate_set(q, IDS, size=5, seed=3, hard_rankings={}, n_hard={})
    c = build_candidate_set(q, IDS, size=5, seed=4, hard_rankings={}, n_hard={})
    assert a == b and a.passage_ids != c.passage_ids
    small = build_candidate_set(q, IDS[:3], size=8, seed=0, hard_rankings={}, n_hard={})
    assert sorted(small.passage_ids) == IDS[:3]  # a short paper gives a short set, no duplicates
    many_gold = build_candidate_set(_question(tuple(IDS)), IDS, size=4, seed=0, hard_rankings={}, n_hard={})
    assert many_gold.passage_ids == tuple(IDS[:4]) and set(many_gold.sources) == {"gold"}


def test_bad_settings() -> None:
    with pytest.raises(DataError, match="candidates.size=0"):
        build_candidate_set(_question(()), IDS, size=0, seed=0, hard_rankings={}, n_hard={})
    with pytest.raises(DataError, match="no passages"):
        build_candidate_set(_question(()), [], size=8, seed=0, hard_rankings={}, n_hard={})


def test_on_a_split_sets_do_not_depend_on_other_questions(tiny_raw_dir: Path) -> None:
    split = load_qasper("dev", tiny_raw_dir, allow_hub=False)
    questions = [q for q in split.questions if q.answerable]
    full = build_candidates(split, questions, size=3, seed=1)
    alone = build_candidates(split, questions[-1:], size=3, seed=1)
    assert alone[0] == full[-1]
    for s, q in zip(full, questions):
        assert set(q.gold_ids) <= set(s.passage_ids)
        assert all(pid.startswith(q.document_id + "/") for pid in s.passage_ids)


def test_label_free_sets_never_read_the_annotation(shared_data: Path) -> None:
    """Scrambling every question's evidence leaves the label-free sets as they were (and moves the labelled ones)."""
    import dataclasses
    import random

    from uae.retrieval.base import rank_questions
    from uae.retrieval.bm25 import BM25Retriever

    split = load_qasper("dev", shared_data, max_documents=6, allow_hub=False)
    rng = random.Random(0)

    def scrambled(q: Question) -> Question:
        ids = [p.passage_id for p in split.passages(q.document_id)]
        answers = tuple(dataclasses.replace(a, evidence_ids=tuple(rng.sample(ids, 2))) for a in q.answers)
        return dataclasses.replace(q, answers=answers, evidence_ids=())

    other = dataclasses.replace(split, questions=[scrambled(q) for q in split.questions])
    assert [q.gold_ids for q in other.questions] != [q.gold_ids for q in split.questions]

    def sets(s: object, gold: bool) -> list:
        questions = [q for q in s.questions if q.answerable]
        bm25 = rank_questions(BM25Retriever(), s, questions, scope="document", top_k=100).ranked_ids
        return build_candidates(s, questions, size=8, hard_rankings={"bm25": bm25}, n_hard={"bm25": 4}, seed=1, gold=gold)

    free = sets(split, gold=False)
    assert free == sets(other, gold=False)
    assert "gold" not in {source for s in free for source in s.sources}
    assert sets(split, gold=True) != sets(other, gold=True)  # the scramble is one the labelled sets do see


def test_leading_passages_follow_gold_and_precede_the_retrievers() -> None:
    q = _question(("p/7",))
    s = build_candidate_set(
        q, IDS, size=4, seed=0, hard_rankings={"bm25": ["p/3", "p/5", "p/4"]}, n_hard={"bm25": 2}, leading=("p/5", "p/7")
    )
    # gold p/7 first; p/5 leads; p/7 is not taken twice; bm25 then takes p/3 and skips p/5 (taken) -> p/4.
    assert s.passage_ids == ("p/7", "p/5", "p/3", "p/4")
    assert s.sources == ("gold", "answer_overlap", "bm25", "bm25")
    free = build_candidate_set(q, IDS, size=2, seed=0, hard_rankings={"bm25": ["p/3"]}, n_hard={"bm25": 2}, leading=("p/5",), gold=False)
    assert free.passage_ids == ("p/5", "p/3") and free.sources == ("answer_overlap", "bm25")
    with pytest.raises(DataError, match="p/99 is not a passage of p"):
        build_candidate_set(q, IDS, size=4, seed=0, hard_rankings={}, n_hard={}, leading=("p/99",))


def test_rank_range_draws_only_from_its_ranks_seeded_per_question() -> None:
    ranking = [f"p/{i}" for i in range(10)]  # p/0 (the gold) first: excluded, as chosen already

    def draw(qid: str = "q") -> tuple[str, ...]:
        return build_candidate_set(
            _question(("p/0",), qid=qid), IDS, size=5, hard_rankings={"bm25": ranking}, n_hard={"bm25": 4}, seed=3, rank_range=(2, 8)
        ).passage_ids

    drawn = draw()
    assert drawn[0] == "p/0" and len(drawn) == 5 and set(drawn[1:]) <= set(ranking[2:8])
    assert draw() == drawn  # seeded
    # the draw is random within the range: over question ids it reaches ranks the top-4 rule never takes
    reached = {pid for k in range(30) for pid in draw(f"q{k}")[1:]}
    assert reached == set(ranking[2:8])


def test_rank_range_pool_smaller_than_asked_takes_what_there_is_then_random_fill() -> None:
    q = _question(("p/0",))
    s = build_candidate_set(
        q, IDS, size=6, seed=0, hard_rankings={"bm25": ["p/0", "p/1", "p/2", "p/3"], "dense": ["p/9", "p/1", "p/3", "p/4"]},
        n_hard={"bm25": 3, "dense": 3}, rank_range=(1, 3),
    )
    by_source = {src: [p for p, s2 in zip(s.passage_ids, s.sources, strict=True) if s2 == src] for src in set(s.sources)}
    assert sorted(by_source["bm25"]) == ["p/1", "p/2"]  # ranks 1..2 only
    assert by_source["dense"] == ["p/3"]  # dense's ranks 1..2 are p/1 (bm25 took it) and p/3; p/9 (rank 0) never
    assert len(s.passage_ids) == 6 and s.sources.count("random") == 2
