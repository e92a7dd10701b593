"""`python -m uae.table.export beir` (its ``main``, in this process) writes the folder ``write_beir`` writes:
the QASPER round trip through that folder is checked in tests/data/test_beir.py."""

from __future__ import annotations

from pathlib import Path

from uae.data.beir import write_beir
from uae.data.records import Split


def test_export_cli_writes_the_folder_write_beir_writes(shared_data: Path, qasper_dev: Split, tmp_path: Path) -> None:
    from uae.table.export import main

    exported = tmp_path / "exported"
    assert main(["beir", "data=qasper", f"data.dir={shared_data}", "--splits", "dev", "--to", str(exported)]) == 0
    assert sorted(str(p.relative_to(exported)) for p in exported.rglob("*") if p.is_file()) == [
        "corpus.jsonl", "qrels/dev.tsv", "queries.jsonl",
    ]
    counts = write_beir([qasper_dev], tmp_path / "direct")
    for name in ("corpus.jsonl", "queries.jsonl", "qrels/dev.tsv"):
        assert (exported / name).read_bytes() == (tmp_path / "direct" / name).read_bytes(), name
    assert counts["passages"] == len(qasper_dev.all_passages)
    assert counts["queries"] == len(qasper_dev.questions)
    assert counts["qrels"] == sum(len(q.gold_ids) for q in qasper_dev.questions)
