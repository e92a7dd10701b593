"""notebooks/inspect_runs.ipynb, executed headless on the session's tiny sweep (tests/conftest.py
tiny_sweep): its table holds the jobs' numbers."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.helpers.paths import ROOT


def test_notebook_table_holds_every_jobs_numbers(tiny_sweep: Path) -> None:
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(ROOT / "notebooks" / "inspect_runs.ipynb", as_version=4)
    notebook.cells.append(nbformat.v4.new_code_cell("print('TABLE' + table.to_json(orient='records'))"))
    os.environ["UAE_RUN_DIR"] = str(tiny_sweep)
    try:
        NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    finally:
        del os.environ["UAE_RUN_DIR"]
    printed = "".join(o.get("text", "") for o in notebook.cells[-1].outputs)
    every = json.loads(printed.split("TABLE", 1)[1])
    # each job evaluated its fine-tuned encoder and (qasper_minilm: evaluate.zero_shot) the base one
    assert sorted(r["job"] for r in every) == ["0", "0/zero_shot", "1", "1/zero_shot"]
    rows = [r for r in every if r["retriever"] == "minilm+uae"]
    by_temperature = {float(r["override:loss.temperature"]): r for r in rows}
    assert set(by_temperature) == {0.05, 0.5}
    for job in ("0", "1"):
        result = json.loads((tiny_sweep / job / "results.json").read_text())
        row = by_temperature[result["config"]["loss"]["temperature"]]
        for metric in ("hit@1", "recall@1", "map", "mrr", "ndcg@10"):
            assert row[metric] == pytest.approx(result["metrics"][metric])
        assert row["retriever"] == "minilm+uae" and row["train_minutes"] > 0
    # every plotting cell ran: curves from the CSV logger, one sweep plot, and the summary exists
    images = [o for cell in notebook.cells for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) >= 3
    assert (tiny_sweep / "summary.md").is_file()
