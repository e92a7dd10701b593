"""Scored training groups in FlagEmbedding's JSONL convention, both ways.

One line per question: ``{"query", "pos", "neg", "pos_scores", "neg_scores"}`` (FlagEmbedding's
fine-tuning and distillation format: passages as texts, the teacher's score of each), plus UAE's
``question_id``, ``document_id``, ``answers``, ``pos_ids`` and ``neg_ids``. A utility table exports to
it (``pos`` = gold candidates, ``neg`` = the others, each in candidate order, scores = utilities), and
fit trains on such a file (``utility.table=groups.jsonl``), so scores from any teacher run anywhere (a
larger LLM on another machine, a cross-encoder) train UAE here.

Reading maps each line back onto the split: by ``question_id`` and ``pos_ids``/``neg_ids`` when
present, else by the query text and the passage texts within the question's document. The
candidates of a group are ``pos`` then ``neg``: the utility stage puts gold first, so a table made
with evidence labels reads back in its own order; for others the order differs, which the
losses do not see (they are sums over the candidate set).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from uae.core.errors import DataError
from uae.data.files import file_sha256, read_jsonl
from uae.data.records import Passage, Split
from uae.storage.atomic import atomic_path
from uae.table.read import read_table, read_table_spec

FORMAT = "flagembedding-jsonl"


def export_groups(table_path: Path, split: Split, dest: Path) -> int:
    """Write the utility table at ``table_path`` (made from ``split``) as FlagEmbedding JSONL; returns lines."""

    spec = read_table_spec(table_path)
    if spec.get("split") != split.name or spec.get("data") != split.fingerprint:
        raise DataError(
            f"{table_path} was made from split {spec.get('split')} of other data (fingerprint "
            f"{str(spec.get('data'))[:12]}), not {split.dataset} {split.name}: export it with the dataset it was made from."
        )
    table = read_table(table_path).to_pylist()
    questions = {q.question_id: q for q in split.questions}
    texts = {p.passage_id: p.text for p in split.all_passages}
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for row in table:
        groups.setdefault(row["question_id"], []).append(row)
    lines = []
    for qid, rows in groups.items():
        if qid not in questions:
            if split.limited:
                continue
            raise DataError(f"{table_path}: question {qid} is not in {split.dataset} {split.name}.")
        q = questions[qid]
        rows = sorted(rows, key=lambda r: r["position"])
        pos = [r for r in rows if r["is_gold"]]
        neg = [r for r in rows if not r["is_gold"]]
        lines.append(
            json.dumps(
                {
                    "query": q.text,
                    "pos": [texts[r["passage_id"]] for r in pos],
                    "neg": [texts[r["passage_id"]] for r in neg],
                    "pos_scores": [r["utility"] for r in pos],
                    "neg_scores": [r["utility"] for r in neg],
                    "question_id": qid,
                    "document_id": q.document_id,
                    "answers": list(q.gold_answers),
                    "pos_ids": [r["passage_id"] for r in pos],
                    "neg_ids": [r["passage_id"] for r in neg],
                },
                ensure_ascii=False,
            )
        )
    with atomic_path(dest) as tmp:
        tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return len(lines)


def groups_spec(path: Path) -> dict[str, Any]:
    """What fit records of a groups file: its format and content hash (it carries no teacher settings)."""
    return {"format": FORMAT, "sha256": file_sha256(path), "scorer": None}


def read_groups(path: Path, split: Split) -> dict[str, list[Any]]:
    """The file's groups as utility-table columns (question_id, document_id, passage_id, position, is_gold,
    utility), mapped onto ``split``; lines for documents a ``data.max_documents`` split lacks are skipped."""
    by_query: dict[str, list[str]] = {}
    for q in split.questions:
        by_query.setdefault(q.text, []).append(q.question_id)
    questions = {q.question_id: q for q in split.questions}
    columns: dict[str, list[Any]] = {k: [] for k in ("question_id", "document_id", "passage_id", "position", "is_gold", "utility")}
    seen: dict[str, int] = {}
    lookups: dict[str | None, _Lookup] = {}
    for lineno, row in read_jsonl(path, 'one group: {"query", "pos", "neg", "pos_scores", "neg_scores"}'):
        where = f"{path}, line {lineno}"
        qid = _question_id(row, by_query, questions, where, split)
        if qid is None:
            continue
        if qid in seen:
            raise DataError(f"{where}: question {qid} already has a group on line {seen[qid]}.")
        seen[qid] = lineno
        q = questions[qid]
        if q.document_id not in lookups:  # once per document, not per line and side (None: the corpus)
            lookups[q.document_id] = _Lookup(split.passages(q.document_id))
        lookup = lookups[q.document_id]
        candidates = _side(row, "pos", lookup, where) + _side(row, "neg", lookup, where)
        if not candidates:
            raise DataError(f"{where}: the group of question {qid} has no passages in pos or neg.")
        for position, (pid, is_gold, score) in enumerate(candidates):
            columns["question_id"].append(qid)
            columns["document_id"].append(q.document_id)
            columns["passage_id"].append(pid)
            columns["position"].append(position)
            columns["is_gold"].append(is_gold)
            columns["utility"].append(score)
    if not seen:
        raise DataError(f"{path}: holds no training group for {split.dataset} {split.name}.")
    return columns


class _Lookup:
    """A document's passages by id and by text (the first passage with a repeated text)."""

    def __init__(self, passages: Sequence[Passage]) -> None:
        self.text = {p.passage_id: p.text for p in passages}
        self.id_of: dict[str, str] = {}
        for p in passages:
            self.id_of.setdefault(p.text, p.passage_id)


