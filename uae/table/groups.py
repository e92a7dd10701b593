"""Training groups: a utility table (parquet, or FlagEmbedding JSONL) joined with the split's texts,
refusing any row the split cannot explain.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from uae.core.errors import CacheMismatchError
from uae.data.records import Split, TrainingGroup
from uae.table.flagembedding import groups_spec, read_groups
from uae.table.format import REBUILD
from uae.table.read import read_table, read_table_spec


def table_spec(path: Path) -> dict[str, Any]:
    """What made a table fit may train on: the parquet table's own spec, or a FlagEmbedding file's."""
    if path.suffix == ".jsonl":
        return groups_spec(path)
    return read_table_spec(path)


def training_groups(
    split: Split, path: Path, questions: Sequence[str], *, spec: Mapping[str, Any] | None = None
) -> list[TrainingGroup]:
    """Join a utility table (parquet, or FlagEmbedding JSONL) with the split's texts, refusing a table that
    does not fit the split.

    ``questions`` are the ids that must have utilities (answerable questions with passages). When the
    split was cut by ``data.max_documents`` (``split.limited``) rows of documents not loaded are skipped;
    any other row the split cannot explain is an error, as is a missing question or a non-finite utility.
    """
    if path.suffix == ".jsonl":
        rows = read_groups(path, split)
    else:
        rows = _parquet_rows(split, path, spec)
    where = f"utility table {path}"
    texts = {q.question_id: q.text for q in split.questions}
    wanted = set(questions)
    by_question: dict[str, list[int]] = {}
    for i, (qid, document_id) in enumerate(zip(rows["question_id"], rows["document_id"])):
        if document_id is not None and document_id not in split.documents:
            if split.limited:
                continue
            raise CacheMismatchError(
                f"The {where} has rows for document {document_id}, which {split.dataset} {split.name} lacks. {REBUILD}"
            )
        if qid not in wanted:
            raise CacheMismatchError(
                f"The {where} has rows for question {qid}, which is not an answerable question of {split.dataset} "
                f"{split.name} (document {document_id}). {REBUILD}"
            )
        by_question.setdefault(qid, []).append(i)
    missing = [qid for qid in questions if qid not in by_question]
    if missing:
        raise CacheMismatchError(
            f"The {where} lacks {len(missing)} of the {len(wanted)} questions that {split.dataset} {split.name} "
            f"needs utilities for (first: {missing[0]}). {REBUILD}"
        )
    passage_texts: dict[str | None, dict[str, str]] = {}  # built once per document, not once per question
    groups = []
    for qid in questions:
        index = by_question[qid]
        document_id = rows["document_id"][index[0]]
        if document_id not in passage_texts:
            passage_texts[document_id] = {p.passage_id: p.text for p in split.passages(document_id)}
        known = passage_texts[document_id]
        ids = tuple(rows["passage_id"][i] for i in index)
        if [rows["position"][i] for i in index] != list(range(len(index))) or len(set(ids)) != len(ids):
            raise CacheMismatchError(f"The {where} has duplicate or out-of-order candidates for question {qid}. {REBUILD}")
        unknown = [pid for pid in ids if pid not in known]
        if unknown:
            raise CacheMismatchError(
                f"The {where} names passage {unknown[0]}, which document {document_id} of {split.dataset} "
                f"{split.name} lacks. {REBUILD}"
            )
        groups.append(
            TrainingGroup(
                question_id=qid,
                query=texts[qid],
                passage_ids=ids,
                passages=tuple(known[pid] for pid in ids),
                utility=tuple(float(rows["utility"][i]) for i in index),
                gold=tuple(bool(rows["is_gold"][i]) for i in index),
            )
        )
    return groups


def _parquet_rows(split: Split, path: Path, spec: Mapping[str, Any] | None) -> dict[str, list[Any]]:
    """A parquet table's rows as columns, after checking it was made from this split's data (``spec``: the
    table's spec when the caller has read it already)."""
    spec = read_table_spec(path) if spec is None else spec
    if spec.get("split") != split.name or spec.get("data") != split.fingerprint:
        raise CacheMismatchError(
            f"The utility table {path} was made from split {spec.get('split')} with data fingerprint "
            f"{str(spec.get('data'))[:16]}, not from {split.dataset} {split.name} ({split.source}, "
            f"{split.fingerprint[:16]}). {REBUILD}"
        )
    table = read_table(path, ["question_id", "document_id", "passage_id", "position", "is_gold", "utility"])
    rows = {name: table[name].to_pylist() for name in table.column_names}
    utility = np.asarray(rows["utility"], dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(utility))
    if bad.size:
        raise CacheMismatchError(
            f"The utility table {path} has {bad.size} NaN or inf utilities (first: question "
            f"{rows['question_id'][bad[0]]}, passage {rows['passage_id'][bad[0]]}). {REBUILD}"
        )
    return rows
