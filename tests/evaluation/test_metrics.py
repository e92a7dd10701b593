"""Tests for uae.evaluation.metrics: hand-computed values, a plain-Python reference, and error cases."""

from __future__ import annotations

import math
import random

import pytest

from uae.data.text import normalize_answer
from uae.evaluation.metrics import (
    RETRIEVAL_METRICS,
    answer_f1,
    evidence_f1,
    paragraph_f1,
    per_query_retrieval_metrics,
    retrieval_metrics,
    token_f1,
)

TOL = 1e-6
INV_LOG2_3 = 1 / math.log2(3)  # discount at rank 2 = 0.6309...
INV_LOG2_5 = 1 / math.log2(5)  # discount at rank 4 = 0.4307...


def assert_metrics(actual: dict[str, float], expected: dict[str, float]) -> None:
    assert tuple(actual) == RETRIEVAL_METRICS
    for name in RETRIEVAL_METRICS:
        assert actual[name] == pytest.approx(expected[name], abs=TOL), name


# ---------------------------------------------------------------------------------------------
# Retrieval metrics: hand-computed values
# ---------------------------------------------------------------------------------------------


def test_metric_names_are_the_public_contract() -> None:
    assert RETRIEVAL_METRICS == ("hit@1", "recall@1", "recall@5", "map", "mrr", "ndcg@10")


def test_gold_at_ranks_2_and_4() -> None:
    ranking = ["p1", "p2", "p3", "p4", "p5", "p6"]
    expected = {
        "hit@1": 0.0,  # p1 is not gold
        "recall@1": 0.0,  # 0 of 2 gold in top 1
        "recall@5": 1.0,  # 2 of 2 gold in top 5
        "map": 0.5,  # (1/2 + 2/4) / 2
        "mrr": 0.5,  # first gold at rank 2
        # DCG = 1/log2(3) + 1/log2(5); IDCG (2 gold) = 1/log2(2) + 1/log2(3)
        "ndcg@10": (INV_LOG2_3 + INV_LOG2_5) / (1 + INV_LOG2_3),  # = 0.65092
    }
    assert_metrics(per_query_retrieval_metrics(ranking, {"p2", "p4"}), expected)
    assert expected["ndcg@10"] == pytest.approx(0.65092, abs=1e-5)


def test_perfect_single_gold() -> None:
    assert_metrics(per_query_retrieval_metrics(["a", "b", "c"], {"a"}), dict.fromkeys(RETRIEVAL_METRICS, 1.0))


def test_gold_beyond_top5() -> None:
    ranking = [f"p{i}" for i in range(1, 8)]  # p1..p7
    expected = {
        "hit@1": 1.0,
        "recall@1": 0.5,  # p1 of {p1, p6}
        "recall@5": 0.5,  # p6 is at rank 6, outside the top 5
        "map": (1 / 1 + 2 / 6) / 2,  # = 2/3
        "mrr": 1.0,
        "ndcg@10": (1 + 1 / math.log2(7)) / (1 + INV_LOG2_3),  # rank 6 discount 1/log2(7); = 0.83156
    }
    assert_metrics(per_query_retrieval_metrics(ranking, ["p6", "p1"]), expected)


def test_ndcg_cuts_at_10_but_map_and_mrr_do_not() -> None:
    ranking = [f"p{i}" for i in range(1, 13)]  # p1..p12, gold only at rank 11
    expected = {
        "hit@1": 0.0,
        "recall@1": 0.0,
        "recall@5": 0.0,
        "map": 1 / 11,  # precision 1/11 at rank 11, one gold item
        "mrr": 1 / 11,
        "ndcg@10": 0.0,  # nothing relevant in the top 10
    }
    assert_metrics(per_query_retrieval_metrics(ranking, {"p11"}), expected)


def test_ideal_dcg_uses_at_most_10_gold_items() -> None:
    # 11 gold, the top 10 are all gold: DCG@10 equals the ideal DCG of min(11, 10) = 10 items.
    ranking = [f"p{i}" for i in range(1, 13)]
    gold = {f"p{i}" for i in range(1, 12)}
    got = per_query_retrieval_metrics(ranking, gold)
    assert got["ndcg@10"] == pytest.approx(1.0, abs=TOL)
    assert got["recall@5"] == pytest.approx(5 / 11, abs=TOL)
    assert got["map"] == pytest.approx(1.0, abs=TOL)  # every gold item has precision 1 at its rank


