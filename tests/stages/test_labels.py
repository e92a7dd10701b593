"""The labels the fit stage trains on (uae.stages.labels): hand-made groups with known answers, and label-free
tables with a labelled fraction through the utility and fit stages with tiny models (in this process)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.helpers.paper import PASSAGES
from tests.helpers.runs import run_stages, tiny_llm, tiny_model
from uae.data.label_rules import labelled_questions
from uae.data.qasper import load_qasper
from uae.data.records import Answer, Question
from uae.storage.fingerprint import fingerprint
from uae.table.read import read_table_spec


def _split_and_groups():
    from uae.data.records import Document, Passage, Split, TrainingGroup

    passages = tuple(Passage(pid, "p", i, "", text) for i, (pid, text) in enumerate(PASSAGES.items()))
    questions = [
        Question("q0", "p", "What corpora?", (Answer("English and German corpora", "extractive", (), ("p/4",)),)),
        Question("q1", "p", "Is it new?", (Answer("Yes", "boolean", (), ("p/0",)),)),
        Question("q2", "p", "Which encoder?", (Answer("BiLSTM with attention", "extractive", (), ("p/3",)),)),
    ]
    split = Split("train", "mem", "fp", {"p": Document("p", "t", "", passages)}, questions)
    ids = ("p/0", "p/1", "p/3")  # q0's positive p/4 is not in its set; q2's p/3 is
    groups = [
        TrainingGroup(q.question_id, q.text, ids, tuple(PASSAGES[i] for i in ids), (0.2, 0.9, -0.1), tuple(i in q.gold_ids for i in ids))
        for q in questions
    ]
    return split, groups


def _cfg(loss: str = "infonce", **labels: object):
    from omegaconf import OmegaConf

    base = {"source": "evidence", "fraction": 1.0, "seed": 0, "table": None, "min_overlap": 0.5, "max_positives": 1}
    return OmegaConf.create({"train": {"labels": {**base, **labels}}, "loss": {"name": loss, "needs_gold": loss == "infonce"}})


def test_apply_labels_default_keeps_the_table_mask_and_fractions_clear_the_rest() -> None:
    from uae.stages.labels import apply_labels

    split, groups = _split_and_groups()
    same, record = apply_labels(_cfg(), split, groups)
    assert same == groups and record["labelled"] == 3
    half, record = apply_labels(_cfg(fraction=0.34), split, groups)  # round(0.34 * 3) = 1 question keeps its label
    kept = labelled_questions([g.question_id for g in groups], 0.34, seed=0)
    assert len(kept) == 1 and record["labelled"] == 1
    for before, after in zip(groups, half):
        assert after.gold == (before.gold if before.question_id in kept else (False, False, False))
    none, _ = apply_labels(_cfg("uae", source="none"), split, groups)
    assert not any(any(g.gold) for g in none)


def test_apply_labels_teacher_argmax_and_answer_overlap() -> None:
    import math

    from uae.core.errors import UAEError
    from uae.stages.labels import apply_labels

    split, groups = _split_and_groups()
    argmax, _ = apply_labels(_cfg(source="teacher_argmax"), split, groups)
    assert all(g.gold == (False, True, False) for g in argmax)  # utility 0.9 is p/1's

    overlap, record = apply_labels(_cfg(source="answer_overlap"), split, groups)
    q0, q1, q2 = overlap
    assert q0.passage_ids == ("p/4", "p/0", "p/1") and q0.gold == (True, False, False)  # inserted, size kept
    assert q0.passages[0] == PASSAGES["p/4"] and math.isnan(q0.utility[0]) and q0.utility[1:] == (0.2, 0.9)
    assert not any(q1.gold)  # yes/no: no positive
    assert q2.passage_ids == groups[2].passage_ids and q2.gold == (False, False, True)
    assert record["inserted"] == 1 and record["without_positive"] == 1 and record["with_positive"] == 2
    with pytest.raises(UAEError, match="hard-label loss"):
        apply_labels(_cfg("uae", source="answer_overlap"), split, groups)
    # sets that hold (and scored) the overlap paragraph, as candidates.answer_overlap builds them: a utility
    # loss may take the overlap positives beside its utilities, which stay as the table made them
    from dataclasses import replace

    scored = [replace(g, passage_ids=("p/4", "p/1", "p/3"), passages=tuple(PASSAGES[i] for i in ("p/4", "p/1", "p/3"))) for g in groups]
    mixed, record = apply_labels(_cfg("uae", source="answer_overlap"), split, scored)
    assert record["inserted"] == 0 and [g.utility for g in mixed] == [g.utility for g in scored]
    assert [g.gold for g in mixed] == [(True, False, False), (False, False, False), (False, False, True)]
    with pytest.raises(UAEError, match="source=evidence only"):
        apply_labels(_cfg(source="teacher_argmax", fraction=0.5), split, groups)



def test_label_free_table_then_infonce_on_a_labelled_half(
    tmp_path: Path, tiny_encoder_dir: Path, tiny_lm_dir: Path, tiny_raw_dir: Path
) -> None:
    common = [
        f"data.dir={tiny_raw_dir}", *tiny_model(tiny_encoder_dir), *tiny_llm(tiny_lm_dir), "data.train_split=dev", "utility.splits=[dev]", "candidates.size=3",
        "logger=none", "candidates.hard_negatives.bm25=1", "candidates.hard_negatives.dense=1",
    ]
    labelled, free = tmp_path / "labelled", tmp_path / "free"
    run_stages(tmp_path, *common, "stages=[utility]", f"utility.table_dir={labelled}", run_dir="gold")
    run_stages(tmp_path, *common, "stages=[utility]", "candidates.gold=false", f"utility.table_dir={free}", run_dir="free")
    gold_first = pq.read_table(labelled / "dev.parquet").to_pylist()
    label_free = pq.read_table(free / "dev.parquet").to_pylist()
    assert "gold" in {r["source"] for r in gold_first} and "gold" not in {r["source"] for r in label_free}
    # the labelled table's fingerprint is unchanged by the new switch: it has no "gold" key, the label-free one does
    spec = json.loads(pq.read_schema(free / "dev.parquet").metadata[b"uae_spec"])
    assert spec["candidates"]["gold"] is False
    assert "gold" not in json.loads(pq.read_schema(labelled / "dev.parquet").metadata[b"uae_spec"])["candidates"]

    run_stages(
        tmp_path, *common, "stages=[fit,evaluate]", "candidates.gold=false", f"utility.table_dir={free}", "loss=infonce",
        "train.labels.fraction=0.5", f"train.labels.table={labelled / 'dev.parquet'}", "train.batch_size=2",
        "train.validate=false", run_dir="half",
    )
    record = json.loads((tmp_path / "half" / "results.json").read_text())["labels"]
    split = load_qasper("dev", tiny_raw_dir, allow_hub=False)
    asked = sorted({r["question_id"] for r in label_free})
    kept = labelled_questions(asked, 0.5, seed=0)
    gold = {q.question_id: q.gold_ids for q in split.questions}
    assert record["labelled"] == len(kept) == round(len(asked) / 2)
    # the labelled questions train on the gold-first groups: each with evidence has a positive, nobody else does
    assert record["with_positive"] == sum(bool(gold[qid]) for qid in kept)
    # the record names the table by its spec, which tells the gold-first table from the label-free one
    assert record["table"] == str(labelled / "dev.parquet")
    assert record["table_spec"] == fingerprint(read_table_spec(labelled / "dev.parquet"))
    assert record["table_spec"] != fingerprint(read_table_spec(free / "dev.parquet"))


def test_skip_answer_types_leaves_out_questions_whose_answers_are_all_of_them() -> None:
    from uae.core.errors import UAEError
    from uae.stages.labels import skip_answer_types

    split, groups = _split_and_groups()  # q0 extractive, q1 boolean, q2 extractive
    kept, skipped = skip_answer_types(split, groups, ["boolean"])
    assert [g.question_id for g in kept] == ["q0", "q2"] and skipped == 1
    assert skip_answer_types(split, groups, []) == (groups, 0)
    kept, skipped = skip_answer_types(split, groups, ["extractive", "boolean"])
    assert kept == [] and skipped == 3
    with pytest.raises(UAEError, match="yesno unknown"):
        skip_answer_types(split, groups, ["yesno"])
