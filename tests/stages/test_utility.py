"""The utility stage with tiny models on the tiny fixture, in this process: the table it makes, its teacher
report, a table that is up to date is not scored again (nor for a subset), and LLM re-ranking."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq

from tests.helpers.runs import run_stages
from tests.helpers.shared import copy_of


def test_utility_stage_then_rerank(tmp_path: Path, tiny_tables) -> None:
    # The session's utility stage (tests/conftest.py tiny_tables) made the table and its teacher report.
    table = pq.read_table(tiny_tables.table)
    # 4 answerable questions (q3 is unanswerable), 3 candidates each; gold always in the set.
    assert table.num_rows == 12 and set(table["question_id"].to_pylist()) == {"q1", "q2", "q4", "q5"}
    assert sum(table["is_gold"].to_pylist()) == 5  # q1: 2, q2: 1, q4: 1, q5: 1
    teacher = json.loads((tiny_tables.folder / "run" / "teacher_dev.json").read_text())
    assert [row["ranker"] for row in teacher["rows"]] == ["utility (LLM)", "bm25", "dense", "random order (expected)"]
    assert teacher["n_candidates"] == 12

    # The table is up to date: a second run scores nothing and leaves it as it was.
    copy_of(tiny_tables.folder, tmp_path, "cache", "tables")
    common = [*tiny_tables.args, f"utility.table_dir={tmp_path / 'tables'}"]
    stage = ["stages=[utility]"]
    again = run_stages(tmp_path, *common, *stage, run_dir="run2")
    assert "nothing to score" in again.output
    assert pq.read_table(tmp_path / "tables" / "dev.parquet").equals(table)
    assert not (tmp_path / "run2" / "teacher_dev.json").exists()  # the cheap path ranks nothing
    reported = run_stages(tmp_path, *common, *stage, "utility.report=true", run_dir="run4")  # same report, no LLM pass
    assert "nothing to score" in reported.output
    assert json.loads((tmp_path / "run4" / "teacher_dev.json").read_text()) == teacher
    assert (tmp_path / "run4" / "teacher_dev.md").read_text() == (tiny_tables.folder / "run" / "teacher_dev.md").read_text()
    # A subset run reuses the split's full table: its report counts the subset's rows only.
    subset = run_stages(tmp_path, *common, *stage, "utility.report=true", "data.max_documents=1", run_dir="run5")
    assert "nothing to score" in subset.output
    assert not (tmp_path / "tables" / "dev-first1.parquet").exists()
    first_paper = {q for q, p in zip(table["question_id"].to_pylist(), table["document_id"].to_pylist()) if p == table["document_id"][0].as_py()}
    assert 0 < len(first_paper) < 4
    assert json.loads((tmp_path / "run5" / "teacher_dev.json").read_text())["n_candidates"] == 3 * len(first_paper)

    run_stages(tmp_path, *common, "rerank=llm", "rerank.k=2", run_dir="run3")
    result = json.loads((tmp_path / "run3" / "results.json").read_text())
    assert result["retriever"] == "minilm+llm_rerank@2" and result["n_questions"] == 4


def test_answer_overlap_sets_read_answers_not_evidence(shared_data: Path) -> None:
    """candidates.answer_overlap=true: each set starts with the paragraph holding the answer, and
    scrambling every evidence annotation leaves every set as it was (no annotation is read)."""
    import dataclasses
    import random

    from uae.core.config import compose
    from uae.data.label_rules import content_tokens, overlap
    from uae.data.qasper import load_qasper
    from uae.retrieval.bm25 import BM25Retriever
    from uae.stages.utility import candidate_sets

    cfg = compose(["+experiment=qasper_label_free_overlap", "candidates.hard_negatives.dense=0"])
    split = load_qasper("dev", shared_data, max_documents=8, allow_hub=False)
    rng = random.Random(0)

    def scrambled(q):
        ids = [p.passage_id for p in split.passages(q.document_id)]
        answers = tuple(dataclasses.replace(a, evidence_ids=tuple(rng.sample(ids, 2))) for a in q.answers)
        return dataclasses.replace(q, answers=answers, evidence_ids=())

    other = dataclasses.replace(split, questions=[scrambled(q) for q in split.questions])
    assert [q.gold_ids for q in other.questions] != [q.gold_ids for q in split.questions]
    questions = [q for q in split.questions if q.answerable]
    sets, _ = candidate_sets(cfg, split, questions, {"bm25": BM25Retriever()})
    again, _ = candidate_sets(cfg, other, [q for q in other.questions if q.answerable], {"bm25": BM25Retriever()})
    assert sets == again
    led = [s for s in sets if s.sources[0] == "answer_overlap"]
    assert len(led) > len(sets) // 3  # extractive and abstractive answers mostly have a paragraph that holds them
    for s in led:  # the lead holds at least half of some extractive/abstractive answer's content tokens
        q = next(q for q in questions if q.question_id == s.question_id)
        text = next(p.text for p in split.passages(q.document_id) if p.passage_id == s.passage_ids[0])
        assert max(overlap(content_tokens(a.text), content_tokens(text)) for a in q.answers if a.answer_type not in ("boolean", "none")) >= 0.5
    by_id = {q.question_id: q for q in questions}
    textless = [s for s in sets if all(a.answer_type in ("boolean", "none") for a in by_id[s.question_id].answers)]
    assert textless and all(s.sources[0] != "answer_overlap" for s in textless)  # "Yes" is found nowhere
