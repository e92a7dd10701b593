"""Sweep summaries read each job's own files: numbers, zero-shot rows, and jobs that died."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from uae.sweep import write_summary


def _job(sweep: Path, n: int, overrides: list[str], status: str | None, results: dict | None, zero_shot: dict | None = None) -> None:
    job = sweep / str(n)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if status:
        (job / "status.json").write_text(json.dumps({"status": status, "error": None if status == "ok" else "boom"}))
    for folder, payload in ((job, results), (job / "zero_shot", zero_shot)):
        if payload:
            folder.mkdir(exist_ok=True)
            (folder / "results.json").write_text(json.dumps(payload))


def _result(retriever: str, map_: float, train_seconds: float | None = None) -> dict:
    return {"retriever": retriever, "metrics": {"map": map_, "hit@1": map_ / 2}, "latency_ms_per_query": 3.0,
            "train_seconds": train_seconds}


def test_summary_rows_zero_shot_and_dead_jobs(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    _job(sweep, 0, ["+experiment=x", "model=minilm", "hydra.sweep.dir=s"], "ok", _result("minilm+uae", 0.5, 120), _result("minilm", 0.3))
    _job(sweep, 1, ["model=bge_base"], "failed", None, _result("bge", 0.2))  # zero-shot done, then the fit failed
    _job(sweep, 10, ["model=mpnet"], None, None)  # killed: no status.json; sorted after 1, not between 1 and 2
    rows = write_summary(sweep, "t")
    assert [(r["job"], r["retriever"], r["status"]) for r in rows] == [
        (0, "minilm", "ok"), (0, "minilm+uae", "ok"), (1, "bge", "failed"), (1, "", "failed"), (10, "", "unknown")
    ]
    assert rows[0]["overrides"] == "model=minilm" and rows[0]["map"] == 0.3 and rows[1]["map"] == 0.5
    assert rows[1]["train_minutes"] == 2.0 and rows[0]["train_minutes"] == ""
    with open(sweep / "summary.csv") as handle:
        table = list(csv.DictReader(handle))
    assert [float(r["map"]) for r in table[:2]] == [0.3, 0.5] and table[4]["error"].startswith("no status.json")
    markdown = (sweep / "summary.md").read_text()
    assert markdown.count("- job ") == 2 and "| minilm+uae | 0.2500 | 0.5000 |" in markdown  # job 1 listed once
