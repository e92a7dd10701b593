"""`python -m uae.analysis.variants`: every label-free UAE run paired against the two free baselines, from
the runs' own rankings; a missing baseline is an error, not an empty column."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from uae.core.errors import UAEError


def _run(root: Path, name: str, data_dir: Path, *, gold_first: bool, loss: str, labels: dict | None, config: dict | None = None) -> None:
    """A finished run written by hand: each counted question's paper ranked gold first, or gold last."""
    from uae.data.qasper import load_qasper
    from uae.evaluation.metrics import retrieval_metrics

    split = load_qasper("dev", data_dir)
    rankings = {}
    for q in split.evaluable_questions:
        ids = [p.passage_id for p in split.passages(q.document_id)]
        gold, rest = [i for i in ids if i in q.gold_ids], [i for i in ids if i not in q.gold_ids]
        rankings[q.question_id] = gold + rest if gold_first else rest + gold
    loader = {"_target_": "uae.data.qasper.load_qasper", "_partial_": True, "data_dir": str(data_dir), "allow_hub": False}
    result = {
        "split": "dev", "retriever": "minilm" if labels is None else f"minilm+{loss}", "n_questions": len(rankings),
        "metrics": retrieval_metrics(list(rankings.values()), [q.gold_ids for q in split.evaluable_questions]),
        "data": {"fingerprint": split.fingerprint},
        "config": {"data": {"dir": str(data_dir), "max_documents": None, "loader": loader}, "loss": {"name": loss}, **(config or {})},
    }  # fmt: skip
    if labels is not None:
        result["labels"] = labels | {"groups": 10, "with_positive": 7}
    folder = root / name
    folder.mkdir()
    (folder / "results.json").write_text(json.dumps(result))
    (folder / "rankings.json").write_text(json.dumps(rankings))


def test_variants_are_paired_with_both_free_baselines(tmp_path: Path, tiny_raw_dir: Path) -> None:
    from uae.analysis.variants import main, table
    from uae.data.qasper import load_qasper

    runs = tmp_path / "runs"
    runs.mkdir()
    _run(runs, "zs", tiny_raw_dir, gold_first=False, loss="uae", labels=None)
    _run(runs, "overlap", tiny_raw_dir, gold_first=False, loss="infonce", labels={"source": "answer_overlap", "fraction": 1.0})
    with pytest.raises(UAEError, match="no run of teacher_argmax"):
        table(runs, samples=100)
    _run(runs, "argmax", tiny_raw_dir, gold_first=False, loss="infonce", labels={"source": "teacher_argmax", "fraction": 1.0})
    with pytest.raises(UAEError, match="no label-free UAE run"):
        table(runs, samples=100)
    _run(runs, "full", tiny_raw_dir, gold_first=True, loss="infonce", labels={"source": "evidence", "fraction": 1.0})
    sets = {"candidates": {"answer_overlap": True}}
    _run(runs, "mixed", tiny_raw_dir, gold_first=True, loss="uae", labels={"source": "answer_overlap", "fraction": 1.0},
         config={**sets, "loss": {"name": "uae", "mix": 0.5}})  # fmt: skip
    _run(runs, "plain", tiny_raw_dir, gold_first=False, loss="uae", labels={"source": "none", "fraction": 1.0})

    doc = tmp_path / "R.md"
    doc.write_text("x\n<!-- v:begin -->\n<!-- v:end -->\n")
    assert main([str(runs), "--samples", "4000", "--into", str(doc), "--section", "v"]) == 0
    rows = {line.split(" | ")[0].strip("| "): [c.strip(" |") for c in line.split(" | ")] for line in doc.read_text().splitlines() if line.startswith("| ")}
    assert set(rows) == {"method", "teacher_argmax", "uae", "uae+overlap-sets+answer_overlap-mix0.5"}
    # gold first against gold last, by hand: recall@1 is 1/|gold| per question, AP is 1 against below 1
    questions = load_qasper("dev", tiny_raw_dir).evaluable_questions
    recall_gain = sum(1 / len(q.gold_ids) for q in questions) / len(questions)
    mixed = rows["uae+overlap-sets+answer_overlap-mix0.5"]
    assert mixed[1] == "7 of 10"
    assert mixed[3].startswith(f"{recall_gain:+.4f} (p ") and mixed[4].startswith(f"{recall_gain:+.4f} (p ")
    # every question gains: only "all +" and "all -" of the 2^n sign patterns are as far out
    assert float(mixed[3].split("p ")[1].rstrip(")")) == pytest.approx(2 / 2 ** len(questions), abs=0.02)
    assert mixed[-1] == "100%"  # gold first, as InfoNCE with all labels is here
    assert rows["uae"][3].startswith("+0.0000") and rows["uae"][-1] == "0%"
    assert rows["teacher_argmax"][4] == ""  # not paired with itself
    (runs / "plain" / "rankings.json").unlink()  # a record without its rankings cannot be paired
    with pytest.raises(UAEError, match=r"no rankings \(rankings.json, or .*\) in .*plain"):
        table(runs, samples=100)
