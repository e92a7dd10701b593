"""The utility table: its schema, how it is read, and how a run finds the one that fits it.

A table holds one row per (question, candidate) with the teacher's utility, and carries in its
parquet metadata the spec of everything that made it (split, data fingerprint, scorer, candidate
settings). The utility stage writes tables (uae.llm.utility), fit reads them into training groups,
the teacher report and the exports read them too: all through this module, so the schema and its
checks live in one place. A table written by the FlagEmbedding export (``*.jsonl``) reads into the
same training groups (uae.data.flagembedding).

Every read checks the table's content against the digest in its footer (uae.integrity). A table
written before digests existed (the committed QASPER and SQuAD ones) is checked by its redundancy
instead: each row's utility must equal ll_context - ll_closed (the mean of differences is the
difference of means, to rounding), which a damaged number breaks. ``python -m uae.integrity stamp``
gives such a table its digest.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from uae.cache import fingerprint
from uae.data.candidates import CandidateSet
from uae.data.records import Split, TrainingGroup
from uae.errors import CacheMismatchError, DamagedFileError, UAEError
from uae.integrity import check_parquet

log = logging.getLogger(__name__)

SCHEMA = pa.schema(
    [
        ("question_id", pa.string()),
        ("document_id", pa.string()),
        ("passage_id", pa.string()),
        ("position", pa.int32()),  # index of the candidate within its set
        ("source", pa.string()),  # gold | bm25 | dense | random
        ("is_gold", pa.bool_()),
        ("utility", pa.float64()),  # mean_a [ll(a | p) - ll(a | none)], nats per answer token
        ("ll_context", pa.float64()),  # mean_a ll(a | p)
        ("ll_closed", pa.float64()),  # mean_a ll(a | none)
        ("n_answers", pa.int32()),
    ]
)
FINGERPRINT_KEY = b"uae_fingerprint"
SPEC_KEY = b"uae_spec"
# Tables written before datasets were generic (the committed QASPER ones) call the column paper_id.
_LEGACY_COLUMNS = {"paper_id": "document_id"}

REBUILD = "Rebuild it with the utility stage: python -m uae.run +experiment=NAME stages=[utility] (or make utilities)."
# What replaces a table that cannot be read or whose content is damaged.
REPLACE = (
    "Replace it: restore a committed copy (git restore {path}), or rebuild it with the settings that made it: "
    "python -m uae.run +experiment=NAME stages=[utility] utility.overwrite=true."
)
# |utility - (ll_context - ll_closed)| of a sound row is rounding (< 1e-14 for log-likelihoods of tens of nats).
CONSISTENCY_ATOL = 1e-9
_CONSISTENT = ("utility", "ll_context", "ll_closed")
_checked_by_consistency: set[Path] = set()


def utility_spec(
    split: Split, sets: Sequence[CandidateSet], scorer_spec: Mapping[str, Any], candidate_spec: Mapping[str, Any]
) -> dict[str, Any]:
    """Everything the table's content depends on; its hash guards the merged table."""
    digest = hashlib.sha256()
    for s in sets:
        digest.update(json.dumps([s.question_id, s.passage_ids, s.sources]).encode())
    return {
        "split": split.name,
        "data": split.fingerprint,
        "scorer": dict(scorer_spec),
        "candidates": dict(candidate_spec),
        "candidate_sets": digest.hexdigest(),
    }


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


def table_spec(path: Path) -> dict[str, Any]:
    """What made a table fit may train on: the parquet table's own spec, or a FlagEmbedding file's."""
    if path.suffix == ".jsonl":
        from uae.data.flagembedding import groups_spec

        return groups_spec(path)
    return read_table_spec(path)


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


def training_groups(split: Split, path: Path, questions: Sequence[str]) -> list[TrainingGroup]:
    """Join a utility table (parquet, or FlagEmbedding JSONL) with the split's texts, refusing a table that
    does not fit the split.

    ``questions`` are the ids that must have utilities (answerable questions with passages). When the
    split was cut by ``data.max_documents`` (``split.limited``) rows of documents not loaded are skipped;
    any other row the split cannot explain is an error, as is a missing question or a non-finite utility.
    """
    if path.suffix == ".jsonl":
        from uae.data.flagembedding import read_groups

        rows = read_groups(path, split)
    else:
        rows = _parquet_rows(split, path)
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


def _parquet_rows(split: Split, path: Path) -> dict[str, list[Any]]:
    """A parquet table's rows as columns, after checking it was made from this split's data."""
    spec = read_table_spec(path)
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
