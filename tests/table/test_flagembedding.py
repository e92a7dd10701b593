"""Training groups in FlagEmbedding's JSONL convention: export a utility table, read it back, bad input.

The committed QASPER train table (experiments/qasper/utilities/train.parquet, legacy column paper_id)
exported to JSONL must give fit exactly the training groups the table gives.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from tests.helpers.paths import ROOT
from uae.core.errors import DataError
from uae.data.records import Split, TrainingGroup
from uae.table.flagembedding import export_groups, groups_spec, read_groups
from uae.table.groups import table_spec, training_groups

TABLE = ROOT / "experiments" / "qasper" / "utilities" / "train.parquet"


@pytest.fixture(scope="module")
def train(qasper_train: Split) -> Split:
    return qasper_train  # parsed once per session (tests/conftest.py)


@pytest.fixture(scope="module")
def questions(train: Split) -> list[str]:
    """The questions fit needs utilities for (uae/stages/tables.py utility_questions)."""
    return [q.question_id for q in train.questions if q.answerable and train.passages(q.document_id)]


@pytest.fixture(scope="module")
def exported(train: Split, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("groups") / "train.jsonl"
    n = export_groups(TABLE, train, path)
    assert n == len(set(pq.read_table(TABLE, columns=["question_id"])["question_id"].to_pylist()))
    return path


@pytest.fixture(scope="module")
def table_groups(train: Split, questions: list[str]) -> list[TrainingGroup]:
    return training_groups(train, TABLE, questions)


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _write(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def test_export_then_read_back_gives_the_table_groups(
    exported: Path, train: Split, questions: list[str], table_groups: list[TrainingGroup]
) -> None:
    assert len(table_groups) == len(questions) > 2000
    assert training_groups(train, exported, questions) == table_groups
    assert table_spec(exported) == groups_spec(exported)  # fit finds the file's spec by its suffix


def test_file_is_in_flagembedding_format(exported: Path, train: Split) -> None:
    # Checked against the parquet file read directly (not through uae's table reader).
    raw = pq.read_table(TABLE).to_pylist()
    by_question: dict[str, list[dict[str, Any]]] = {}
    for row in sorted(raw, key=lambda r: r["position"]):
        by_question.setdefault(row["question_id"], []).append(row)
    texts = {p.passage_id: p.text for p in train.all_passages}
    questions = {q.question_id: q for q in train.questions}
    lines = _lines(exported)
    assert len(lines) == len(by_question)
    for line in lines:
        assert isinstance(line["query"], str) and line["query"]
        for side in ("pos", "neg"):
            assert isinstance(line[side], list) and all(isinstance(t, str) for t in line[side])
            scores = line[f"{side}_scores"]
            assert isinstance(scores, list) and len(scores) == len(line[side])
            assert all(isinstance(s, float) and math.isfinite(s) for s in scores)
        rows = by_question[line["question_id"]]
        pos = [r for r in rows if r["is_gold"]]
        neg = [r for r in rows if not r["is_gold"]]
        assert line["pos_scores"] == [r["utility"] for r in pos] and line["neg_scores"] == [r["utility"] for r in neg]
        assert line["pos"] == [texts[r["passage_id"]] for r in pos] and line["neg"] == [texts[r["passage_id"]] for r in neg]
        q = questions[line["question_id"]]
        assert line["query"] == q.text and line["document_id"] == q.document_id == rows[0]["paper_id"]
        assert line["answers"] == list(q.gold_answers)


def test_plain_flagembedding_lines_are_matched_by_text(
    exported: Path, train: Split, table_groups: list[TrainingGroup], tmp_path: Path
) -> None:
    """Without question_id and passage ids, lines map back by the query and passage texts.

    Texts that name two questions (a query asked of two papers) or two passages (a repeated paragraph)
    are ambiguous, so those lines are left out here; they are tested below.
    """
    query_count = Counter(q.text for q in train.questions)
    plain, kept = [], []
    for line in _lines(exported):
        document_texts = Counter(p.text for p in train.passages(line["document_id"]))
        if query_count[line["query"]] > 1 or any(document_texts[t] > 1 for t in line["pos"] + line["neg"]):
            continue
        kept.append(line["question_id"])
        plain.append({k: line[k] for k in ("query", "pos", "neg", "pos_scores", "neg_scores")})
    assert len(kept) > 2000
    path = _write(tmp_path / "plain.jsonl", plain)
    expected = [g for g in table_groups if g.question_id in set(kept)]
    assert training_groups(train, path, kept) == expected


# --- bad input -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lines(exported: Path) -> list[dict[str, Any]]:
    return _lines(exported)[:3]


def _other_document_text(train: Split, document_id: str) -> str:
    return next(p.text for p in train.all_passages if p.document_id != document_id)


def _foreign_pos(row: dict[str, Any], train: Split, *, plain: bool) -> None:
    """Replace the first pos text by a passage of another document (dropping the ids when ``plain``)."""
    if plain:
        del row["pos_ids"], row["neg_ids"]
    row["pos"][0] = _other_document_text(train, row["document_id"])


def _plain_query(row: dict[str, Any], query: str) -> None:
    del row["question_id"]
    row["query"] = query


def _duplicated_query(train: Split) -> str:
    return next(text for text, n in Counter(q.text for q in train.questions).items() if n > 1)


BAD = {
    # name: (edit of the first three lines (the split is an argument), the line named, what the message says)
    "line not JSON": (lambda rows, s: rows.insert(1, '{"query": "half a line'), 2, "not valid JSON"),
    "line a JSON list": (lambda rows, s: rows.insert(1, "[1, 2]"), 2, "expected an object"),
    "pos_scores of the wrong length": (lambda rows, s: rows[1]["pos_scores"].append(0.5), 2, "'pos_scores'"),
    "neg_scores missing": (lambda rows, s: rows[2].pop("neg_scores"), 3, "'neg_scores'"),
    "NaN score": (lambda rows, s: rows[0]["neg_scores"].__setitem__(0, float("nan")), 1, "finite"),
    "score a string": (lambda rows, s: rows[0]["pos_scores"].__setitem__(0, "1.0"), 1, "finite"),
    "pos text not in the document (with ids)": (lambda rows, s: _foreign_pos(rows[1], s, plain=False), 2, "'pos_ids'"),
    "pos text not in the document (plain)": (lambda rows, s: _foreign_pos(rows[1], s, plain=True), 2, "pos passage"),
    "unknown question_id": (lambda rows, s: rows[2].update(question_id="no-such-question"), 3, "'no-such-question'"),
    "question_id not a string": (lambda rows, s: rows[2].update(question_id=["x"]), 3, "question_id"),
    "ids not strings": (lambda rows, s: rows[0].update(neg_ids=[[1]] * len(rows[0]["neg"])), 1, "'neg_ids'"),
    "query matching no question": (
        lambda rows, s: _plain_query(rows[0], "Is this in QASPER at all?"), 1, "matches 0 questions",
    ),
    "query matching two questions": (
        lambda rows, s: _plain_query(rows[0], _duplicated_query(s)), 1, "matches 2 questions",
    ),
    "question twice": (lambda rows, s: rows.append(dict(rows[0])), 4, "already has a group on line 1"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_lines_name_file_and_line(case: str, lines: list[dict[str, Any]], train: Split, tmp_path: Path) -> None:
    edit, line, needle = BAD[case]
    rows: list[Any] = json.loads(json.dumps(lines))
    edit(rows, train)
    path = _write(tmp_path / "groups.jsonl", rows)
    with pytest.raises(DataError) as err:
        read_groups(path, train)
    message = str(err.value)
    assert f"{path}, line {line}:" in message, message
    assert needle in message, message


def test_unedited_lines_read(lines: list[dict[str, Any]], train: Split, tmp_path: Path) -> None:
    """The bad-input cases above start from lines that do read: each error is the edit's."""
    assert all(line["pos"] and line["neg"] for line in lines)  # every edit above has something to edit
    columns = read_groups(_write(tmp_path / "groups.jsonl", lines), train)
    assert sorted(set(columns["question_id"])) == sorted(line["question_id"] for line in lines)
    assert len(columns["passage_id"]) == sum(len(line["pos"]) + len(line["neg"]) for line in lines)


def test_empty_file(train: Split, tmp_path: Path) -> None:
    path = _write(tmp_path / "groups.jsonl", [])
    with pytest.raises(DataError, match="holds no training group") as err:
        read_groups(path, train)
    assert str(path) in str(err.value)


def test_groups_spec_follows_content(lines: list[dict[str, Any]], tmp_path: Path) -> None:
    path = _write(tmp_path / "a.jsonl", lines)
    before = groups_spec(path)
    assert before["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    copy = _write(tmp_path / "b.jsonl", lines)
    assert groups_spec(copy) == before  # the content, not the path
    changed = json.loads(json.dumps(lines))
    changed[0]["pos_scores"][0] += 0.25
    assert groups_spec(_write(path, changed)) != before
