"""Reading a utility table, and the checks every read makes.

The utility stage writes tables (uae.table.build), fit reads them into training groups
(uae.table.groups), the teacher report and the exports read them too: all through this module, so
that no reader can skip a check.

Every read checks the table's content against the digest in its footer (uae.storage.digest). A table
written before digests existed (the committed QASPER and SQuAD ones) is checked by its redundancy
instead: each row's utility must equal ll_context - ll_closed (the mean of differences is the
difference of means, to rounding), which a damaged number breaks. ``python -m uae.table.integrity stamp``
gives such a table its digest.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from uae.core.errors import CacheMismatchError, DamagedFileError
from uae.data.candidates import CandidateSet
from uae.storage.digest import check_parquet
from uae.storage.fingerprint import fingerprint
from uae.table.format import FINGERPRINT_KEY, REPLACE, SPEC_KEY

log = logging.getLogger(__name__)

# Tables written before datasets were generic (the committed QASPER ones) call the column paper_id.
_LEGACY_COLUMNS = {"paper_id": "document_id"}

# |utility - (ll_context - ll_closed)| of a sound row is rounding (< 1e-14 for log-likelihoods of tens of nats).
CONSISTENCY_ATOL = 1e-9
_CONSISTENT = ("utility", "ll_context", "ll_closed")
_checked_by_consistency: set[Path] = set()


def read_table(path: Path, columns: Sequence[str] | None = None) -> pa.Table:
    """The table's rows (all columns, or ``columns``), with legacy column names mapped to today's; its
    content checked first (:func:`verify_table`)."""
    legacy = {new: old for old, new in _LEGACY_COLUMNS.items()}
    try:
        digest = check_parquet(path)
        names = pq.read_schema(path).names
        wanted = None if columns is None else [legacy[c] if c not in names and c in legacy else c for c in columns]
        if digest:
            table = pq.read_table(path, columns=wanted)
        else:  # one read for the rows and the consistency check that stands in for the digest
            extra = None if wanted is None else wanted + [c for c in _CONSISTENT if c not in wanted]
            table = pq.read_table(path, columns=extra)
            _check_consistency(table, path)
            table = table if wanted is None else table.select(wanted)
            if path not in _checked_by_consistency:
                _checked_by_consistency.add(path)
                log.info("%s carries no content digest (written before digests): checked by utility = ll_context - ll_closed", path)
    except DamagedFileError as exc:
        raise DamagedFileError(f"{exc} {REPLACE.format(path=path)}") from None
    except (OSError, pa.ArrowException) as exc:
        raise DamagedFileError(
            f"{path}: cannot be read as a utility table ({type(exc).__name__}: {exc}). {REPLACE.format(path=path)}"
        ) from exc
    if not _LEGACY_COLUMNS.keys() & set(table.column_names):
        return table
    renamed = table.rename_columns([_LEGACY_COLUMNS.get(c, c) for c in table.column_names])
    return renamed.replace_schema_metadata(table.schema.metadata)


def verify_table(path: Path) -> bool:
    """:class:`DamagedFileError` unless the file's content is what was written: its digest when it records
    one (True), else (written before digests) :func:`check_consistency` (False)."""
    if check_parquet(path):
        return True
    check_consistency(path)
    return False


def check_consistency(path: Path) -> None:
    """The check that stands in for a digest: every row's utility equals ll_context - ll_closed.

    It covers the three numeric columns the losses read; a damaged string or integer column is caught
    where rows are matched to the data (unknown ids, positions out of order), not here.
    """
    try:
        table = pq.read_table(path, columns=list(_CONSISTENT))
    except (OSError, KeyError, pa.ArrowException) as exc:
        raise DamagedFileError(f"{path}: cannot be read as a utility table ({type(exc).__name__}: {exc}).") from exc
    _check_consistency(table, path)


def _check_consistency(table: pa.Table, path: Path) -> None:
    try:
        utility, context, closed = (table[name].to_numpy() for name in _CONSISTENT)
    except KeyError as exc:
        raise DamagedFileError(f"{path}: no column {exc}: not a utility table.") from exc
    finite = np.isfinite(utility) & np.isfinite(context) & np.isfinite(closed)  # non-finite: refused by name later
    bad = np.flatnonzero(finite & (np.abs(utility - (context - closed)) > CONSISTENCY_ATOL))
    if bad.size:
        i = bad[0]
        raise DamagedFileError(
            f"{path}: written before tables carried content digests, and {bad.size} of its rows break utility = "
            f"ll_context - ll_closed (first: row {i}, {utility[i]!r} against {context[i] - closed[i]!r}): the "
            "file was damaged or changed after it was written."
        )


def read_table_spec(path: Path) -> dict[str, Any]:
    """The spec a merged table was made with (its metadata), without reading its rows."""
    if not path.is_file():
        raise CacheMismatchError(
            f"{path}: no utility table. Build it with the utility stage (stages=[utility], or make utilities)."
        )
    try:
        metadata = pq.read_schema(path).metadata or {}
        spec = json.loads(metadata[SPEC_KEY])
    except (KeyError, ValueError, OSError, pa.ArrowException) as exc:
        raise DamagedFileError(
            f"{path} cannot be read as a utility table written by the utility stage ({type(exc).__name__}). "
            + REPLACE.format(path=path)
        ) from exc
    if fingerprint(spec) != metadata.get(FINGERPRINT_KEY, b"").decode():
        raise DamagedFileError(f"{path}: its metadata does not match its fingerprint. {REPLACE.format(path=path)}")
    return spec


def load_utility_table(path: Path, spec: Mapping[str, Any], sets: Sequence[CandidateSet]) -> pa.Table:
    """Read a merged table and refuse it unless it was made for exactly these settings and sets."""
    if not path.is_file():
        raise CacheMismatchError(f"{path}: no utility table. Run the utility stage (stages=[utility]) to build it.")
    table = read_table(path)
    metadata = table.schema.metadata or {}
    if metadata.get(FINGERPRINT_KEY, b"").decode() != fingerprint(spec):
        made = json.loads(metadata.get(SPEC_KEY, b"{}"))
        differs = sorted(k for k in set(made) | set(spec) if made.get(k) != spec.get(k))
        raise CacheMismatchError(
            f"{path} was made with other settings (differs in: {', '.join(differs) or 'unknown'}). Rebuild it with "
            "the utility stage, or restore the settings it was made with."
        )
    expected = [(s.question_id, pid) for s in sets for pid in s.passage_ids]
    got = list(zip(table["question_id"].to_pylist(), table["passage_id"].to_pylist()))
    if got != expected:
        raise CacheMismatchError(f"{path}: its rows do not match the candidate sets. Rebuild it with the utility stage.")
    utility = table["utility"].to_numpy()
    if not np.isfinite(utility).all():
        raise CacheMismatchError(f"{path}: {int((~np.isfinite(utility)).sum())} utilities are NaN or inf. Rebuild it.")
    return table


def rows_for_sets(path: Path, sets: Sequence[CandidateSet]) -> pa.Table:
    """The rows of a table that :func:`find_table` accepted, in the order of ``sets``.

    That table may be the split's full table for a subset, or one made in another dtype, so its exact
    fingerprint is not asked for here (its spec was checked); its rows for these sets must all be
    there, and each set must be exactly its candidates.
    """
    table = read_table(path)
    index = {key: i for i, key in enumerate(zip(table["question_id"].to_pylist(), table["passage_id"].to_pylist()))}
    wanted = [(s.question_id, pid) for s in sets for pid in s.passage_ids]
    missing = [key for key in wanted if key not in index]
    per_question = Counter(table["question_id"].to_pylist())
    other = [s.question_id for s in sets if per_question[s.question_id] != len(s.passage_ids)]
    if missing or other:
        raise CacheMismatchError(
            f"{path}: its candidates differ from the candidate sets rebuilt now ({len(missing)} missing rows, "
            f"{len(other)} questions with another number of candidates). Rebuild it: stages=[utility] utility.overwrite=true."
        )
    return table.take([index[key] for key in wanted])


