"""A file of passages to search or encode (``python -m uae.search``, ``python -m uae.encode``): JSONL, one
``{"text": ..., "_id": ...}`` per line, so that BEIR's corpus.jsonl works as it is.

Read here, below the commands, so that both commands read it the same way with the same messages."""

from __future__ import annotations

from pathlib import Path

from uae.core.errors import DataError
from uae.data.files import read_jsonl


def read_passages(path: Path) -> tuple[list[str], list[str]]:
    """Texts and ids of a passages file (JSONL: {"text", optional "_id"/"id"}), with line-numbered errors.
    A passage without an id is named by its line number; ids must be unique."""
    if not path.is_file():
        raise DataError(f"--passages {path}: no such file.")
    texts, ids = [], []
    for lineno, row in read_jsonl(path, 'one passage: {"text": "...", "_id": "..."}'):
        text = row.get("text")
        if not isinstance(text, str):
            raise DataError(f"{path}, line {lineno}: no \"text\" string (each line holds one passage: {{\"text\", \"_id\"}}).")
        identifier = row.get("_id", row.get("id", str(lineno)))
        if not isinstance(identifier, str | int) or isinstance(identifier, bool):
            raise DataError(f"{path}, line {lineno}: the id {identifier!r} is not a string or number.")
        texts.append(text)
        ids.append(str(identifier))
    if not texts:
        raise DataError(f"--passages {path} holds no passages: there is nothing to search.")
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        for duplicate in ids:  # the first id seen twice
            if duplicate in seen:
                break
            seen.add(duplicate)
        raise DataError(f"--passages {path}: the id {duplicate!r} names two passages; ids must be unique.")
    return texts, ids
