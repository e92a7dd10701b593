"""Hard-label rules for label-free and label-efficient training: hand-made cases with known answers."""

from __future__ import annotations

import itertools

import pytest

from tests.helpers.paper import PASSAGES
from uae.data.label_rules import answer_overlap_positives, labelled_questions, passage_tokens, teacher_argmax
from uae.data.records import Answer, Question

TOKENS = passage_tokens(PASSAGES)


def _q(*answers: tuple[str, str]) -> Question:
    return Question("q", "p", "What was it trained on?", tuple(Answer(text, kind, (), ()) for text, kind in answers))


def test_extractive_answer_found_in_one_paragraph() -> None:
    q = _q(("English and German corpora", "extractive"))
    assert answer_overlap_positives(q, TOKENS, ["p/0", "p/1", "p/2", "p/3", "p/4"]) == ("p/4",)


def test_abstractive_answer_goes_to_the_best_overlap_above_the_threshold() -> None:
    # content tokens {bilstm, attention, encoder, layers}: p/3 holds 3 of 4, p/1 2 of 4.
    q = _q(("A BiLSTM encoder with attention layers", "abstractive"))
    assert answer_overlap_positives(q, TOKENS, []) == ("p/3",)
    assert answer_overlap_positives(q, TOKENS, [], min_overlap=0.8) == ()  # 0.75 < 0.8


def test_yes_no_and_unanswerable_give_no_positive() -> None:
    assert answer_overlap_positives(_q(("Yes", "boolean")), TOKENS, []) == ()
    assert answer_overlap_positives(_q(("Unanswerable", "none")), TOKENS, []) == ()
    assert answer_overlap_positives(_q(("the of and", "extractive")), TOKENS, []) == ()  # only stopwords


def test_answer_in_two_paragraphs_goes_to_the_higher_bm25_rank() -> None:
    q = _q(("Penn Treebank", "extractive"))
    assert answer_overlap_positives(q, TOKENS, ["p/2", "p/1"]) == ("p/2",)
    assert answer_overlap_positives(q, TOKENS, ["p/1", "p/2"]) == ("p/1",)
    assert answer_overlap_positives(q, TOKENS, ["p/1", "p/2"], max_positives=2) == ("p/1", "p/2")


def test_annotators_answers_are_united() -> None:
    q = _q(("Penn Treebank", "extractive"), ("Yes", "boolean"), ("English and German", "abstractive"))
    assert answer_overlap_positives(q, TOKENS, ["p/1"]) == ("p/1", "p/4")


def test_labelled_fractions_are_nested_seeded_and_order_free() -> None:
    ids = [f"q{i}" for i in range(200)]
    subsets = [labelled_questions(ids, f, seed=0) for f in (0.0, 0.1, 0.25, 0.5, 1.0)]
    assert [len(s) for s in subsets] == [0, 20, 50, 100, 200]
    assert all(a < b for a, b in itertools.pairwise(subsets))
    assert labelled_questions(list(reversed(ids)), 0.25, seed=0) == subsets[2]
    assert labelled_questions(ids, 0.25, seed=1) != subsets[2]
    # not the first ids in file order: the draw spreads over the split
    assert subsets[1] != frozenset(ids[:20])
    with pytest.raises(ValueError, match="label fraction"):
        labelled_questions(ids, 1.5, seed=0)


def test_teacher_argmax_takes_the_first_of_equals() -> None:
    assert teacher_argmax(["a", "b", "c"], [0.1, 0.7, -2.0]) == "b"
    assert teacher_argmax(["a", "b", "c"], [0.7, 0.7, 0.1]) == "a"


def test_an_open_question_looks_only_at_its_bm25_ranking() -> None:
    from uae.data.label_rules import answer_overlap_labels
    from uae.data.records import Document, Passage, Split

    passages = tuple(Passage(pid, "p", i, "", text) for i, (pid, text) in enumerate(PASSAGES.items()))
    split = Split("train", "mem", "fp", {"p": Document("p", "t", "", passages)}, [])
    bound = Question("qb", "p", "On what?", (Answer("English and German corpora", "extractive", (), ()),))
    open_q = Question("qo", None, "On what?", (Answer("English and German corpora", "extractive", (), ()),))
    # p/4 holds the answer; the open question's BM25 top list lacks it, so no positive (DPR: top-k only)
    rankings = [["p/0", "p/1"], ["p/0", "p/1"]]
    assert answer_overlap_labels(split, [bound, open_q], rankings, min_overlap=0.5, max_positives=1) == [("p/4",), ()]
    rankings = [["p/0"], ["p/1", "p/4"]]
    assert answer_overlap_labels(split, [bound, open_q], rankings, min_overlap=0.5, max_positives=1) == [("p/4",), ("p/4",)]