def test_gold_absent_from_ranking_still_counts() -> None:
    # gold {p2, x}; x is not in the ranking, so it contributes precision 0 and stays in every denominator.
    ranking = ["p1", "p2", "p3"]
    expected = {
        "hit@1": 0.0,
        "recall@1": 0.0,
        "recall@5": 0.5,  # 1 of 2 gold retrieved (torchmetrics alone would say 1/1)
        "map": 0.25,  # (1/2 + 0) / 2 (torchmetrics alone would say 0.5)
        "mrr": 0.5,
        # DCG = 1/log2(3); IDCG from 2 gold = 1 + 1/log2(3)  (torchmetrics alone would use 1 gold: 1.0)
        "ndcg@10": INV_LOG2_3 / (1 + INV_LOG2_3),  # = 0.38685
    }
    assert_metrics(per_query_retrieval_metrics(ranking, {"p2", "x"}), expected)


def test_missing_gold_with_short_ranking_is_not_scored_as_retrieved() -> None:
    # Ranking shorter than 10: padding the missing gold below the ranking would wrongly earn DCG at rank 3.
    # gold {a, z}: DCG = 1 (a at rank 1); IDCG = 1 + 1/log2(3).
    got = per_query_retrieval_metrics(["a", "b"], {"a", "z"})
    assert got["ndcg@10"] == pytest.approx(1 / (1 + INV_LOG2_3), abs=TOL)
    assert got["map"] == pytest.approx(0.5, abs=TOL)  # (1/1 + 0) / 2
    assert got["recall@1"] == pytest.approx(0.5, abs=TOL)
    assert got["hit@1"] == 1.0


def test_more_than_10_gold_with_some_missing() -> None:
    # 10-item ranking, all gold; 2 more gold ids not in the ranking (12 gold in all).
    ranking = [f"p{i}" for i in range(10)]
    gold = set(ranking) | {"m1", "m2"}
    got = per_query_retrieval_metrics(ranking, gold)
    assert got["ndcg@10"] == pytest.approx(1.0, abs=TOL)  # ideal uses min(12, 10) = 10 items
    assert got["recall@5"] == pytest.approx(5 / 12, abs=TOL)
    assert got["map"] == pytest.approx(10 / 12, abs=TOL)  # ten precisions of 1, two of 0


def test_no_gold_in_ranking_is_all_zero() -> None:
    assert_metrics(per_query_retrieval_metrics(["a", "b", "c"], {"x", "y"}), dict.fromkeys(RETRIEVAL_METRICS, 0.0))


def test_empty_ranking_is_all_zero() -> None:
    assert_metrics(per_query_retrieval_metrics([], {"x"}), dict.fromkeys(RETRIEVAL_METRICS, 0.0))


def test_long_ranking_keeps_ranks_exact() -> None:
    # 5,000 passages: preds must stay distinct and positive (float32 represents these integers exactly).
    ranking = [f"p{i}" for i in range(5000)]
    got = per_query_retrieval_metrics(ranking, {"p4999"})
    assert got["mrr"] == pytest.approx(1 / 5000, rel=1e-6)
    assert got["map"] == pytest.approx(1 / 5000, rel=1e-6)


def test_values_are_python_floats() -> None:
    got = per_query_retrieval_metrics(["a", "b"], {"b"})
    assert all(type(value) is float for value in got.values())
    assert all(type(value) is float for value in retrieval_metrics([["a", "b"]], [{"b"}]).values())


def test_retrieval_metrics_averages_over_questions() -> None:
    rankings = [["p1", "p2", "p3", "p4", "p5", "p6"], ["a", "b", "c"]]
    golds = [{"p2", "p4"}, {"a"}]
    ndcg_q1 = (INV_LOG2_3 + INV_LOG2_5) / (1 + INV_LOG2_3)
    expected = {
        "hit@1": (0 + 1) / 2,
        "recall@1": (0 + 1) / 2,
        "recall@5": (1 + 1) / 2,
        "map": (0.5 + 1) / 2,
        "mrr": (0.5 + 1) / 2,
        "ndcg@10": (ndcg_q1 + 1) / 2,  # = 0.82546
    }
    assert_metrics(retrieval_metrics(rankings, golds), expected)


def test_retrieval_metrics_is_a_macro_average() -> None:
    # Q1 has 3 gold all at the top (map 1); Q2 has 1 gold missing (map 0). Macro mean = 0.5, not 3/4.
    got = retrieval_metrics([["a", "b", "c", "d"], ["a", "b"]], [{"a", "b", "c"}, {"z"}])
    assert got["map"] == pytest.approx(0.5, abs=TOL)


# ---------------------------------------------------------------------------------------------
# Retrieval metrics: comparison with an independent plain-Python reference
# ---------------------------------------------------------------------------------------------


