"""The utility table's format: its columns, the metadata keys that carry the spec that made it, and
what a user is told to do with a table that does not fit.

A table holds one row per (question, candidate) with the teacher's utility, and carries in its
parquet metadata the spec of everything that made it (split, data fingerprint, scorer, candidate
settings).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from uae.data.candidates import CandidateSet
from uae.data.records import Split

_COLUMNS: list[tuple[str, pa.DataType]] = [
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
SCHEMA = pa.schema(_COLUMNS)
FINGERPRINT_KEY = b"uae_fingerprint"  # parquet metadata: the fingerprint of the spec below
SPEC_KEY = b"uae_spec"  # parquet metadata: the JSON spec of everything that made the table

REBUILD = "Rebuild it with the utility stage: python -m uae.run +experiment=NAME stages=[utility] (or make utilities)."
# What replaces a table that cannot be read or whose content is damaged.
REPLACE = (
    "Replace it: restore a committed copy (git restore {path}), or rebuild it with the settings that made it: "
    "python -m uae.run +experiment=NAME stages=[utility] utility.overwrite=true."
)


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
