"""Tables made from results.json: the section swap keeps the prose, bad input is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from uae.analysis.report import main, replace_section
from uae.core.errors import UAEError
from uae.results.read import load_results


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
    (tmp_path / "summary.md").write_text("# exp: sweep-x\n\n| job |\n|---|\n| 0 |\n\n")  # a sweep summary's title goes
    assert main(["--insert", str(tmp_path / "summary.md"), "--into", str(doc), "--section", "t"]) == 0
    assert doc.read_text() == "a\n<!-- t:begin -->\n| job |\n|---|\n| 0 |\n<!-- t:end -->\nb\n"


def test_speedup_column_gains_line_and_csv_columns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = _write_run(tmp_path / "zs", "minilm", 0.2)
    tuned = _write_run(tmp_path / "uae", "minilm+uae", 0.3)
    rerank = _write_run(tmp_path / "rr", "minilm+llm_rerank@20", 0.35)
    for folder, recall, ms, f1 in ((base, 0.10, 2.0, 0.20), (tuned, 0.13, 2.0, 0.25), (rerank, 0.15, 500.0, 0.3)):
        payload = json.loads((folder / "results.json").read_text())
        payload["metrics"].update({"recall@1": recall, "token_f1": f1})
        payload["latency_ms_per_query"] = ms
        (folder / "results.json").write_text(json.dumps(payload))
    args = [str(base), str(tuned), str(rerank), "--speedup-against", "minilm+llm_rerank@20", "--gains", "minilm+uae:minilm"]
    assert main(args + ["--csv", str(tmp_path / "r.csv")]) == 0
    out = capsys.readouterr().out
    assert "| minilm+uae | dev | 7 | 0.3000 | 0.1300 |" in out and "| 250 |" in out and "| 1.0000 |" in out
    # 0.13 / 0.10 - 1 = +30%; map is equal (+0%); token F1 0.25 / 0.20 - 1 = +25%
    assert "recall@1 +30.00% (paper +30.59%), map +0.00% (paper +30.16%), token_f1 +25.00% (paper +17.30%)" in out
    header = (tmp_path / "r.csv").read_text().splitlines()[0]
    assert header == "retriever,split,n_questions,hit@1,recall@1,recall@5,map,mrr,ndcg@10,token_f1,ms_per_query"
    assert main([str(base), "--speedup-against", "nothing"]) == 2


def test_no_speedup_across_devices(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A GPU row's milliseconds are not divided into a CPU re-ranker's: its speedup stays empty, and the
    table says which rows ran where."""
    cpu = _write_run(tmp_path / "cpu", "minilm+uae", 0.3)
    gpu = _write_run(tmp_path / "gpu", "minilm+atlas_kl", 0.3)
    rerank = _write_run(tmp_path / "rr", "minilm+llm_rerank@20", 0.35)
    for folder, ms, device in ((gpu, 0.1, "NVIDIA H200"), (rerank, 300.0, None)):
        payload = json.loads((folder / "results.json").read_text())
        payload["latency_ms_per_query"], payload["machine"]["gpu"] = ms, device
        (folder / "results.json").write_text(json.dumps(payload))
    assert main([str(cpu), str(gpu), str(rerank), "--speedup-against", "minilm+llm_rerank@20"]) == 0
    out = capsys.readouterr().out
    assert "| minilm+uae | dev | 7 | 0.3000 | 0.1000 | 0.5000 | 0.3000 | 0.4000 | 0.4500 | 1.5000 | 200 |" in out
    assert "| minilm+atlas_kl | dev | 7 | 0.3000 | 0.1000 | 0.5000 | 0.3000 | 0.4000 | 0.4500 | 0.1000 |  |" in out
    assert "CPU: minilm+uae, minilm+llm_rerank@20; NVIDIA H200: minilm+atlas_kl." in out
