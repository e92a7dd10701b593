"""A hand-made BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv) and copies of its rows to edit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# Two documents whose passages interleave in the file, and a passage without a document.
CORPUS: list[dict[str, Any]] = [
    {"_id": "a1", "title": "Intro", "text": "Cameras record the night sky.", "metadata": {"document": "docA"}},
    {"_id": "b1", "title": "Start", "text": "Bees make honey in summer.", "metadata": {"document": "docB"}},
    {"_id": "a2", "title": "Method", "text": "We count the stars with a camera.", "metadata": {"document": "docA"}},
    {"_id": "solo", "title": "", "text": "A passage that belongs to no document."},
    {"_id": "b2", "title": "End", "text": "Honey keeps for years.", "metadata": {"document": "docB"}},
]
QUERIES: list[dict[str, Any]] = [
    {
        "_id": "q1",
        "text": "How are the stars counted?",
        "metadata": {"document": "docA", "answers": ["with a camera", "a camera", "with a camera"]},
    },
    {"_id": "q2", "text": "Which passages stand alone or end a document?"},  # open: no document, no answers
    {"_id": "q3", "text": "What do bees make?", "metadata": {"document": "docB", "answers": ["honey"]}},
    {"_id": "q4", "text": "How long does honey keep?", "metadata": {"document": "docB", "answers": ["years"]}},
    {"_id": "q5", "text": "What keeps for years?", "metadata": {"document": "docB", "answers": ["Honey"]}},
]
# q1: one positive and one score-0 line; q2: two positives in two documents; q3: only a score-0
# line; q4: no line at all; q5: a positive score above 1.
QRELS = ["query-id\tcorpus-id\tscore", "q1\ta2\t1", "q1\ta1\t0", "q2\tsolo\t1", "q2\tb2\t1", "q3\tb1\t0", "q5\tb2\t2"]


def _line(row: Any) -> str:
    return row if isinstance(row, str) else json.dumps(row)


def write_folder(
    folder: Path,
    corpus: list[Any] = CORPUS,
    queries: list[Any] = QUERIES,
    qrels: list[str] = QRELS,
    split: str = "test",
) -> Path:
    """A BEIR folder; rows are dicts (written as JSON) or raw lines (written as they are)."""
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    (folder / "corpus.jsonl").write_text("".join(_line(r) + "\n" for r in corpus), encoding="utf-8")
    (folder / "queries.jsonl").write_text("".join(_line(r) + "\n" for r in queries), encoding="utf-8")
    (folder / "qrels" / f"{split}.tsv").write_text("".join(line + "\n" for line in qrels), encoding="utf-8")
    return folder


def copies() -> tuple[list[Any], list[Any], list[str]]:
    return json.loads(json.dumps(CORPUS)), json.loads(json.dumps(QUERIES)), list(QRELS)
