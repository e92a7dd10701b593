"""How informative the utility teacher is: does ranking a candidate set by u(p) find the gold evidence?

A teacher far below DESIGN.md's sanity figure (gold first ~73% of the time on gold + random sets)
means a bug in the scorer or the prompt, not a weak method; so every utility run reports this, next
to BM25 and the base encoder ranking the very same sets, and to the random-order expectation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pyarrow as pa

from uae.data.candidates import CandidateSet
from uae.errors import UAEError
from uae.evaluation.metrics import retrieval_metrics

COLUMNS = ("ranker", "n_questions", "hit@1", "map", "mrr")


def rank_sets_by_paper_ranking(sets: Sequence[CandidateSet], rankings: Sequence[Sequence[str]]) -> list[list[str]]:
    """Order each set as a retriever ordered the whole paper (its scores restricted to the set)."""
    out = []
    for s, ranking in zip(sets, rankings, strict=True):
        position = {pid: i for i, pid in enumerate(ranking)}
        out.append(sorted(s.passage_ids, key=lambda pid: position.get(pid, len(position))))
    return out


def rank_sets_by_utility(table: pa.Table) -> dict[str, list[str]]:
    """Candidates of each question by descending utility; ties keep the set's own order."""
    rows: dict[str, list[tuple[float, int, str]]] = {}
    for qid, pid, position, utility in zip(
        table["question_id"].to_pylist(), table["passage_id"].to_pylist(),
        table["position"].to_pylist(), table["utility"].to_pylist(),
    ):
        rows.setdefault(qid, []).append((-utility, position, pid))
    return {qid: [pid for *_, pid in sorted(items)] for qid, items in rows.items()}


def teacher_quality(
    table: pa.Table, sets: Sequence[CandidateSet], golds: Mapping[str, frozenset[str]], others: Mapping[str, Sequence[Sequence[str]]]
) -> dict[str, object]:
    """Set-level hit@1 / MAP / MRR of the utility ranking, of each other ranker, and of random order.

    Only questions with at least one gold paragraph in their set count. ``others`` maps a ranker name
    to its whole-paper rankings, aligned with ``sets``.
    """
    counted = [i for i, s in enumerate(sets) if golds[s.question_id] & set(s.passage_ids)]
    if not counted:
        raise UAEError(
            "No candidate set holds a gold evidence paragraph, so the teacher cannot be measured against the "
            "annotations. Use more papers (data.max_papers) or a split with aligned evidence."
        )
    gold_sets = [golds[sets[i].question_id] & set(sets[i].passage_ids) for i in counted]
    by_utility = rank_sets_by_utility(table)
    rows = [{"ranker": "utility (LLM)", **_metrics([by_utility[sets[i].question_id] for i in counted], gold_sets)}]
    for name, rankings in others.items():
        ordered = rank_sets_by_paper_ranking(sets, rankings)
        rows.append({"ranker": name, **_metrics([ordered[i] for i in counted], gold_sets)})
    rows.append({"ranker": "random order (expected)", **_expected_random(sets, counted, gold_sets)})
    is_gold = table["is_gold"].to_numpy(zero_copy_only=False)
    utility = table["utility"].to_numpy()
    return {
        "rows": rows,
        "mean_utility_gold": float(utility[is_gold].mean()) if is_gold.any() else float("nan"),
        "mean_utility_other": float(utility[~is_gold].mean()) if (~is_gold).any() else float("nan"),
        "n_candidates": len(utility),
    }


def markdown(report: Mapping[str, object]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in report["rows"]:  # type: ignore[union-attr]
        lines.append("| " + " | ".join(f"{row[c]:.4f}" if isinstance(row[c], float) else str(row[c]) for c in COLUMNS) + " |")
    gold, other = report["mean_utility_gold"], report["mean_utility_other"]
    lines.append("")
    lines.append(
        f"Mean utility (nats per answer token): gold evidence {gold:+.3f}, other candidates {other:+.3f}, "
        f"gap {gold - other:+.3f}, over {report['n_candidates']} candidates."  # type: ignore[operator]
    )
    return "\n".join(lines) + "\n"


def _metrics(rankings: list[list[str]], golds: list[frozenset[str]]) -> dict[str, object]:
    m = retrieval_metrics(rankings, golds)
    return {"n_questions": len(rankings), "hit@1": m["hit@1"], "map": m["map"], "mrr": m["mrr"]}


def _expected_random(sets: Sequence[CandidateSet], counted: list[int], golds: list[frozenset[str]]) -> dict[str, object]:
    """A uniformly random order: hit@1 is exactly g/n; MAP and MRR over 200 seeded permutations."""
    rng = np.random.default_rng(0)
    hits, maps, mrrs = [], [], []
    for i, gold in zip(counted, golds):
        ids = list(sets[i].passage_ids)
        hits.append(len(gold) / len(ids))
        perms = [[ids[j] for j in rng.permutation(len(ids))] for _ in range(200)]
        m = retrieval_metrics(perms, [gold] * len(perms))
        maps.append(m["map"])
        mrrs.append(m["mrr"])
    return {"n_questions": len(counted), "hit@1": float(np.mean(hits)), "map": float(np.mean(maps)), "mrr": float(np.mean(mrrs))}
