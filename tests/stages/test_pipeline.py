"""The whole pipeline with tiny models (the session's trained run, tests/conftest.py trained_run): the stages
run in pipeline order whatever order they are given in, the fine-tuned encoder is exported and evaluated
like a base one, validation measures what evaluation measures, and the reader's token F1 is the answers'."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch


def test_utility_fit_evaluate_report_end_to_end(trained_run: Path, tiny_encoder_dir: Path, tiny_raw_dir: Path) -> None:
    run = trained_run  # stages=[report,evaluate,fit,utility]: any order, they run in pipeline order
    tuned = json.loads((run / "results.json").read_text())
    base = json.loads((run / "zero_shot" / "results.json").read_text())
    assert (tuned["retriever"], base["retriever"]) == ("minilm+uae", "minilm")
    assert Path(tuned["checkpoint"]).is_file() and tuned["train_seconds"] > 0
    assert tuned["n_questions"] == base["n_questions"] == 4

    # Training changed the weights (of both towers), and the export loads as a plain Hugging Face model.
    from safetensors.torch import load_file
    from transformers import AutoModel

    before = load_file(tiny_encoder_dir / "model.safetensors")
    for tower in ("query", "passage"):
        after = load_file(run / "encoder" / tower / "model.safetensors")
        assert any(not torch.equal(before[k], after[k]) for k in before if k in after), tower
        AutoModel.from_pretrained(run / "encoder" / tower)

    # Validation ranks whole papers with the metric code of evaluation: the exported best checkpoint's
    # val/map is the MAP the evaluate stage measures.
    with open(run / "csv" / "metrics.csv") as handle:
        logged = [row for row in csv.DictReader(handle) if row.get("val/map")]
    assert len(logged) == 2  # one validation per epoch
    assert max(float(row["val/map"]) for row in logged) == pytest.approx(tuned["metrics"]["map"], abs=1e-6)

    # token F1 of the reader's answers, max over annotators, recomputed from answers.json
    from uae.data.qasper import load_qasper
    from uae.evaluation.metrics import answer_f1

    split = load_qasper("dev", tiny_raw_dir, allow_hub=False)
    for folder, result in ((run, tuned), (run / "zero_shot", base)):
        answers = json.loads((folder / "answers.json").read_text())
        assert set(answers) == {q.question_id for q in split.evaluable_questions}
        expected = [answer_f1(answers[q.question_id], [a.text for a in q.answers]) for q in split.evaluable_questions]
        assert result["metrics"]["token_f1"] == pytest.approx(sum(expected) / len(expected))

    report = (run / "report.md").read_text()
    assert "| minilm |" in report and "| minilm+uae |" in report and "recall@1" in report
    assert (run / "wandb").is_dir()  # an offline W&B run, finished with the job


def test_each_split_is_parsed_once_per_run(trained_run: Path) -> None:
    """utility, fit (its training and its validation split) and evaluate all read dev in the trained run:
    they share one parse (state["splits"]), where each used to parse the file again."""
    log = (trained_run / "run.log").read_text()
    assert log.count("QASPER dev: ") == 1, [line for line in log.splitlines() if "QASPER dev: " in line]