def reference_metrics(ranking: list[str], gold: set[str]) -> dict[str, float]:
    """Textbook definitions, no torch: ranks are 1-based, gold not in the ranking scores 0."""
    relevant_ranks = [rank for rank, pid in enumerate(ranking, start=1) if pid in gold]
    hit1 = 1.0 if ranking and ranking[0] in gold else 0.0
    recall1 = sum(1 for pid in ranking[:1] if pid in gold) / len(gold)
    recall5 = sum(1 for pid in ranking[:5] if pid in gold) / len(gold)
    ap = sum((i + 1) / rank for i, rank in enumerate(relevant_ranks)) / len(gold)
    mrr = 1 / relevant_ranks[0] if relevant_ranks else 0.0
    dcg = sum(1 / math.log2(rank + 1) for rank in relevant_ranks if rank <= 10)
    idcg = sum(1 / math.log2(rank + 1) for rank in range(1, min(len(gold), 10) + 1))
    return {"hit@1": hit1, "recall@1": recall1, "recall@5": recall5, "map": ap, "mrr": mrr, "ndcg@10": dcg / idcg}


def random_cases(count: int, seed: int = 0) -> list[tuple[list[str], set[str]]]:
    rng = random.Random(seed)
    cases = []
    for _ in range(count):
        n = rng.randint(1, 40)
        ranking = [f"p{i}" for i in range(n)]
        rng.shuffle(ranking)
        gold = set(rng.sample(ranking, rng.randint(0, min(n, 12))))
        for j in range(rng.choice([0, 0, 0, 1, 2, 3])):  # sometimes gold the ranking lacks
            gold.add(f"missing{j}")
        if not gold:
            gold.add(rng.choice(ranking))
        cases.append((ranking, gold))
    return cases


CASES = random_cases(200)


def test_random_cases_cover_the_edge_conditions() -> None:
    # Guard the generator itself: otherwise the comparison below could pass without exercising these paths.
    assert any(not set(ranking) >= gold for ranking, gold in CASES)
    assert any(len(gold) > 10 for _, gold in CASES)
    assert any(len(ranking) < 10 for ranking, _ in CASES)
    assert any(not (set(ranking) & gold) for ranking, gold in CASES)


def test_per_query_matches_reference_on_random_rankings() -> None:
    for ranking, gold in CASES:
        expected = reference_metrics(ranking, gold)
        got = per_query_retrieval_metrics(ranking, gold)
        for name in RETRIEVAL_METRICS:
            assert got[name] == pytest.approx(expected[name], abs=TOL), (name, ranking, gold)


def test_mean_matches_reference_on_random_rankings() -> None:
    rankings = [ranking for ranking, _ in CASES]
    golds = [gold for _, gold in CASES]
    got = retrieval_metrics(rankings, golds)
    for name in RETRIEVAL_METRICS:
        expected = sum(reference_metrics(r, g)[name] for r, g in CASES) / len(CASES)
        assert got[name] == pytest.approx(expected, abs=TOL), name


# ---------------------------------------------------------------------------------------------
# Retrieval metrics: errors
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gold", [set(), [], ()])
def test_empty_gold_raises(gold: set[str]) -> None:
    with pytest.raises(ValueError, match="gold"):
        per_query_retrieval_metrics(["a", "b"], gold)


def test_duplicate_ranked_id_raises() -> None:
    with pytest.raises(ValueError, match="repeats"):
        per_query_retrieval_metrics(["a", "b", "a"], {"a"})


def test_length_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="1 rankings but 2 gold"):
        retrieval_metrics([["a"]], [{"a"}, {"b"}])


def test_zero_questions_raises() -> None:
    with pytest.raises(ValueError, match="no questions"):
        retrieval_metrics([], [])


def test_invalid_question_inside_batch_raises() -> None:
    with pytest.raises(ValueError):
        retrieval_metrics([["a"], ["b"]], [{"a"}, set()])


# ---------------------------------------------------------------------------------------------
# QASPER answer and evidence metrics
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("The Quick, Brown Fox!", "quick brown fox"),  # case, article, punctuation
        ("  An   apple\ta day. ", "apple day"),  # articles and whitespace
        ("BERT's F1-score", "berts f1score"),  # punctuation is deleted, not replaced by a space
        ("the-end", "theend"),  # punctuation goes first, so 'the' is no longer a separate word
        ("theory another", "theory another"),  # \b keeps articles inside words
        ("", ""),
    ],
)
def test_normalize_answer(raw: str, normalized: str) -> None:
    assert normalize_answer(raw) == normalized


