"""Rankings as a run writes them (rankings.json) and as its committed record keeps them (rankings.json.gz)."""

from __future__ import annotations

import gzip
import json
import subprocess
from pathlib import Path

import pytest

from tests.helpers.paths import ROOT
from uae.core.errors import UAEError
from uae.results.read import RANKINGS, RANKINGS_RECORD, has_rankings, read_rankings

RANKED = {"q1": ["p3", "p1", "p2"], "q2": ["p2"]}


def test_a_record_reads_back_as_the_run_wrote_it(tmp_path: Path) -> None:
    run, record = tmp_path / "run", tmp_path / "record"
    run.mkdir()
    record.mkdir()
    (run / RANKINGS).write_text(json.dumps(RANKED, indent=2))
    subprocess.run(f"gzip -9nc {run / RANKINGS} > {record / RANKINGS_RECORD}", shell=True, check=True)  # as `make`'s RECORD
    assert read_rankings(run) == read_rankings(record) == RANKED
    assert has_rankings(run) and has_rankings(record) and not has_rankings(tmp_path)


def test_a_missing_or_broken_ranking_is_an_error_that_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(UAEError, match="rankings.json: not readable"):
        read_rankings(tmp_path)
    (tmp_path / RANKINGS_RECORD).write_bytes(gzip.compress(b'{"q1": ["p1"'))  # cut short
    with pytest.raises(UAEError, match=r"rankings.json.gz: not readable"):
        read_rankings(tmp_path)
    (tmp_path / RANKINGS_RECORD).write_bytes(b"not gzip")
    with pytest.raises(UAEError, match=r"rankings.json.gz: not readable"):
        read_rankings(tmp_path)
    (tmp_path / RANKINGS_RECORD).write_bytes(gzip.compress(b'["p1"]'))
    with pytest.raises(UAEError, match="not a ranking per question"):
        read_rankings(tmp_path)


def test_committed_records_keep_their_rankings_gzipped() -> None:
    """The GPU machine's calls carry the working tree (at most 64 MiB): 50 records as plain JSON took 86 MB."""
    tracked = subprocess.run(["git", "ls-files", "*" + RANKINGS], cwd=ROOT, capture_output=True, text=True, check=True)
    assert tracked.stdout.split() == []
