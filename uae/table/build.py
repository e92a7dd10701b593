"""Utility targets: u(p) = mean over gold answers of [ll(a | p) - ll(a | none)], cached on disk.

The LLM pass is the expensive part of UAE (hours on a CPU), so it is written in chunks of a fixed
number of questions: a killed run resumes at the first missing chunk and ends with exactly the table
an uninterrupted run makes, and ``shard=i/n`` lets n processes (GPUs, cluster jobs) each write their
chunks (chunk k belongs to shard k mod n) into the same folder. :func:`merge_utilities` joins the
chunks into one parquet table, stamped with the fingerprint of everything that made it. Chunks and
tables carry a digest of their content (uae.storage.digest): a damaged chunk is scored again, never merged.

Shards may run at the same time (a Hydra joblib multirun on one machine, SLURM jobs on a shared disk):
each writes its chunks atomically and then tries to merge, so the shard that writes the last chunk finds
them all. Two shards that finish together may both find them all; a lock in the work folder lets one
write the table while the other waits, then finds that table in place and leaves it as it is.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from filelock import FileLock
from tqdm.auto import tqdm

from uae.core.errors import CacheMismatchError, DamagedFileError, UAEError
from uae.core.shard import Shard
from uae.data.candidates import CandidateSet
from uae.data.records import Split
from uae.storage.atomic import atomic_path
from uae.storage.digest import write_parquet
from uae.storage.fingerprint import fingerprint
from uae.table.format import FINGERPRINT_KEY, SCHEMA, SPEC_KEY
from uae.table.read import read_table, verify_table

log = logging.getLogger(__name__)

MERGE_LOCK = "merge.lock"  # in the work folder: held while a process checks the chunks and writes the table


class IncompleteUtilitiesError(UAEError):
    """Some chunks are not written yet (other shards still running, or a run was killed)."""


class Scorer(Protocol):
    def score_answers(self, items: Sequence[tuple[str | None, str, str]]) -> np.ndarray: ...

    def fingerprint_spec(self) -> dict[str, Any]: ...


def work_key(spec: Mapping[str, Any], chunk_questions: int) -> str:
    """Key of a work folder and its chunks: the table's spec plus the chunking, which fixes chunk k."""
    return fingerprint({**spec, "chunk_questions": chunk_questions})


def compute_utilities(
    split: Split,
    sets: Sequence[CandidateSet],
    scorer: Scorer,
    work_dir: Path,
    spec: Mapping[str, Any],
    *,
    shard: Shard | None = None,
    chunk_questions: int = 16,
    progress: bool = True,
) -> list[Path]:
    """Score every chunk this shard owns that ``work_dir`` lacks; returns the shard's chunk files."""
    shard = shard or Shard(0, 1)
    key = work_key(spec, chunk_questions)
    _claim_work_dir(work_dir, key, spec)
    questions = {q.question_id: q for q in split.questions}
    for s in sets:
        if not questions[s.question_id].gold_answers:
            raise UAEError(f"Question {s.question_id} has no gold answer; unanswerable questions get no utility.")
    n_chunks = math.ceil(len(sets) / chunk_questions)
    owned = [k for k in range(n_chunks) if shard.owns(k)]
    todo = [k for k in owned if not _valid_chunk(chunk_path(work_dir, k), key)]
    log.info("utility: %d chunks for shard %d/%d, %d already done", len(owned), shard.index, shard.count, len(owned) - len(todo))
    for k in tqdm(todo, desc="utility chunks", unit="chunk", disable=not progress):
        chunk_sets = sets[k * chunk_questions : (k + 1) * chunk_questions]
        table = score_chunk(split, chunk_sets, scorer)
        write_parquet(table.replace_schema_metadata({FINGERPRINT_KEY: key.encode()}), chunk_path(work_dir, k))
    return [chunk_path(work_dir, k) for k in owned]


def score_chunk(split: Split, sets: Sequence[CandidateSet], scorer: Scorer) -> pa.Table:
    """Utilities of a few questions' candidates, with one scorer call so it can batch them all."""
    questions = {q.question_id: q for q in split.questions}
    items: list[tuple[str | None, str, str]] = []
    by_document: dict[str | None, dict[str, str]] = {}  # once per document, not per question (None: all)
    for s in sets:
        q = questions[s.question_id]
        if q.document_id not in by_document:
            by_document[q.document_id] = {p.passage_id: p.text for p in split.passages(q.document_id)}
        texts = by_document[q.document_id]
        for answer in q.gold_answers:
            items.append((None, q.text, answer))
            items.extend((texts[pid], q.text, answer) for pid in s.passage_ids)
    scores = np.asarray(scorer.score_answers(items), dtype=np.float64)
    if scores.shape != (len(items),):
        raise UAEError(f"the scorer returned {scores.shape} scores for {len(items)} items")
    bad = np.flatnonzero(~np.isfinite(scores))
    if bad.size:
        context, question, answer = items[bad[0]]
        raise UAEError(
            f"The LLM gave a non-finite log-likelihood ({scores[bad[0]]}) for question {question!r}, answer "
            f"{answer!r}: {bad.size} such items in this chunk. Check the model (dtype, weights); no chunk was written."
        )
    columns: dict[str, list[Any]] = {name: [] for name in SCHEMA.names}
    offset = 0
    for s in sets:
        q = questions[s.question_id]
        n_answers, width = len(q.gold_answers), 1 + len(s.passage_ids)
        block = scores[offset : offset + n_answers * width].reshape(n_answers, width)
        offset += n_answers * width
        closed, context = block[:, 0], block[:, 1:]
        utility = (context - closed[:, None]).mean(0)
        for j, (pid, source) in enumerate(zip(s.passage_ids, s.sources)):
            row = {
                "question_id": q.question_id,
                "document_id": q.document_id,
                "passage_id": pid,
                "position": j,
                "source": source,
                "is_gold": pid in q.gold_ids,
                "utility": float(utility[j]),
                "ll_context": float(context[:, j].mean()),
                "ll_closed": float(closed.mean()),
                "n_answers": n_answers,
            }
            for name, value in row.items():
                columns[name].append(value)
    return pa.table(columns, schema=SCHEMA)


