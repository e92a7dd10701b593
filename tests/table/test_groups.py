"""Training groups from a utility table: joins, refusals of tables that do not fit, batches, chunking."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pyarrow as pa
import pytest
import torch

from uae.core.errors import CacheMismatchError, UAEError
from uae.data.qasper import load_qasper
from uae.retrieval.encoder import DualEncoder
from uae.storage.digest import write_parquet
from uae.storage.fingerprint import fingerprint
from uae.table.format import FINGERPRINT_KEY, SCHEMA, SPEC_KEY
from uae.table.groups import training_groups
from uae.training.datamodule import GroupCollator, TrainingDataModule
from uae.training.module import encode_chunks


@pytest.fixture()
def split(tiny_raw_dir: Path):
    return load_qasper("dev", tiny_raw_dir, allow_hub=False)


def answerable(split) -> list[str]:
    return [q.question_id for q in split.questions if q.answerable]


def write_table(path: Path, split, rows: list[dict], spec_changes: dict | None = None) -> Path:
    spec = {"split": split.name, "data": split.fingerprint, "scorer": {}, "candidates": {}, **(spec_changes or {})}
    table = pa.Table.from_pylist(rows, schema=SCHEMA).replace_schema_metadata(
        {FINGERPRINT_KEY: fingerprint(spec).encode(), SPEC_KEY: json.dumps(spec).encode()}
    )
    write_parquet(table, path)  # a table as UAE writes one: with its content digest
    return path


def table_rows(split) -> list[dict]:
    """Two candidates per answerable question: its first gold (or first paragraph) and the last paragraph."""
    rows = []
    questions = {q.question_id: q for q in split.questions}
    for qid in answerable(split):
        q = questions[qid]
        ids = [p.passage_id for p in split.passages(q.document_id)]
        first = min(q.gold_ids) if q.gold_ids else ids[0]
        for position, pid in enumerate(dict.fromkeys([first, ids[-1]])):
            rows.append(
                {"question_id": qid, "document_id": q.document_id, "passage_id": pid, "position": position,
                 "source": "gold" if pid in q.gold_ids else "random", "is_gold": pid in q.gold_ids,
                 "utility": 0.5 - position, "ll_context": -1.0, "ll_closed": -1.5, "n_answers": 1}
            )
    return rows


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


def test_collated_chunks_give_the_embeddings_of_one_padded_batch(tmp_path: Path, split, tiny_encoder_dir: Path) -> None:
    groups = training_groups(split, write_table(tmp_path / "t.parquet", split, table_rows(split)), answerable(split))
    encoder = DualEncoder("tiny", cache_dir=tmp_path, local_path=tiny_encoder_dir).eval()
    batch = GroupCollator(encoder.tokenize, passage_chunk=3)(groups)
    texts = [p for g in groups for p in g.passages]
    assert len(batch["passages"]) == math.ceil(len(texts) / 3)
    assert batch["owner"].tolist() == [b for b, g in enumerate(groups) for _ in g.passages]
    assert batch["utility"].tolist() == pytest.approx([u for g in groups for u in g.utility])
    assert batch["gold"].tolist() == [x for g in groups for x in g.gold]
    with torch.no_grad():
        chunked = encode_chunks(encoder, batch["passages"], batch["passage_order"])
        whole = encoder(encoder.tokenize(texts, "passage"), "passage")
    torch.testing.assert_close(chunked, whole, atol=1e-5, rtol=1e-4)


def test_datamodule_refuses_a_batch_larger_than_the_data(split, tmp_path: Path) -> None:
    groups = training_groups(split, write_table(tmp_path / "t.parquet", split, table_rows(split)), answerable(split))
    with pytest.raises(UAEError, match="larger than the 4 training questions"):
        TrainingDataModule(groups, split, lambda texts, side: {}, batch_size=5)
    loader = TrainingDataModule(groups, split, lambda texts, side: {"n": torch.tensor(len(texts))}, batch_size=3, seed=1)
    batches = list(loader.train_dataloader())
    assert len(batches) == 1 and len(batches[0]["question_ids"]) == 3  # drop_last: equal in-batch negatives
