"""The data seam moved no QASPER number: BM25 and zero-shot MiniLM on all of dev reproduce the rows of
experiments/qasper/RESULTS.md's main table (read from the file, to its 4 printed decimals)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.paths import ROOT
from uae.evaluation.ranking import evaluate_retriever

METRICS = ("hit@1", "recall@1", "recall@5", "map", "mrr", "ndcg@10")


def results_row(retriever: str) -> dict[str, float]:
    """The main table's row for ``retriever`` (between the main:begin/end markers)."""
    text = (ROOT / "experiments" / "qasper" / "RESULTS.md").read_text(encoding="utf-8")
    table = text.split("<!-- main:begin -->")[1].split("<!-- main:end -->")[0]
    lines = [line.strip().strip("|").split("|") for line in table.strip().splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0]]
    for cells in lines[2:]:
        row = dict(zip(header, (c.strip() for c in cells)))
        if row["retriever"] == retriever:
            return {m: float(row[m]) for m in (*METRICS, "n_questions")}
    raise AssertionError(f"no row {retriever} in RESULTS.md's main table")


def assert_matches(metrics: dict[str, float], n_questions: int, row: dict[str, float]) -> None:
    assert n_questions == row["n_questions"]
    for m in METRICS:
        assert metrics[m] == pytest.approx(row[m], abs=5.1e-5), m  # the table prints 4 decimals


def test_bm25_on_qasper_dev_reproduces_results_md(qasper_dev) -> None:
    from uae.retrieval.bm25 import BM25Retriever

    result = evaluate_retriever(qasper_dev, BM25Retriever())
    assert_matches(result.metrics, result.n_questions, results_row("bm25"))


@pytest.mark.slow
def test_zero_shot_minilm_on_qasper_dev_reproduces_results_md(shared_data: Path, tmp_path: Path) -> None:
    """Through `python -m uae.run`, as RESULTS.md made it (13,267 paragraphs: about 15 minutes on 2 cores)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "UAE_DATA_DIR": str(shared_data)}
    done = subprocess.run(
        [sys.executable, "-m", "uae.run", "+experiment=qasper_minilm", "stages=[evaluate]", "reader=none",
         f"hydra.run.dir={tmp_path / 'run'}", f"paths.cache_dir={tmp_path / 'cache'}", "retrieval.progress=false"],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "run" / "results.json").read_text())
    assert_matches(result["metrics"], result["n_questions"], results_row("minilm"))