def test_token_f1_partial_overlap() -> None:
    # pred -> [cat, sat]; ref -> [cat, sat, on, mat]; same = 2; P = 2/2, R = 2/4; F1 = 2*1*0.5/1.5 = 2/3
    assert token_f1("The cat sat.", "a cat sat on the mat") == pytest.approx(2 / 3)


def test_token_f1_counts_repeated_tokens_once_per_match() -> None:
    # pred [cat, cat], ref [cat]; Counter intersection = 1; P = 1/2, R = 1; F1 = 2/3
    assert token_f1("cat cat", "cat") == pytest.approx(2 / 3)


def test_token_f1_exact_match_after_normalisation() -> None:
    assert token_f1("The BERT model!", "bert model") == pytest.approx(1.0)


def test_token_f1_yes_no() -> None:
    assert token_f1("Yes", "yes") == 1.0
    assert token_f1("yes.", "Yes") == 1.0
    assert token_f1("No", "Yes") == 0.0


@pytest.mark.parametrize(
    ("prediction", "reference"),
    [
        ("", "Unanswerable"),  # empty prediction
        ("Unanswerable", ""),
        ("", ""),  # official code: num_same == 0 -> 0, even though both are empty
        ("the", "a"),  # both normalise to nothing
    ],
)
def test_token_f1_no_overlap_is_zero(prediction: str, reference: str) -> None:
    assert token_f1(prediction, reference) == 0.0


def test_answer_f1_takes_max_over_annotators() -> None:
    # annotator 1: 0; annotator 2: 2/3 (see test_token_f1_partial_overlap); annotator 3: 0
    assert answer_f1("cat sat", ["dog", "the cat sat on the mat", "Unanswerable"]) == pytest.approx(2 / 3)
    assert answer_f1("yes", ["No", "Yes"]) == 1.0
    assert answer_f1("", ["No", "Yes"]) == 0.0


def test_answer_f1_empty_references_raises() -> None:
    with pytest.raises(ValueError):
        answer_f1("yes", [])


def test_paragraph_f1_values() -> None:
    assert paragraph_f1([], []) == 1.0  # unanswerable and nothing predicted
    assert paragraph_f1(set(), ()) == 1.0
    assert paragraph_f1(["a"], []) == 0.0
    assert paragraph_f1([], ["a"]) == 0.0
    assert paragraph_f1(["a"], ["b"]) == 0.0
    assert paragraph_f1(["a", "b"], ["b", "a"]) == 1.0
    # same = {b, c} = 2; P = 2/3, R = 2/4; F1 = 2*(2/3)*(1/2) / (2/3 + 1/2) = (2/3)/(7/6) = 4/7
    assert paragraph_f1(["a", "b", "c"], ["b", "c", "d", "e"]) == pytest.approx(4 / 7)


def test_paragraph_f1_divides_by_list_length_like_the_official_code() -> None:
    # same = |{a}| = 1; P = 1/len(["a", "a"]) = 1/2; R = 1; F1 = 2/3
    assert paragraph_f1(["a", "a"], ["a"]) == pytest.approx(2 / 3)


def test_evidence_f1_takes_max_over_annotators() -> None:
    # vs [p2]: 0; vs [p1, p3]: P = 1, R = 1/2 -> 2/3; vs []: 0
    assert evidence_f1(["p1"], [["p2"], ["p1", "p3"], []]) == pytest.approx(2 / 3)
    # empty prediction: 1.0 against the annotator who marked the question unanswerable
    assert evidence_f1([], [["p1"], []]) == 1.0
    assert evidence_f1([], [["p1"]]) == 0.0


def test_evidence_f1_empty_references_raises() -> None:
    with pytest.raises(ValueError):
        evidence_f1(["p1"], [])


def test_recall_at_depth_counts_gold_in_the_top_k_and_gold_never_ranked() -> None:
    from uae.evaluation.metrics import recall_at

    ranked = [f"p{i}" for i in range(150)]
    # gold at ranks 3, 40 (0-based) and one never ranked: by hand, @1 0, @10 1/3, @100 2/3
    gold = {"p3", "p40", "missing"}
    assert recall_at(ranked, gold, 1) == 0.0
    assert recall_at(ranked, gold, 10) == pytest.approx(1 / 3)
    assert recall_at(ranked, gold, 100) == pytest.approx(2 / 3)
    # recall@5 agrees with the stored metric, whose corrections for unranked gold are checked above
    assert recall_at(ranked, gold, 5) == pytest.approx(per_query_retrieval_metrics(ranked, gold)["recall@5"])
    with pytest.raises(ValueError, match="empty"):
        recall_at(ranked, set(), 10)
