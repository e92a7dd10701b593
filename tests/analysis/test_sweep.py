"""Sweep summaries read each job's own files: numbers, zero-shot rows, and jobs that died."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from uae.analysis.sweep import main, write_summary


def _job(sweep: Path, n: int | str, overrides: list[str], status: str | None, results: dict | None, zero_shot: dict | None = None) -> None:
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


def test_named_runs_side_by_side_and_shared_overrides_said_once(tmp_path: Path, capsys) -> None:
    """`python -m uae.analysis.sweep DIR` on runs started by hand: named folders after numbered ones, and the
    overrides every job shares moved above the table so the column shows what differs."""
    runs = tmp_path / "extra"
    _job(runs, "uae-seed1", ["trainer=gpu", "loss=uae", "seed=1"], "ok", _result("minilm+uae", 0.48))
    _job(runs, "infonce-seed1", ["trainer=gpu", "loss=infonce", "seed=1"], "ok", _result("minilm+infonce", 0.50))
    _job(runs, 3, ["trainer=gpu", "loss=uae", "seed=3"], "ok", _result("minilm+uae", 0.47))
    (runs / "notes").mkdir()  # not a run: no .hydra/, results.json or status.json
    assert main([str(runs), "--title", "seeds"]) == 0
    markdown = (runs / "summary.md").read_text()
    assert capsys.readouterr().out == markdown
    assert "Every job: `trainer=gpu`" in markdown
    jobs = [line.split(" | ")[0:2] for line in markdown.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert jobs == [["| 3", "loss=uae seed=3"], ["| infonce-seed1", "loss=infonce seed=1"], ["| uae-seed1", "loss=uae seed=1"]]
    _job(runs, "uae-seed2", ["trainer=gpu", "loss=uae", "seed=2"], None, None)  # killed before status.json
    assert main([str(runs)]) == 1 and "| uae-seed2 | loss=uae seed=2 | unknown |" in capsys.readouterr().out
    with open(runs / "summary.csv") as handle:
        assert next(csv.DictReader(handle))["overrides"] == "trainer=gpu loss=uae seed=3"  # the CSV keeps all
    assert main([str(runs / "notes")]) == 2 and "holds no run folders" in capsys.readouterr().err
