"""How informative the utility teacher is: does ranking a candidate set by u(p) find the gold evidence?

A teacher far below DESIGN.md's sanity figure (gold first ~73% of the time on gold + random sets)
means a bug in the scorer or the prompt, not a weak method; so every utility run reports this, next
to BM25 and the base encoder ranking the very same sets, and to the random-order expectation.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from uae.core.errors import UAEError
from uae.data.candidates import CandidateSet
from uae.evaluation.metrics import retrieval_metrics
from uae.table.read import read_table

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
    # the table format's columns hold no nulls (uae.table.format)
    columns: list[list[Any]] = [table[name].to_pylist() for name in ("question_id", "passage_id", "position", "utility")]
    for qid, pid, position, utility in zip(*columns):
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
            "annotations. Use more papers (data.max_documents) or a split with aligned evidence."
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


def markdown(report: Mapping[str, Any]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in report["rows"]:
        lines.append("| " + " | ".join(f"{row[c]:.4f}" if isinstance(row[c], float) else str(row[c]) for c in COLUMNS) + " |")
    gold, other = report["mean_utility_gold"], report["mean_utility_other"]
    lines.append("")
    lines.append(
        f"Mean utility (nats per answer token): gold evidence {gold:+.3f}, other candidates {other:+.3f}, "
        f"gap {gold - other:+.3f}, over {report['n_candidates']} candidates."
    )
    return "\n".join(lines) + "\n"


def _metrics(rankings: list[list[str]], golds: list[frozenset[str]]) -> dict[str, object]:
    m = retrieval_metrics(rankings, golds)
    return {"n_questions": len(rankings), "hit@1": m["hit@1"], "map": m["map"], "mrr": m["mrr"]}


def _expected_random(sets: Sequence[CandidateSet], counted: list[int], golds: list[frozenset[str]]) -> dict[str, object]:
    """A uniformly random order: hit@1 is exactly g/n; MAP and MRR over 200 seeded permutations.

    The permutations of one set are scored together in numpy: ranking each through
    :func:`retrieval_metrics` (torchmetrics per ranking) took 4 of the 5 minutes of a full-scale report.
    Same draws, same definitions (AP over all of the set's gold, reciprocal rank of the first), so the
    same numbers; tests/evaluation check it against :func:`retrieval_metrics`.
    """
    rng = np.random.default_rng(0)
    hits, maps, mrrs = [], [], []
    for i, gold in zip(counted, golds):
        ids = list(sets[i].passage_ids)
        if not gold or not gold <= set(ids):  # the caller counts only sets that hold gold, and only that gold
            raise ValueError(f"{sets[i].question_id}: the gold passed for the random order must be non-empty and in its set")
        hits.append(len(gold) / len(ids))
        relevant = np.array([pid in gold for pid in ids])[np.stack([rng.permutation(len(ids)) for _ in range(200)])]
        ranks = np.arange(1, len(ids) + 1)
        maps.append(float(np.mean((relevant * np.cumsum(relevant, axis=1) / ranks).sum(axis=1) / len(gold))))
        mrrs.append(float(np.mean(1.0 / (relevant.argmax(axis=1) + 1))))
    return {"n_questions": len(counted), "hit@1": float(np.mean(hits)), "map": float(np.mean(maps)), "mrr": float(np.mean(mrrs))}


def target_gold_mass(table: pa.Table, sharpness: Sequence[float]) -> list[dict[str, float]]:
    """How much of UAE's target softmax(u / beta) lies on the annotated evidence, for each beta.

    The evaluation counts only annotated evidence as right, so target mass elsewhere (where the LLM
    finds another paragraph more useful for the answer) teaches the student what the metric calls
    wrong; InfoNCE on gold puts all its mass there. Questions whose set holds no gold are left out.
    """
    qids = np.asarray(table["question_id"].to_pylist(), dtype=object)
    is_gold = table["is_gold"].to_numpy(zero_copy_only=False).astype(bool)
    utility = table["utility"].to_numpy().astype(np.float64)
    _, group = np.unique(qids, return_inverse=True)
    n = int(group.max()) + 1 if group.size else 0
    has_gold = np.bincount(group, weights=is_gold, minlength=n) > 0
    peak = np.full(n, -np.inf)
    np.maximum.at(peak, group, utility)
    rows = []
    for beta in sharpness:
        if not beta > 0:
            raise UAEError(f"sharpness {beta}: beta must be > 0 (it divides the utilities).")
        weight = np.exp((utility - peak[group]) / beta)
        p = weight / np.bincount(group, weights=weight, minlength=n)[group]
        mass = np.bincount(group, weights=p * is_gold, minlength=n)[has_gold]
        entropy = -np.bincount(group, weights=p * np.log(np.where(p > 0, p, 1.0)), minlength=n)[has_gold]
        rows.append({"sharpness": float(beta), "n_questions": int(has_gold.sum()), "gold_mass_mean": float(mass.mean()),
                     "gold_mass_median": float(np.median(mass)), "share_gold_mass_below_half": float((mass < 0.5).mean()),
                     "entropy_nats": float(entropy.mean())})
    return rows


def main(argv: list[str] | None = None) -> int:
    """``python -m uae.evaluation.teacher TABLE.parquet [--sharpness ...]``: the target-mass table."""
    parser = argparse.ArgumentParser(description=target_gold_mass.__doc__)
    parser.add_argument("table", help="a utility table (experiments/qasper/utilities/train.parquet)")
    parser.add_argument("--sharpness", type=float, nargs="+", default=[0.1, 0.25, 0.5, 1.0, 2.0])
    args = parser.parse_args(argv)
    rows = target_gold_mass(read_table(Path(args.table), ["question_id", "is_gold", "utility"]), args.sharpness)
    print(f"Target softmax(u / beta) of {args.table}, over the {rows[0]['n_questions']} questions whose set holds gold:\n")
    print("| beta | mass on gold (mean) | median | questions with < 0.5 on gold | entropy (nats) |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['sharpness']:g} | {r['gold_mass_mean']:.3f} | {r['gold_mass_median']:.3f} | "
              f"{r['share_gold_mass_below_half']:.3f} | {r['entropy_nats']:.2f} |")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