def merge_utilities(work_dir: Path, n_sets: int, chunk_questions: int, dest: Path) -> pa.Table:
    """Join every chunk into ``dest`` (one parquet file); refuses while a chunk is missing.

    Under the work folder's merge lock, so that shards finishing together write ``dest`` once: one that
    finds ``dest`` already merged from this work (the same fingerprint, its content sound) returns that
    table without writing it again.
    """
    spec, key = _read_claim(work_dir)
    if key != work_key(spec, chunk_questions):
        raise CacheMismatchError(f"{work_dir} was written with another utility.chunk_questions; merge with that value.")
    n_chunks = math.ceil(n_sets / chunk_questions)
    with FileLock(str(work_dir / MERGE_LOCK)):
        missing = [k for k in range(n_chunks) if not _valid_chunk(chunk_path(work_dir, k), key)]
        if missing:
            raise IncompleteUtilitiesError(
                f"{work_dir}: {len(missing)} of {n_chunks} utility chunks are missing (first: {missing[0]}). Run the "
                "utility stage for every shard (utility.shard=i/n) before merging."
            )
        merged = _merged_table(dest, fingerprint(spec))
        if merged is not None:
            log.info("%s already holds these %d chunks, merged by another process: left as it is", dest, n_chunks)
            return merged
        table = pa.concat_tables([pq.read_table(chunk_path(work_dir, k)) for k in range(n_chunks)])
        table = table.replace_schema_metadata(
            {FINGERPRINT_KEY: fingerprint(spec).encode(), SPEC_KEY: json.dumps(spec, default=str).encode()}
        )
        write_parquet(table, dest, compression="zstd")
    return table


def _merged_table(dest: Path, made_by: str) -> pa.Table | None:
    """``dest``'s rows when it is a sound table with fingerprint ``made_by``; None when it must be written."""
    if not dest.is_file():
        return None
    try:
        return read_table(dest) if _stamped(dest, made_by) else None
    except (DamagedFileError, OSError, ValueError):  # damaged or unreadable: merging again replaces it
        return None


def _stamped(path: Path, key: str) -> bool:
    """Whether a parquet file's metadata names ``key`` as the fingerprint of what made it (schema only)."""
    return (pq.read_schema(path).metadata or {}).get(FINGERPRINT_KEY, b"").decode() == key


def chunk_path(work_dir: Path, k: int) -> Path:
    return work_dir / f"chunk-{k:05d}.parquet"


def _valid_chunk(path: Path, key: str) -> bool:
    """A chunk of this work (its fingerprint) whose content is what was written; a damaged one is redone."""
    if not path.is_file():
        return False
    try:
        if not _stamped(path, key):
            return False
        verify_table(path)
    except DamagedFileError as exc:
        log.warning("%s It is a cache: scoring that chunk again.", exc)
        return False
    except (OSError, ValueError) as exc:  # ArrowInvalid is a ValueError: not parquet
        log.warning("%s cannot be read as parquet (%s): scoring that chunk again.", path, type(exc).__name__)
        return False
    return True


def _claim_work_dir(work_dir: Path, key: str, spec: Mapping[str, Any]) -> None:
    """The first writer records the spec; a later one with another spec is refused, never mixed in."""
    claim = work_dir / "spec.json"
    if claim.is_file():
        _, existing = _read_claim(work_dir)
        if existing != key:
            raise CacheMismatchError(
                f"{work_dir} holds utilities made with other settings. Use another paths.cache_dir, or delete "
                "the folder to start over."
            )
        return
    with atomic_path(claim) as tmp:
        tmp.write_text(json.dumps({"fingerprint": key, "spec": spec}, indent=2, default=str))


def _read_claim(work_dir: Path) -> tuple[dict[str, Any], str]:
    try:
        claim = json.loads((work_dir / "spec.json").read_text())
        return claim["spec"], claim["fingerprint"]
    except (OSError, ValueError, KeyError) as exc:
        raise CacheMismatchError(f"{work_dir}: no readable spec.json ({exc}); it is not a utility work folder.") from exc
