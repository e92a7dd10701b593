"""What every loader does with files: hash them (the root of cache fingerprints) and read JSONL with
errors that name the file and line, so bad input never gets past a loader as a traceback."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from uae.core.errors import DataError


def file_sha256(*paths: Path) -> str:
    """Content hash of one data file, or of several in order (a BEIR folder's corpus, queries, qrels)."""
    digest = hashlib.sha256()
    for path in paths:
        if len(paths) > 1:
            digest.update(path.name.encode() + b"\0")
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def read_jsonl(path: Path, what: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line; a line that is not a JSON object is a DataError.

    ``what`` says what each line should hold, for the message ("one passage of the corpus")."""
    try:
        with open(path, encoding="utf-8") as handle:
            for lineno, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    value = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path}, line {lineno}: not valid JSON ({exc.msg}). Each line must hold {what}.") from exc
                except (ValueError, RecursionError) as exc:  # a number too long to convert, nesting too deep
                    raise DataError(f"{path}, line {lineno}: cannot be read as JSON ({type(exc).__name__}).") from exc
                if not isinstance(value, dict):
                    raise DataError(f"{path}, line {lineno}: a JSON {type(value).__name__}, expected an object ({what}).")
                yield lineno, value
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}).") from exc
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror}).") from exc
