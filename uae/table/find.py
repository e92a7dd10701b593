"""Which table a run may use: the one in ``utility.table_dir`` made from this data with these settings
that covers the questions, found by its spec without rebuilding candidate sets.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from uae.core.errors import DamagedFileError, UAEError
from uae.data.records import Split
from uae.storage.fingerprint import fingerprint
from uae.table.read import read_table, read_table_spec

log = logging.getLogger(__name__)


def table_path(table_dir: str | Path, split_name: str, limit: int | None = None) -> Path:
    """Where a split's table lives; a ``data.max_documents`` subset (``limit``) gets its own file."""
    suffix = "" if limit is None else f"-first{limit}"
    return Path(table_dir) / f"{split_name}{suffix}.parquet"


def find_table(
    table_dir: str | Path,
    split: Split,
    question_ids: Sequence[str],
    settings: Mapping[str, Any],
    *,
    limit: int | None,
    writing: bool = False,
    overwrite: bool = False,
) -> Path | None:
    """A table in ``table_dir`` made with ``settings`` from this data that covers ``question_ids``, or None.

    Candidate sets are a function of the data, the settings and the seed, so a table whose spec
    matches needs no candidate sets rebuilt to be trusted (that would cost a full passage encoding).
    A subset run (``limit``, from ``data.max_documents``) also accepts the split's full table: its rows
    for the subset's questions are exactly what the subset would compute. The LLM's dtype does not
    count: fp32 and bf16 utilities differ by rounding, and the spec stored in the table says which.
    ``writing``: the caller will write its own table here, so one made otherwise is refused unless
    ``overwrite``.
    """
    own = table_path(table_dir, split.name, limit)
    paths = [own] + ([table_path(table_dir, split.name)] if limit else [])
    for path in paths:
        if not path.is_file():
            continue
        try:
            differs = differences(read_table_spec(path), split, settings)
            covered = None if differs else set(read_table(path, ["question_id"])["question_id"].to_pylist())
        except DamagedFileError:
            if path == own and writing and overwrite:  # the one case where this run may replace it
                log.warning("utility table %s cannot be read or is damaged; utility.overwrite=true: this run replaces it", path)
                continue
            raise
        if differs:
            if path == own and writing and not overwrite:
                raise UAEError(
                    f"{path} was made with other settings (differs in: {', '.join(differs)}). It would be "
                    "overwritten by this run: set utility.table_dir to another folder, or utility.overwrite=true "
                    "to replace it."
                )
            log.info("utility table %s does not fit (differs in: %s)", path, ", ".join(differs))
            continue
        assert covered is not None  # read above whenever the settings fit
        if covered.issuperset(question_ids):
            return path
        log.info("utility table %s lacks %d of the questions", path, len(set(question_ids) - covered))
    return None


def differences(made: Mapping[str, Any], split: Split, settings: Mapping[str, Any]) -> list[str]:
    """The parts of a table's spec that differ from what this split and these settings would make."""

    def scorer(spec: Any) -> str:
        return fingerprint({k: v for k, v in dict(spec or {}).items() if k != "dtype"})

    differs = []
    if made.get("split") != split.name:
        differs.append("split")
    if made.get("data") != split.fingerprint:
        differs.append("data")
    if scorer(made.get("scorer")) != scorer(settings["scorer"]):
        differs.append("scorer")
    if fingerprint(made.get("candidates") or {}) != fingerprint(json.loads(json.dumps(settings["candidates"], default=str))):
        differs.append("candidates")
    return differs