def _question_id(
    row: Mapping[str, Any], by_query: Mapping[str, list[str]], questions: Mapping[str, Any], where: str, split: Split
) -> str | None:
    qid = row.get("question_id")
    if qid is not None:
        if not isinstance(qid, str):
            raise DataError(f"{where}: question_id must be a string, got {type(qid).__name__}.")
        if qid in questions:
            return qid
        if split.limited:
            return None
        raise DataError(f"{where}: question_id {qid!r} is not a question of {split.dataset} {split.name}.")
    query = row.get("query")
    if not isinstance(query, str) or not query.strip():
        raise DataError(f"{where}: no 'query' string.")
    matches = by_query.get(query, [])
    if len(matches) == 1:
        return matches[0]
    if not matches and split.limited:
        return None
    raise DataError(
        f"{where}: the query {query!r:.60} matches {len(matches)} questions of {split.dataset} {split.name}; "
        "add a question_id to the line."
    )


def _side(row: Mapping[str, Any], side: str, lookup: _Lookup, where: str) -> list[tuple[str, bool, float]]:
    texts = row.get(side, [])
    scores = row.get(f"{side}_scores")
    ids = row.get(f"{side}_ids")
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise DataError(f"{where}: '{side}' must be a list of passage texts.")
    if (
        not isinstance(scores, list)
        or len(scores) != len(texts)
        or not all(isinstance(s, int | float) and not isinstance(s, bool) and math.isfinite(s) for s in scores)
    ):
        raise DataError(f"{where}: '{side}_scores' must be a list of finite numbers, one per '{side}' passage.")
    if ids is not None:
        if not isinstance(ids, list) or len(ids) != len(texts) or not all(isinstance(i, str) for i in ids):
            raise DataError(f"{where}: '{side}_ids' must be a list with one id (a string) per '{side}' passage.")
        for pid, text in zip(ids, texts):
            if lookup.text.get(pid) != text:
                raise DataError(
                    f"{where}: '{side}_ids' names {pid!r}, which is not a passage of the question's document with "
                    "that text in this dataset."
                )
        resolved: Sequence[str] = ids
    else:
        missing = [t for t in texts if t not in lookup.id_of]
        if missing:
            raise DataError(f"{where}: the {side} passage {missing[0]!r:.60} is not a passage of the question's document.")
        resolved = [lookup.id_of[t] for t in texts]
    return [(pid, side == "pos", float(s)) for pid, s in zip(resolved, scores)]
