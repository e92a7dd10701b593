"""The label-efficiency table, coverage counts and agreement tables on hand-made runs and sets."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from uae.analysis.agreement import agreement_table, following_table
from uae.analysis.coverage import evidence_coverage, scaled_shares
from uae.analysis.label_efficiency import COLUMNS, collect, gain_share, run_folders, uae_variant, write_csv
from uae.core.errors import UAEError
from uae.data.candidates import CandidateSet
from uae.data.records import Answer, Question


def _run(root: Path, name: str, retriever: str, loss: str, labels: dict | None, recall: float) -> None:
    folder = root / name
    folder.mkdir(parents=True)
    metrics = {"hit@1": recall + 0.1, "recall@1": recall, "map": recall + 0.2, "mrr": recall + 0.25}
    result = {"retriever": retriever, "split": "dev", "n_questions": 888, "metrics": metrics, "config": {"loss": {"name": loss}}}
    if labels is not None:
        result["labels"] = labels | {"groups": 300, "with_positive": 250}
    (folder / "results.json").write_text(json.dumps(result))


def test_label_efficiency_rows_come_from_results_not_folder_names(tmp_path: Path) -> None:
    _run(tmp_path, "a", "minilm", "uae", None, 0.14)
    _run(tmp_path, "b", "minilm+uae", "uae", {"source": "evidence", "fraction": 0.0}, 0.20)
    _run(tmp_path, "c", "minilm+infonce", "infonce", {"source": "evidence", "fraction": 1.0}, 0.24)
    _run(tmp_path, "d", "minilm+infonce", "infonce", {"source": "answer_overlap", "fraction": 1.0}, 0.18)
    _run(tmp_path, "e", "minilm+uae", "uae", {"source": "evidence", "fraction": 0.25}, 0.25)
    (tmp_path / "teacher-train").mkdir()  # no results.json: not a run
    rows = collect(run_folders(tmp_path))
    assert [(r["method"], r["label_fraction"]) for r in rows] == [
        ("zero_shot", 0.0), ("answer_overlap", 0.0), ("infonce", 1.0), ("uae", 0.0), ("uae", 0.25)
    ]
    # (0.20 - 0.14) / (0.24 - 0.14) = 60%
    assert "60% of InfoNCE's +0.1000" in gain_share(rows)
    write_csv(rows, tmp_path / "out.csv")
    with open(tmp_path / "out.csv") as handle:
        read = list(csv.DictReader(handle))
    assert tuple(read[0]) == COLUMNS and read[3]["method"] == "uae" and float(read[3]["recall@1"]) == 0.20
    _run(tmp_path, "f", "minilm+uae", "uae", {"source": "none", "fraction": 1.0}, 0.21)  # label-free too: a second uae at 0
    with pytest.raises(UAEError, match="both uae at label fraction 0"):
        collect(run_folders(tmp_path))


def test_coverage_counts_sets_holding_evidence() -> None:
    def q(qid: str, gold: tuple[str, ...]) -> Question:
        return Question(qid, "p", "?", (Answer("x", "extractive", (), gold),))

    questions = [q("a", ("p/1", "p/2")), q("b", ("p/9",)), q("c", ())]
    sets = [CandidateSet("a", "p", ("p/1", "p/3"), ("bm25", "dense")), CandidateSet("b", "p", ("p/4",), ("bm25",)),
            CandidateSet("c", "p", ("p/1",), ("bm25",))]
    got = evidence_coverage(sets, questions)
    assert got["questions"] == 2 and got["any"] == 0.5 and got["recall"] == pytest.approx(0.25)  # (1/2 + 0) / 2
    assert scaled_shares({"bm25": 4, "dense": 4}, 16, 8) == {"bm25": 8, "dense": 8}


def test_agreement_and_following_tables() -> None:
    labels = {
        "a": {"type": "extractive", "candidates": {"p/1", "p/2"}, "teacher": "p/1", "overlap": {"p/1"}, "evidence": {"p/1"}},
        "b": {"type": "boolean", "candidates": {"p/3", "p/4"}, "teacher": "p/3", "overlap": set(), "evidence": {"p/4"}},
        "c": {"type": "abstractive", "candidates": {"p/5"}, "teacher": "p/5", "overlap": {"p/6"}, "evidence": {"p/7"}},
    }
    table = agreement_table(labels)
    # all: evidence in set for a, b (2 of 3); teacher is evidence for a only (1 of 2); overlap found for a, c
    assert "| all | 3 | 66.7% (2/3) | 50.0% (1/2) | 66.7% (2/3) | 50.0% (1/2) | 50.0% (1/2) |" in table
    follow = following_table(labels, {"run": {"a": ["p/2"], "b": ["p/4"], "c": ["p/6"]}})
    # top-1: a -> p/2 (none of the three), b -> p/4 (evidence), c -> p/6 (overlap)
    assert "| run | all | 3 | 0.0% (0/3) | 50.0% (1/2) | 33.3% (1/3) |" in follow


def test_label_free_uae_variants_get_a_row_each(tmp_path: Path) -> None:
    def run(name: str, source: str, config: dict, recall: float, fraction: float = 1.0) -> None:
        folder = tmp_path / name
        folder.mkdir()
        result = {
            "retriever": "minilm+uae", "split": "dev", "n_questions": 888, "config": config,
            "metrics": {"hit@1": recall, "recall@1": recall, "map": recall, "mrr": recall},
            "labels": {"source": source, "fraction": fraction, "groups": 300, "with_positive": 200},
        }  # fmt: skip
        (folder / "results.json").write_text(json.dumps(result))

    sets = {"candidates": {"answer_overlap": True}}
    run("plain", "none", {"loss": {"name": "uae", "mix": 0.0}}, 0.17)
    run("sets", "none", {**sets, "loss": {"name": "uae", "mix": 0.0}}, 0.18)
    run("mixed", "answer_overlap", {**sets, "loss": {"name": "uae", "mix": 0.5}}, 0.20)
    run("sure", "none", {**sets, "loss": {"name": "uae", "mix": 0.0, "min_confidence": 0.2}}, 0.19)
    run("overlap", "answer_overlap", {"loss": {"name": "infonce"}}, 0.19)
    gemma = {"name": "gemma3_270m", "engine": "hf", "compute_type": "auto"}
    # as uae.run records a plain label-free run: evidence labels at fraction 0 (not "uae" at 0, which "plain" is)
    run("gemma", "evidence", {**sets, "llm": gemma, "loss": {"name": "uae", "mix": 0.0}}, 0.18, fraction=0.0)
    ct2 = {"name": "smollm2", "engine": "ctranslate2", "compute_type": "float32"}  # shares hf's tables: no new name
    run("ct2", "answer_overlap", {**sets, "llm": ct2, "loss": {"name": "uae", "mix": 0.25}}, 0.19)
    int8 = {"name": "smollm2", "engine": "ctranslate2", "compute_type": "int8_float32"}
    run("int8", "none", {"llm": int8, "loss": {"name": "uae", "mix": 0.0}}, 0.16)
    run("denoised", "answer_overlap", {**sets, "loss": {"name": "uae", "mix": 0.5, "denoise_margin": 1.0}}, 0.2)
    summed = {**sets, "train": {"utility_scale": "summed"}, "loss": {"name": "uae", "mix": 0.5}}
    run("summed", "answer_overlap", summed, 0.2)
    run("sharp", "answer_overlap", {**sets, "loss": {"name": "uae", "mix": 0.5, "sharpness": 0.25}}, 0.2)
    rows = collect(run_folders(tmp_path))
    assert [(r["method"], r["label_fraction"]) for r in rows] == [
        ("answer_overlap", 0.0), ("uae", 0.0), ("uae+ctranslate2+int8_float32", 0.0),
        ("uae+gemma3_270m-teacher+overlap-sets", 0.0), ("uae+overlap-sets", 0.0),
        ("uae+overlap-sets+answer_overlap-mix0.25", 0.0), ("uae+overlap-sets+answer_overlap-mix0.5", 0.0),
        ("uae+overlap-sets+answer_overlap-mix0.5+beta0.25", 0.0),
        ("uae+overlap-sets+answer_overlap-mix0.5+denoise-margin1", 0.0),
        ("uae+overlap-sets+answer_overlap-mix0.5+summed-utilities", 0.0),
        ("uae+overlap-sets+confidence>=0.2", 0.0),
    ]  # fmt: skip


def test_the_default_sharpness_leaves_the_variant_name_unchanged() -> None:
    def name(loss: dict) -> str:
        config = {"candidates": {"answer_overlap": True}, "loss": {"name": "uae", "mix": 0.5, **loss}}
        return uae_variant({"config": config, "labels": {"source": "answer_overlap"}})

    assert name({"sharpness": 0.5}) == name({}) == "uae+overlap-sets+answer_overlap-mix0.5"
    assert name({"sharpness": 1.0}) == "uae+overlap-sets+answer_overlap-mix0.5+beta1"
