"""Hand-made utility tables of a split, written as UAE writes them (schema, spec, content digest)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa

from uae.storage.digest import write_parquet
from uae.storage.fingerprint import fingerprint
from uae.table.format import FINGERPRINT_KEY, SCHEMA, SPEC_KEY


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
