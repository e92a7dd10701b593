"""Hard-label rules for label-free and label-efficient training: hand-made cases with known answers."""

from __future__ import annotations

import itertools

import pytest

from uae.data.label_rules import answer_overlap_positives, labelled_questions, passage_tokens, teacher_argmax
from uae.data.records import Answer, Question

PASSAGES = {
    "p/0": "We introduce a new dataset of scientific papers.",
    "p/1": "The model is trained on the Penn Treebank with a BiLSTM encoder.",
    "p/2": "Results on the Penn Treebank improve by two points.",
    "p/3": "Our encoder is a BiLSTM with attention over tokens.",
    "p/4": "Experiments use English and German corpora.",
}
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


def _split_and_groups():
    from uae.data.records import Document, Passage, Split, TrainingGroup

    passages = tuple(Passage(pid, "p", i, "", text) for i, (pid, text) in enumerate(PASSAGES.items()))
    questions = [
        Question("q0", "p", "What corpora?", (Answer("English and German corpora", "extractive", (), ("p/4",)),)),
        Question("q1", "p", "Is it new?", (Answer("Yes", "boolean", (), ("p/0",)),)),
        Question("q2", "p", "Which encoder?", (Answer("BiLSTM with attention", "extractive", (), ("p/3",)),)),
    ]
    split = Split("train", "mem", "fp", {"p": Document("p", "t", "", passages)}, questions)
    ids = ("p/0", "p/1", "p/3")  # q0's positive p/4 is not in its set; q2's p/3 is
    groups = [
        TrainingGroup(q.question_id, q.text, ids, tuple(PASSAGES[i] for i in ids), (0.2, 0.9, -0.1), tuple(i in q.gold_ids for i in ids))
        for q in questions
    ]
    return split, groups


def _cfg(loss: str = "infonce", **labels: object):
    from omegaconf import OmegaConf

    base = {"source": "evidence", "fraction": 1.0, "seed": 0, "table": None, "min_overlap": 0.5, "max_positives": 1}
    return OmegaConf.create({"train": {"labels": {**base, **labels}}, "loss": {"name": loss, "needs_gold": loss == "infonce"}})


def test_apply_labels_default_keeps_the_table_mask_and_fractions_clear_the_rest() -> None:
    from uae.stages.labels import apply_labels

    split, groups = _split_and_groups()
    same, record = apply_labels(_cfg(), split, groups)
    assert same == groups and record["labelled"] == 3
    half, record = apply_labels(_cfg(fraction=0.34), split, groups)  # round(0.34 * 3) = 1 question keeps its label
    kept = labelled_questions([g.question_id for g in groups], 0.34, seed=0)
    assert len(kept) == 1 and record["labelled"] == 1
    for before, after in zip(groups, half):
        assert after.gold == (before.gold if before.question_id in kept else (False, False, False))
    none, _ = apply_labels(_cfg("uae", source="none"), split, groups)
    assert not any(any(g.gold) for g in none)


def test_apply_labels_teacher_argmax_and_answer_overlap() -> None:
    import math

    from uae.core.errors import UAEError
    from uae.stages.labels import apply_labels

    split, groups = _split_and_groups()
    argmax, _ = apply_labels(_cfg(source="teacher_argmax"), split, groups)
    assert all(g.gold == (False, True, False) for g in argmax)  # utility 0.9 is p/1's

    overlap, record = apply_labels(_cfg(source="answer_overlap"), split, groups)
    q0, q1, q2 = overlap
    assert q0.passage_ids == ("p/4", "p/0", "p/1") and q0.gold == (True, False, False)  # inserted, size kept
    assert q0.passages[0] == PASSAGES["p/4"] and math.isnan(q0.utility[0]) and q0.utility[1:] == (0.2, 0.9)
    assert not any(q1.gold)  # yes/no: no positive
    assert q2.passage_ids == groups[2].passage_ids and q2.gold == (False, False, True)
    assert record["inserted"] == 1 and record["without_positive"] == 1 and record["with_positive"] == 2
    with pytest.raises(UAEError, match="hard-label loss"):
        apply_labels(_cfg("uae", source="answer_overlap"), split, groups)
    with pytest.raises(UAEError, match="source=evidence only"):
        apply_labels(_cfg(source="teacher_argmax", fraction=0.5), split, groups)


def test_recorded_table_path_is_relative_to_the_project_inside_it(tmp_path) -> None:
    from uae.core.config import ROOT_DIR, project_path

    assert project_path(ROOT_DIR / "experiments" / "qasper" / "utilities" / "train.parquet") == "experiments/qasper/utilities/train.parquet"
    assert project_path(tmp_path / "elsewhere.parquet") == str(tmp_path / "elsewhere.parquet")
