"""Training groups from a utility table (uae.table.groups): joins, refusals of tables that do not fit. Their
batches and chunks: tests/training/test_datamodule.py."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest

from tests.helpers.tables import answerable, table_rows, write_table
from uae.core.errors import CacheMismatchError
from uae.data.qasper import load_qasper
from uae.table.groups import training_groups


@pytest.fixture()
def split(tiny_raw_dir: Path):
    return load_qasper("dev", tiny_raw_dir, allow_hub=False)


def test_groups_join_texts_utilities_and_gold(tmp_path: Path, split) -> None:
    rows = table_rows(split)
    groups = training_groups(split, write_table(tmp_path / "t.parquet", split, rows), answerable(split))
    assert [g.question_id for g in groups] == answerable(split)
    texts = {p.passage_id: p.text for paper in split.documents.values() for p in paper.passages}
    for g in groups:
        mine = [r for r in rows if r["question_id"] == g.question_id]
        assert g.passage_ids == tuple(r["passage_id"] for r in mine)
        assert g.passages == tuple(texts[r["passage_id"]] for r in mine)
        assert g.utility == tuple(r["utility"] for r in mine) and g.gold == tuple(r["is_gold"] for r in mine)
        assert g.query == next(q.text for q in split.questions if q.question_id == g.question_id)


@pytest.mark.parametrize(
    "corrupt,message",
    [
        (lambda rows: rows[2:], "lacks 1 of the"),  # a question's rows missing
        (lambda rows: rows + [{**rows[0], "question_id": "q3", "position": 0}], "not an answerable question"),
        (lambda rows: rows + [{**rows[0], "document_id": "p9"}], "document p9"),
        (lambda rows: [{**r, "utility": math.nan} if i == 1 else r for i, r in enumerate(rows)], "NaN or inf"),
        (lambda rows: [{**r, "utility": math.inf} if i == 0 else r for i, r in enumerate(rows)], "NaN or inf"),
        (lambda rows: [{**r, "passage_id": "p1/999"} if i == 0 else r for i, r in enumerate(rows)], "p1/999"),
        (lambda rows: [{**r, "position": 5} if i == 1 else r for i, r in enumerate(rows)], "out-of-order"),
    ],
    ids=["missing-question", "extra-question", "extra-paper", "nan", "inf", "unknown-paragraph", "positions"],
)
def test_tables_that_do_not_fit_are_refused(tmp_path: Path, split, corrupt, message: str) -> None:
    path = write_table(tmp_path / "t.parquet", split, corrupt(table_rows(split)))
    with pytest.raises(CacheMismatchError, match=message) as error:
        training_groups(split, path, answerable(split))
    assert "stages=[utility]" in str(error.value)


def test_table_of_another_data_file_or_split_is_refused(tmp_path: Path, split) -> None:
    for change in ({"data": "0" * 64}, {"split": "train"}):
        path = write_table(tmp_path / "t.parquet", split, table_rows(split), change)
        with pytest.raises(CacheMismatchError, match="was made from split"):
            training_groups(split, path, answerable(split))
    with pytest.raises(CacheMismatchError, match="no utility table"):
        training_groups(split, tmp_path / "missing.parquet", answerable(split))


def test_subset_skips_rows_of_papers_not_loaded(tmp_path: Path, split, tiny_raw_dir: Path) -> None:
    path = write_table(tmp_path / "t.parquet", split, table_rows(split))
    first = load_qasper("dev", tiny_raw_dir, max_documents=1, allow_hub=False)
    groups = training_groups(first, path, answerable(first))
    assert {g.question_id for g in groups} == set(answerable(first)) and len(groups) < len(answerable(split))
    with pytest.raises(CacheMismatchError, match="which QASPER dev lacks"):  # a split that says it is whole
        training_groups(dataclasses.replace(first, max_documents=None), path, answerable(first))
