"""Tables made from results.json: the section swap keeps the prose, bad input is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from uae.errors import UAEError
from uae.report import load_results, main, replace_section


def _write_run(folder: Path, retriever: str, hit: float) -> Path:
    folder.mkdir(parents=True)
    metrics = {"hit@1": hit, "recall@1": 0.1, "recall@5": 0.5, "map": 0.3, "mrr": 0.4, "ndcg@10": 0.45}
    payload = {"experiment": "e", "split": "dev", "retriever": retriever, "n_questions": 7, "metrics": metrics,
               "latency_ms_per_query": 1.5, "date": "2026-11-25T00:00:00+00:00", "machine": {"cpu_count": 2, "processor": "x86_64", "gpu": None}}
    (folder / "results.json").write_text(json.dumps(payload))
    return folder


def test_table_into_section(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = [_write_run(tmp_path / "a", "bm25", 0.25), _write_run(tmp_path / "b", "minilm", 0.5)]
    doc = tmp_path / "RESULTS.md"
    doc.write_text("# Title\nintro\n<!-- zs:begin -->\nold table\n<!-- zs:end -->\nafter\n")
    assert main([str(r) for r in runs] + ["--into", str(doc), "--section", "zs", "--csv", str(tmp_path / "t.csv")]) == 0
    text = doc.read_text()
    assert text.startswith("# Title\nintro\n<!-- zs:begin -->\n| retriever |") and text.endswith("<!-- zs:end -->\nafter\n")
    assert "old table" not in text
    assert "| bm25 | dev | 7 | 0.2500 |" in text and "| minilm | dev | 7 | 0.5000 |" in text
    assert "Runs made 2026-11-25 on CPU (x86_64, 2 cores)." in text
    csv_lines = (tmp_path / "t.csv").read_text().splitlines()
    assert csv_lines[0].startswith("retriever,split,n_questions,hit@1") and len(csv_lines) == 3


def test_missing_markers_and_missing_results(tmp_path: Path) -> None:
    with pytest.raises(UAEError, match="markers"):
        replace_section("no markers here", "zs", "table")
    with pytest.raises(UAEError, match="no readable results.json"):
        load_results([tmp_path / "nothing"])


def test_insert_a_stage_table(tmp_path: Path) -> None:
    doc = tmp_path / "RESULTS.md"
    doc.write_text("a\n<!-- t:begin -->\nold\n<!-- t:end -->\nb\n")
    (tmp_path / "teacher.md").write_text("| ranker |\n|---|\n| utility |\n")
    assert main(["--insert", str(tmp_path / "teacher.md"), "--into", str(doc), "--section", "t"]) == 0
    assert doc.read_text() == "a\n<!-- t:begin -->\n| ranker |\n|---|\n| utility |\n<!-- t:end -->\nb\n"
    with pytest.raises(SystemExit):
        main([str(tmp_path), "--insert", str(tmp_path / "teacher.md")])
