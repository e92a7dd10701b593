"""Teacher quality: set-level metrics of the utility ranking, other rankers and random order, by hand."""

from __future__ import annotations

import pyarrow as pa
import pytest

from uae.core.errors import UAEError
from uae.data.candidates import CandidateSet
from uae.evaluation.teacher import markdown, rank_sets_by_paper_ranking, target_gold_mass, teacher_quality
from uae.table.format import SCHEMA


def _table(rows: list[tuple[str, str, int, bool, float]]) -> pa.Table:
    columns = {name: [] for name in SCHEMA.names}
    for qid, pid, position, is_gold, utility in rows:
        values = {"question_id": qid, "document_id": "p", "passage_id": pid, "position": position, "source": "x",
                  "is_gold": is_gold, "utility": utility, "ll_context": utility - 1, "ll_closed": -1.0, "n_answers": 1}
        for name in SCHEMA.names:
            columns[name].append(values[name])
    return pa.table(columns, schema=SCHEMA)


def test_teacher_quality_by_hand() -> None:
    sets = [
        CandidateSet("q1", "p", ("a", "b", "c", "d"), ("gold", "bm25", "random", "random")),
        CandidateSet("q2", "p", ("e", "f"), ("gold", "random")),
        CandidateSet("q3", "p", ("g", "h"), ("random", "random")),  # no gold in the set: not counted
    ]
    table = _table([
        ("q1", "a", 0, True, 0.5), ("q1", "b", 1, False, 0.9), ("q1", "c", 2, False, -0.2), ("q1", "d", 3, False, 0.1),
        ("q2", "e", 0, True, 1.0), ("q2", "f", 1, False, 0.0),
        ("q3", "g", 0, False, 0.3), ("q3", "h", 1, False, 0.3),
    ])
    golds = {"q1": frozenset({"a"}), "q2": frozenset({"e"}), "q3": frozenset()}
    others = {"bm25": [["z", "d", "a", "b", "c"], ["e", "f"], ["g", "h"]]}
    report = teacher_quality(table, sets, golds, others)
    rows = {row["ranker"]: row for row in report["rows"]}
    # utility: q1 order b, a, d, c -> gold at rank 2 (AP 1/2); q2 gold first (AP 1). Means over 2 questions.
    assert rows["utility (LLM)"]["n_questions"] == 2
    assert rows["utility (LLM)"]["hit@1"] == pytest.approx(0.5)
    assert rows["utility (LLM)"]["map"] == pytest.approx(0.75)
    # bm25 restricted to q1's set: d, a, b, c -> gold at rank 2; q2: e first.
    assert rows["bm25"]["map"] == pytest.approx(0.75) and rows["bm25"]["hit@1"] == pytest.approx(0.5)
    # random order: hit@1 = mean(1/4, 1/2); MAP of one gold in n items is the mean of 1/rank = H_n / n.
    assert rows["random order (expected)"]["hit@1"] == pytest.approx((0.25 + 0.5) / 2)
    exact_map = ((1 + 1 / 2 + 1 / 3 + 1 / 4) / 4 + (1 + 1 / 2) / 2) / 2
    assert rows["random order (expected)"]["map"] == pytest.approx(exact_map, abs=0.03)
    # mean utility: gold (0.5 + 1.0) / 2; other: (0.9 - 0.2 + 0.1 + 0.0 + 0.3 + 0.3) / 6
    assert report["mean_utility_gold"] == pytest.approx(0.75)
    assert report["mean_utility_other"] == pytest.approx(1.4 / 6)
    assert "gap +0.517" in markdown(report)


def test_unranked_candidates_go_last_in_set_order() -> None:
    s = CandidateSet("q", "p", ("a", "b", "c"), ("gold", "random", "random"))
    assert rank_sets_by_paper_ranking([s], [["c"]]) == [["c", "a", "b"]]


def test_target_gold_mass_by_hand() -> None:
    import math

    table = pa.table({
        "question_id": ["q1", "q1", "q2", "q2", "q2", "q3", "q3"],
        "is_gold": [True, False, False, True, False, False, False],  # q3: no gold in its set, left out
        "utility": [1.0, 0.0, 0.0, 0.0, 0.0, 5.0, -5.0],
    })
    (beta1,) = target_gold_mass(table, [1.0])
    q1 = math.e / (math.e + 1)  # softmax(1, 0) on the gold first
    h1 = -(q1 * math.log(q1) + (1 - q1) * math.log(1 - q1))
    assert beta1["n_questions"] == 2
    assert beta1["gold_mass_mean"] == pytest.approx((q1 + 1 / 3) / 2) and beta1["share_gold_mass_below_half"] == 0.5
    assert beta1["entropy_nats"] == pytest.approx((h1 + math.log(3)) / 2)
    (sharp,) = target_gold_mass(table, [0.01])  # beta -> 0: all of q1's mass on its best candidate, q2 stays uniform
    assert sharp["gold_mass_mean"] == pytest.approx((1 + 1 / 3) / 2, abs=1e-6)
    with pytest.raises(UAEError, match="beta must be > 0"):
        target_gold_mass(table, [0.0])


def test_random_order_expectation_matches_ranking_each_permutation_through_retrieval_metrics() -> None:
    """The vectorised random-order row against the plain way: the same seeded permutations, each ranked
    through retrieval_metrics (torchmetrics), with one and several gold paragraphs per set."""
    import numpy as np

    from uae.evaluation.metrics import retrieval_metrics
    from uae.evaluation.teacher import _expected_random

    sets = [
        CandidateSet("q1", "p", tuple("abcdefgh"), ("x",) * 8),
        CandidateSet("q2", "p", tuple("ijk"), ("x",) * 3),
        CandidateSet("q3", "p", tuple("lmnopq"), ("x",) * 6),
    ]
    golds = [frozenset("a"), frozenset("jk"), frozenset("lnq")]
    rng = np.random.default_rng(0)
    maps, mrrs = [], []
    for s, gold in zip(sets, golds):
        perms = [[s.passage_ids[j] for j in rng.permutation(len(s.passage_ids))] for _ in range(200)]
        m = retrieval_metrics(perms, [gold] * len(perms))
        maps.append(m["map"])
        mrrs.append(m["mrr"])
    got = _expected_random(sets, [0, 1, 2], golds)
    assert got["map"] == pytest.approx(float(np.mean(maps)), abs=1e-6)  # torchmetrics works in float32
    assert got["mrr"] == pytest.approx(float(np.mean(mrrs)), abs=1e-6)
    assert got["hit@1"] == pytest.approx((1 / 8 + 2 / 3 + 3 / 6) / 3)
