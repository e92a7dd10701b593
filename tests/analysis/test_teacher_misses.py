"""The teacher-miss counts on hand-made sets whose answers are known."""

from __future__ import annotations

import pytest

from uae.analysis.teacher_misses import holds_answer, markdown, teacher_misses
from uae.core.errors import UAEError
from uae.data.records import Answer, Document, Passage, Question, Split

TEXTS = {
    "d/0": "Denver beat Carolina 24-10 in Super Bowl 50.",  # the gold of q1
    "d/1": "The Broncos, from Denver, won the title.",  # holds q1's answer
    "d/2": "Carolina finished the season 15-1.",
    "d/3": "The game was played in Santa Clara in 2016.",  # holds q2's answer
    "d/4": "Levi's Stadium is in Santa Clara, California.",  # the gold of q2, also holds it
    "d/5": "Halftime featured Beyonce and Coldplay.",
}


def _split() -> Split:
    passages = tuple(Passage(pid, "d", i, "", text) for i, (pid, text) in enumerate(TEXTS.items()))
    questions = [
        Question("q1", None, "Who won Super Bowl 50?", (Answer("Denver Broncos", "extractive", (), ()), Answer("Denver", "extractive", (), ()))),
        Question("q2", None, "Where was it played?", (Answer("Santa Clara", "extractive", (), ()),)),
        Question("q3", None, "Who performed?", (Answer("Beyoncé", "extractive", (), ()),)),
    ]
    return Split("train", "mem", "fp", {"d": Document("d", "t", "", passages)}, questions)


def test_an_answer_counts_as_whole_words_after_squads_normalisation() -> None:
    assert holds_answer("The Broncos, from Denver, won.", ["denver"])
    assert holds_answer("Played in Santa-Clara.", ["Santa Clara"]) is False  # punctuation goes: "santaclara"
    assert holds_answer("In 19901 they left.", ["1990"]) is False  # not a word of the passage
    assert holds_answer("It was the 1990s.", ["", "Unrelated"]) is False


def test_counts_the_negatives_rated_above_the_gold_and_those_holding_an_answer() -> None:
    rows = [
        # q1: gold 0.5; d/1 (holds "Denver") 0.9 and d/2 0.7 above it, d/5 below
        ("q1", "d/0", True, 0.5), ("q1", "d/1", False, 0.9), ("q1", "d/2", False, 0.7), ("q1", "d/5", False, 0.1),
        # q2: gold 0.2; d/2 (no answer) 0.8 is the best-rated, d/3 (holds it) 0.3 also above, d/0 below
        ("q2", "d/4", True, 0.2), ("q2", "d/2", False, 0.8), ("q2", "d/3", False, 0.3), ("q2", "d/0", False, 0.0),
        # q3: the gold first, so no miss; "Beyoncé" keeps its accent and is in no negative
        ("q3", "d/5", True, 0.9), ("q3", "d/1", False, 0.4),
    ]
    counts = teacher_misses(rows, _split())
    assert counts == {
        "questions": 3, "missed": 2, "above": 4, "above_answer": 2, "top_answer": 1,
        "negatives": 7, "negatives_answer": 2,
    }
    assert "| 3 | 2 (66.7%) | 4 | 2 (50.0%) | 1 (50.0%) | 2 (28.6%) of 7 |" in markdown(counts)


def test_a_set_without_gold_is_not_counted_and_an_unknown_passage_is_refused() -> None:
    assert teacher_misses([("q1", "d/1", False, 0.9), ("q1", "d/2", False, 0.1)], _split())["questions"] == 0
    with pytest.raises(UAEError, match="'d/9' is not in"):
        teacher_misses([("q1", "d/9", False, 0.9)], _split())
